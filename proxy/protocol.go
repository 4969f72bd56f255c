package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// A Handler takes over a client connection once the listener has accepted
// it, let it through the Guard and, on TLS service types, terminated TLS.
// ServeConn owns c until it returns and must not return before it is done
// with c; the listener closes c afterwards. It is the plug-in point for
// protocols that route per request (HTTP); stream protocols use Stream.
type Handler interface {
	ServeConn(c *Conn)
}

// A Shutdowner is a Handler that keeps state of its own (idle keep-alive
// connections, say) and lets it drain when the server shuts down, until
// ctx is done.
type Shutdowner interface {
	Shutdown(ctx context.Context) error
}

// A Sniffer is a stream protocol's (SIP, LDAP, H.323) view of the first
// message of a connection: it names the service the connection is for.
// Sniff must only look at first: it must not retain or modify it, since
// those bytes are replayed to the target unchanged.
type Sniffer interface {
	// Sniff is given every byte read so far, from the start of the
	// connection (or of the TLS stream after an in-band upgrade). It returns
	// ErrNeedMore while the first message is incomplete; the listener then
	// reads more, within limits.first_packet_timeout and first_packet_max.
	// Any other error refuses the connection and is reported as
	// suspicious: a *Refusal (or an error wrapping one) says why; any
	// other error counts as ReasonUnreadable.
	Sniff(first []byte, info *ConnInfo) (*Decision, error)
}

// ConnInfo is what a Sniffer may know about the client side.
type ConnInfo struct {
	Client netip.AddrPort
	Type   configs.ServiceType
	// TLS is the client-side TLS state; nil on plain connections.
	TLS *tls.ConnectionState
	// VerifiedCN is the Common Name of a client certificate that chains to
	// tls.client_cas; "" when there is none or it does not verify.
	VerifiedCN string
	// MaxMessage is limits.first_packet_max of the configuration the
	// connection was accepted under: a sniffer's cap on a message, so that
	// a reload changes it for new connections.
	MaxMessage int
}

// Decision says where a stream goes and how to follow it.
type Decision struct {
	// Service is the routing key: the service name the connection is for.
	Service string
	// Identity is, for check_certificate, the VerifiedCN of a client
	// certificate that the protocol found to name the identity the first
	// message claims (SIP: its address of record; H.323: every alias of a
	// registration), by that protocol's rule; "" when it names none or the
	// message claims none. The proxy forwards over TLS only when Identity
	// equals VerifiedCN.
	Identity string
	// Who is the identity the first message revealed, for the admin UI's
	// list of connections (SIP: the address of record; LDAP: the bind
	// name; H.323: the registering alias and gatekeeper ID). It is the
	// client's claim, unverified; "" when the message shows none.
	Who string
	// Reply, when not nil, is written to the client before anything else
	// happens (an LDAP StartTLS response, say).
	Reply []byte
	// UpgradeTLS: after writing Reply, terminate TLS on the client
	// connection and sniff again from the first byte inside it.
	UpgradeTLS bool
	// Watcher, when not nil, sees every message in both directions for the
	// life of the connection, the first one included. Nil relays raw bytes
	// (zero-copy where both ends are plain TCP).
	Watcher Watcher
}

// Direction says which side sent a message.
type Direction int

const (
	FromClient Direction = iota
	FromTarget
)

func (d Direction) String() string {
	if d == FromClient {
		return "client"
	}
	return "target"
}

// A Watcher follows one routed stream message by message. The relay frames
// each direction with Frame, gives each message's head (the whole message,
// or its first limits.first_packet_max bytes when it is longer) to Client or
// Target, and streams the rest unchanged. A Watcher is used by the two relay
// goroutines of its connection, one per direction, so state shared between
// Client and Target needs a lock.
type Watcher interface {
	// Frame returns the total length of the message at the start of buf as
	// soon as buf holds enough of it to tell, or ErrNeedMore. A watcher that
	// does not follow a direction returns len(buf) for it. Any other error
	// ends the connection; from the client it is reported as suspicious,
	// as a Sniff error is.
	Frame(dir Direction, buf []byte) (int, error)
	// Client judges a message from the client.
	Client(head []byte) Verdict
	// Target judges a message from the target; a non-nil refusal is
	// reported as suspicious (a target rejection: failed credentials). With
	// drop, the message is not forwarded to the client.
	Target(head []byte) (refusal *Refusal, drop bool)
}

// Verdict is a Watcher's answer to a client message.
type Verdict struct {
	// Reply, when not nil, is written to the client and the message is
	// dropped instead of forwarded.
	Reply []byte
	// Refusal, when not nil, reports the message as suspicious.
	Refusal *Refusal
	// Close ends the connection after Reply is written.
	Close bool
}

// A TargetUpgrader is a Sniffer whose protocol can upgrade a plain target
// connection to TLS in band (LDAP StartTLS). The proxy calls StartTLS on the
// fresh target connection before replaying the client's bytes, when the
// route asks for TLS on a plain port.
type TargetUpgrader interface {
	StartTLS(target net.Conn) error
}

// A Refuser is a Sniffer whose protocol can answer a refused first message
// (a SIP 403, an LDAP error result) instead of just closing the connection.
type Refuser interface {
	// RefusalReply returns the answer to the first message first when
	// gatehouse refuses it with r, or nil to close without one. It
	// switches on r.Reason, and on r's cause with errors.Is for the
	// protocol's own refusals.
	RefusalReply(first []byte, r *Refusal) []byte
}
