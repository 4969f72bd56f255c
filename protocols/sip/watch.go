package sip

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// maxPending bounds the credentialed requests a watcher remembers while
// their final answers are outstanding. A client rarely has more than a few
// in flight; one that sends requests the target never answers only pushes
// out its own oldest.
const maxPending = 32

// watcher follows one SIP connection. Client and Target run on the two relay
// goroutines, so the requests awaiting an answer are under a lock; each
// framer belongs to the goroutine of its direction.
type watcher struct {
	service  string         // the connection is bound to it
	identity string         // From user every REGISTER must carry; "" for any
	client   netip.AddrPort // for the received/rport of replies (RFC 3581)
	max      int
	frames   [2]framer // by proxy.Direction

	mu      sync.Mutex
	pending []txn // credentialed REGISTERs and INVITEs, oldest first
}

var _ proxy.Watcher = (*watcher)(nil)

// txn identifies a request to its responses: by Call-ID and CSeq, which
// over one connection are unique to a transaction.
type txn struct {
	callID string
	seq    uint32
	method sipmsg.RequestMethod // the CSeq method
}

func (w *watcher) Frame(dir proxy.Direction, buf []byte) (int, error) {
	return w.frames[dir].frame(buf)
}

func (w *watcher) Client(head []byte) proxy.Verdict {
	if isKeepAlive(head) {
		return proxy.Verdict{}
	}
	msg, err := parseMessage(head, w.max)
	if err != nil {
		return proxy.Verdict{Reason: err.Error(), Close: true}
	}
	req, ok := msg.(*sipmsg.Request)
	if !ok {
		return proxy.Verdict{} // the client answering a request of the target
	}
	user, host, err := from(req)
	switch {
	case err != nil:
		return w.refuse(req, sipmsg.StatusBadRequest, "Bad Request", err.Error())
	case !strings.EqualFold(host, w.service):
		return w.refuse(req, sipmsg.StatusForbidden, "Forbidden", reasonOtherService)
	case w.identity != "" && req.Method == sipmsg.REGISTER && user != w.identity:
		return w.refuse(req, sipmsg.StatusForbidden, "Forbidden", reasonOtherUser)
	}
	if (req.Method == sipmsg.REGISTER || req.Method == sipmsg.INVITE) && hasCredentials(req) {
		if t, ok := txnOf(req); ok {
			w.mu.Lock()
			if len(w.pending) == maxPending {
				w.pending = append(w.pending[:0], w.pending[1:]...)
			}
			w.pending = append(w.pending, t)
			w.mu.Unlock()
		}
	}
	return proxy.Verdict{}
}

func (w *watcher) Target(head []byte) string {
	if isKeepAlive(head) {
		return ""
	}
	// Most target messages answer nothing that needs watching: skip
	// parsing them.
	w.mu.Lock()
	waiting := len(w.pending) > 0
	w.mu.Unlock()
	if !waiting {
		return ""
	}
	// A message the target sends that sipgo cannot parse is not the
	// client's doing; the target's own peer will refuse it.
	msg, err := parseMessage(head, w.max)
	if err != nil {
		return ""
	}
	res, ok := msg.(*sipmsg.Response)
	if !ok || res.IsProvisional() {
		return ""
	}
	t, ok := txnOf(res)
	if !ok || !w.answered(t) {
		return ""
	}
	switch res.StatusCode {
	case sipmsg.StatusUnauthorized, sipmsg.StatusProxyAuthRequired:
		if staleNonce(res) {
			return "" // right credentials, expired nonce: a phone re-registering
		}
		fallthrough
	case sipmsg.StatusForbidden:
		return fmt.Sprintf("%s credentials rejected (%d)", t.method, res.StatusCode)
	}
	return ""
}

// staleNonce reports whether a challenge in res says stale=true: the
// credentials were good, only the nonce they used had expired (RFC 7616
// §3.3).
func staleNonce(res *sipmsg.Response) bool {
	for _, name := range []string{"www-authenticate", "proxy-authenticate"} {
		for _, h := range res.GetHeaders(name) {
			if c, err := digest.ParseChallenge(h.Value()); err == nil && c.Stale {
				return true
			}
		}
	}
	return false
}

// answered forgets t, which a final response answered, and reports whether
// it was waiting for one.
func (w *watcher) answered(t txn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, p := range w.pending {
		if p == t {
			w.pending = append(w.pending[:i], w.pending[i+1:]...)
			return true
		}
	}
	return false
}

// refuse answers req itself instead of forwarding it. An ACK is never
// answered (RFC 3261 §17.1.1.3) and, as it acknowledges a final answer
// already given (by gatehouse, most likely), it is dropped without counting.
func (w *watcher) refuse(req *sipmsg.Request, code int, phrase, reason string) proxy.Verdict {
	if req.IsAck() {
		return proxy.Verdict{Reply: []byte{}}
	}
	if w.client.IsValid() {
		req.SetSource(w.client.String())
	}
	res := sipmsg.NewResponseFromRequest(req, code, phrase, nil)
	return proxy.Verdict{Reply: []byte(res.String()), Reason: reason}
}

func hasCredentials(req *sipmsg.Request) bool {
	return req.GetHeader("authorization") != nil || req.GetHeader("proxy-authorization") != nil
}

// txnOf returns the transaction msg belongs to; ok is false when it lacks
// Call-ID or CSeq.
func txnOf(msg sipmsg.Message) (t txn, ok bool) {
	id, cseq := msg.CallID(), msg.CSeq()
	if id == nil || cseq == nil {
		return txn{}, false
	}
	return txn{callID: string(*id), seq: cseq.SeqNo, method: cseq.MethodName}, true
}
