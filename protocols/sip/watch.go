package sip

import (
	"bytes"
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
	identity uri            // the certified address every request keeps to; zero for any
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
		if headerError(err) == nil {
			return proxy.Verdict{Refusal: proxy.AsRefusal(err), Close: true}
		}
		// A request that repeats or garbles a singleton header is
		// answered, from what can be read of it, and the connection kept.
		req, _ := msg.(*sipmsg.Request)
		if req == nil {
			req = salvage(head)
		}
		if req == nil {
			return proxy.Verdict{Refusal: proxy.AsRefusal(err), Close: true}
		}
		return w.refuse(req, sipmsg.StatusBadRequest, "Bad Request", proxy.AsRefusal(err))
	}
	req, ok := msg.(*sipmsg.Request)
	if !ok {
		return proxy.Verdict{} // the client answering a request of the target
	}
	id, err := identify(req)
	switch {
	case err == ErrToOtherService:
		return w.refuse(req, sipmsg.StatusForbidden, "Forbidden", ErrToOtherService)
	case err != nil:
		return w.refuse(req, sipmsg.StatusBadRequest, "Bad Request", proxy.AsRefusal(err))
	case !strings.EqualFold(id.from.host, w.service):
		return w.refuse(req, sipmsg.StatusForbidden, "Forbidden", errOtherDomain)
	case w.identity.user != "" && (id.from.user != w.identity.user ||
		req.Method == sipmsg.REGISTER && id.to.user != w.identity.user):
		return w.refuse(req, sipmsg.StatusForbidden, "Forbidden", errOtherUser)
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

// Target judges what the target sends: a message that repeats or garbles a
// singleton header is not passed to the client (whose stack would pick one
// of the copies as it likes), and a final answer to a credentialed request
// may be a target rejection.
func (w *watcher) Target(head []byte) (refusal *proxy.Refusal, drop bool) {
	if isKeepAlive(head) {
		return nil, false
	}
	msg, err := parseMessage(head, w.max)
	switch he := headerError(err); {
	case he != nil:
		return proxy.Refuse(proxy.ReasonTargetMessage, he.Problem+" "+he.Header+" header", err), true
	case err != nil:
		// Any other fault of the target's is not the client's doing; the
		// client's stack will refuse it.
		return nil, false
	}
	res, ok := msg.(*sipmsg.Response)
	if !ok || res.IsProvisional() {
		return nil, false
	}
	w.mu.Lock()
	waiting := len(w.pending) > 0
	w.mu.Unlock()
	if !waiting {
		return nil, false
	}
	t, ok := txnOf(res)
	if !ok || !w.answered(t) {
		return nil, false
	}
	switch res.StatusCode {
	case sipmsg.StatusUnauthorized, sipmsg.StatusProxyAuthRequired:
		if staleNonce(res) {
			return nil, false // right credentials, expired nonce: a phone re-registering
		}
		fallthrough
	case sipmsg.StatusForbidden:
		return proxy.Refuse(proxy.ReasonCredentials, fmt.Sprintf("%s %d", t.method, res.StatusCode), nil), false
	}
	return nil, false
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
func (w *watcher) refuse(req *sipmsg.Request, code int, phrase string, reason *proxy.Refusal) proxy.Verdict {
	if req.IsAck() {
		return proxy.Verdict{Reply: []byte{}}
	}
	if w.client.IsValid() {
		req.SetSource(w.client.String())
	}
	res := sipmsg.NewResponseFromRequest(req, code, phrase, nil)
	return proxy.Verdict{Reply: []byte(res.String()), Refusal: reason}
}

// salvage parses what can be parsed of a request whose header block sipgo
// refuses: its start line and every header line sipgo reads alone. It is
// enough to answer the request (Via, and the identity headers that are
// readable); nil when even that fails.
func salvage(head []byte) *sipmsg.Request {
	i := bytes.Index(head, blankLine)
	if i < 0 {
		return nil
	}
	block := head[:i+len(blankLine)]
	start := bytes.Index(block, crlf) + len(crlf)
	kept := append(make([]byte, 0, len(block)), block[:start]...)
	h := headerLines{rest: block[start:]}
	for _, line := h.next(); line != nil; _, line = h.next() {
		if readable(line) {
			kept = append(kept, line...)
		}
	}
	kept = append(kept, crlf...)
	msg, _, err := parser.ParseHeaders(kept, true)
	req, ok := msg.(*sipmsg.Request)
	if err != nil || !ok || req.Via() == nil {
		return nil
	}
	return req
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
