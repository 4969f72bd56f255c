package h323

import (
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// watcher follows one routed H.323 connection. It keeps no state but the
// registration it was routed for, which never changes, so Client and
// Target need no lock.
type watcher struct{ reg registration }

var _ proxy.Watcher = (*watcher)(nil)

// Frame frames TPKT packets both ways.
func (w *watcher) Frame(_ proxy.Direction, buf []byte) (int, error) { return Frame(buf) }

// Client checks every GRQ and RRQ the client tunnels against the
// registration the connection was routed (and certificate-checked) for:
// a second registration for another service or alias would reach the
// target as if gatehouse had vouched for it. The connection is closed
// before such a message, and before any Facility gatehouse cannot read
// whole, since it could hide one.
func (w *watcher) Client(head []byte) proxy.Verdict {
	ras, err := tunnelledRAS(head)
	if err != nil {
		return proxy.Verdict{Refusal: proxy.AsRefusal(err), Close: true}
	}
	for _, raw := range ras {
		m, err := decodeRAS(raw)
		if err != nil {
			return proxy.Verdict{Refusal: errRAS.With(err), Close: true}
		}
		if !m.registration() {
			continue
		}
		if err := w.reg.check(&m); err != nil {
			return proxy.Verdict{Refusal: proxy.AsRefusal(err), Close: true}
		}
	}
	return proxy.Verdict{}
}

// Target reports a GatekeeperReject or RegistrationReject the target
// tunnels back: a wrong password, an unknown or a foreign alias. Rejects
// that belong to the normal course of registering are not counted: they
// ask the endpoint to discover or register again, or say the gatekeeper is
// busy, and a PBX restart sends them to every phone behind one NAT address.
func (w *watcher) Target(head []byte) (*proxy.Refusal, bool) {
	ras, err := tunnelledRAS(head)
	if err != nil {
		return nil, false // the target's own bytes are not the client's fault
	}
	for _, raw := range ras {
		m, err := decodeRAS(raw)
		if err != nil || routineRejects[m.reject] {
			continue
		}
		switch m.kind {
		case rasGRJ:
			return proxy.Refuse(proxy.ReasonRejected, "GRJ "+m.reject, nil), false
		case rasRRJ:
			return proxy.Refuse(proxy.ReasonRejected, "RRJ "+m.reject, nil), false
		}
	}
	return nil, false
}

// routineRejects are the GRJ and RRJ reasons that are not the client's fault.
var routineRejects = map[string]bool{
	"discoveryRequired":        true,
	"fullRegistrationRequired": true,
	"registerWithAssignedGK":   true,
	"resourceUnavailable":      true,
}

// tunnelledRAS returns the RAS messages tunnelled in the TPKT packet that
// head starts with (all of it, or its first limits.first_packet_max bytes):
// none unless it is a Q.931 Facility. Other messages are not read beyond
// their Q.931 header.
func tunnelledRAS(head []byte) ([][]byte, error) {
	n, err := Frame(head)
	if err != nil {
		return nil, err
	}
	if n == tpktHeaderLen {
		return nil, nil // keep-alive
	}
	msg := head[tpktHeaderLen:min(n, len(head))]
	q, err := parseQ931Header(msg)
	switch {
	case err != nil:
		return nil, err
	case q.msgType != q931Facility:
		return nil, nil
	case n > len(head):
		return nil, errUncheckable
	}
	if q, err = parseQ931(msg); err != nil {
		return nil, err
	}
	uu, err := decodeUserInfo(q.userUser, q931Facility)
	if err != nil {
		return nil, errH225.With(err)
	}
	return uu.ras, nil
}
