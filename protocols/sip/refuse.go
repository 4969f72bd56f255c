package sip

import (
	"bytes"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

var _ proxy.Refuser = (*Sniffer)(nil)

// RefusalReply answers a first request that gatehouse refuses, so that a
// phone shows an error instead of retrying a dead connection: 503 when the
// target is unreachable, 400 when the request itself is at fault, 513 when
// it is too large, and 403 for everything else (unknown service, network
// not allowed, ...). It returns nil when first holds no request sipgo can
// read, or an ACK, which is never answered.
func (s *Sniffer) RefusalReply(first []byte, r *proxy.Refusal) []byte {
	for len(first) >= 2 && first[0] == '\r' && first[1] == '\n' {
		first = first[2:]
	}
	i := bytes.Index(first, blankLine)
	if i < 0 {
		return nil
	}
	msg, _, err := parser.ParseHeaders(first[:i+len(blankLine)], true)
	req, ok := msg.(*sipmsg.Request)
	if err != nil {
		// An identity header sipgo cannot read: answer from the rest.
		req, ok = salvage(first), true
	}
	if !ok || req == nil || req.IsAck() {
		return nil
	}
	code, phrase := sipmsg.StatusForbidden, "Forbidden"
	switch r.Reason {
	case proxy.ReasonUnreachable, proxy.ReasonUnavailable, proxy.ReasonTargetDown:
		code, phrase = sipmsg.StatusServiceUnavailable, "Service Unavailable"
	case proxy.ReasonTooLarge:
		code, phrase = sipmsg.StatusMessageTooLarge, "Message Too Large"
	case proxy.ReasonUnreadable, proxy.ReasonNoName:
		code, phrase = sipmsg.StatusBadRequest, "Bad Request"
	}
	res := sipmsg.NewResponseFromRequest(req, code, phrase, nil)
	// The client's address is not known here: keep Via's rport bare
	// rather than adding an empty received.
	if via := res.Via(); via != nil {
		via.Params.Remove("received")
	}
	return []byte(res.String())
}
