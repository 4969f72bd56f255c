package sip

import (
	"bytes"
	"strings"
	"testing"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// refusals are the only errors Sniff and Frame may return: short, stable
// reasons for the blacklist, never an echo of the client's bytes.
var refusals = append([]error{proxy.ErrNeedMore, ErrNotSIP, ErrNotRequest, ErrMalformed, ErrTooLarge,
	ErrNoContentLength, ErrContentLength, ErrNoFrom, ErrFromNoHost, ErrFromBadHost, ErrNoTo, ErrToNoHost, ErrToBadHost, ErrNoCallID,
	ErrNoCSeq, ErrCSeqMethod, ErrToOtherService}, append(errDuplicate[:], errUnreadable[:]...)...)

func isRefusal(err error) bool {
	for _, r := range refusals {
		if err == r {
			return true
		}
	}
	return false
}

// FuzzSniff checks that Sniff never panics, never changes its input, only
// refuses with a known reason, and that a request it routes and the Watcher
// lets through is one sipgo reads whole, from the domain the Decision names.
func FuzzSniff(f *testing.F) {
	for _, fx := range loadFixtures(f) {
		f.Add(fx.client0) // each recorded client stream: a first request and what follows it
	}
	f.Add([]byte("\r\n\r\n" + request("REGISTER", alice, "l: 0\r\n\r\n")))                                       // keep-alive before the request
	f.Add([]byte(request("INVITE", "f: <sip:a@b.example>;tag=1\r\n", "l: 3\r\n\r\nabc")))                        // compact From and a body
	f.Add([]byte(request("INVITE", alice, "l: 3\r\nContent-Length: 4\r\n\r\nabcd")))                             // two Content-Lengths
	f.Add([]byte(request("INVITE", alice, "l: 9\r\n\r\nabc")))                                                   // cut in the body
	f.Add([]byte(request("INVITE", "From: <sip:a@>\r\n", "l: 0\r\n\r\n")))                                       // From without host
	f.Add([]byte(request("INVITE", "From: a\r\n x\r\n", "Content-Length:\r\n 0\r\n\r\n")))                       // folded lines
	f.Add([]byte("0 :00 SIP\r\nF:sip:0\r\n0\r\nContent-Length:0\r\n\r\n00"))                                     // routable, but a header without colon: the Watcher refuses it
	f.Add([]byte(request("INVITE", alice+"f: <sip:bob@example.com>;tag=2\r\n", "l: 0\r\n\r\n")))                 // two From, long and compact
	f.Add([]byte(request("INVITE", "From: <sip:a@example.com>;tag=1, <sip:b@example.com>\r\n", "l: 0\r\n\r\n"))) // a From list on one line
	f.Add([]byte(request("REGISTER", alice, "i: c2\r\nl: 0\r\n\r\n")))                                           // Call-ID twice
	f.Add([]byte(request("REGISTER", alice, "Max-Forwards: 70\r\nmax-forwards: 69\r\nl: 0\r\n\r\n")))            // Max-Forwards twice
	f.Add([]byte("SIP/2.0 200 OK\r\nl: 0\r\n\r\n"))                                                              // a response
	f.Add([]byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"))                                                 // HTTP
	f.Add([]byte("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"))                                                // TLS record header
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		d, err := new(Sniffer).Sniff(data, &proxy.ConnInfo{})
		if !bytes.Equal(in, data) {
			t.Fatal("Sniff modified its input")
		}
		if err != nil {
			if d != nil || !isRefusal(err) {
				t.Fatalf("got %+v, %v", d, err)
			}
			return
		}
		if d.Service == "" || d.Service != configs.FoldName(d.Service) || !validHost(d.Service) || d.Watcher == nil {
			t.Fatalf("decision %+v", d)
		}
		// Sniff has sipgo read only what routing needs; the Watcher judges
		// the whole request before it is forwarded, and may refuse it.
		msgs, _ := relayFrames(d.Watcher, proxy.FromClient, data)
		for len(msgs) > 0 && isKeepAlive(msgs[0]) {
			msgs = msgs[1:]
		}
		if len(msgs) == 0 {
			t.Fatal("the Watcher does not frame the request Sniff accepted")
		}
		if v := d.Watcher.Client(msgs[0]); v.Close || v.Reply != nil {
			return
		}
		// What passes carries each singleton header once, by a count
		// that shares no code with the package's.
		if name, n := mostRepeated(msgs[0]); n > 1 {
			t.Fatalf("forwarded with %d %s headers", n, name)
		}
		// What is forwarded is the request as sipgo's stream parser reads it.
		s := sipmsg.NewParser().NewSIPStream()
		s.Write(data)
		msg, _, perr := s.ParseNext()
		if perr != nil {
			t.Fatalf("sipgo cannot read the request Sniff accepted: %v", perr)
		}
		req, ok := msg.(*sipmsg.Request)
		if !ok || strings.ToLower(req.From().Address.Host) != d.Service {
			t.Fatalf("service %q, sipgo reads %v", d.Service, msg.From())
		}
	})
}

// FuzzFrame checks that framing a stream does not depend on how TCP cuts
// it: whole, and cut in two at any offset, it yields the same messages or
// the same refusal, and never panics.
func FuzzFrame(f *testing.F) {
	for _, fx := range loadFixtures(f) {
		f.Add(fx.client0, uint16(len(fx.client0)/2)) // a recorded client stream, cut in its middle
		f.Add(fx.target0, uint16(7))                 // a recorded target stream, cut in the first status line
	}
	f.Add([]byte("\r\n\r\n\r\nSIP/2.0 200 OK\r\nl: 0\r\n\r\n"), uint16(3))          // keep-alives around a cut CRLF
	f.Add([]byte(request("INVITE", alice, "l: 4\r\n\r\nabcd")+"\r\n"), uint16(100)) // body then a pong
	f.Add([]byte(request("INVITE", alice, "l: 99999\r\n\r\n")), uint16(20))         // length past the cap
	f.Add([]byte("\r\r\n"), uint16(1))                                              // bare CR
	f.Fuzz(func(t *testing.T, stream []byte, cut uint16) {
		// A framer follows one stream: each run gets a fresh one.
		first := []byte(request("REGISTER", alice, "l: 0\r\n\r\n"))
		_, w := newWatcher(t, first, nil)
		whole, werr := relayFrames(w, proxy.FromTarget, stream)
		at := int(cut) % (len(stream) + 1)
		_, w = newWatcher(t, first, nil)
		split, serr := relayFrames(w, proxy.FromTarget, stream, at)
		if !equal(whole, split) || werr != serr {
			t.Fatalf("whole: %d messages, %v; cut at %d: %d messages, %v", len(whole), werr, at, len(split), serr)
		}
		if werr != nil && werr != errIncomplete && !isRefusal(werr) {
			t.Fatalf("error %v", werr)
		}
		for _, m := range whole {
			if len(m) > DefaultMaxMessage {
				t.Fatalf("a %d-byte message passed the cap", len(m))
			}
		}
	})
}
