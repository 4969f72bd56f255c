// Package ldap routes LDAP connections (plain, LDAPS and StartTLS) by the
// domain of their bind name and watches them for password guessing.
//
// It is one of the stream protocols behind the proxy package: the listener
// hands the first bytes of a connection to Sniffer, which demands that the
// first LDAPMessage be a BindRequest (RFC 4511) and names the service from
// the bind name: "example.com\alice" and "CN=alice,DC=example,DC=com" both
// route to "example.com". A StartTLS request in first place is answered by
// gatehouse itself (Decision.UpgradeTLS); the bind inside TLS then routes.
// Everything else in first place is refused, and answered with the LDAP
// error response the request calls for (Sniffer.RefusalReply, a
// proxy.Refuser). The watcher in the Decision follows the relayed stream:
// each bind answered with invalidCredentials is reported, and a later bind
// for another service's domain is refused without reaching the target.
// Towards a target that is to be spoken to over TLS on its plain port,
// Sniffer.StartTLS runs the StartTLS exchange (proxy.TargetUpgrader).
//
// Bytes are decoded by go-ldap's asn1-ber and DNs parsed by go-ldap. Only
// the identifier and length octets at the head of a message are read here
// (frame.go), because the proxy must know a message's size, and refuse an
// absurd one, before its body has arrived.
package ldap

import "github.com/gatehouse-pbx/gatehouse/proxy"

// DefaultMaxMessage is the first-message cap a zero Sniffer.MaxMessage
// stands for: the default of limits.first_packet_max. A simple bind is a few
// hundred bytes; Kerberos SASL tokens run to tens of KiB.
const DefaultMaxMessage = 64 << 10

// Sniffer reads the first LDAPMessage of a connection. Its zero value is
// ready to use; it holds no per-connection state, so one Sniffer serves
// every connection.
type Sniffer struct {
	// MaxMessage caps the size of the first message (and of the StartTLS
	// response read from a target). A message whose BER header claims more
	// is refused as soon as the header is in, whatever the client sends
	// afterwards. Zero means the connection's ConnInfo.MaxMessage
	// (limits.first_packet_max of the configuration it was accepted under),
	// or DefaultMaxMessage without one.
	MaxMessage int
}

var (
	_ proxy.Sniffer        = (*Sniffer)(nil)
	_ proxy.TargetUpgrader = (*Sniffer)(nil)
	_ proxy.Refuser        = (*Sniffer)(nil)
	_ proxy.Watcher        = (*watcher)(nil)
)

func (s *Sniffer) maxMessage(info *proxy.ConnInfo) int {
	if s.MaxMessage > 0 {
		return s.MaxMessage
	}
	if info != nil && info.MaxMessage > 0 {
		return info.MaxMessage
	}
	return DefaultMaxMessage
}
