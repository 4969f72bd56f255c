package sip

import (
	"bytes"
	"fmt"
	"net/netip"
	"sync"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// maxPending bounds the credentialed requests a watcher remembers while
// their final answers are outstanding. A client rarely has more than a few
// in flight; one that sends requests the target never answers only pushes
// out its own oldest.
const maxPending = 32

// One failed login is one suspicious event. A client whose credentials
// are refused may answer each new challenge (a fresh nonce) with the same
// credentials on the same Call-ID: baresip does, fifteen times. Rejections
// of one Call-ID and user are counted once per retryWindow, for up to
// maxRetries of them; a client that picks a new Call-ID per guess (every
// brute-force tool) is counted per guess. The cap bounds what an attacker
// keeping one Call-ID gains: maxRetries guesses per counted event.
const (
	retryWindow = 10 * time.Second
	maxRetries  = 16
)

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
	// rejected are the latest rejections counted, by Call-ID and user,
	// oldest first, at most maxPending.
	rejected []rejection
}

// rejection is one counted failed login and the retries folded into it.
type rejection struct {
	callID, user string
	first        time.Time
	n            int
}

var _ proxy.Watcher = (*watcher)(nil)

// txn identifies a request to its responses: by Call-ID and CSeq, which
// over one connection are unique to a transaction.
type txn struct {
	callID string
	seq    uint32
	method sipmsg.RequestMethod // the CSeq method
	user   string               // the credentials' user name
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
	case !configs.EqualName(id.from.host, w.service):
		return w.refuse(req, sipmsg.StatusForbidden, "Forbidden", errOtherDomain)
	case w.identity.user != "" && (id.from.user != w.identity.user ||
		req.Method == sipmsg.REGISTER && id.to.user != w.identity.user):
		return w.refuse(req, sipmsg.StatusForbidden, "Forbidden", errOtherUser)
	}
	if (req.Method == sipmsg.REGISTER || req.Method == sipmsg.INVITE) && hasCredentials(req) {
		if t, ok := txnOf(req); ok {
			t.user = credentialUser(req)
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
	if !ok {
		return nil, false
	}
	if t, ok = w.answered(t); !ok {
		return nil, false
	}
	switch res.StatusCode {
	case sipmsg.StatusUnauthorized, sipmsg.StatusProxyAuthRequired:
		if staleNonce(res) {
			return nil, false // right credentials, expired nonce: a phone re-registering
		}
		fallthrough
	case sipmsg.StatusForbidden:
		if w.retried(t, time.Now()) {
			return nil, false
		}
		return proxy.Refuse(proxy.ReasonCredentials, fmt.Sprintf("%s %d", t.method, res.StatusCode), nil), false
	}
	return nil, false
}

// retried reports whether the rejection of t is a retry of one already
// counted: the same Call-ID and user within retryWindow of it, and fewer
// than maxRetries folded into it. Otherwise it is remembered as counted.
func (w *watcher) retried(t txn, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range w.rejected {
		r := &w.rejected[i]
		if r.callID == t.callID && r.user == t.user && now.Sub(r.first) < retryWindow && r.n < maxRetries {
			r.n++
			return true
		}
	}
	if len(w.rejected) == maxPending {
		w.rejected = append(w.rejected[:0], w.rejected[1:]...)
	}
	w.rejected = append(w.rejected, rejection{callID: t.callID, user: t.user, first: now, n: 1})
	return false
}

// credentialUser is the user name of req's digest credentials ("" when
// they cannot be read: such retries fold together only with each other).
func credentialUser(req *sipmsg.Request) string {
	for _, name := range []string{"authorization", "proxy-authorization"} {
		if h := req.GetHeader(name); h != nil {
			if c, err := digest.ParseCredentials(h.Value()); err == nil {
				return c.Username
			}
		}
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

// answered forgets t, which a final response answered, and returns the
// request's entry (with its user) when it was waiting for one.
func (w *watcher) answered(t txn) (txn, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, p := range w.pending {
		if p.callID == t.callID && p.seq == t.seq && p.method == t.method {
			w.pending = append(w.pending[:i], w.pending[i+1:]...)
			return p, true
		}
	}
	return txn{}, false
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
