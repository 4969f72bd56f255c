package configs

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// validator checks a decoded Config and loads the files it names. Problems
// join the decoder's, located by the positions it recorded.
type validator struct {
	c *Config
	d *decoder
}

func (v *validator) errorf(key, format string, args ...any) {
	for k := key; k != ""; k = parent(k) {
		if v.d.bad[k] {
			return // the value, or one it is part of, could not be decoded, and that was reported
		}
	}
	v.d.errorf(v.d.where(key), key, format, args...)
}

// line is the line key is written on, for messages that point at a second place.
func (v *validator) line(key string) int { return v.d.where(key).line }

func (v *validator) validate() {
	v.listeners()
	v.tls()
	v.services()
	v.blacklist()
	v.turn()
	v.admin()
	v.logAndLimits()
	v.agents()
	v.health()
	v.cluster()
}

// listener is one address gatehouse accepts connections on.
type listener struct {
	key, addr string
	host      string // canonical; "" for every address
	port      int
}

func (v *validator) listeners() {
	c := v.c
	// Without certificates of its own gatehouse may still have ACME's.
	noCerts := len(c.TLS.Certificates) == 0 && c.TLS.ACME == nil
	var ls []listener
	for typ, addr := range c.Listen {
		key := "listen." + typ
		if typ == ListenAny {
			if noCerts {
				v.errorf(key, "listen.any accepts TLS too and needs tls.certificates")
			}
			ls = v.listener(ls, key, addr)
			continue
		}
		t, ok := LookupType(typ)
		if !ok {
			v.errorf(key, "unknown service type%s", suggest(typ, typeNames()))
			continue
		}
		if t.TLS && noCerts {
			v.errorf(key, "%s is TLS and needs tls.certificates", typ)
		}
		ls = v.listener(ls, key, addr)
	}
	if c.TURN.Listen != "" {
		ls = v.listener(ls, "turn.listen", c.TURN.Listen)
	}
	if c.TURN.TLSListen != "" {
		if noCerts {
			v.errorf("turn.tls_listen", "TURN over TLS needs tls.certificates")
		}
		ls = v.listener(ls, "turn.tls_listen", c.TURN.TLSListen)
	}
	if c.Agents.Listen != "" {
		if noCerts {
			v.errorf("agents.listen", "agents dial in over TLS and need tls.certificates")
		}
		ls = v.listener(ls, "agents.listen", c.Agents.Listen)
	}
	if c.Admin.Listen != "" {
		// Without tls.certificates or admin.cert the admin listener makes a
		// self-signed certificate in admin.state_dir (see webui).
		if noCerts && c.Admin.Cert == "" && c.Admin.StateDir == "" {
			v.errorf("admin.state_dir", "needed to keep the admin UI's self-signed certificate (or set admin.cert and admin.key)")
		}
		ls = v.listener(ls, "admin.listen", c.Admin.Listen)
	}
	ls = v.clusterListeners(ls)
	v.conflicts(ls)
}

// listener checks addr, written at key, and adds it to ls when it is good.
func (v *validator) listener(ls []listener, key, addr string) []listener {
	host, portStr, err := net.SplitHostPort(addr)
	port, perr := strconv.Atoi(portStr)
	switch {
	case err != nil:
		v.errorf(key, "%q is not host:port (\":443\" means every address)", addr)
	case perr != nil || port < 1 || port > 65535:
		v.errorf(key, "port %q is not a number from 1 to 65535", portStr)
	case host != "" && !isHost(host):
		v.errorf(key, "%q is not an IP address or DNS name", host)
	default:
		if a, err := netip.ParseAddr(host); err == nil {
			host = a.Unmap().String()
			if a.IsUnspecified() {
				host = ""
			}
		}
		return append(ls, listener{key, addr, strings.ToLower(host), port})
	}
	return ls
}

// conflicts refuses two listeners on one address. A listener on every
// address takes its port on each of them, so it conflicts with any other
// listener on that port. The later listener in the file is the one reported.
func (v *validator) conflicts(ls []listener) {
	slices.SortFunc(ls, func(a, b listener) int {
		pa, pb := v.d.where(a.key), v.d.where(b.key)
		return cmp.Or(cmp.Compare(pa.line, pb.line), cmp.Compare(pa.col, pb.col), cmp.Compare(a.key, b.key))
	})
	byPort := map[int][]listener{}
	for _, l := range ls {
		for _, o := range byPort[l.port] {
			if l.host != o.host && l.host != "" && o.host != "" {
				continue
			}
			admin, svc := l, o
			if o.key == "admin.listen" {
				admin, svc = o, l
			}
			if typ, ok := strings.CutPrefix(svc.key, "listen."); ok && admin.key == "admin.listen" {
				v.errorf(admin.key, "%q is on port %d of the %s service (%s, line %d); the admin UI needs a port of its own",
					admin.addr, admin.port, typ, svc.key, v.line(svc.key))
			} else {
				v.errorf(l.key, "%q conflicts with %s %q (line %d)", l.addr, o.key, o.addr, v.line(o.key))
			}
			break
		}
		byPort[l.port] = append(byPort[l.port], l)
	}
}

func (v *validator) tls() {
	t := &v.c.TLS
	for i := range t.Certificates {
		ck := &t.Certificates[i]
		if pair, ok := v.keyPair(fmt.Sprintf("tls.certificates[%d]", i), ck.Cert, ck.Key); ok {
			ck.Loaded = pair
		}
	}
	t.ClientCAPool = v.certPool("tls.client_cas", t.ClientCAs)
	t.TargetCAPool = v.certPool("tls.target_cas", t.TargetCAs)
	if a := t.ACME; a != nil {
		v.acme(a)
	}
	if id, ok := TLSVersions[t.MinVersion]; ok {
		t.MinVersionID = id
	} else {
		v.errorf("tls.min_version", "%q is not one of \"1.0\", \"1.1\", \"1.2\" or \"1.3\"", t.MinVersion)
	}
}

func (v *validator) acme(a *ACME) {
	if u, err := url.Parse(a.CA); err != nil || u.Scheme != "https" || u.Host == "" {
		v.errorf("tls.acme.ca", "%q is not an https:// directory URL", a.CA)
	}
	if len(a.Names) == 0 {
		v.errorf("tls.acme.names", "missing: the names to obtain certificates for")
	}
	seen := map[string]int{}
	for i, n := range a.Names {
		key := fmt.Sprintf("tls.acme.names[%d]", i)
		if !isDNSName(n) || !strings.Contains(n, ".") {
			v.errorf(key, "%q is not a DNS name with a dot (ACME certifies public names)", n)
			continue
		}
		if j, dup := seen[strings.ToLower(n)]; dup {
			v.errorf(key, "%q is already tls.acme.names[%d] (line %d)", n, j, v.line(fmt.Sprintf("tls.acme.names[%d]", j)))
			continue
		}
		seen[strings.ToLower(n)] = i
	}
	if a.StateDir == "" {
		v.errorf("tls.acme.state_dir", "missing: where the ACME account and certificates are kept")
	}
	if a.CARoot != "" {
		if data, ok := v.file("tls.acme.ca_root", a.CARoot); ok {
			a.CARootPool = x509.NewCertPool()
			if !a.CARootPool.AppendCertsFromPEM(data) {
				v.errorf("tls.acme.ca_root", "%s holds no PEM certificate", a.CARoot)
			}
		}
	}
}

// TLSVersions are the values of tls.min_version.
var TLSVersions = map[string]uint16{
	"1.0": tls.VersionTLS10, "1.1": tls.VersionTLS11, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13,
}

// keyPair loads a certificate chain and its private key, written at
// key.cert and key.key; a file that cannot be read is reported at its own key.
func (v *validator) keyPair(key, certFile, keyFile string) (tls.Certificate, bool) {
	certPEM, ok1 := v.file(key+".cert", certFile)
	keyPEM, ok2 := v.file(key+".key", keyFile)
	if !ok1 || !ok2 {
		return tls.Certificate{}, false
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		v.errorf(key, "%s and %s: %v", certFile, keyFile, err)
		return tls.Certificate{}, false
	}
	return pair, true
}

// certPool loads the CA files listed at key; nil when there are none.
func (v *validator) certPool(key string, files []string) *x509.CertPool {
	if len(files) == 0 {
		return nil
	}
	pool := x509.NewCertPool()
	for i, name := range files {
		k := fmt.Sprintf("%s[%d]", key, i)
		if data, ok := v.file(k, name); ok && !pool.AppendCertsFromPEM(data) {
			v.errorf(k, "%s holds no PEM certificate", name)
		}
	}
	return pool
}

func (v *validator) file(key, name string) ([]byte, bool) {
	if name == "" {
		v.errorf(key, "missing")
		return nil, false
	}
	data, err := readFile(name)
	if err != nil {
		v.errorf(key, "%v", err)
		return nil, false
	}
	return data, true
}

func (v *validator) services() {
	first := map[string]int{} // lowercased name → index of the service that has it
	for i := range v.c.Services {
		s := &v.c.Services[i]
		key := fmt.Sprintf("services[%d]", i)
		switch j, dup := first[strings.ToLower(s.Name)]; {
		case s.Name == "":
			v.errorf(key+".name", "missing")
		case s.Agent != "" && strings.HasPrefix(s.Name, "*.") && validName(s.Name[2:]):
			first[strings.ToLower(s.Name)] = i // a pattern: only an agent's names are told apart at run time
		case !validName(s.Name):
			v.errorf(key+".name", "%q may hold only letters, digits, '.', '-', '_' and '/'", s.Name)
		case dup:
			v.errorf(key+".name", "%q is already the name of services[%d] (line %d)",
				s.Name, j, v.line(fmt.Sprintf("services[%d].name", j)))
		default:
			first[strings.ToLower(s.Name)] = i
		}
		if s.Agent != "" {
			v.agentService(key, s)
		} else {
			switch {
			case s.Target == "":
				v.errorf(key+".target", "missing (or agent: an account whose agents serve it)")
			case !isHost(s.Target):
				v.errorf(key+".target", "%q is not an IP address or DNS name (ports go under ports)", s.Target)
			}
			v.ports(key, s.Ports)
		}
		for typ := range s.Allow.Networks {
			if _, ok := LookupType(typ); !ok {
				v.errorf(key+".allow.networks."+typ, "unknown service type%s", suggest(typ, typeNames()))
			}
		}
		for j, u := range s.Allow.URLs {
			if !strings.HasPrefix(u, "/") {
				v.errorf(fmt.Sprintf("%s.allow.urls[%d]", key, j), "%q does not start with \"/\"", u)
			}
		}
		if s.ProxyProtocol != "" && s.ProxyProtocol != "v2" {
			v.errorf(key+".proxy_protocol", "%q is not \"v2\" (leave the key out for none)", s.ProxyProtocol)
		}
		if s.CheckCertificate && len(v.c.TLS.ClientCAs) == 0 {
			v.errorf(key+".check_certificate", "needs tls.client_cas to check client certificates against")
		}
	}
}

// agentService checks a service served through agent tunnels: the agent
// names its target and ports, the edge never does.
func (v *validator) agentService(key string, s *Service) {
	if s.Target != "" {
		v.errorf(key+".target", "a service with agent has no target: the agent dials its own")
	}
	if len(s.Ports) > 0 {
		v.errorf(key+".ports", "a service with agent has no ports: they are what the agent registers")
	}
	if s.LDAPStartTLS {
		v.errorf(key+".ldap_starttls", "not available with agent (the agent speaks TLS to its target)")
	}
	a := v.c.Agents.Account(s.Agent)
	switch {
	case a == nil:
		v.errorf(key+".agent", "%q is not the name of an agents.accounts entry", s.Agent)
	case !a.Allows(s.Name):
		v.errorf(key+".agent", "account %q may not register %q (add it to its names)", s.Agent, s.Name)
	}
}

func (v *validator) agents() {
	a := &v.c.Agents
	v.positive("agents.heartbeat", a.Heartbeat)
	v.atLeast("agents.max_streams", a.MaxStreams, 1)
	v.atLeast("agents.max_tunnels", a.MaxTunnels, 1)
	if len(a.Accounts) > 0 && a.Listen == "" {
		v.errorf("agents.listen", "missing: agents.accounts need a listener to dial in to")
	}
	names := map[string]int{}
	for i := range a.Accounts {
		acc := &a.Accounts[i]
		key := fmt.Sprintf("agents.accounts[%d]", i)
		v.unique(names, "agents.accounts", i, "name", acc.Name)
		if acc.TokenHash == "" && acc.ClientCA == "" {
			v.errorf(key+".token_hash", "missing: an account authenticates with token_hash or client_ca")
		}
		if acc.TokenHash != "" {
			if _, err := bcrypt.Cost([]byte(acc.TokenHash)); err != nil {
				v.errorf(key+".token_hash", "not a bcrypt hash (make one with `gatehouse hash-password`)")
			}
		}
		if acc.ClientCA != "" {
			acc.ClientCAPool = v.certPool(key+".client_ca", []string{acc.ClientCA})
		}
		if len(acc.Names) == 0 {
			v.errorf(key+".names", "missing: the names the account may register")
		}
		for j, n := range acc.Names {
			if !validPattern(n) {
				v.errorf(fmt.Sprintf("%s.names[%d]", key, j), "%q is not a service name or a pattern like \"*.example.com\"", n)
			}
		}
	}
}

// validPattern reports whether s is a service name, or one whose first
// label is "*".
func validPattern(s string) bool {
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		s = rest
	}
	return s != "" && validName(s) && !strings.Contains(s, "*")
}

func (v *validator) blacklist() {
	b := &v.c.Blacklist
	v.atLeast("blacklist.threshold", b.Threshold, 1)
	v.positive("blacklist.expiration", b.Expiration)
	if b.IPv6Prefix < 1 || b.IPv6Prefix > 128 {
		v.errorf("blacklist.ipv6_prefix", "%d is not from 1 to 128", b.IPv6Prefix)
	}
	v.atLeast("blacklist.max_tracked", b.MaxTracked, 1)
}

func (v *validator) turn() {
	t := &v.c.TURN
	if t.Realm == "" && (len(t.Accounts) > 0 || t.Secret != "") {
		v.errorf("turn.realm", "required with accounts or a secret")
	}
	relays := t.Listen != "" && (len(t.Accounts) > 0 || t.Secret != "")
	if ip, err := netip.ParseAddr(t.RelayAddress); t.RelayAddress != "" && err != nil {
		v.errorf("turn.relay_address", "%q is not an IP address", t.RelayAddress)
	} else if relays && t.RelayAddress != "" && !ip.Unmap().Is4() {
		v.errorf("turn.relay_address", "%s: relays are IPv4 only", ip)
	}
	if relays && t.RelayAddress == "" {
		// Clients must be told a reachable address; a wildcard listen has none.
		if host, _, err := net.SplitHostPort(t.Listen); err == nil {
			if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
				v.errorf("turn.relay_address", "required when turn.listen (%q) has no specific address: the public IPv4 address offered to clients", t.Listen)
			}
		}
	}
	switch r := t.RelayPorts; {
	case r.Min < 1:
		v.errorf("turn.relay_ports", "%s: ports start at 1", r)
	case r.Min > r.Max:
		v.errorf("turn.relay_ports", "%s is empty: the low port is above the high one", r)
	}
	users := map[string]int{}
	for i, a := range t.Accounts {
		key := fmt.Sprintf("turn.accounts[%d]", i)
		v.unique(users, "turn.accounts", i, "user", a.User)
		if a.Password == "" {
			v.errorf(key+".password", "missing")
		}
	}
	v.alternateAddress()
	v.atLeast("turn.max_allocations", t.MaxAllocations, 1)
	v.atLeast("turn.max_allocations_per_user", t.MaxAllocationsPerUser, 1)
	v.positive("turn.max_lifetime", t.MaxLifetime)
	v.positive("turn.allocate_timeout", t.AllocateTimeout)
}

// alternateAddress checks turn.alternate_address: a second address of
// this machine, of turn.listen's family, beside turn.listen's specific
// one. STUN binds UDP on both, on turn.listen's port and the next.
func (v *validator) alternateAddress() {
	t := &v.c.TURN
	if t.AlternateAddress == "" {
		return
	}
	const key = "turn.alternate_address"
	alt, err := netip.ParseAddr(t.AlternateAddress)
	if err != nil || alt.Zone() != "" {
		v.errorf(key, "%q is not an IP address", t.AlternateAddress)
		return
	}
	alt = alt.Unmap()
	if alt.IsUnspecified() || alt.IsMulticast() {
		v.errorf(key, "%s is not an address of one interface", alt)
		return
	}
	host, portStr, err := net.SplitHostPort(t.Listen)
	if t.Listen == "" || err != nil {
		v.errorf(key, "needs turn.listen, on the primary address")
		return
	}
	primary, err := netip.ParseAddr(host)
	primary = primary.Unmap()
	port, _ := strconv.Atoi(portStr)
	switch {
	case err != nil || primary.IsUnspecified():
		// A socket on every address would take the alternate one's
		// datagrams and ports: the two must be told apart.
		v.errorf(key, "needs turn.listen on a specific IP address, the primary one (line %d has %q)", v.line("turn.listen"), t.Listen)
	case alt == primary:
		v.errorf(key, "%s is turn.listen's address (line %d); the alternate must be a second one", alt, v.line("turn.listen"))
	case alt.Is4() != primary.Is4():
		v.errorf(key, "%s and turn.listen's %s (line %d) are not of one address family", alt, primary, v.line("turn.listen"))
	case port >= 65535:
		v.errorf(key, "the alternate port is turn.listen's + 1, and %d is the last port", port)
	default:
		// Only binding tells whether the address is this machine's.
		pc, err := net.ListenPacket("udp", net.JoinHostPort(alt.String(), "0"))
		if err != nil {
			v.errorf(key, "%s is not an address of this machine: %v", alt, err)
			return
		}
		pc.Close()
	}
}

func (v *validator) admin() {
	a := &v.c.Admin
	if a.Listen != "" && len(a.Users) == 0 {
		v.errorf("admin.users", "the admin listener refuses to start without users")
	}
	names := map[string]int{}
	for i, u := range a.Users {
		key := fmt.Sprintf("admin.users[%d]", i)
		v.unique(names, "admin.users", i, "name", u.Name)
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			v.errorf(key+".password_hash", "missing or not a bcrypt hash (make one with `gatehouse hash-password`)")
		}
	}
	v.positive("admin.session_timeout", a.SessionTimeout)
	if a.Backups < 0 || a.Backups > 100 {
		v.errorf("admin.backups", "%d is not from 0 to 100", a.Backups)
	}
	switch {
	case a.Cert == "" && a.Key == "":
	case a.Key == "":
		v.errorf("admin.key", "needed with admin.cert")
	case a.Cert == "":
		v.errorf("admin.cert", "needed with admin.key")
	default:
		if pair, ok := v.keyPair("admin", a.Cert, a.Key); ok {
			a.Loaded = &pair
		}
	}
}

func (v *validator) logAndLimits() {
	c := v.c
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		v.errorf("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		v.errorf("log.format", "%q is not text or json", c.Log.Format)
	}
	l := &c.Limits
	v.positive("limits.first_packet_timeout", l.FirstPacketTimeout)
	if l.FirstPacketMax < KiB || l.FirstPacketMax > 16*MiB {
		v.errorf("limits.first_packet_max", "%s is not from 1KiB to 16MiB", l.FirstPacketMax)
	}
	v.positive("limits.dial_timeout", l.DialTimeout)
	v.positive("limits.idle_timeout", l.IdleTimeout)
	if l.MaxConnsPerIP < 0 {
		v.errorf("limits.max_conns_per_ip", "%d is negative (0 means no cap)", l.MaxConnsPerIP)
	}
	if l.MaxConns < 0 {
		v.errorf("limits.max_conns", "%d is negative (0 means no cap)", l.MaxConns)
	}
	if l.MaxConnsPerRange < 1 || l.MaxConnsPerRange > 100 {
		v.errorf("limits.max_conns_per_range", "%s is not from 1%% to 100%% (100%% lets one range hold all of limits.max_conns)", l.MaxConnsPerRange)
	}
	v.positive("limits.body_timeout", l.BodyTimeout)
	v.positive("limits.shutdown_timeout", l.ShutdownTimeout)
}

func (v *validator) health() {
	h := &v.c.Health
	v.positive("health.interval", h.Interval)
	v.positive("health.timeout", h.Timeout)
	if h.Timeout > h.Interval && h.Interval > 0 {
		v.errorf("health.timeout", "%s is longer than health.interval %s (line %d)", h.Timeout, h.Interval, v.line("health.interval"))
	}
	v.atLeast("health.fall", h.Fall, 1)
	v.atLeast("health.rise", h.Rise, 1)
	if !strings.HasPrefix(h.HTTPPath, "/") || strings.ContainsFunc(h.HTTPPath, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		v.errorf("health.http_path", "%q is not a path beginning with / (no spaces or control characters)", h.HTTPPath)
	}
}

func (v *validator) atLeast(key string, n, least int) {
	if n < least {
		v.errorf(key, "%d is below %d", n, least)
	}
}

func (v *validator) positive(key string, d time.Duration) {
	if d <= 0 {
		v.errorf(key, "%s is not a positive duration", d)
	}
}

func typeNames() []string {
	names := make([]string, len(ServiceTypes))
	for i, t := range ServiceTypes {
		names[i] = t.Name
	}
	return names
}

// validName reports whether s holds only what a routing key may: a DNS
// name, or an H.323 gatekeeper ID such as example.com/branch.
func validName(s string) bool {
	for _, c := range []byte(s) {
		if !isAlnum(c) && !strings.ContainsRune(".-_/", rune(c)) {
			return false
		}
	}
	return true
}

// isHost reports whether s is an IP address or a DNS name.
func isHost(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil || isDNSName(s)
}

// isDNSName checks the syntax of a host name: HostLabels, with a last
// label that is not all digits, so that a mistyped IPv4 address such as
// 10.0.0.300 is not taken for a name.
func isDNSName(s string) bool {
	if !HostLabels(s) {
		return false
	}
	s = strings.TrimSuffix(s, ".")
	last := s[strings.LastIndexByte(s, '.')+1:]
	return strings.Trim(last, "0123456789") != ""
}

// HostLabels reports whether s is dot-separated labels of ASCII letters,
// digits, '-' and '_' (seen in internal names), none starting or ending
// with '-', up to 63 bytes each and 253 in all, with an optional final dot.
func HostLabels(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range []byte(l) {
			if !isAlnum(c) && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// unique checks list[i].field, whose value must be set and held by no
// earlier entry of list; seen maps the values so far to their entries.
func (v *validator) unique(seen map[string]int, list string, i int, field, value string) {
	key := fmt.Sprintf("%s[%d].%s", list, i, field)
	switch j, dup := seen[value]; {
	case value == "":
		v.errorf(key, "missing")
	case dup:
		v.errorf(key, "%q is already the %s of %s[%d] (line %d)",
			value, field, list, j, v.line(fmt.Sprintf("%s[%d].%s", list, j, field)))
	default:
		seen[value] = i
	}
}
