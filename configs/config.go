// Package configs loads and validates gatehouse's YAML configuration.
//
// It is the only place that knows the file format: Load turns the file into a
// typed Config with every default applied (see defaults.go), or into a list of
// errors that each name the file, line and key. The rest of gatehouse (proxy,
// protocols, blacklist, turn, webui) reads the typed Config and never sees YAML.
//
// The contract is shared/spec/gatehouse.example.yaml: every key there is
// accepted with its meaning; keys added here are documented in README.md.
//
// Loading is also where the configuration's files are read: certificates,
// keys and CA bundles are loaded and kept in the Config (CertKey.Loaded,
// TLS.ClientCAPool, ...), so a bad file is reported with its line by
// `gatehouse check`, and the proxy never reads them again.
package configs

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"strings"
	"time"
)

// Config is a loaded, validated configuration. Every field holds its
// effective value: defaults are already applied, and relative file paths
// are resolved against the directory of the configuration file.
type Config struct {
	// File is the path the configuration was loaded from ("" when parsed from memory).
	File string `yaml:"-"`

	// Listen maps a service type (see ServiceTypes) to the address gatehouse
	// accepts it on. A type that is absent is not accepted at all. The key
	// ListenAny ("any") is one address for every protocol, told apart by
	// its first bytes.
	Listen    map[string]string `yaml:"listen"`
	TLS       TLS               `yaml:"tls"`
	Services  []Service         `yaml:"services"`
	Blacklist Blacklist         `yaml:"blacklist"`
	TURN      TURN              `yaml:"turn"`
	Admin     Admin             `yaml:"admin"`
	Log       Log               `yaml:"log"`
	Limits    Limits            `yaml:"limits"`
	Agents    Agents            `yaml:"agents"`
	Health    Health            `yaml:"health"`
	// Cluster makes this node one of several that share client state
	// (shared/spec/cluster.example.yaml); Cluster.Enabled is false when the
	// file has no cluster section.
	Cluster Cluster `yaml:"cluster"`

	// byName indexes Services by FoldName of their names; nil in a Config built by hand.
	byName map[string]*Service
}

// Service returns the service called name, compared with ASCII case
// ignored (EqualName), or nil. A name no service has exactly may match a pattern service
// ("*.devices.example.com", where "*" stands for exactly one DNS label).
func (c *Config) Service(name string) *Service {
	if c.byName != nil {
		if s := c.byName[FoldName(name)]; s != nil {
			return s
		}
	} else {
		for i := range c.Services {
			if EqualName(c.Services[i].Name, name) {
				return &c.Services[i]
			}
		}
	}
	for i := range c.Services {
		if s := &c.Services[i]; strings.HasPrefix(s.Name, "*.") && MatchName(s.Name, name) {
			return s
		}
	}
	return nil
}

// MatchName reports whether name matches pattern, compared with ASCII case
// ignored (EqualName): equal, or, for a pattern whose first label is "*",
// equal after replacing that label by exactly one DNS label of name
// (letters, digits, '-' and '_', as isDNSName allows).
func MatchName(pattern, name string) bool {
	if EqualName(pattern, name) {
		return true
	}
	rest, ok := strings.CutPrefix(pattern, "*.")
	if !ok {
		return false
	}
	label, tail, ok := strings.Cut(name, ".")
	return ok && dnsLabel(label) && EqualName(tail, rest)
}

func dnsLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// TLS holds the certificates gatehouse offers and the CAs it trusts.
type TLS struct {
	// Certificates are offered to clients, chosen by SNI; the first is the default.
	Certificates []CertKey `yaml:"certificates"`
	// ClientCAs verify client certificates for check_certificate.
	ClientCAs []string `yaml:"client_cas"`
	// TargetCAs verify targets when gatehouse speaks TLS to them; empty means the system roots.
	TargetCAs []string `yaml:"target_cas"`
	// MinVersion is the lowest TLS version accepted from clients: "1.0",
	// "1.1", "1.2" (the default) or "1.3". Below 1.2 the CBC suites with
	// RSA key exchange that old phones need are offered too.
	MinVersion string `yaml:"min_version"`

	// ACME, when set, obtains and renews certificates for its names from an
	// ACME CA; a certificate in Certificates for the same name wins.
	ACME *ACME `yaml:"acme"`

	// MinVersionID is MinVersion as a crypto/tls constant (tls.VersionTLS12, ...).
	MinVersionID uint16 `yaml:"-"`

	// ClientCAPool holds the ClientCAs; nil when there are none.
	ClientCAPool *x509.CertPool `yaml:"-"`
	// TargetCAPool holds the TargetCAs; nil means the system roots.
	TargetCAPool *x509.CertPool `yaml:"-"`
}

// ACME configures certificates from an RFC 8555 CA (tls.acme).
type ACME struct {
	// Email is the account's contact; "" registers without one.
	Email string `yaml:"email"`
	// CA is the directory URL of the ACME server.
	CA string `yaml:"ca"`
	// CARoot is a PEM bundle that verifies the ACME server itself (a
	// private CA); "" means the system roots.
	CARoot string `yaml:"ca_root"`
	// Names are the DNS names certificates are obtained for.
	Names []string `yaml:"names"`
	// StateDir keeps the account key, certificates and their keys.
	StateDir string `yaml:"state_dir"`

	// CARootPool holds CARoot; nil means the system roots.
	CARootPool *x509.CertPool `yaml:"-"`
}

// CertKey is a PEM certificate chain and its private key, as file paths.
type CertKey struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`

	// Loaded is the pair read from Cert and Key, Leaf included.
	Loaded tls.Certificate `yaml:"-"`
}

// Service is one internal destination, found by its name.
type Service struct {
	// Name is the routing key, compared case-insensitively and exactly.
	Name string `yaml:"name"`
	// Target is the IP address or DNS name of the internal host.
	Target string `yaml:"target"`
	// Ports maps a service type to the target's port for it. A type with no
	// port is not forwarded to this service.
	Ports map[string]int `yaml:"ports"`
	// CheckCertificate: registrations arriving over TLS (SIP, H.323) are
	// forwarded over TLS only when the client certificate chains to
	// tls.client_cas and its CN equals the registering name.
	CheckCertificate bool `yaml:"check_certificate"`
	// LDAPStartTLS: speak StartTLS to the target's plain LDAP port when the
	// request is to be forwarded encrypted and the service has no ldaps port.
	LDAPStartTLS bool `yaml:"ldap_starttls"`
	// ProxyProtocol "v2" sends a PROXY protocol v2 header first on every
	// connection to the target (client address and port, SNI or Host as
	// AUTHORITY, the SSL TLVs when gatehouse terminated TLS); "" sends none.
	ProxyProtocol string `yaml:"proxy_protocol"`
	Allow         Allow  `yaml:"allow"`
	// Agent names the agents.accounts entry whose agents serve this
	// service through their tunnels, instead of a Target: the address and
	// ports are what the agent registered. A pattern name ("*.example.com")
	// is allowed only here.
	Agent string `yaml:"agent"`
}

// Port returns the target's port for service type typ, and whether there is one.
func (s *Service) Port(typ string) (int, bool) {
	p, ok := s.Ports[typ]
	return p, ok && p > 0
}

// Allow restricts who may use a service and how.
type Allow struct {
	// Networks maps a service type to the client networks allowed to use it.
	// A type that is not listed is open to all.
	Networks map[string][]Prefix `yaml:"networks"`
	// URLs is the allowed-URL list for HTTP and HTTPS; nil allows every URL.
	URLs []string `yaml:"urls"`
}

// Blacklist configures fraud detection.
type Blacklist struct {
	// Threshold is the number of suspicious requests within one minute that
	// an address may send; one more blocks it.
	Threshold int `yaml:"threshold"`
	// Expiration is how long an automatic entry lasts.
	Expiration time.Duration `yaml:"expiration"`
	// Whitelist entries are never blocked.
	Whitelist []Prefix `yaml:"whitelist"`
	// Blacklist entries are blocked until removed.
	Blacklist []Prefix `yaml:"blacklist"`
	// State is the file run-time entries are kept in across restarts; "" keeps them in memory only.
	State string `yaml:"state"`
	// IPv6Prefix is the prefix length IPv6 clients are counted by (default 64).
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// MaxTracked caps the number of addresses tracked at once (default 100000).
	MaxTracked int `yaml:"max_tracked"`
}

// TURN configures the embedded STUN/TURN server. Listen "" disables it.
type TURN struct {
	Listen string `yaml:"listen"`
	// TLSListen, when set, also accepts TURN over TLS with the tls certificates.
	TLSListen    string    `yaml:"tls_listen"`
	Realm        string    `yaml:"realm"`
	RelayAddress string    `yaml:"relay_address"`
	RelayPorts   PortRange `yaml:"relay_ports"`
	// AlternateAddress is a second IP address of the appliance. With it
	// STUN also answers on it and on turn.listen's port + 1 of both
	// addresses (UDP), for RFC 5780 NAT behaviour discovery and RFC 3489
	// CHANGE-REQUEST. Empty: CHANGE-REQUEST is refused with 420.
	AlternateAddress string    `yaml:"alternate_address"`
	Accounts         []Account `yaml:"accounts"`
	// Secret enables time-limited REST credentials (coturn's "timestamp:user" scheme).
	Secret string `yaml:"secret"`
	// DenyPeers are networks relayed media may never reach. When the key is
	// absent the default list applies (DefaultDenyPeers plus the appliance's own addresses).
	DenyPeers []Prefix `yaml:"deny_peers"`
	// MaxAllocations caps allocations in total, MaxAllocationsPerUser per account.
	MaxAllocations        int `yaml:"max_allocations"`
	MaxAllocationsPerUser int `yaml:"max_allocations_per_user"`
	// MaxLifetime caps the lifetime a client may request for an allocation.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	// AllocateTimeout closes a TCP or TLS connection that holds no
	// allocation this long after it was accepted (or its allocation ended).
	AllocateTimeout time.Duration `yaml:"allocate_timeout"`
}

// Account is a TURN long-term credential.
type Account struct {
	User     string `yaml:"user"`
	Password string `yaml:"password"`
}

// Admin configures the admin web UI and JSON API.
type Admin struct {
	Listen string      `yaml:"listen"`
	Users  []AdminUser `yaml:"users"`
	// Cert and Key override the tls certificates for the admin listener.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// MetricsPublic serves /metrics without authentication.
	MetricsPublic bool `yaml:"metrics_public"`
	// StateDir holds what the admin UI keeps between runs: the self-signed
	// certificate made when neither admin.cert nor tls.certificates is set.
	StateDir string `yaml:"state_dir"`
	// SessionTimeout is how long a login lasts; a session is never extended.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// Backups is how many earlier versions of the configuration file the
	// admin UI keeps when it saves a new one (FILE.1 the latest).
	Backups int `yaml:"backups"`

	// Loaded is the pair read from Cert and Key; nil when they are not set
	// and the admin listener uses the tls certificates (or, with none, a
	// self-signed certificate kept in StateDir).
	Loaded *tls.Certificate `yaml:"-"`
}

// AdminUser is an administrator with a bcrypt password hash.
type AdminUser struct {
	Name         string `yaml:"name"`
	PasswordHash string `yaml:"password_hash"`
}

// Log configures structured logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Limits bound what one client may cost.
type Limits struct {
	// FirstPacketTimeout bounds the wait for the first message (and the TLS handshake before it).
	FirstPacketTimeout time.Duration `yaml:"first_packet_timeout"`
	// FirstPacketMax caps the bytes read to find the routing key.
	FirstPacketMax ByteSize `yaml:"first_packet_max"`
	// DialTimeout bounds connecting to a target.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// IdleTimeout closes a relayed connection with no traffic either way.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxConnsPerIP caps concurrent connections from one client (an IPv4
	// address, an IPv6 network of blacklist.ipv6_prefix bits) across every
	// listener: services, TURN over TCP/TLS and the admin port (0: no cap).
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`
	// MaxConns caps the service connections (TURN over TCP/TLS included) of
	// clients that are not whitelisted, so that the admin port and
	// whitelisted clients keep a reserve of file descriptors (0: no cap).
	// The default is derived from the descriptor limit: see DefaultMaxConns.
	MaxConns int `yaml:"max_conns"`
	// MaxConnsPerRange is the share of MaxConns the clients of one range
	// (an IPv4 /24, an IPv6 /48: the blacklist's aggregation prefixes) may
	// hold together, so that a flood spread over many addresses of a few
	// networks cannot take every connection. Applies only with MaxConns.
	MaxConnsPerRange Percent `yaml:"max_conns_per_range"`
	// BodyTimeout bounds how long a request body may take to arrive, so a
	// body trickled a byte at a time cannot hold a client and a target
	// connection for idle_timeout per read.
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// ShutdownTimeout bounds how long SIGTERM waits for in-flight requests.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// Agents configures the edge side of agent tunnels: agents inside a LAN dial
// out to Listen and serve the services they register through the tunnel.
type Agents struct {
	// Listen is where agents dial in, TLS with the tls certificates; "" off.
	Listen string `yaml:"listen"`
	// Heartbeat is how often the edge pings each tunnel; a tunnel that
	// misses three is dropped.
	Heartbeat time.Duration  `yaml:"heartbeat"`
	Accounts  []AgentAccount `yaml:"accounts"`
	// MaxStreams caps the concurrent streams (forwarded connections) of one tunnel.
	MaxStreams int `yaml:"max_streams"`
	// MaxTunnels caps the tunnels open at once for one account.
	MaxTunnels int `yaml:"max_tunnels"`
}

// Account returns the account called name, or nil.
func (a *Agents) Account(name string) *AgentAccount {
	for i := range a.Accounts {
		if a.Accounts[i].Name == name {
			return &a.Accounts[i]
		}
	}
	return nil
}

// AgentAccount is who may open a tunnel and which names it may register.
type AgentAccount struct {
	Name string `yaml:"name"`
	// TokenHash is the bcrypt hash of the agent's token.
	TokenHash string `yaml:"token_hash"`
	// ClientCA, instead of (or beside) a token: a client certificate whose
	// CN is Name, chained to this CA, authenticates the agent.
	ClientCA string `yaml:"client_ca"`
	// Names are the service names the account may register; "*" stands for
	// exactly one DNS label.
	Names []string `yaml:"names"`

	// ClientCAPool holds ClientCA; nil when it is not set.
	ClientCAPool *x509.CertPool `yaml:"-"`
}

// Allows reports whether the account may register name.
func (a *AgentAccount) Allows(name string) bool {
	for _, p := range a.Names {
		if MatchName(p, name) {
			return true
		}
	}
	return false
}

// ListenAny is the listen key of the listener for every protocol.
const ListenAny = "any"

// Health configures the active checks of the targets (package health).
type Health struct {
	// Interval is the time between two checks of a target.
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one check: connect, TLS and the protocol's answer.
	Timeout time.Duration `yaml:"timeout"`
	// Fall is the failures in a row (checks and dials) that mark a target
	// down; Rise the successful checks in a row that mark it up again.
	Fall int `yaml:"fall"`
	Rise int `yaml:"rise"`
	// HTTPPath is the path the check of an HTTP or HTTPS target GETs.
	HTTPPath string `yaml:"http_path"`
}

// ServiceType describes one accepted protocol-and-encryption pair.
type ServiceType struct {
	Name   string // the key used in listen, ports and allow.networks
	Family string // http, sip, ldap or h323: the plain type's name
	TLS    bool   // gatehouse terminates TLS before reading the first packet
}

// ServiceTypes lists every service type gatehouse knows, plain before TLS.
var ServiceTypes = []ServiceType{
	{"http", "http", false}, {"https", "http", true},
	{"sip", "sip", false}, {"sips", "sip", true},
	{"ldap", "ldap", false}, {"ldaps", "ldap", true},
	{"h323", "h323", false}, {"h323s", "h323", true},
}

// LookupType returns the service type called name.
func LookupType(name string) (ServiceType, bool) {
	for _, t := range ServiceTypes {
		if t.Name == name {
			return t, true
		}
	}
	return ServiceType{}, false
}

// Prefix is an IP network written either as a CIDR or as a single address.
type Prefix struct{ netip.Prefix }

// PortRange is an inclusive range of UDP ports written "low-high".
type PortRange struct{ Min, Max uint16 }

// ByteSize is a size in bytes, written as a number or with a KiB/MiB suffix.
type ByteSize int

// Percent is a share written with a percent sign ("25%"), a whole number.
type Percent int
