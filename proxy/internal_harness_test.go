package proxy

// The harness of the internal tests (listen.any, TLS for real clients,
// PROXY protocol), which exercise unexported parts and so cannot use
// proxy/proxytest (it imports this package).

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
)

// recordingGuard is a Guard that blocks a fixed set and records events.
type recordingGuard struct {
	mu      sync.Mutex
	blocked map[netip.Addr]bool
	events  []blacklist.Event
	asked   atomic.Int64
}

func (g *recordingGuard) Blocked(ip netip.Addr) bool {
	g.asked.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.blocked[ip]
}

func (g *recordingGuard) Report(ev blacklist.Event) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.events = append(g.events, ev)
}

func (g *recordingGuard) reasons() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var rs []string
	for _, e := range g.events {
		rs = append(rs, e.Service+": "+e.Reason)
	}
	return rs
}

// waitReason waits until an event with reason (a refusal's Text) has been
// reported.
func (g *recordingGuard) waitReason(t *testing.T, reason string) blacklist.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		g.mu.Lock()
		for _, e := range g.events {
			if e.Reason == reason {
				g.mu.Unlock()
				return e
			}
		}
		g.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no event %q; got %q", reason, g.reasons())
	return blacklist.Event{}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int { return testpeer.FreePort(t) }

// target is a real TCP server that runs a per-connection script.
type target struct {
	ln    net.Listener
	wg    sync.WaitGroup
	serve func(c net.Conn)
}

func newTarget(t testing.TB, serve func(c net.Conn)) *target {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg := &target{ln: ln, serve: serve}
	tg.wg.Add(1)
	go func() {
		defer tg.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tg.wg.Add(1)
			go func() {
				defer tg.wg.Done()
				defer c.Close()
				tg.serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); tg.wg.Wait() })
	return tg
}

func (tg *target) port() int { return tg.ln.Addr().(*net.TCPAddr).Port }

// dialFrom connects to addr from the loopback address src (127.0.0.x).
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// cnSniffer routes everything to one service and records what the
// listener told it about the client.
type cnSniffer struct{ infos chan ConnInfo }

func (s cnSniffer) Sniff(first []byte, info *ConnInfo) (*Decision, error) {
	s.infos <- *info
	return &Decision{Service: "pbx.example.com"}, nil
}
