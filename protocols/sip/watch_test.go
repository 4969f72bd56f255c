package sip

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// TestWatcherFixtures replays each recorded conversation through the
// watcher: every client message passes, and only a failed login (never the
// ordinary challenge) is a target rejection.
func TestWatcherFixtures(t *testing.T) {
	for _, f := range loadFixtures(t) {
		t.Run(f.name, func(t *testing.T) {
			_, w := newWatcher(t, f.client0, &proxy.ConnInfo{Client: netip.MustParseAddrPort("192.0.2.7:40000")})
			up, err := relayFrames(w, proxy.FromClient, f.client0)
			if err != nil {
				t.Fatal(err)
			}
			down, err := relayFrames(w, proxy.FromTarget, f.target0)
			if err != nil {
				t.Fatal(err)
			}
			// Requests precede their answers; that is all the order matching needs.
			for _, m := range up {
				if v := w.Client(m); v.Reply != nil || text(v.Refusal) != "" || v.Close {
					t.Fatalf("client message refused: %+v\n%s", v, m)
				}
			}
			var got []string
			for _, m := range down {
				if reason, _ := w.Target(m); reason != nil {
					got = append(got, reason.Text())
				}
			}
			if !equal(got, f.rejections) {
				t.Fatalf("rejections: got %q, want %q", got, f.rejections)
			}
		})
	}
}

const alice = "From: <sip:alice@example.com>;tag=a1\r\n"

// TestWatcherOtherService checks that a later request for another domain
// is answered 403 by gatehouse, with a response sipgo reads as the answer
// to that very request.
func TestWatcherOtherService(t *testing.T) {
	client := netip.MustParseAddrPort("192.0.2.7:40000")
	_, w := newWatcher(t, []byte(request("REGISTER", alice, "l: 0\r\n\r\n")), &proxy.ConnInfo{Client: client})

	same := request("OPTIONS", "From: <sip:bob@EXAMPLE.com>;tag=b1\r\n", "l: 0\r\n\r\n")
	if v := w.Client([]byte(same)); v.Reply != nil || text(v.Refusal) != "" {
		t.Fatalf("same domain, other case: %+v", v)
	}

	other := "INVITE sip:pbx@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP 10.0.0.5:5060;rport;branch=z9hG4bK.x1\r\n" +
		"v: SIP/2.0/TCP 10.0.0.9:5060;branch=z9hG4bK.x0\r\n" +
		"f: <sip:mallory@other.example>;tag=m1\r\n" +
		"t: <sip:pbx@example.com>\r\n" +
		"i: call-7\r\n" +
		"CSeq: 42 INVITE\r\n" +
		"Content-Length: 4\r\n\r\nv=0\n"
	v := w.Client([]byte(other))
	if text(v.Refusal) != errOtherDomain.Error() || v.Close {
		t.Fatalf("verdict %+v", v)
	}
	msg, err := sipmsg.ParseMessage(v.Reply)
	if err != nil {
		t.Fatalf("reply is not SIP: %v\n%s", err, v.Reply)
	}
	res, ok := msg.(*sipmsg.Response)
	if !ok || res.StatusCode != 403 {
		t.Fatalf("reply %s", v.Reply)
	}
	req, _ := sipmsg.ParseMessage([]byte(other))
	vias := res.GetHeaders("via")
	if len(vias) != 2 || res.From().Value() != req.From().Value() || res.CallID().Value() != "call-7" ||
		res.CSeq().Value() != "42 INVITE" || res.To().Address.String() != req.To().Address.String() || !res.To().Params.Has("tag") {
		t.Fatalf("reply does not answer the request:\n%s", v.Reply)
	}
	// RFC 3581: the client learns the address gatehouse saw.
	if got := vias[0].(*sipmsg.ViaHeader).Params; got.GetOr("received", "") != "192.0.2.7" || got.GetOr("rport", "") != "40000" {
		t.Fatalf("top Via %s", vias[0])
	}

	// Its ACK gets no answer and counts no second time.
	ack := strings.Replace(strings.Replace(other, "42 INVITE", "42 ACK", 1), "INVITE sip:", "ACK sip:", 1)
	if v := w.Client([]byte(ack)); v.Reply == nil || len(v.Reply) != 0 || text(v.Refusal) != "" {
		t.Fatalf("ACK: %+v", v)
	}
}

func TestWatcherClientRefuses(t *testing.T) {
	_, w := newWatcher(t, []byte(request("REGISTER", alice, "l: 0\r\n\r\n")), nil)
	for _, tc := range []struct {
		name, in string
		status   string // the start of the reply; "" for none
		reason   string
		close    bool
	}{
		{"no From", request("MESSAGE", "", "l: 0\r\n\r\n"), "SIP/2.0 400 ", ErrNoFrom.Error(), false},
		{"From without host", request("MESSAGE", "From: <tel:110>;tag=1\r\n", "l: 0\r\n\r\n"), "SIP/2.0 400 ", ErrFromNoHost.Error(), false},
		{"unreadable CSeq", strings.Replace(request("MESSAGE", alice, "l: 0\r\n\r\n"), "CSeq: 1", "CSeq: one", 1), "SIP/2.0 400 ", errUnreadable[hCSeq].Error(), false},
		{"malformed", request("MESSAGE", alice, "Via: SIP/2.0\r\nl: 0\r\n\r\n"), "", ErrMalformed.Error(), true},
		{"head cut inside its header block", request("MESSAGE", alice), "", ErrTooLarge.Error(), true},
		{"keep-alive", "\r\n", "", "", false},
		{"a response to the target", "SIP/2.0 200 OK\r\n" + alice + "Call-ID: x\r\nCSeq: 7 NOTIFY\r\nl: 0\r\n\r\n", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := w.Client([]byte(tc.in))
			if !strings.HasPrefix(string(v.Reply), tc.status) || (v.Reply == nil) != (tc.status == "") ||
				text(v.Refusal) != tc.reason || v.Close != tc.close {
				t.Fatalf("got %+v", v)
			}
		})
	}
}

// TestWatcherFrameLies checks what follows a Content-Length that says less
// than the body: the rest of the body is taken for the next message, and
// refused as not SIP.
func TestWatcherFrameLies(t *testing.T) {
	lie := request("INVITE", alice, "l: 2\r\n\r\nv=0\r\no=- 1 1 IN IP4 192.0.2.7\r\n")
	_, w := newWatcher(t, []byte(lie), nil)
	msgs, err := relayFrames(w, proxy.FromClient, []byte(lie))
	if len(msgs) != 1 || err != ErrNotSIP {
		t.Fatalf("got %d messages, %v", len(msgs), err)
	}
}

func TestWatcherTarget(t *testing.T) {
	const (
		authz = "Authorization: Digest username=\"alice\", realm=\"r\", nonce=\"n\", uri=\"sip:example.com\", response=\"0\"\r\n"
		proxz = "Proxy-Authorization: Digest username=\"alice\", realm=\"r\", nonce=\"n\", uri=\"sip:bob@example.com\", response=\"0\"\r\n"
	)
	msg := func(method string, seq int, extra string) string {
		return strings.Replace(request(method, alice, extra, "l: 0\r\n\r\n"), "CSeq: 1 ", fmt.Sprintf("CSeq: %d ", seq), 1)
	}
	answer := func(code, seq int, method string) string {
		return fmt.Sprintf("SIP/2.0 %d Whatever\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK.1\r\n%sTo: <sip:pbx@example.com>;tag=p\r\nCall-ID: c1\r\nCSeq: %d %s\r\nContent-Length: 0\r\n\r\n", code, alice, seq, method)
	}
	for _, tc := range []struct {
		name      string
		requests  []string
		responses []string
		want      []string
	}{
		{"challenge is no rejection",
			[]string{msg("REGISTER", 1, "")}, []string{answer(401, 1, "REGISTER")}, nil},
		{"failed REGISTER",
			[]string{msg("REGISTER", 2, authz)}, []string{answer(401, 2, "REGISTER")}, []string{"credentials rejected by target (REGISTER 401)"}},
		{"forbidden REGISTER",
			[]string{msg("REGISTER", 2, authz)}, []string{answer(403, 2, "REGISTER")}, []string{"credentials rejected by target (REGISTER 403)"}},
		{"failed INVITE",
			[]string{msg("INVITE", 3, proxz)}, []string{answer(100, 3, "INVITE"), answer(407, 3, "INVITE")}, []string{"credentials rejected by target (INVITE 407)"}},
		{"successful INVITE, then a stray 403",
			[]string{msg("INVITE", 3, proxz)}, []string{answer(200, 3, "INVITE"), answer(403, 3, "INVITE")}, nil},
		{"other CSeq",
			[]string{msg("REGISTER", 4, authz)}, []string{answer(401, 5, "REGISTER")}, nil},
		{"other methods carry credentials too",
			[]string{msg("SUBSCRIBE", 6, authz)}, []string{answer(401, 6, "SUBSCRIBE")}, nil},
		{"stale nonce is no rejection",
			[]string{msg("REGISTER", 9, authz)}, []string{strings.Replace(answer(401, 9, "REGISTER"), "Content-Length: 0",
				"WWW-Authenticate: Digest realm=\"r\", nonce=\"n2\", algorithm=MD5, stale=TRUE\r\nContent-Length: 0", 1)}, nil},
		{"fresh challenge after credentials is",
			[]string{msg("REGISTER", 9, authz)}, []string{strings.Replace(answer(401, 9, "REGISTER"), "Content-Length: 0",
				"WWW-Authenticate: Digest realm=\"r\", nonce=\"n2\", algorithm=MD5, stale=false\r\nContent-Length: 0", 1)},
			[]string{"credentials rejected by target (REGISTER 401)"}},
		{"keep-alive",
			[]string{msg("REGISTER", 7, authz)}, []string{"\r\n", answer(401, 7, "REGISTER")}, []string{"credentials rejected by target (REGISTER 401)"}},
		{"unparseable answer",
			[]string{msg("REGISTER", 8, authz)}, []string{"SIP/2.0 401 x\r\nVia: x\r\nl: 0\r\n\r\n"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, w := newWatcher(t, []byte(msg("REGISTER", 1, "")), nil)
			for _, r := range tc.requests {
				if v := w.Client([]byte(r)); v.Reply != nil || text(v.Refusal) != "" {
					t.Fatalf("request refused: %+v", v)
				}
			}
			var got []string
			for _, r := range tc.responses {
				if reason, _ := w.Target([]byte(r)); reason != nil {
					got = append(got, reason.Text())
				}
			}
			if !equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestWatcherPendingBound checks that requests the target never answers
// cannot grow the watcher: only the newest maxPending are remembered.
func TestWatcherPendingBound(t *testing.T) {
	_, w := newWatcher(t, []byte(request("REGISTER", alice, "l: 0\r\n\r\n")), nil)
	reg := func(seq int) string {
		// A user name per request: rejections are not retries of each other.
		authz := fmt.Sprintf("Authorization: Digest username=\"alice%d\"\r\n", seq)
		return strings.Replace(request("REGISTER", alice, authz, "l: 0\r\n\r\n"), "CSeq: 1 ", fmt.Sprintf("CSeq: %d ", seq), 1)
	}
	rejected := func(seq int) bool {
		reason, _ := w.Target([]byte(fmt.Sprintf("SIP/2.0 401 x\r\nCall-ID: c1\r\nCSeq: %d REGISTER\r\nl: 0\r\n\r\n", seq)))
		return reason != nil
	}
	for seq := 1; seq <= maxPending+8; seq++ {
		w.Client([]byte(reg(seq)))
	}
	if len(w.(*watcher).pending) != maxPending {
		t.Fatalf("%d pending", len(w.(*watcher).pending))
	}
	if rejected(8) || !rejected(9) || !rejected(maxPending+8) {
		t.Fatal("kept the wrong requests")
	}
}

// TestWatcherRetriesCountOnce: rejections of one Call-ID and user are one
// failed login (a phone answering each new nonce with the same wrong
// password), counted again after retryWindow or maxRetries; another
// Call-ID or another user is another guess.
func TestWatcherRetriesCountOnce(t *testing.T) {
	reg := func(callID, user string, seq int) string {
		authz := fmt.Sprintf("Authorization: Digest username=%q, realm=\"r\", nonce=\"n%d\", uri=\"sip:example.com\", response=\"0\"\r\n", user, seq)
		m := strings.Replace(request("REGISTER", alice, authz, "l: 0\r\n\r\n"), "CSeq: 1 ", fmt.Sprintf("CSeq: %d ", seq), 1)
		return strings.Replace(m, "Call-ID: c1", "Call-ID: "+callID, 1)
	}
	rejected := func(callID string, seq int) string {
		return fmt.Sprintf("SIP/2.0 401 Unauthorized\r\nCall-ID: %s\r\nCSeq: %d REGISTER\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"x%d\"\r\nl: 0\r\n\r\n", callID, seq, seq)
	}
	type attempt struct {
		callID, user string
		counted      bool
	}
	many := func(n int, a attempt) []attempt {
		out := []attempt{a}
		for range n - 1 {
			out = append(out, attempt{a.callID, a.user, false})
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		attempts []attempt
	}{
		{"baresip: fifteen retries of one wrong password", many(15, attempt{"c1", "alice", true})},
		{"a new Call-ID per guess", []attempt{{"c1", "alice", true}, {"c2", "alice", true}, {"c3", "alice", true}}},
		{"another user on the same Call-ID", []attempt{{"c1", "alice", true}, {"c1", "bob", true}, {"c1", "alice", false}}},
		{"more retries than maxRetries", append(many(maxRetries, attempt{"c1", "alice", true}), attempt{"c1", "alice", true}, attempt{"c1", "alice", false})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, w := newWatcher(t, []byte(request("REGISTER", alice, "l: 0\r\n\r\n")), nil)
			for i, a := range tc.attempts {
				seq := i + 2
				if v := w.Client([]byte(reg(a.callID, a.user, seq))); v.Refusal != nil {
					t.Fatalf("request refused: %v", v.Refusal)
				}
				reason, _ := w.Target([]byte(rejected(a.callID, seq)))
				if (reason != nil) != a.counted {
					t.Fatalf("attempt %d (%s %s): counted %v, want %v", i, a.callID, a.user, reason != nil, a.counted)
				}
			}
		})
	}
	// After retryWindow the same mistake counts again.
	_, w := newWatcher(t, []byte(request("REGISTER", alice, "l: 0\r\n\r\n")), nil)
	ww := w.(*watcher)
	now := time.Now()
	if ww.retried(txn{callID: "c1", user: "alice"}, now) || !ww.retried(txn{callID: "c1", user: "alice"}, now.Add(retryWindow-time.Second)) {
		t.Fatal("a retry within the window")
	}
	if ww.retried(txn{callID: "c1", user: "alice"}, now.Add(retryWindow)) {
		t.Fatal("a rejection after the window was taken for a retry")
	}
}

// TestWatcherConcurrent runs both directions at once, as the relay does;
// run it with -race.
func TestWatcherConcurrent(t *testing.T) {
	f := loadFixtures(t)[0]
	_, w := newWatcher(t, f.client0, nil)
	up, _ := relayFrames(w, proxy.FromClient, f.client0)
	down, _ := relayFrames(w, proxy.FromTarget, f.target0)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range 50 {
			for _, m := range up {
				w.Frame(proxy.FromClient, m)
				w.Client(m)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range 50 {
			for _, m := range down {
				w.Frame(proxy.FromTarget, m)
				w.Target(m)
			}
		}
	}()
	wg.Wait()
}
