package http

import (
	"fmt"
	"io"
	"net"
	stdhttp "net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// The target connection of a client's request is kept for the client's
// next one (keep, takeKept, unkeep): these tests count the liveness peeks
// through the pool's counters.

// pool is the pool of the gate's current generation.
func (g *gate) pool() *pool { return g.h.current.Load().pool }

// idleTo counts the idle connections in p to 127.0.0.1:port.
func (p *pool) idleTo(port string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for key, list := range p.idle {
		if key.addr == net.JoinHostPort("127.0.0.1", port) {
			n += len(list)
		}
	}
	return n
}

// waitIdle waits until p holds want idle connections to port.
func waitIdle(t *testing.T, p *pool, port string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.idleTo(port) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle target connections in the pool, want %d", p.idleTo(port), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestH1SameClientKeepsItsTargetConnection(t *testing.T) {
	echo := newEcho(t)
	g := startGate(t, testpki.NewCA(t, "test"), fmt.Sprintf(echoSvc, echo.port()), "")
	p := g.pool()
	a := g.raw(t)
	// Pipelined, so that each next request is there at once (the client
	// is not quiet in between).
	a.send(strings.Repeat("GET /fixed HTTP/1.1\r\nHost: hq.example.com\r\n\r\n", 3))
	for i := range 3 {
		if _, body := a.read("GET"); body != "fixed" {
			t.Fatalf("request %d: %q", i, body)
		}
	}
	if n, c := p.peeks.Load(), echo.conns.Load(); n != 0 || c != 1 {
		t.Fatalf("3 requests of one client: %d liveness peeks, %d target connections; want 0 and 1", n, c)
	}
	// A POST could not be sent again if the kept connection had been
	// closed by the target meanwhile: it is still checked.
	a.send("GET /fixed HTTP/1.1\r\nHost: hq.example.com\r\n\r\nPOST /echo HTTP/1.1\r\nHost: hq.example.com\r\nContent-Length: 2\r\n\r\nhi")
	if _, body := a.read("GET"); body != "fixed" {
		t.Fatal(body)
	}
	if _, body := a.read("POST"); !strings.HasSuffix(body, "body=hi") {
		t.Fatal(body)
	}
	if n, r := p.peeks.Load(), p.refused.Load(); n != 1 || r != 0 {
		t.Fatalf("a POST on the kept connection: %d peeks, %d refused; want 1 and 0", n, r)
	}
	// The client goes quiet: its loop parks, and the connection goes back
	// to the pool, where another client's request takes it after a peek.
	waitIdle(t, p, echo.port(), 1)
	b := g.raw(t)
	b.send("GET /fixed HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
	if _, body := b.read("GET"); body != "fixed" {
		t.Fatal(body)
	}
	if n, c := p.peeks.Load(), echo.conns.Load(); n != 2 || c != 1 {
		t.Fatalf("another client's request: %d peeks, %d target connections; want 2 and 1", n, c)
	}
}

// A kept connection is for the target the last request went to: a request
// that routes elsewhere gets a connection to its own target, and the kept
// one goes back to the pool.
func TestH1KeptConnectionFollowsTheRoute(t *testing.T) {
	echo := newEcho(t)
	other := httptest.NewServer(stdhttp.HandlerFunc(func(w stdhttp.ResponseWriter, r *stdhttp.Request) {
		io.WriteString(w, "other")
	}))
	t.Cleanup(other.Close)
	_, otherPort, _ := net.SplitHostPort(other.Listener.Addr().String())
	g := startGate(t, testpki.NewCA(t, "test"), fmt.Sprintf(echoSvc, echo.port())+
		"\n  - name: other.example.com\n    target: 127.0.0.1\n    ports: {http: "+otherPort+"}", "")
	p := g.pool()
	a := g.raw(t)
	a.send("GET /fixed HTTP/1.1\r\nHost: hq.example.com\r\n\r\n" +
		"GET /fixed HTTP/1.1\r\nHost: other.example.com\r\n\r\n" +
		"GET /fixed HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
	for i, want := range []string{"fixed", "other", "fixed"} {
		if _, body := a.read("GET"); body != want {
			t.Fatalf("request %d: %q, want %q", i, body, want)
		}
	}
	// The third request found hq's connection in the pool (peeked), where
	// the second had put it.
	if n, c := p.peeks.Load(), echo.conns.Load(); n != 1 || c != 1 {
		t.Fatalf("%d peeks, %d connections to hq's target; want 1 and 1", n, c)
	}
}

// Bytes a target sends unasked after an answer never reach another client:
// a kept connection that crosses to another client goes through the pool,
// whose peek finds them and closes it.
func TestH1KeptConnectionCrossingClientsIsPeeked(t *testing.T) {
	sendLate, sent := make(chan struct{}), make(chan struct{})
	var once atomic.Bool // the first answer of all, on the first connection
	port := misbehaving(t, func(n int, c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		if !once.CompareAndSwap(false, true) {
			return
		}
		select {
		case <-sendLate:
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL")
			close(sent)
		case <-time.After(10 * time.Second):
		}
	})
	g := startGate(t, testpki.NewCA(t, "test"), fmt.Sprintf(echoSvc, port), "")
	p := g.pool()
	a := g.raw(t)
	a.send("GET /a HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
	if _, body := a.read("GET"); body != "ok" {
		t.Fatal(body)
	}
	a.c.Close() // the client goes away: its kept connection goes to the pool
	waitIdle(t, p, port, 1)
	close(sendLate)
	<-sent
	time.Sleep(50 * time.Millisecond) // on loopback, the bytes are there already
	b := g.raw(t)
	b.send("GET /b HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
	if _, body := b.read("GET"); body != "ok" {
		t.Fatalf("the second client got %q", body)
	}
	if n, r := p.peeks.Load(), p.refused.Load(); n != 1 || r != 1 {
		t.Fatalf("%d peeks, %d refused; want the pooled connection peeked and refused", n, r)
	}
}

// On one P the request loop yields before the target's answer, which it
// would not find yet (yieldBeforeRead); the answers are the same.
func TestH1KeepAliveOnOneP(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	echo := newEcho(t)
	g := startGate(t, testpki.NewCA(t, "test"), fmt.Sprintf(echoSvc, echo.port()), "")
	a := g.raw(t)
	for i := range 20 {
		a.send("GET /fixed HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
		if _, body := a.read("GET"); body != "fixed" {
			t.Fatalf("request %d: %q", i, body)
		}
	}
	a.send("POST /echo HTTP/1.1\r\nHost: hq.example.com\r\nContent-Length: 2\r\n\r\nhi")
	if _, body := a.read("POST"); !strings.HasSuffix(body, "body=hi") {
		t.Fatal(body)
	}
	gen := g.h.current.Load()
	gen.mu.Lock()
	yielding := 0
	for c := range gen.conns {
		if c.yield {
			yielding++
		}
	}
	gen.mu.Unlock()
	if yielding != 1 {
		t.Fatalf("%d request loops yield on one P, want 1", yielding)
	}
}
