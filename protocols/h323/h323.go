// Package h323 routes H.323 call-signalling connections (H.225.0 over TCP,
// port 1720, and over TLS, port 1300) for gatehouse's proxy: it is the
// proxy.Sniffer of the h323 and h323s service types.
//
// innovaphone phones and soft clients keep one connection to their PBX and
// tunnel their RAS messages in it (H.460.17): the first message is a Q.931
// Facility whose H.225.0 genericData carries a GatekeeperRequest or
// RegistrationRequest. Its gatekeeper ID, [physical-location@]domain
// [/registration-location], names the service: domain[/registration-location].
// A call from an unregistered endpoint starts with a Setup instead; its
// service is the domain of the called user@domain alias. Anything else is
// refused.
//
// The layers are apart: tpkt.go frames (RFC 1006), q931.go finds the
// User-user IE, package per reads ASN.1 PER, and h225.go walks the few
// H.225.0 types routing needs. The watcher (watch.go) keeps every later
// registration on a connection to the service and alias it was routed and
// certificate-checked for, and reports the target's gatekeeper and
// registration rejects, so that password guessing gets a client blacklisted.
package h323

import (
	"crypto/x509"
	"slices"
	"strings"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// Sniffer routes H.323 connections. The zero value is ready to use.
type Sniffer struct{}

var _ proxy.Sniffer = Sniffer{}

// Sniff names the service of the first non-empty TPKT packet in first: a
// Facility tunnelling a GRQ or RRQ, or a Setup. For a registration whose
// aliases the verified client certificate names, every one of them (see
// certifiesAll), Decision.Identity is the certificate's CN, which lets the
// proxy forward over TLS for check_certificate.
func (Sniffer) Sniff(first []byte, info *proxy.ConnInfo) (*proxy.Decision, error) {
	msg, err := firstMessage(first)
	if err != nil {
		return nil, err
	}
	q, err := parseQ931(msg)
	if err != nil {
		return nil, err
	}
	var reg registration
	switch q.msgType {
	case q931Setup:
		reg, err = sniffSetup(q)
	case q931Facility:
		reg, err = sniffRegistration(q, verifiedLeaf(info))
	default:
		err = errNotRoutable
	}
	if err != nil {
		return nil, err
	}
	d := &proxy.Decision{Service: reg.service, Who: reg.who(), Watcher: &watcher{reg: reg}}
	if reg.cert != nil {
		d.Identity = info.VerifiedCN
	}
	return d, nil
}

// verifiedLeaf returns the client certificate when it chains to
// tls.client_cas: the proxy sets VerifiedCN only then.
func verifiedLeaf(info *proxy.ConnInfo) *x509.Certificate {
	if info == nil || info.VerifiedCN == "" || info.TLS == nil || len(info.TLS.PeerCertificates) == 0 {
		return nil
	}
	return info.TLS.PeerCertificates[0]
}

// firstMessage returns the payload of the first TPKT packet in b that is
// not a keep-alive.
func firstMessage(b []byte) ([]byte, error) {
	for {
		n, err := Frame(b)
		switch {
		case err != nil:
			return nil, err
		case n > len(b):
			return nil, proxy.ErrNeedMore
		case n > tpktHeaderLen:
			return b[tpktHeaderLen:n], nil
		}
		b = b[n:]
	}
}

// sniffSetup routes a call by the domain of its first called alias that
// has one.
func sniffSetup(q q931Message) (registration, error) {
	uu, err := decodeUserInfo(q.userUser, q931Setup)
	if err != nil {
		return registration{}, errH225.With(err)
	}
	for _, a := range uu.dest {
		if d := calledDomain(a); d != "" {
			return registration{service: d}, nil
		}
	}
	return registration{}, errNoCalledDomain
}

// sniffRegistration routes by the gatekeeper ID of the first GRQ or RRQ
// tunnelled in a Facility; any further one must agree with it. The
// registration is certified when leaf names every alias of every one.
func sniffRegistration(q q931Message, leaf *x509.Certificate) (registration, error) {
	var reg registration
	uu, err := decodeUserInfo(q.userUser, q931Facility)
	if err != nil {
		return reg, errH225.With(err)
	}
	var regs []rasInfo
	for _, raw := range uu.ras {
		m, err := decodeRAS(raw)
		switch {
		case err != nil:
			return reg, errRAS.With(err)
		case !m.registration():
			continue
		case reg.service != "":
			if err := reg.check(&m); err != nil {
				return reg, err
			}
			regs = append(regs, m)
			continue
		case m.gatekeeperID == nil:
			return reg, errNoGatekeeperID
		}
		service, ok := serviceName(bmpString(m.gatekeeperID))
		if !ok {
			return reg, errBadGatekeeperID
		}
		reg = registration{service: service}
		if reg.user, err = oneUser(m.aliases); err != nil {
			return reg, err
		}
		regs = append(regs, m)
	}
	if reg.service == "" {
		return reg, errNotRoutable
	}
	if leaf != nil && slices.ContainsFunc(regs, func(m rasInfo) bool { return m.aliasCount > 0 }) &&
		!slices.ContainsFunc(regs, func(m rasInfo) bool { return !certifiesAll(leaf, &m, reg.service) }) {
		reg.cert = leaf
	}
	return reg, nil
}

// registration is what a connection was routed for.
type registration struct {
	service string
	// user is the one user the registration's aliases name (see oneUser);
	// "" for a call, or a registration by number only.
	user string
	// cert is the client certificate that names every alias registered,
	// when there is one: the connection then reached the target as
	// certificate-authenticated, and every later registration on it must
	// be named by the same certificate.
	cert *x509.Certificate
}

// who is the registration as the admin UI shows it: the user its aliases
// name and the gatekeeper ID ("alice @ example.com"), or the ID alone.
func (r registration) who() string {
	if r.user == "" {
		return "gk " + r.service
	}
	return r.user + " @ gk " + r.service
}

// check refuses a registration m that does not keep to r: a gatekeeper ID
// of another service, aliases of more than one user, of another user than
// r's, or (on a certified connection) an alias the certificate does not
// name. A registration without either (a lightweight RRQ) keeps to
// anything.
func (r *registration) check(m *rasInfo) error {
	if m.gatekeeperID != nil {
		service, ok := serviceName(bmpString(m.gatekeeperID))
		if !ok || !configs.EqualName(service, r.service) {
			return errOtherService
		}
	}
	if m.aliasCount == 0 {
		return nil
	}
	user, err := oneUser(m.aliases)
	switch {
	case err != nil:
		return err
	case r.cert != nil:
		if !certifiesAll(r.cert, m, r.service) {
			return errOtherAlias
		}
	case r.user != "" && !configs.EqualName(user, r.user):
		return errOtherAlias
	}
	return nil
}

// serviceName maps a gatekeeper ID, [physical-location@]domain
// [/registration-location], to the service name domain[/registration-location].
// Only the part before the first "/" can hold the physical location.
func serviceName(gatekeeperID string) (string, bool) {
	head, _, _ := strings.Cut(gatekeeperID, "/")
	if at := strings.LastIndexByte(head, '@'); at >= 0 {
		gatekeeperID, head = gatekeeperID[at+1:], head[at+1:]
	}
	if head == "" || strings.HasSuffix(gatekeeperID, "/") || !printable(gatekeeperID) {
		return "", false
	}
	return gatekeeperID, true
}

// calledDomain returns the domain of a called alias user@domain (h323-ID or
// email-ID) or URL scheme:user@domain[:port][;parameters] (url-ID, RFC
// 3508), or "" when it has none.
func calledDomain(a alias) string {
	s := a.String()
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return ""
	}
	domain := s[at+1:]
	if a.kind == aliasURL {
		if end := strings.IndexAny(domain, ":;?"); end >= 0 {
			domain = domain[:end]
		}
	}
	if domain == "" || !printable(domain) {
		return ""
	}
	return domain
}

// printable reports whether a name has no spaces or control characters, so
// that it can be matched and logged as it is.
func printable(s string) bool {
	for _, c := range s {
		if c <= ' ' || c == 0x7F || c == '\uFFFD' || (c >= 0x80 && c < 0xA0) {
			return false
		}
	}
	return true
}
