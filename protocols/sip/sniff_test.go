package sip

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// TestSniffFixtures sniffs the first request of every recorded client
// stream at every length: too short is ErrNeedMore, the whole request (or
// more: pipelined requests) gives the Decision.
func TestSniffFixtures(t *testing.T) {
	for _, f := range loadFixtures(t) {
		t.Run(f.name, func(t *testing.T) {
			_, w := newWatcher(t, f.client0, nil)
			n, err := w.Frame(proxy.FromClient, f.client0)
			if err != nil {
				t.Fatal(err)
			}
			for l := 0; l < n; l++ {
				if d, err := new(Sniffer).Sniff(f.client0[:l], nil); err != proxy.ErrNeedMore {
					t.Fatalf("first %d of %d bytes: %v, %v", l, n, d, err)
				}
			}
			for _, l := range []int{n, len(f.client0)} {
				d, err := new(Sniffer).Sniff(f.client0[:l], nil)
				if err != nil {
					t.Fatalf("first %d bytes: %v", l, err)
				}
				// Without a client certificate there is no identity to vouch for.
				if d.Service != f.service || d.Identity != "" || d.Watcher == nil || d.Reply != nil || d.UpgradeTLS {
					t.Fatalf("first %d bytes: %+v", l, d)
				}
			}
		})
	}
}

// request builds a request from the From line from. Its To is the From
// address for a REGISTER (a phone registering itself), else the PBX.
func request(method, from string, extra ...string) string {
	return method + " sip:pbx@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK.1\r\n" +
		from +
		toLine(method, from) +
		"Call-ID: c1\r\n" +
		"CSeq: 1 " + method + "\r\n" +
		strings.Join(extra, "")
}

func TestSniff(t *testing.T) {
	const from = "From: \"Alice\" <sip:alice@Branch.Example.COM:5061;transport=tls>;tag=1\r\n"
	for _, tc := range []struct {
		name              string
		in                string
		service, identity string
	}{
		{"REGISTER", request("REGISTER", from, "l: 0\r\n\r\n"), "branch.example.com", ""},
		{"INVITE", request("INVITE", from, "Content-Length: 4\r\n\r\nv=0\n"), "branch.example.com", ""},
		{"compact From", request("REGISTER", "f: sip:carol@example.org\r\n", "l: 0\r\n\r\n"), "example.org", ""},
		{"compact forms", "REGISTER sip:example.org SIP/2.0\r\nv: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK.1\r\n" +
			"f: <sip:carol@example.org>;tag=1\r\nt: <sip:carol@example.org>\r\ni: c1\r\nCSeq: 1 REGISTER\r\nl: 0\r\n\r\n", "example.org", ""},
		{"From without user", request("OPTIONS", "From: <sip:example.net>;tag=1\r\n", "l: 0\r\n\r\n"), "example.net", ""},
		{"keep-alives first", "\r\n\r\n\r\n" + request("REGISTER", from, "l: 0\r\n\r\n"), "branch.example.com", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			d, err := new(Sniffer).Sniff(in, &proxy.ConnInfo{})
			if err != nil {
				t.Fatal(err)
			}
			if d.Service != tc.service || d.Identity != tc.identity {
				t.Fatalf("got service %q identity %q", d.Service, d.Identity)
			}
			if string(in) != tc.in {
				t.Fatal("Sniff modified its input")
			}
		})
	}
}

// TestSniffRefuses feeds bad first requests: each is refused with a short
// reason, or, when it is merely unfinished, waited for.
func TestSniffRefuses(t *testing.T) {
	const from = "From: <sip:alice@example.com>;tag=1\r\n"
	for _, tc := range []struct {
		name string
		in   string
		err  error
	}{
		{"garbage", "hello, world\r\n\r\n", ErrNotSIP},
		{"binary junk", "\x00\x01\x02\x03\xff\xfe", ErrNotSIP},
		{"TLS on the plain port", string(clientHello(t)), ErrNotSIP},
		{"HTTP", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", ErrNotSIP},
		{"HTTP, first line only", "GET /PBX0/ HTTP/1.1\r\n", ErrNotSIP},
		{"response", "SIP/2.0 200 OK\r\n" + from + "l: 0\r\n\r\n", ErrNotRequest},
		{"response, first line only", "SIP/2.0 200 OK\r\n", ErrNotRequest},
		{"no From", request("REGISTER", "", "l: 0\r\n\r\n"), ErrNoFrom},
		{"From without host", request("REGISTER", "From: <sip:alice@>;tag=1\r\n", "l: 0\r\n\r\n"), ErrFromNoHost},
		{"tel From", request("INVITE", "From: <tel:+4930123>;tag=1\r\n", "l: 0\r\n\r\n"), ErrFromNoHost},
		{"From not a URI", request("INVITE", "From: alice\r\n", "l: 0\r\n\r\n"), errUnreadable[hFrom]},
		{"From host not ASCII", request("INVITE", "From: <sip:alice@\u212Aiosk.example.com>;tag=1\r\n", "l: 0\r\n\r\n"), ErrFromBadHost},
		{"From host an invalid byte", request("INVITE", "From: <sip:alice@\xea>;tag=1\r\n", "l: 0\r\n\r\n"), ErrFromBadHost}, // found by FuzzSniff
		{"From host with an empty label", request("INVITE", "From: <sip:alice@example..com>;tag=1\r\n", "l: 0\r\n\r\n"), ErrFromBadHost},
		{"From host a bracketed IPv4", request("INVITE", "From: <sip:alice@[10.0.0.1]>;tag=1\r\n", "l: 0\r\n\r\n"), ErrFromBadHost},
		{"To host malformed", strings.Replace(request("INVITE", from, "l: 0\r\n\r\n"), "To: <sip:pbx@example.com>", "To: <sip:pbx@-example.com>", 1), ErrToBadHost},
		{"bad CSeq", strings.Replace(request("REGISTER", from, "l: 0\r\n\r\n"), "CSeq: 1", "CSeq: x", 1), errUnreadable[hCSeq]},
		{"no To", strings.Replace(request("INVITE", from, "l: 0\r\n\r\n"), "To: <sip:pbx@example.com>\r\n", "", 1), ErrNoTo},
		{"no Call-ID", strings.Replace(request("INVITE", from, "l: 0\r\n\r\n"), "Call-ID: c1\r\n", "", 1), ErrNoCallID},
		{"no CSeq", strings.Replace(request("INVITE", from, "l: 0\r\n\r\n"), "CSeq: 1 INVITE\r\n", "", 1), ErrNoCSeq},
		{"CSeq of another method", strings.Replace(request("INVITE", from, "l: 0\r\n\r\n"), "CSeq: 1 INVITE", "CSeq: 1 ACK", 1), ErrCSeqMethod},
		{"lowercase method", request("register", from, "l: 0\r\n\r\n"), ErrCSeqMethod}, // RFC 3261 §7.1: methods are case-sensitive
		{"REGISTER for another domain", strings.Replace(request("REGISTER", from, "l: 0\r\n\r\n"), "To: <sip:alice@example.com>",
			"To: <sip:alice@example.org>", 1), ErrToOtherService},
		{"no Content-Length", request("REGISTER", from, "\r\n"), ErrNoContentLength},
		{"Content-Length not a number", request("REGISTER", from, "l: 0x10\r\n\r\n"), ErrContentLength},
		{"two Content-Lengths", request("INVITE", from, "l: 1\r\nContent-Length: 2\r\n\r\nab"), ErrContentLength},
		{"Content-Length past the cap", request("INVITE", from, "l: 4294967296\r\n\r\n"), ErrTooLarge},
		{"1 MB of headers", request("REGISTER", from, strings.Repeat("X-Pad: "+strings.Repeat("a", 1017)+"\r\n", 1024)), ErrTooLarge},
		{"cut in the middle", request("INVITE", from, "l: 100\r\n\r\nv=0\r\n"), proxy.ErrNeedMore},
		{"cut in the header block", request("INVITE", from)[:90], proxy.ErrNeedMore},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := new(Sniffer).Sniff([]byte(tc.in), &proxy.ConnInfo{})
			if !errors.Is(err, tc.err) || d != nil {
				t.Fatalf("got %+v, %v; want %v", d, err, tc.err)
			}
		})
	}
}

// TestSniffLeavesToWatcher: Sniff has sipgo parse only what routing
// needs; a request malformed elsewhere is refused by the Watcher, which
// judges the first request too, before it is forwarded.
func TestSniffLeavesToWatcher(t *testing.T) {
	const from = "From: <sip:alice@example.com>;tag=1\r\n"
	for _, in := range []string{
		request("REGISTER", from, "X-A: a\rb\r\nl: 0\r\n\r\n"),    // bare CR
		request("REGISTER", from, "Via: SIP/2.0\r\nl: 0\r\n\r\n"), // bad Via
	} {
		_, w := newWatcher(t, []byte(in), nil)
		if v := w.Client([]byte(in)); text(v.Refusal) != ErrMalformed.Error() || !v.Close {
			t.Errorf("%q: %+v", in, v)
		}
	}
}

func TestSniffMaxMessage(t *testing.T) {
	in := []byte(request("REGISTER", "From: <sip:alice@example.com>;tag=1\r\n", "X-Pad: 0123456789\r\nl: 0\r\n\r\n"))
	s := &Sniffer{MaxMessage: len(in)}
	if _, err := s.Sniff(in, nil); err != nil {
		t.Fatalf("at the cap: %v", err)
	}
	s.MaxMessage--
	if _, err := s.Sniff(in, nil); err != ErrTooLarge {
		t.Fatalf("over the cap: %v", err)
	}
}

// toLine is request's To line for method and From line from.
func toLine(method, from string) string {
	if method != "REGISTER" || from == "" {
		return "To: <sip:pbx@example.com>\r\n"
	}
	_, v, _ := strings.Cut(strings.TrimSuffix(from, "\r\n"), ":")
	v, _, _ = strings.Cut(v, ";tag=")
	return "To:" + v + "\r\n"
}

// clientHello returns the first bytes crypto/tls sends as a client.
func clientHello(t *testing.T) []byte {
	t.Helper()
	c, s := net.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tls.Client(c, &tls.Config{ServerName: "example.com"}).Handshake() // fails once s is closed
	}()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(s, buf); err != nil {
		t.Fatal(err)
	}
	s.Close()
	wg.Wait()
	if buf[0] != 0x16 { // a TLS handshake record
		t.Fatalf("not a ClientHello: % x", buf)
	}
	return buf
}

// The message cap is the connection's (limits.first_packet_max of the
// configuration it was accepted under) unless the Sniffer sets its own, so
// a reload that lowers it holds for new connections.
func TestSniffCapFollowsConnection(t *testing.T) {
	const from = "From: <sip:alice@example.com>;tag=1\r\n"
	big := []byte(request("REGISTER", from, "X-Pad: "+strings.Repeat("a", 8000)+"\r\nl: 0\r\n\r\n"))
	if _, err := new(Sniffer).Sniff(big, &proxy.ConnInfo{MaxMessage: 64 << 10}); err != nil {
		t.Fatalf("under a 64 KiB cap: %v", err)
	}
	if _, err := new(Sniffer).Sniff(big, &proxy.ConnInfo{MaxMessage: 4 << 10}); err == nil {
		t.Fatal("an 8 KB message passed a 4 KiB cap")
	}
	if _, err := (&Sniffer{MaxMessage: 64 << 10}).Sniff(big, &proxy.ConnInfo{MaxMessage: 4 << 10}); err != nil {
		t.Fatalf("the Sniffer's own cap comes first: %v", err)
	}
}
