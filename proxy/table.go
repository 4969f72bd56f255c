package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// Table is an immutable snapshot of one configuration, as the data path
// needs it. A connection keeps the Table it was accepted under for its whole
// life, so a reload changes new connections only.
type Table struct {
	Config *configs.Config

	serverTLS map[string]*tls.Config // by service type name, TLS types only
	anyTLS    *tls.Config            // listen.any: picks one of serverTLS's by ALPN (any.go)
	certs     CertSource             // tls.acme; nil without (certs.go)
	anyInner  []*tls.Config          // what anyTLS picks besides serverTLS's, for useCerts
	agentTLS  *tls.Config            // agents on listen.https and listen.any (ALPN gatehouse-agent/1)
	clientCAs *x509.CertPool
	targetTLS map[string]*tls.Config // by lower-case service name
	agents    Agents                 // nil: services with agent are unavailable
}

// Agents is the edge side of agent tunnels (package tunnel): the services
// whose agents dialled in, and streams to them.
type Agents interface {
	// Ports returns the ports by service type that a live tunnel of
	// account registered for name (lower case), and whether there is one.
	Ports(account, name string) (map[string]int, bool)
	// Dial opens a stream to an agent of account serving name, which dials
	// the port of service type typ (with TLS when tls is set). When no
	// live tunnel serves name the error matches ErrNoTunnel.
	Dial(ctx context.Context, account, name, typ string, tls bool, client netip.AddrPort) (net.Conn, error)
}

// An AgentServer is Agents that also serves agents arriving on listen.any
// with ALPN gatehouse-agent/1 (package tunnel's Server): conn has finished
// its handshake and belongs to ServeTLS, which returns when the tunnel ends.
type AgentServer interface {
	ServeTLS(conn *tls.Conn)
}

// alpnAgent is the ALPN protocol of agent tunnels.
const alpnAgent = "gatehouse-agent/1"

// ErrNoTunnel: no agent tunnel serves the name (yet, or any longer). It is
// answered as the protocol's "unavailable" and not held against the client.
var ErrNoTunnel = &Refusal{Reason: ReasonUnavailable, Detail: "no agent tunnel"}

// AgentRoute is where a Route to a service with agent goes.
type AgentRoute struct {
	Account string
	Name    string // the registered name, lower case
	// TLS: the agent speaks TLS to the target (the mapping rule chose a TLS port).
	TLS bool
}

// certCheckFamilies are the families whose TLS registrations check_certificate
// covers (see the contract): the identity a client certificate must carry is
// the registering name, which only SIP and H.323 have.
var certCheckFamilies = map[string]bool{"sip": true, "h323": true}

// checksCertificate reports whether check_certificate applies to svc's
// registrations of family: only a service with both the plain and the TLS
// port has a choice to make (see Resolve). A service behind an agent has
// the ports its agent registers, known only at Resolve, which checks them:
// its TLS listeners must ask for the client certificate all the same.
func checksCertificate(svc *configs.Service, family string) bool {
	if !svc.CheckCertificate || !certCheckFamilies[family] {
		return false
	}
	if svc.Agent != "" {
		return true
	}
	plain, tlsType := familyTypes(family)
	_, hasPlain := svc.Port(plain)
	_, hasTLS := svc.Port(tlsType)
	return hasPlain && hasTLS
}

// checksCertificates reports whether any service checks certificates for family.
func checksCertificates(cfg *configs.Config, family string) bool {
	for i := range cfg.Services {
		if checksCertificate(&cfg.Services[i], family) {
			return true
		}
	}
	return false
}

// legacySuites are what TLS 1.0 and 1.1 clients of the phone generation
// that never got TLS 1.2 offer: AES-CBC with RSA key exchange, which Go no
// longer enables by default. Only offered when tls.min_version is below 1.2.
var legacySuites = []uint16{
	tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_RSA_WITH_AES_256_CBC_SHA,
}

// cipherSuites returns the TLS 1.0-1.2 suites for min (a tls.VersionTLS*
// constant): nil (Go's defaults) from 1.2 on, the defaults and legacySuites
// below. crypto/tls orders them by its own preference, so a client that
// can do ECDHE gets ECDHE.
func cipherSuites(min uint16) []uint16 {
	if min == 0 || min >= tls.VersionTLS12 {
		return nil
	}
	var out []uint16
	for _, cs := range tls.CipherSuites() {
		if slices.Contains(cs.SupportedVersions, tls.VersionTLS12) { // TLS 1.3's are not configurable
			out = append(out, cs.ID)
		}
	}
	return append(out, legacySuites...)
}

// NewTable prepares cfg for the data path. cfg must come from configs.Load,
// which has loaded the certificates and CA pools.
func NewTable(cfg *configs.Config, alpn map[string][]string) *Table {
	t := &Table{
		Config:    cfg,
		serverTLS: make(map[string]*tls.Config),
		clientCAs: cfg.TLS.ClientCAPool,
		targetTLS: make(map[string]*tls.Config),
	}
	var certs []tls.Certificate
	for _, ck := range cfg.TLS.Certificates {
		certs = append(certs, ck.Loaded)
	}
	for _, st := range configs.ServiceTypes {
		if !st.TLS {
			continue
		}
		sc := &tls.Config{
			// crypto/tls picks the certificate whose names match the SNI and
			// falls back to the first: exactly the contract's rule.
			Certificates: certs,
			MinVersion:   cmp.Or(cfg.TLS.MinVersionID, tls.VersionTLS12),
			CipherSuites: cipherSuites(cfg.TLS.MinVersionID),
			NextProtos:   alpn[st.Name],
		}
		if t.clientCAs != nil && checksCertificates(cfg, st.Family) {
			// Request, never require, and verify after the handshake: an
			// untrusted certificate, or none, must not fail the handshake,
			// it only means "forward over the plain port". Only where a
			// service checks certificates: a CertificateRequest makes some
			// clients stall (linphone) or abort and retry (Chromium).
			sc.ClientAuth = tls.RequestClientCert
		}
		t.serverTLS[st.Name] = sc
	}
	t.agentTLS = t.newAgentTLS(certs, cfg)
	if https := t.serverTLS["https"]; https != nil {
		// An agent whose LAN lets only 443 out dials listen.https with ALPN
		// gatehouse-agent/1: it gets the tunnel's configuration (the
		// listener hands it to the tunnel server after the handshake).
		https.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			if slices.Contains(hi.SupportedProtos, alpnAgent) && t.agentServer() != nil {
				return t.agentTLS, nil
			}
			return nil, nil
		}
	}
	t.anyTLS = t.newAnyTLS(certs, cfg)
	for i := range cfg.Services {
		s := &cfg.Services[i]
		tc := &tls.Config{RootCAs: cfg.TLS.TargetCAPool, MinVersion: tls.VersionTLS12, ServerName: s.Target}
		t.targetTLS[configs.FoldName(s.Name)] = tc
	}
	return t
}

// newAnyTLS is listen.any's TLS configuration: a client offering HTTP in
// ALPN gets https's (never a CertificateRequest), one offering stun.turn
// TURN's, one offering gatehouse-agent/1 the agents' when agents are served,
// one offering acme-tls/1 or gatehouse-agent/1 that is not served a failed
// handshake (an ACME challenge, when tls.acme is set, is answered before
// this: certs.go), and any other the configuration for SIP, LDAP and H.323
// inside TLS, which asks for a client certificate when sips or h323s would.
func (t *Table) newAnyTLS(certs []tls.Certificate, cfg *configs.Config) *tls.Config {
	base := func() *tls.Config {
		return &tls.Config{Certificates: certs, MinVersion: cmp.Or(cfg.TLS.MinVersionID, tls.VersionTLS12), CipherSuites: cipherSuites(cfg.TLS.MinVersionID)}
	}
	inner := base()
	if t.clientCAs != nil && (checksCertificates(cfg, "sip") || checksCertificates(cfg, "h323")) {
		inner.ClientAuth = tls.RequestClientCert
	}
	turnTLS := base()
	turnTLS.NextProtos = []string{alpnTURN}
	agentTLS := t.agentTLS
	t.anyInner = []*tls.Config{inner, turnTLS, agentTLS}
	https := t.serverTLS["https"]
	return &tls.Config{
		Certificates: certs,
		GetConfigForClient: func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			for _, p := range hi.SupportedProtos {
				switch {
				case slices.Contains(alpnHTTP, p) && len(https.NextProtos) > 0:
					return https, nil
				case p == alpnTURN:
					return turnTLS, nil
				case p == alpnAgent && t.agentServer() != nil:
					return agentTLS, nil
				}
			}
			for _, p := range hi.SupportedProtos {
				if p == alpnACME || p == alpnAgent { // ACME: served by certs.go when tls.acme is set
					return nil, errALPNNotServed
				}
			}
			return inner, nil
		},
	}
}

// newAgentTLS is the TLS configuration of agents arriving on listen.https
// or listen.any. Agents authenticate by token or by a client certificate
// their account's client_ca signs (checked by the tunnel, not here).
func (t *Table) newAgentTLS(certs []tls.Certificate, cfg *configs.Config) *tls.Config {
	return &tls.Config{Certificates: certs, MinVersion: cmp.Or(cfg.TLS.MinVersionID, tls.VersionTLS12),
		CipherSuites: cipherSuites(cfg.TLS.MinVersionID), NextProtos: []string{alpnAgent}, ClientAuth: tls.RequestClientCert}
}

// agentServer is the tunnel server agents on listen.any are handed to, or
// nil when agents are not served.
func (t *Table) agentServer() AgentServer {
	if len(t.Config.Agents.Accounts) == 0 {
		return nil
	}
	s, _ := t.agents.(AgentServer)
	return s
}

// ServerTLS returns the TLS configuration for clients of service type typ.
func (t *Table) ServerTLS(typ string) *tls.Config { return t.serverTLS[typ] }

// TargetTLS returns the TLS configuration for dialling service's target.
func (t *Table) TargetTLS(service string) *tls.Config {
	return t.targetTLS[configs.FoldName(service)]
}

// TargetTLSBase is the TLS configuration for targets without a server
// name, for clients that set it per connection (net/http's Transport).
func (t *Table) TargetTLSBase() *tls.Config {
	return &tls.Config{RootCAs: t.Config.TLS.TargetCAPool, MinVersion: tls.VersionTLS12}
}

// verifiedCN returns the CN of the client's certificate when it chains to
// tls.client_cas, or "".
func (t *Table) verifiedCN(cs *tls.ConnectionState) string {
	if t.clientCAs == nil || cs == nil || len(cs.PeerCertificates) == 0 {
		return ""
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         t.clientCAs,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return ""
	}
	return leaf.Subject.CommonName
}

// Route is where one request goes.
type Route struct {
	Service *configs.Service
	Type    string      // the service type used towards the target ("sips", ...)
	Addr    string      // host:port of the target
	TLS     *tls.Config // non-nil: speak TLS to the target
	// StartTLS: the port is plain but the link must be encrypted in band
	// (LDAP StartTLS) before TLS is started with the TLS config.
	StartTLS bool
	// Agent is set for a service with agent: Dial opens a stream through
	// its tunnel, TLS is nil (the agent speaks TLS to the target when
	// Agent.TLS), and Addr is a name that never resolves
	// ("https.hq.example.com.agent.invalid:443"), unique per name, type
	// and port, for logs and connection pools.
	Agent *AgentRoute
}

// Resolve applies the service, port and network checks for a request with
// routing key name, and the encryption mapping rule of the contract.
// identity and verifiedCN feed check_certificate (see Decision.Identity).
// secure says the request arrived encrypted: on a TLS type, or after an
// in-band upgrade (LDAP StartTLS) on a plain one.
func (t *Table) Resolve(client netip.Addr, typ configs.ServiceType, secure bool, name, identity, verifiedCN string) (*Route, *Refusal) {
	svc := t.Config.Service(name)
	if svc == nil {
		return nil, &Refusal{Reason: ReasonUnknownService, Service: name}
	}
	if nets, ok := svc.Allow.Networks[typ.Name]; ok && !contains(nets, client) {
		return nil, &Refusal{Reason: ReasonNetwork, Service: svc.Name}
	}
	port := svc.Port
	if svc.Agent != "" {
		name = configs.FoldName(name)
		var ports map[string]int
		ok := false
		if t.agents != nil {
			ports, ok = t.agents.Ports(svc.Agent, name)
		}
		if !ok {
			return nil, ErrNoTunnel.withService(svc.Name)
		}
		port = func(typ string) (int, bool) { p, ok := ports[typ]; return p, ok && p > 0 }
	}
	plain, tlsType := familyTypes(typ.Family)
	plainPort, hasPlain := port(plain)
	tlsPort, hasTLS := port(tlsType)
	var useTLS bool
	switch {
	case hasPlain && hasTLS:
		useTLS = secure
		if useTLS && checksCertificate(svc, typ.Family) {
			useTLS = identity != "" && configs.EqualName(identity, verifiedCN)
		}
	case hasTLS:
		useTLS = true
	case hasPlain:
		useTLS = false
	default:
		return nil, &Refusal{Reason: ReasonNoPort, Service: svc.Name}
	}
	if svc.Agent != "" {
		r := &Route{Service: svc, Type: plain, Agent: &AgentRoute{Account: svc.Agent, Name: name, TLS: useTLS}}
		p := plainPort
		if useTLS {
			r.Type, p = tlsType, tlsPort
		}
		r.Addr = net.JoinHostPort(r.Type+"."+strings.ReplaceAll(name, "/", "--")+".agent.invalid", strconv.Itoa(p))
		return r, nil
	}
	r := &Route{Service: svc, Type: plain, Addr: net.JoinHostPort(svc.Target, strconv.Itoa(plainPort))}
	if useTLS {
		r.Type, r.Addr, r.TLS = tlsType, net.JoinHostPort(svc.Target, strconv.Itoa(tlsPort)), t.TargetTLS(svc.Name)
	} else if svc.LDAPStartTLS && typ.Family == "ldap" {
		r.StartTLS, r.TLS = true, t.TargetTLS(svc.Name)
	}
	return r, nil
}

// familyTypes returns the plain and TLS service type names of a family.
func familyTypes(family string) (plain, tlsType string) {
	for _, st := range configs.ServiceTypes {
		if st.Family == family {
			if st.TLS {
				tlsType = st.Name
			} else {
				plain = st.Name
			}
		}
	}
	return plain, tlsType
}

func contains(nets []configs.Prefix, ip netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}
