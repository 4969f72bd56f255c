package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/proxytest"
)

// relayGoroutines counts the goroutines running relay code.
func relayGoroutines() int {
	buf := make([]byte, 4<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "proxy.(*relay)") || strings.Contains(g, "proxy.(*side)") {
			n++
		}
	}
	return n
}

// waitRelayGoroutines waits until at most want goroutines run relay code.
func waitRelayGoroutines(t *testing.T, want int, what string) {
	t.Helper()
	deadline := time.Now().Add(proxytest.Wait)
	for relayGoroutines() > want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d goroutines in the relay, want at most %d", what, relayGoroutines(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestQuietFramedRelaysHoldNoGoroutine: a registered phone's connection is
// quiet for minutes; while it is, neither of its relay directions keeps a
// goroutine (and its stack). Bytes from either side start one again, over
// plain TCP and over TLS.
func TestQuietFramedRelaysHoldNoGoroutine(t *testing.T) {
	ca := testpki.NewCA(t, "server")
	cert := ca.Server("pbx.example.com")
	pushed := make(chan net.Conn, 1)
	tg := newTarget(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if line == "push me\n" {
				pushed <- c // the test writes from the target's side itself
				continue
			}
			fmt.Fprintf(c, "echo: %s", line)
		}
	})
	sip, sips := freePort(t), freePort(t)
	yaml := fmt.Sprintf(`listen: {sip: "127.0.0.1:%d", sips: "127.0.0.1:%d"}
tls:
  certificates: [{cert: %s, key: %s}]
services:
  - {name: pbx.example.com, target: 127.0.0.1, ports: {sip: %d}}
`, sip, sips, cert.CertFile, cert.KeyFile, tg.port())
	h := proxy.Stream(&lineSniffer{watch: true})
	srv := proxytest.NewServer(t, yaml, map[string]proxy.Handler{"sip": h, "sips": h}, nil)

	const n = 10
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	for i := range conns {
		src := fmt.Sprintf("127.0.0.%d", 2+i)
		var c net.Conn
		if i%2 == 0 {
			c = proxytest.DialFrom(t, src, srv.Addr("sip"))
		} else {
			c = tls.Client(proxytest.DialFrom(t, src, srv.Addr("sips")),
				&tls.Config{InsecureSkipVerify: true, ServerName: "pbx.example.com"})
		}
		conns[i] = c
		readers[i] = bufio.NewReader(c)
		// Two messages in one write: the second is still in crypto/tls's
		// buffer or the socket when the first is done.
		fmt.Fprint(c, "HELLO pbx.example.com\nfirst\nsecond\n")
		for _, want := range []string{"HELLO pbx.example.com\n", "first\n", "second\n"} {
			if line, err := readers[i].ReadString('\n'); err != nil || line != "echo: "+want {
				t.Fatalf("conn %d: %q, %v", i, line, err)
			}
		}
	}
	waitRelayGoroutines(t, 0, "quiet connections")

	for i, c := range conns { // the client speaks again
		fmt.Fprintf(c, "again %d\n", i)
		if line, err := readers[i].ReadString('\n'); err != nil || line != fmt.Sprintf("echo: again %d\n", i) {
			t.Fatalf("conn %d after the quiet spell: %q, %v", i, line, err)
		}
	}
	// The target speaks first (a PBX's INVITE to a registered phone).
	fmt.Fprint(conns[1], "push me\n")
	tc := <-pushed
	waitRelayGoroutines(t, 0, "quiet again")
	fmt.Fprint(tc, "INVITE\n")
	if line, err := readers[1].ReadString('\n'); err != nil || line != "INVITE\n" {
		t.Fatalf("target's message to a quiet connection: %q, %v", line, err)
	}
	if got := len(srv.Conns()); got != n {
		t.Fatalf("%d connections listed, want %d", got, n)
	}

	// Shutdown ends parked relays at once.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	waitRelayGoroutines(t, 0, "before the shutdown")
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(proxytest.Wait))
		if _, err := io.ReadAll(readers[i]); err != nil && i%2 == 0 {
			t.Fatalf("conn %d survived the shutdown: %v", i, err)
		}
	}
}

// TestDropEndsAParkedRelay: the admin UI's Drop closes a quiet framed
// connection, whose directions wait on the poller, not on its socket.
func TestDropEndsAParkedRelay(t *testing.T) {
	tg := newTarget(t, echoLines)
	srv, addr := startProxy(t, svcYAML("pbx.example.com", tg.port(), ""), proxy.Stream(&lineSniffer{watch: true}), nil)
	c := proxytest.DialFrom(t, "127.0.0.2", addr)
	fmt.Fprint(c, "HELLO pbx.example.com\n")
	r := bufio.NewReader(c)
	r.ReadString('\n')
	waitRelayGoroutines(t, 0, "quiet connection")
	list := srv.Conns()
	if len(list) != 1 || !srv.Drop(list[0].ID) {
		t.Fatalf("conns: %+v", list)
	}
	if _, err := io.ReadAll(r); err != nil {
		t.Fatalf("dropped connection still open: %v", err)
	}
	deadline := time.Now().Add(proxytest.Wait)
	for len(srv.Conns()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("conns after drop: %+v", srv.Conns())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
