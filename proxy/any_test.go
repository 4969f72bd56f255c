package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// seenConn is what a handler on listen.any was given.
type seenConn struct {
	typ, first string
	src        string // the client's address
	tls        *tls.ConnectionState
}

// firstSniffer records the type and the first bytes of each connection
// and routes it to pbx.example.com (whose target echoes).
type firstSniffer struct {
	seen chan seenConn
	need *atomic.Int64 // bytes to wait for before deciding
}

func (s firstSniffer) Sniff(first []byte, info *ConnInfo) (*Decision, error) {
	if int64(len(first)) < s.need.Load() {
		return nil, ErrNeedMore
	}
	s.seen <- seenConn{typ: info.Type.Name, first: string(first), tls: info.TLS, src: info.Client.Addr().String()}
	return &Decision{Service: "pbx.example.com"}, nil
}

// anyRig is a Server whose only listener is listen.any, with a recording
// stream handler for every type but http/https (ALPN is tested with a
// handler that only records).
type anyRig struct {
	srv   *Server
	addr  string
	guard *recordingGuard
	seen  chan seenConn
	need  atomic.Int64
}

func startAny(t *testing.T, extra string) *anyRig {
	t.Helper()
	ca := testpki.NewCA(t, "server")
	cert := ca.Server("pbx.example.com")
	tg := newTarget(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	yaml := fmt.Sprintf(`listen: {any: "127.0.0.1:%d"}
tls:
  certificates: [{cert: %s, key: %s}]
services:
  - name: pbx.example.com
    target: 127.0.0.1
    ports: {http: %[4]d, sip: %[4]d, ldap: %[4]d, h323: %[4]d}
    allow:
      networks: {ldap: [127.0.0.3]}
limits:
  first_packet_timeout: 500ms
%s`, freePort(t), cert.CertFile, cert.KeyFile, tg.port(), extra)
	cfg, err := configs.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	r := &anyRig{guard: &recordingGuard{}, seen: make(chan seenConn, 16)}
	h := Stream(firstSniffer{seen: r.seen, need: &r.need})
	alpn := alpnHandler{seen: r.seen, need: &r.need}
	handlers := map[string]Handler{"http": h, "https": alpn, "sip": h, "sips": h, "ldap": h, "ldaps": h, "h323": h, "h323s": h, "turn": readAll{seen: r.seen}, "turns": readAll{seen: r.seen}}
	r.srv, err = NewServer(cfg, Options{Handlers: handlers, Guard: r.guard, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.srv.Close() })
	r.addr = r.srv.Addr(configs.ListenAny).String()
	return r
}

// alpnHandler stands for the HTTP handler: it offers h2 and http/1.1 and
// records what it was given (through a Stream handler when it is HTTP/1).
type alpnHandler struct {
	seen chan seenConn
	need *atomic.Int64
}

func (a alpnHandler) NextProtos() []string { return []string{"h2", "http/1.1"} }
func (a alpnHandler) ServeConn(c *Conn) {
	if _, ok := c.Conn.(*tls.Conn); !ok {
		Stream(firstSniffer(a)).ServeConn(c)
		return
	}
	a.seen <- seenConn{typ: c.Info.Type.Name, tls: c.Info.TLS}
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("detect", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every protocol on the one port reaches its own type's handler with the
// bytes it sent, in plain and inside TLS.
func TestAnyRoutesEveryProtocol(t *testing.T) {
	r := startAny(t, "")
	cases := []struct{ file, plain, inTLS string }{
		{"curl-http.txt", "http", "https"},
		{"sip-register.txt", "sip", "sips"},
		{"sip-options.txt", "sip", "sips"},
		{"http-options.txt", "http", "https"},
		{"go-ldap-bind.ber", "ldap", "ldaps"},
		{"h323-rrq.tpkt", "h323", "h323s"},
		{"pion-stun-binding.bin", "turn", "turns"},
	}
	for _, tc := range cases {
		b := fixture(t, tc.file)
		r.need.Store(int64(len(b)))
		for _, secure := range []bool{false, true} {
			var c net.Conn = dialFrom(t, "127.0.0.3", r.addr)
			want := tc.plain
			if secure {
				tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: "pbx.example.com"})
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				c = tc
			}
			if secure {
				want = tc.inTLS
			}
			// A first packet in two writes: detection reads on until it decides.
			c.Write(b[:len(b)/2])
			time.Sleep(20 * time.Millisecond)
			c.Write(b[len(b)/2:])
			closeWrite(c)
			got := <-r.seen
			if got.typ != want || got.first != string(b) || (got.tls != nil) != secure {
				t.Errorf("%s (TLS %v): handler of %q, first %d bytes (want %q, %d bytes)", tc.file, secure, got.typ, len(got.first), want, len(b))
			}
			c.Close()
		}
	}
	if rs := r.guard.reasons(); len(rs) != 0 {
		t.Errorf("refusals: %q", rs)
	}
}

func closeWrite(c net.Conn) {
	switch c := c.(type) {
	case *tls.Conn:
		c.CloseWrite()
	case *net.TCPConn:
		c.CloseWrite()
	}
}

// readAll stands for the TURN server: it records the whole stream.
type readAll struct{ seen chan seenConn }

func (h readAll) ServeConn(c *Conn) {
	b, _ := io.ReadAll(c.Conn)
	h.seen <- seenConn{typ: c.Info.Type.Name, first: string(b), tls: c.Info.TLS}
}

// ALPN decides before any byte inside TLS: HTTP gets the https handler
// with the *tls.Conn (net/http's HTTP/2 needs it); protocols not served on
// listen.any fail the handshake, reported once.
func TestAnyALPN(t *testing.T) {
	r := startAny(t, "")
	for _, protos := range [][]string{{"h2", "http/1.1"}, {"http/1.1"}} {
		c := tls.Client(dialFrom(t, "127.0.0.2", r.addr), &tls.Config{InsecureSkipVerify: true, NextProtos: protos})
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		got := <-r.seen
		if got.typ != "https" || got.tls == nil || got.tls.NegotiatedProtocol != protos[0] {
			t.Errorf("ALPN %v: %+v", protos, got)
		}
		c.Close()
	}
	c := tls.Client(dialFrom(t, "127.0.0.4", r.addr), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"acme-tls/1"}})
	if err := c.Handshake(); err == nil {
		t.Fatal("acme-tls/1 handshake succeeded, but ACME is not served")
	}
	r.guard.waitReason(t, string(ReasonTLS))
}

// eventsFrom counts the events reported for client ip.
func (g *recordingGuard) eventsFrom(ip string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, e := range g.events {
		if e.Client.String() == ip {
			out = append(out, e.Reason)
		}
	}
	return out
}

// waitClosed reads c until gatehouse closes it and returns what it sent.
func waitClosed(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && !isReset(err) {
		t.Fatalf("not closed by gatehouse: %v", err)
	}
	return string(b)
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "read" && !os.IsTimeout(err)
}

// Bad input on the shared port is refused, with nothing sent back, and
// counted once per connection: bytes of no protocol, a client that sends
// nothing, a byte and then nothing (a byte a minute), a ClientHello in
// 1-byte records trickled past the deadline, and a type the service
// allows only from other networks.
func TestAnyBadInput(t *testing.T) {
	r := startAny(t, "")
	r.need.Store(1)
	hello := fixture(t, "go-clienthello.bin")[5:] // the handshake message
	for _, tc := range []struct {
		name, src string
		send      func(c net.Conn)
		want      string
	}{
		{"no protocol", "127.0.0.2", func(c net.Conn) { c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n")) }, "wrong protocol (no protocol of listen.any)"},
		{"nothing", "127.0.0.4", func(net.Conn) {}, "first packet timeout (listen.any)"},
		{"a byte a minute", "127.0.0.5", func(c net.Conn) { c.Write([]byte("R")) }, "first packet timeout (listen.any)"},
		{"closed at once", "127.0.0.6", func(c net.Conn) { closeWrite(c) }, "closed before first packet (listen.any)"},
		{"ClientHello in 1-byte records", "127.0.0.7", func(c net.Conn) {
			for _, b := range hello {
				if _, err := c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x01, b}); err != nil {
					return // cut at the deadline
				}
				time.Sleep(5 * time.Millisecond)
			}
		}, "tls handshake failed"},
		{"network not allowed for ldap", "127.0.0.8", func(c net.Conn) { c.Write(fixture(t, "go-ldap-bind.ber")) }, "network not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFrom(t, tc.src, r.addr)
			go tc.send(c)
			if got := waitClosed(t, c); got != "" {
				t.Errorf("gatehouse answered %q", got)
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(r.guard.eventsFrom(tc.src)) == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond) // a second event would come now
			if got := r.guard.eventsFrom(tc.src); len(got) != 1 || got[0] != tc.want {
				t.Errorf("events %q, want one %q", got, tc.want)
			}
		})
	}
	// The LDAP bind from an allowed network goes through.
	c := dialFrom(t, "127.0.0.3", r.addr)
	c.Write(fixture(t, "go-ldap-bind.ber"))
	if got := <-r.seen; got.src != "127.0.0.8" {
		t.Fatalf("the refused LDAP bind's sniff: %+v", got)
	}
	if got := <-r.seen; got.typ != "ldap" || got.src != "127.0.0.3" {
		t.Errorf("allowed LDAP: %+v", got)
	}
}
