package ldap

import (
	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// watcher follows a connection routed to service. Only binds, StartTLS and
// bind results are decoded; every other message is classified by its
// headers and passes. It holds nothing but the service name, which never
// changes, so the two relay goroutines share it without a lock.
type watcher struct {
	service string
}

// Frame measures LDAPMessages the same way in both directions.
func (w *watcher) Frame(_ proxy.Direction, buf []byte) (int, error) {
	return frame(buf)
}

// Client lets a message through unless it is a bind for another domain than
// the connection's, or a StartTLS that would hide the rest of the
// connection from gatehouse (TLS would run between client and target).
func (w *watcher) Client(head []byte) proxy.Verdict {
	op, ok := opTag(head)
	if !ok {
		return refused(nil, errMalformed, true)
	}
	if op&byte(ber.HighTag) == byte(ber.HighTag) {
		// A high-tag-number protocolOp could be a bind in disguise to
		// a decoder that reads it as asn1-ber does.
		return refused(nil, errEncoding, true)
	}
	if op != opBindRequest && op != opExtendedRequest {
		return proxy.Verdict{}
	}
	m, err := decodeHead(head)
	if err != nil { // a bind gatehouse cannot read must not reach the target
		return refused(nil, err, true)
	}
	if m.is(goldap.ApplicationBindRequest) {
		key, err := bindKey(m)
		if err == nil && !configs.EqualName(key, w.service) {
			err = errOtherService
		}
		if err != nil {
			return refused(m, err, false)
		}
		return proxy.Verdict{}
	}
	if m.extendedName() == oidStartTLS { // refused, not suspicious: the client merely asked late
		return proxy.Verdict{Reply: answer(m, errLateStartTLS)}
	}
	return proxy.Verdict{}
}

// Target reports a bind that failed for wrong credentials; the bind that
// routed the connection and every later one alike.
func (w *watcher) Target(head []byte) (*proxy.Refusal, bool) {
	if op, ok := opTag(head); !ok || op != opBindResponse {
		return nil, false
	}
	m, err := decodeHead(head)
	if err != nil {
		return nil, false
	}
	if goldap.IsErrorWithCode(goldap.GetLDAPError(m.packet), goldap.LDAPResultInvalidCredentials) {
		return errCredentials, false
	}
	return nil, false
}

// decodeHead decodes a message the relay handed over as head: the whole
// message, or only its first limits.first_packet_max bytes.
func decodeHead(head []byte) (*message, error) {
	n, err := frame(head)
	if err != nil {
		return nil, err
	}
	if n > len(head) {
		return nil, errUncheckable
	}
	return decode(head[:n])
}

// refused is the verdict that answers request m (nil: unreadable) in
// place of the target and reports it.
func refused(m *message, err error, close bool) proxy.Verdict {
	r := proxy.AsRefusal(err)
	return proxy.Verdict{Reply: answer(m, r), Refusal: r, Close: close}
}
