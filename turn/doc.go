// Package turn is gatehouse's embedded STUN/TURN server.
//
// Phones and browsers outside the DMZ use it to learn their public address
// (STUN) and to relay media to the PBX when no direct path exists (TURN). The
// protocol work is done by pion/turn; this package is the policy around it:
//
//   - every datagram, connection and stream frame from an address the blacklist
//     blocks is dropped before pion sees it (conn.go, filter.go);
//   - TURN needs long-term credentials: the configured accounts or, with a
//     secret, coturn-compatible time-limited REST credentials (auth.go).
//     Failed authentications are reported to the blacklist; the ordinary first
//     unauthenticated Allocate, answered with a 401 challenge, is not;
//   - relaying to a denied peer (loopback, unspecified, link-local, the
//     appliance's own addresses, ...) is refused, with IPv4-mapped and other
//     IPv4-embedding IPv6 forms unwrapped first (peers.go);
//   - allocations are capped in total and per user, and the lifetime a client
//     may request is capped (quota.go, lifetime.go);
//   - Binding requests over UDP are answered here, RFC 3489 ones (no magic
//     cookie) too, and with turn.alternate_address on four sockets for
//     RFC 5780 NAT behaviour discovery (binding.go, discovery.go);
//   - turn.listen's UDP address has one socket per GOMAXPROCS
//     (SO_REUSEPORT), each with its own read loop in pion, so one loop is
//     not every client's bottleneck; the policy above wraps every one of
//     them, and no datagram allocates for its source address (addrcache.go);
//   - requests are rate-limited per source address and repetitive log lines
//     are rate-limited, so floods cost counters, not logs (limiter.go, logging.go).
//
// Server.Stats exposes the counters the admin UI turns into metrics.
package turn
