package sip

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
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
				if d.Service != f.service || d.Identity != f.identity || d.Watcher == nil || d.Reply != nil || d.UpgradeTLS {
					t.Fatalf("first %d bytes: %+v", l, d)
				}
			}
		})
	}
}

func request(method, from string, extra ...string) string {
	return method + " sip:pbx@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK.1\r\n" +
		from +
		"To: <sip:pbx@example.com>\r\n" +
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
		{"REGISTER", request("REGISTER", from, "l: 0\r\n\r\n"), "branch.example.com", "alice"},
		{"INVITE", request("INVITE", from, "Content-Length: 4\r\n\r\nv=0\n"), "branch.example.com", ""},
		{"compact From", request("REGISTER", "f: sip:carol@example.org\r\n", "l: 0\r\n\r\n"), "example.org", "carol"},
		{"From without user", request("OPTIONS", "From: <sip:example.net>;tag=1\r\n", "l: 0\r\n\r\n"), "example.net", ""},
		{"keep-alives first", "\r\n\r\n\r\n" + request("REGISTER", from, "l: 0\r\n\r\n"), "branch.example.com", "alice"},
		{"lowercase method", request("register", from, "l: 0\r\n\r\n"), "branch.example.com", "alice"},
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
		{"From not a URI", request("REGISTER", "From: alice\r\n", "l: 0\r\n\r\n"), ErrMalformed},
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
		strings.Replace(request("REGISTER", from, "l: 0\r\n\r\n"), "CSeq: 1", "CSeq: x", 1), // bad CSeq
		request("REGISTER", from, "X-A: a\rb\r\nl: 0\r\n\r\n"),                              // bare CR
		request("REGISTER", from, "Via: SIP/2.0\r\nl: 0\r\n\r\n"),                           // bad Via
	} {
		_, w := newWatcher(t, []byte(in), nil)
		if v := w.Client([]byte(in)); v.Reason != ErrMalformed.Error() || !v.Close {
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

// TestSniffPinsIdentity checks the identity binding that check_certificate
// relies on: once a certificate vouched for the registering user, no other
// user may register on the connection.
func TestSniffPinsIdentity(t *testing.T) {
	first := []byte(request("REGISTER", "From: <sip:alice@example.com>;tag=1\r\n", "l: 0\r\n\r\n"))
	other := []byte(request("REGISTER", "From: <sip:mallory@example.com>;tag=2\r\n", "l: 0\r\n\r\n"))
	client := netip.MustParseAddrPort("192.0.2.7:40000")
	for _, tc := range []struct {
		cn      string
		refused bool
	}{{"alice", true}, {"", false}, {"bob", false}} {
		_, w := newWatcher(t, first, &proxy.ConnInfo{Client: client, VerifiedCN: tc.cn})
		if v := w.Client(first); v.Reply != nil || v.Reason != "" {
			t.Fatalf("CN %q: first REGISTER refused: %s", tc.cn, v.Reason)
		}
		v := w.Client(other)
		if (v.Reply != nil) != tc.refused || tc.refused && v.Reason != reasonOtherUser {
			t.Fatalf("CN %q: REGISTER for another user: %+v", tc.cn, v)
		}
		if tc.refused && !bytes.HasPrefix(v.Reply, []byte("SIP/2.0 403 ")) {
			t.Fatalf("CN %q: reply %q", tc.cn, v.Reply)
		}
	}
}
