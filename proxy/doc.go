// Package proxy is gatehouse's listener layer: it accepts every service
// connection, decides nothing about protocols itself, and gives each
// connection to the Handler of its service type (package protocols plugs
// them in).
//
// # The data path
//
// One connection, in the order a reader follows it:
//
//  1. server.go: [NewServer] opens one listener per service type in the
//     configuration, each through the shared gate ([gate.Listener]: the
//     blacklist and the connection caps, before a byte is read; accept
//     backoff). [Server.Reload] swaps the [Table] new connections use.
//  2. listener.go: listener.handle makes the [Conn] (client address,
//     service type, the current [Table], ConnInfo.MaxMessage), sets one
//     deadline for the TLS handshake and the first packet, terminates TLS
//     on TLS types, and calls Handler.ServeConn. On listen.any (any.go)
//     it first reads until proxy/detect names the protocol (terminating
//     TLS and looking again inside when it is TLS), sets Info.Type to the
//     detected type, replays the bytes read, and calls that type's Handler.
//  3. Stream protocols (SIP, LDAP, H.323): stream.go's handler reads until
//     the [Sniffer] decides (ErrNeedMore: read more, within
//     first_packet_max), answers a Decision's Reply, upgrades in band
//     (StartTLS), then Route, Dial, Forwarded, and hands over to the relay.
//  4. relay.go: bytes both ways, replaying the sniffed bytes first; splice
//     between plain TCP ends (under TLS the socket reads and writes are
//     proxy/sockio's raw system calls); message by message through the [Watcher] when
//     the Decision has one; idle_timeout for both directions together.
//  5. Per-request protocols (HTTP) are a Handler of their own and call the
//     same [Conn] methods for every request.
//
// # A handler's calls, in order
//
// For each request (a stream connection is one request):
//
//   - [Conn.SetIdentity] records who the client said it is, for the admin
//     UI (the stream handler does it from [Decision].Who; HTTP from the
//     Host); Report puts it in the refusal log's subject.
//   - [Conn.Route] resolves the routing name (Table.Resolve: service,
//     port, allowed networks, encryption mapping, check_certificate). A
//     refusal is reported by Route itself; the handler only answers it.
//   - The handler's own rules (HTTP's allowed URLs, CONNECT). A refusal
//     is the handler's to report, with [Conn.Report] and a [Refusal].
//   - [Conn.Dial] connects to the Route's target (TLS, StartTLS through a
//     [TargetUpgrader]). A target the [Health] knows is down is not
//     dialed: ReasonTargetDown, never handed to the Guard. A failed dial
//     is reported as ReasonUnreachable (ReasonTargetDown when the failure
//     leaves the target down). Handlers that dial otherwise use
//     [Conn.Available] before and [Conn.Dialed] after. For a service with
//     agent (Route.Agent) it opens a stream through an agent tunnel
//     instead ([Agents], package tunnel); no live tunnel is [ErrNoTunnel],
//     answered as unavailable and not reported, as Route does when the
//     service has no registration.
//   - [Conn.Forwarded] once the request passed every rule and has its
//     target connection: a request is counted once, forwarded or refused.
//
// # Refusals
//
// Every refused request is one [Refusal]: a [Reason] from the fixed set in
// refusal.go, a Detail in fixed words and the cause. Protocols keep theirs
// as sentinel refusals in their errors.go and return them from Sniff,
// Watcher.Frame, Watcher.Client and Watcher.Target; a [Refuser]'s answer
// and the counters switch on the Reason (found with errors.As); a
// protocol's own answer may switch on the sentinel with errors.Is. The
// blacklist gets Refusal.Text. Plain errors are prefixed with the package
// name ("proxy: ...") and live in errors.go, as in pion.
//
// # Optional interfaces
//
// A Handler may also be a [Shutdowner] (drains its own state on
// Shutdown), an [ALPNer] (application protocols on TLS ports), a
// [Reloader] (state derived from the Table). A Sniffer may also be a
// [Refuser] (answers a refused first message) and a [TargetUpgrader]
// (StartTLS towards the target). A target conn that is no socket may be a
// [ReadNotifier] (an agent tunnel's stream): a quiet relay direction then
// parks on it without a goroutine, as on a socket's readiness.
//
// # Who owns a connection
//
//   - The gate's Listener owns an accepted conn until Accept returns it.
//   - listener.handle owns the [Conn] and closes it when ServeConn returns.
//   - Handler.ServeConn owns the Conn while it runs and must not return
//     before it is done with it (no goroutine may use it afterwards).
//   - A Sniffer only looks at first: it must not keep or change it, since
//     those bytes are replayed to the target.
//   - A Watcher's methods get a head that is only valid during the call.
//   - The target conn from Dial belongs to the caller, who closes it;
//     [Conn.Relay] does not close it either.
//   - The relay owns both conns while it runs and closes both when one
//     direction fails; a clean EOF half-closes the other side.
//   - [Server.Shutdown] closes the stream connections at once (those of
//     handlers that are no [Shutdowner], and every relay), lets the
//     others drain until its context ends, closes what is still open
//     then, and waits for every goroutine it started.
package proxy
