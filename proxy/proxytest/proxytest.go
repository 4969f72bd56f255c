// Package proxytest provides utilities for tests of the listener layer and
// of the protocols behind it, as net/http/httptest does for net/http: a
// Guard that records what the proxy reports (NewBlacklist puts one in
// front of the real blacklist), a Server that runs the real proxy.Server
// on loopback for a test, and DialFrom for clients of distinct addresses.
//
// Test certificates come from internal/testpki; real third-party peers
// from internal/testpeer.
package proxytest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// Wait is how long the Wait methods wait before they give up: long enough
// for a loaded machine, short enough that a missing event fails the test.
const Wait = 5 * time.Second

// A Guard is a proxy.Guard (and a turn.Guard) that records every event
// reported to it. It blocks the addresses given to Block; with Next set it
// also asks Next, and passes every event on to Next after recording it, so
// that a test can watch the real blacklist at work. The zero Guard blocks
// nothing. A Guard is safe for concurrent use.
type Guard struct {
	// Next, when not nil, is asked about every address the Guard does not
	// block itself and hears every event; set it before first use.
	Next proxy.Guard

	asked atomic.Int64

	mu      sync.Mutex // guards the fields below
	blocked map[netip.Addr]bool
	events  []blacklist.Event
}

// Block makes Blocked report ips as blocked from now on.
func (g *Guard) Block(ips ...netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.blocked == nil {
		g.blocked = make(map[netip.Addr]bool)
	}
	for _, ip := range ips {
		g.blocked[ip] = true
	}
}

// Blocked reports whether ip was given to Block, or else whether Next
// blocks it; every call is counted by Asked.
func (g *Guard) Blocked(ip netip.Addr) bool {
	g.asked.Add(1)
	g.mu.Lock()
	blocked := g.blocked[ip]
	g.mu.Unlock()
	if !blocked && g.Next != nil {
		return g.Next.Blocked(ip)
	}
	return blocked
}

// Asked returns how many times Blocked has been called.
func (g *Guard) Asked() int64 { return g.asked.Load() }

// Report records ev, then passes it on to Next.
func (g *Guard) Report(ev blacklist.Event) {
	g.mu.Lock()
	g.events = append(g.events, ev)
	g.mu.Unlock()
	if g.Next != nil {
		g.Next.Report(ev)
	}
}

// Events returns a copy of the events reported so far, in order.
func (g *Guard) Events() []blacklist.Event {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]blacklist.Event(nil), g.events...)
}

// WaitEvents waits up to Wait until at least n events have been reported
// and returns the events then: a relay may report just after it has
// forwarded the reply the test already has. The caller compares them with
// what it wants; fewer than n is for it to judge too.
func (g *Guard) WaitEvents(n int) []blacklist.Event {
	var evs []blacklist.Event
	for deadline := time.Now().Add(Wait); ; time.Sleep(5 * time.Millisecond) {
		if evs = g.Events(); len(evs) >= n || time.Now().After(deadline) {
			return evs
		}
	}
}

// WaitFor waits up to Wait for an event that match accepts and returns
// the first one; when none comes the test fails, saying what was awaited
// (what) and listing every event.
func (g *Guard) WaitFor(t testing.TB, what string, match func(blacklist.Event) bool) blacklist.Event {
	t.Helper()
	for deadline := time.Now().Add(Wait); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, ev := range g.Events() {
			if match(ev) {
				return ev
			}
		}
	}
	var got []string
	for _, ev := range g.Events() {
		got = append(got, fmt.Sprintf("%s %s: %s", ev.Client, ev.Service, ev.Reason))
	}
	t.Fatalf("no event %s; got %q", what, got)
	return blacklist.Event{}
}

// WaitReason waits for an event whose Reason (a refusal's Text) is reason;
// see WaitFor.
func (g *Guard) WaitReason(t testing.TB, reason string) blacklist.Event {
	t.Helper()
	return g.WaitFor(t, fmt.Sprintf("with reason %q", reason), func(ev blacklist.Event) bool { return ev.Reason == reason })
}

// NewBlacklist returns a Guard in front of the real blacklist for cfg, for
// tests that watch clients being blocked. The list is closed when the test
// ends, after a Server started later has shut down.
func NewBlacklist(t testing.TB, cfg configs.Blacklist) *Guard {
	t.Helper()
	list, err := blacklist.New(cfg, blacklist.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { list.Close() })
	return &Guard{Next: list}
}

// A Server is a proxy.Server run for a test, with its configuration and
// its Guard.
type Server struct {
	*proxy.Server
	// Config is the parsed configuration the server started with.
	Config *configs.Config
	// Guard is the guard the server reports to.
	Guard *Guard
}

// NewServer parses yaml (a whole gatehouse configuration, whose listen
// addresses are on loopback) and runs a proxy.Server for it with handlers
// by listener name, reporting to guard (a new Guard when nil) and logging
// nowhere. The server is shut down when the test ends, and the test fails
// if the shutdown does; cleanups registered before NewServer run after it,
// so a blacklist the guard leads to may be closed by one.
func NewServer(t testing.TB, yaml string, handlers map[string]proxy.Handler, guard *Guard) *Server {
	t.Helper()
	cfg, err := configs.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if guard == nil {
		guard = &Guard{}
	}
	srv, err := proxy.NewServer(cfg, proxy.Options{
		Handlers: handlers,
		Guard:    guard,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &Server{Server: srv, Config: cfg, Guard: guard}
}

// Addr returns the address the listener called name listens on, as
// host:port.
func (s *Server) Addr(name string) string { return s.Server.Addr(name).String() }

// DialFrom connects to addr over TCP from the loopback address src
// (127.0.0.2, 127.0.0.3, ...: a distinct client for the per-client rules).
// The connection has a deadline of twice Wait and is closed when the test
// ends.
func DialFrom(t testing.TB, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: Wait}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(2 * Wait))
	return c
}
