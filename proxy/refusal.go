package proxy

import (
	"errors"
	"strconv"
)

// Reason is why gatehouse refused a request: one of the constants below,
// stable for logs, metrics, the admin UI and the blacklist. Anything that
// varies (a status code, a header's name, a gatekeeper's reject reason)
// goes in a Refusal's Detail, so the set of reasons stays fixed.
type Reason string

func (r Reason) String() string { return string(r) }

// The reasons. The listener layer uses some itself; the protocols pick the
// one that fits and say the rest in the detail.
const (
	// Routing (Table.Resolve) and the rules a request must pass.
	ReasonUnknownService Reason = "unknown service"
	ReasonNoPort         Reason = "service not offered for this type"
	ReasonNetwork        Reason = "network not allowed"
	ReasonURL            Reason = "url not allowed"
	ReasonMethod         Reason = "method not allowed"
	// ReasonOtherService: a later message on a connection bound to one
	// service names another (SIP From, LDAP rebind, H.323 registration).
	ReasonOtherService Reason = "another service on a bound connection"
	// ReasonIdentity: a message claims an identity the connection may not
	// use (another user than the client certificate's; several users).
	ReasonIdentity Reason = "identity not allowed"
	// ReasonNoName: the message is well formed but carries no routing
	// name gatehouse accepts (no domain, an anonymous bind, neither Setup
	// nor registration).
	ReasonNoName Reason = "no routing name"

	// Reading the client.
	ReasonTLS        Reason = "tls handshake failed"
	ReasonTimeout    Reason = "first packet timeout"
	ReasonTooLarge   Reason = "message too large"
	ReasonClosed     Reason = "closed before first packet"
	ReasonIncomplete Reason = "incomplete first packet"
	ReasonReadError  Reason = "read error"
	// ReasonProtocol: the bytes are not the protocol of the port (HTTP on
	// a SIP port, a SIP response where a request must come).
	ReasonProtocol Reason = "wrong protocol"
	// ReasonUnreadable: a message of the protocol that breaks its rules
	// (a missing or repeated header, bad framing, non-canonical BER).
	ReasonUnreadable Reason = "unreadable request"
	// ReasonSequence: a step out of order (StartTLS inside TLS, data
	// after a StartTLS request).
	ReasonSequence Reason = "out of sequence"

	// The target's side.
	ReasonUnreachable Reason = "target unreachable"
	// ReasonTargetDown: the target is known to be down (package health),
	// so the request is answered "unavailable" without a dial; and a dial
	// that fails while it is down. Not the client's fault: never handed to
	// the Guard.
	ReasonTargetDown  Reason = "target down"
	ReasonCredentials Reason = "credentials rejected by target"
	// ReasonRejected: the target refused a registration for another
	// cause than routine (an H.323 GRJ/RRJ; the detail names it).
	ReasonRejected Reason = "registration rejected by target"
	// ReasonTargetMessage: the target sent a message gatehouse will not
	// pass to the client (a repeated identity header).
	ReasonTargetMessage Reason = "target message dropped"

	// ReasonUnavailable: the service is served by agents and no tunnel
	// serves it now. Answered "unavailable" (HTTP 503, SIP 503, LDAP 52),
	// and not reported: the client did nothing wrong.
	ReasonUnavailable Reason = "service unavailable"

	// ReasonOther counts, in Stats, a Reason that is none of the above.
	ReasonOther Reason = "other"
)

// Reasons lists every reason, for counters that want them all.
var Reasons = []Reason{
	ReasonUnknownService, ReasonNoPort, ReasonNetwork, ReasonURL, ReasonMethod,
	ReasonOtherService, ReasonIdentity, ReasonNoName,
	ReasonTLS, ReasonTimeout, ReasonTooLarge, ReasonClosed, ReasonIncomplete, ReasonReadError,
	ReasonProtocol, ReasonUnreadable, ReasonSequence,
	ReasonUnreachable, ReasonTargetDown, ReasonCredentials, ReasonRejected, ReasonTargetMessage,
	ReasonUnavailable,
}

var knownReasons = func() map[Reason]bool {
	m := make(map[Reason]bool, len(Reasons))
	for _, r := range Reasons {
		m[r] = true
	}
	return m
}()

// Refusal is a request gatehouse will not forward: the error protocols
// return from Sniff, Watcher.Frame and Watcher.Client, and Table.Resolve
// returns. Its Reason is what replies (Refuser) and counters switch on;
// find it in an error with errors.As. Its text never holds the cause's,
// which may quote the client's bytes: the cause is for the log and for
// errors.Is.
type Refusal struct {
	Reason Reason
	// Service is the service the request named, when the refusal is
	// about routing it; "" otherwise.
	Service string
	// Detail says more in fixed words: "no From header", "REGISTER 401",
	// "GRJ securityDenial". Never bytes of the client's.
	Detail string
	// Err is the cause (a protocol's sentinel error, a parse error); may
	// be nil.
	Err error
	// Subject is what the client asked for in its own words (a refused
	// path), for the refusal log only; "" lets Conn.Report use the
	// identity the connection revealed (SIP AOR, LDAP bind name, Host).
	Subject string
}

// Refuse returns a Refusal for reason with detail and cause.
func Refuse(reason Reason, detail string, cause error) *Refusal {
	return &Refusal{Reason: reason, Detail: detail, Err: cause}
}

func (r *Refusal) Error() string {
	s := r.Text()
	if r.Service != "" {
		s += " (service " + strconv.Quote(r.Service) + ")"
	}
	return s
}

// Unwrap returns the cause.
func (r *Refusal) Unwrap() error {
	if r == nil {
		return nil
	}
	return r.Err
}

// Is reports whether target is a Refusal with r's reason and detail: a
// protocol's sentinel refusal matches every copy of it With a cause.
func (r *Refusal) Is(target error) bool {
	t, ok := target.(*Refusal)
	return ok && r != nil && t != nil && t.Reason == r.Reason && t.Detail == r.Detail
}

// withService returns a copy of r naming service.
func (r *Refusal) withService(service string) *Refusal {
	c := *r
	c.Service = service
	return &c
}

// With returns a copy of r caused by err: a sentinel refusal with the
// parse error behind it, for the log.
func (r *Refusal) With(err error) *Refusal {
	c := *r
	c.Err = err
	return &c
}

// Text is the reason with its detail: "unreadable request (no From
// header)", as the blacklist and the admin UI show it; "" for a nil
// Refusal.
func (r *Refusal) Text() string {
	if r == nil {
		return ""
	}
	if r.Detail == "" {
		return string(r.Reason)
	}
	return string(r.Reason) + " (" + r.Detail + ")"
}

// AsRefusal returns the Refusal in err's chain, or, for an error that
// holds none, a Refusal for ReasonUnreadable caused by err.
func AsRefusal(err error) *Refusal {
	var r *Refusal
	if errors.As(err, &r) {
		return r
	}
	return Refuse(ReasonUnreadable, "", err)
}
