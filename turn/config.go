package turn

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// Defaults New applies to zero fields of configs.TURN; configs applies the
// same ones to a loaded file.
const (
	DefaultRealm = "gatehouse"
	// DefaultMaxAllocations bounds relay sockets (file descriptors and ports) in total.
	DefaultMaxAllocations = 1000
	// DefaultMaxAllocationsPerUser keeps one leaked credential from taking them all.
	DefaultMaxAllocationsPerUser = 50
	// DefaultMaxLifetime is RFC 8656's recommended maximum, and pion's.
	DefaultMaxLifetime = time.Hour
	// DefaultAllocateTimeout: a client allocates right after it connects.
	DefaultAllocateTimeout = 10 * time.Second
)

// DefaultRelayPorts is the IANA dynamic range, coturn's default too.
var DefaultRelayPorts = configs.PortRange{Min: 49152, Max: 65535}

// minLifetime keeps a cap from being shorter than clients' refresh margin
// (they refresh about a minute before expiry).
const minLifetime = 2 * time.Minute

// settings is a validated configs.TURN with every default applied.
type settings struct {
	listen    string // UDP and TCP
	tlsListen string // "" when TLS is off
	tls       *tls.Config
	realm     string

	// relay is false in STUN-only mode (no accounts, no secret).
	relay      bool
	relayIP    netip.Addr // offered to clients
	relayBind  string     // host relay sockets bind to
	relayPorts configs.PortRange

	// alternate is turn.alternate_address; invalid when not set.
	alternate netip.Addr

	accounts map[string]string
	secret   string

	deny        denyList
	maxAllocs   int
	maxPerUser  int
	maxLifetime time.Duration
	// allocateTimeout closes a TCP/TLS connection without an allocation.
	allocateTimeout time.Duration
}

// newSettings validates cfg and fills its defaults. local lists the
// appliance's own addresses.
func newSettings(cfg configs.TURN, certs []tls.Certificate, local []netip.Addr) (settings, error) {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: turn.%s: %s", ErrConfig, key, fmt.Sprintf(format, args...)))
	}
	st := settings{
		listen:          cfg.Listen,
		tlsListen:       cfg.TLSListen,
		realm:           cmp.Or(cfg.Realm, DefaultRealm),
		relayPorts:      cfg.RelayPorts,
		secret:          cfg.Secret,
		maxAllocs:       cmp.Or(cfg.MaxAllocations, DefaultMaxAllocations),
		maxPerUser:      cmp.Or(cfg.MaxAllocationsPerUser, DefaultMaxAllocationsPerUser),
		maxLifetime:     cmp.Or(cfg.MaxLifetime, DefaultMaxLifetime),
		allocateTimeout: cmp.Or(cfg.AllocateTimeout, DefaultAllocateTimeout),
		relay:           len(cfg.Accounts) > 0 || cfg.Secret != "",
	}

	listenHost, err := hostOf(cfg.Listen)
	if err != nil {
		bad("listen", "%v", err)
	}
	if cfg.TLSListen != "" {
		if _, err := hostOf(cfg.TLSListen); err != nil {
			bad("tls_listen", "%v", err)
		}
		if len(certs) == 0 {
			bad("tls_listen", "set, but there are no tls certificates")
		}
		st.tls = &tls.Config{Certificates: certs, MinVersion: tls.VersionTLS12}
	}

	if cfg.AlternateAddress != "" {
		st.alternate, err = netip.ParseAddr(cfg.AlternateAddress)
		st.alternate = st.alternate.Unmap()
		switch {
		case err != nil:
			bad("alternate_address", "%v", err)
		case !listenHost.IsValid() || listenHost.IsUnspecified():
			// A socket on every address would take the alternate one's
			// datagrams and its port: the two must be told apart.
			bad("alternate_address", "needs turn.listen on a specific address, the primary one")
		case st.alternate == listenHost:
			bad("alternate_address", "%v is turn.listen's address; it must be a second one", st.alternate)
		case st.alternate.Is4() != listenHost.Is4():
			bad("alternate_address", "%v and turn.listen's %v are not of one address family", st.alternate, listenHost)
		}
	}

	st.accounts = make(map[string]string, len(cfg.Accounts))
	for i, a := range cfg.Accounts {
		switch _, dup := st.accounts[a.User]; {
		case a.User == "" || a.Password == "":
			bad(fmt.Sprintf("accounts[%d]", i), "user and password are required")
		case dup:
			bad(fmt.Sprintf("accounts[%d]", i), "user %q is listed twice", a.User)
		}
		st.accounts[a.User] = a.Password
	}

	if st.relayPorts == (configs.PortRange{}) {
		st.relayPorts = DefaultRelayPorts
	}
	if st.relayPorts.Min == 0 || st.relayPorts.Min > st.relayPorts.Max {
		bad("relay_ports", "%d-%d is not a range of ports", st.relayPorts.Min, st.relayPorts.Max)
	}
	if st.maxAllocs < 0 || st.maxPerUser < 0 {
		bad("max_allocations", "limits must be positive")
	}
	if st.allocateTimeout < 0 {
		bad("allocate_timeout", "%v is negative", st.allocateTimeout)
	}
	if st.maxLifetime < minLifetime || st.maxLifetime > DefaultMaxLifetime {
		bad("max_lifetime", "%v is outside %v to %v", st.maxLifetime, minLifetime, DefaultMaxLifetime)
	}

	switch {
	case cfg.RelayAddress != "":
		st.relayIP, err = netip.ParseAddr(cfg.RelayAddress)
		if err != nil {
			bad("relay_address", "%v", err)
		}
	case listenHost.IsValid() && !listenHost.IsUnspecified():
		st.relayIP = listenHost
	case st.relay:
		bad("relay_address", "required when turn.listen has no specific address")
	}
	st.relayIP = st.relayIP.Unmap()
	if st.relay && st.relayIP.IsValid() && !st.relayIP.Is4() {
		// pion relays over udp4 only.
		bad("relay_address", "%v: relays are IPv4 only", st.relayIP)
	}
	st.relayBind = relayBind(st.relayIP, listenHost, local)

	// The default list (the key absent: configs fills in DefaultDenyPeers,
	// or leaves nil when built in code) also denies the appliance's own
	// addresses, which only run time knows. An explicit list is taken as written.
	if cfg.DenyPeers == nil || slices.Equal(cfg.DenyPeers, configs.DefaultDenyPeers) {
		own := slices.Clone(local)
		if st.relayIP.IsValid() {
			own = append(own, st.relayIP)
		}
		st.deny = newDenyList(configs.DefaultDenyPeers, own...)
	} else {
		st.deny = newDenyList(cfg.DenyPeers)
	}
	return st, errors.Join(errs...)
}

// relayBind is where relay sockets listen: the relay address when it is one
// of ours, else (behind NAT) the listen address, else every interface.
func relayBind(relay, listen netip.Addr, local []netip.Addr) string {
	for _, a := range local {
		if a == relay {
			return relay.String()
		}
	}
	if listen.Is4() && !listen.IsUnspecified() {
		return listen.String()
	}
	return "0.0.0.0"
}

// hostOf returns the host of a listen address; the zero Addr for ":port".
func hostOf(hostport string) (netip.Addr, error) {
	if hostport == "" {
		return netip.Addr{}, errors.New("an address is required")
	}
	host, _, err := net.SplitHostPort(hostport)
	if err != nil || host == "" {
		return netip.Addr{}, err
	}
	ip, err := netip.ParseAddr(host)
	return ip.Unmap(), err
}

// localAddrs lists the appliance's own addresses.
func localAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("turn: listing own addresses for deny_peers: %w", err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out, nil
}
