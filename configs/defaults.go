package configs

import (
	"net/netip"
	"slices"
	"time"
)

// DefaultDenyPeers are the networks TURN never relays to when
// turn.deny_peers is left out: loopback, "this network", the unspecified
// addresses and link-local, where relayed media could reach the appliance
// itself or services bound to it. The turn package adds the appliance's own
// addresses at run time; only it knows them.
var DefaultDenyPeers = []Prefix{
	{netip.MustParsePrefix("127.0.0.0/8")},
	{netip.MustParsePrefix("::1/128")},
	{netip.MustParsePrefix("0.0.0.0/8")},
	{netip.MustParsePrefix("::/128")},
	{netip.MustParsePrefix("169.254.0.0/16")},
	{netip.MustParsePrefix("fe80::/10")},
}

// applyDefaults fills in every key the file left out; written reports
// whether the file wrote a key. A key written with a zero value keeps it,
// so that validation refuses it (or, for max_conns_per_ip, honours 0 as
// "no cap") instead of quietly replacing it.
func applyDefaults(c *Config, written func(key string) bool) {
	b, t, l := &c.Blacklist, &c.TURN, &c.Limits

	// Every client released since 2013 speaks TLS 1.2; 1.0 and 1.1 are
	// only for phones that cannot (see tls.min_version).
	def(written, "tls.min_version", &c.TLS.MinVersion, "1.2")

	// A user retrying a forgotten password stays far below twenty suspicious
	// requests a minute; a scanner or a credential-stuffing run passes it in seconds.
	def(written, "blacklist.threshold", &b.Threshold, 20)
	// Long enough to stall a brute-force run, short enough that a phone
	// sharing a NAT address with the offender recovers by itself.
	def(written, "blacklist.expiration", &b.Expiration, 10*time.Minute)
	// A /64 is one site: an attacker holds a whole one and could otherwise
	// hop addresses within it.
	def(written, "blacklist.ipv6_prefix", &b.IPv6Prefix, 64)
	// Bounds the blacklist's memory (a few MB) under a distributed scan.
	def(written, "blacklist.max_tracked", &b.MaxTracked, 100000)

	// The IANA dynamic port range, as coturn uses.
	def(written, "turn.relay_ports", &t.RelayPorts, PortRange{49152, 65535})
	// Bounds the relay sockets and bandwidth held at once.
	def(written, "turn.max_allocations", &t.MaxAllocations, 1000)
	// A phone holds a few allocations per call; this bounds what one leaked
	// account can take from the others.
	def(written, "turn.max_allocations_per_user", &t.MaxAllocationsPerUser, 50)
	// The maximum lifetime RFC 8656 recommends (3600 seconds).
	def(written, "turn.max_lifetime", &t.MaxLifetime, time.Hour)
	// A client allocates right after connecting; a connection that holds
	// none is a descriptor an attacker keeps for free.
	def(written, "turn.allocate_timeout", &t.AllocateTimeout, 10*time.Second)
	// Only an absent key means the default: "deny_peers: []" denies nothing.
	def(written, "turn.deny_peers", &t.DenyPeers, slices.Clone(DefaultDenyPeers))

	// Where a package installs its state (the blacklist's state file
	// lives there too in the example configuration).
	def(written, "admin.state_dir", &c.Admin.StateDir, "/var/lib/gatehouse")
	// A working day: an administrator logs in once in the morning, and a
	// session cookie left on a shared laptop does not last until the next.
	def(written, "admin.session_timeout", &c.Admin.SessionTimeout, 8*time.Hour)
	// Enough to undo the last few changes made through the UI.
	def(written, "admin.backups", &c.Admin.Backups, 3)

	// Info logs what an operator acts on; debug logs every routing decision.
	def(written, "log.level", &c.Log.Level, "info")
	// Text reads well in journald; json is for log shippers.
	def(written, "log.format", &c.Log.Format, "text")

	// Real clients send their first message as soon as they connect (or
	// finish the handshake); this bounds how long a silent connection holds a slot.
	def(written, "limits.first_packet_timeout", &l.FirstPacketTimeout, 5*time.Second)
	// Holds a SIP INVITE with a large SDP body or an H.323 Setup with
	// fastStart elements many times over.
	def(written, "limits.first_packet_max", &l.FirstPacketMax, 64*KiB)
	// Targets are on the local network; a target that has not answered in
	// five seconds is down.
	def(written, "limits.dial_timeout", &l.DialTimeout, 5*time.Second)
	// Longer than the refresh intervals of SIP and H.323 registrations and of
	// LDAP connection pools, so quiet but live sessions survive.
	def(written, "limits.idle_timeout", &l.IdleTimeout, 15*time.Minute)
	// A large office behind one NAT address stays below it; one host
	// opening connections in a loop does not.
	def(written, "limits.max_conns_per_ip", &l.MaxConnsPerIP, 500)
	// What the descriptor limit of this process allows, with a reserve for
	// the admin port, whitelisted clients, listeners and files.
	def(written, "limits.max_conns", &l.MaxConns, DefaultMaxConns(FileLimit()))
	// A quarter: a site whose phones all sit in one /24 can still use most
	// of what is left after three others, while a flood from one network
	// leaves three quarters to everyone else (and the nearly-full rule of
	// proxy/gate protects the last eighth from the heaviest ranges).
	def(written, "limits.max_conns_per_range", &l.MaxConnsPerRange, 25)
	// A minute is plenty for any upload a phone or a PBX web page makes;
	// a body trickled a byte every few seconds is an attack on the slots.
	def(written, "limits.body_timeout", &l.BodyTimeout, time.Minute)
	// Lets in-flight requests finish on SIGTERM without stalling a restart.
	def(written, "limits.shutdown_timeout", &l.ShutdownTimeout, 30*time.Second)

	// Fifteen seconds finds a dead tunnel within 45 s, and is well inside
	// the idle timeouts of NAT boxes and firewalls between agent and edge.
	def(written, "agents.heartbeat", &c.Agents.Heartbeat, 15*time.Second)
	// A PBX or directory rarely has a thousand connections open at once
	// through one site; a device has a handful.
	def(written, "agents.max_streams", &c.Agents.MaxStreams, 1000)
	// A fleet account holds one tunnel per device and edge; this bounds
	// what one leaked account can open.
	def(written, "agents.max_tunnels", &c.Agents.MaxTunnels, 1000)
	h := &c.Health
	// A restarting PBX is noticed within seconds, at one cheap request per
	// target port every five seconds.
	def(written, "health.interval", &h.Interval, 5*time.Second)
	// Targets are on the local network: an answer takes milliseconds.
	def(written, "health.timeout", &h.Timeout, 2*time.Second)
	// One lost check is not an outage; three in a row (or dial failures) are.
	def(written, "health.fall", &h.Fall, 3)
	// Two good checks: the target is back for real, not one lucky connect.
	def(written, "health.rise", &h.Rise, 2)
	// Every web server answers "/", if only with a redirect.
	def(written, "health.http_path", &h.HTTPPath, "/")
	clusterDefaults(c, written)
}

func def[T any](written func(string) bool, key string, field *T, value T) {
	if !written(key) {
		*field = value
	}
}
