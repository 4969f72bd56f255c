package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
)

// lineSniffer is a minimal stream protocol for testing the listener layer:
// the first line is "HELLO <service> [identity]". Its watcher frames lines
// both ways: a client line "DENY" is answered "NO" and dropped, "BAD" is
// forwarded but suspicious; a target line "REJECT" is a target rejection.
type lineSniffer struct {
	calls atomic.Int64
	watch bool
}

func (s *lineSniffer) Sniff(first []byte, info *ConnInfo) (*Decision, error) {
	s.calls.Add(1)
	i := bytes.IndexByte(first, '\n')
	if i < 0 {
		return nil, ErrNeedMore
	}
	f := strings.Fields(string(first[:i]))
	if len(f) < 2 || f[0] != "HELLO" {
		return nil, Refuse(ReasonProtocol, "not a HELLO", nil)
	}
	d := &Decision{Service: f[1]}
	if len(f) > 2 {
		d.Identity = f[2]
	}
	if s.watch {
		d.Watcher = lineWatcher{}
	}
	return d, nil
}

func (s *lineSniffer) RefusalReply(first []byte, r *Refusal) []byte {
	return []byte("REFUSED " + r.Text() + "\n")
}

type lineWatcher struct{}

func (lineWatcher) Frame(dir Direction, buf []byte) (int, error) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		return 0, ErrNeedMore
	}
	if i == 0 {
		return 0, fmt.Errorf("empty line")
	}
	return i + 1, nil
}

func (lineWatcher) Client(head []byte) Verdict {
	switch string(bytes.TrimSpace(head)) {
	case "DENY":
		return Verdict{Reply: []byte("NO\n"), Refusal: Refuse(ReasonURL, "denied line", nil)}
	case "BAD":
		return Verdict{Refusal: Refuse(ReasonUnreadable, "bad line", nil)}
	case "QUIT":
		return Verdict{Reply: []byte("BYE\n"), Close: true}
	}
	return Verdict{}
}

func (lineWatcher) Target(head []byte) (*Refusal, bool) {
	switch string(bytes.TrimSpace(head)) {
	case "REJECT":
		return Refuse(ReasonCredentials, "", nil), false
	case "SPOOF":
		return Refuse(ReasonTargetMessage, "spoof", nil), true
	}
	return nil, false
}

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

// echoLines answers every line with "echo: <line>".
func echoLines(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		fmt.Fprintf(c, "echo: %s", line)
	}
}

// startProxy runs a Server for yaml (a configuration without listen
// section: the test's "sip" listener is added on a free loopback port).
func startProxy(t *testing.T, yaml string, h Handler, g Guard) (*Server, string) {
	t.Helper()
	port := freePort(t)
	cfg, err := configs.Parse("test.yaml", []byte(fmt.Sprintf("listen:\n  sip: \"127.0.0.1:%d\"\n%s", port, yaml)))
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Handlers: map[string]Handler{"sip": h}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if g != nil {
		opts.Guard = g
	}
	srv, err := NewServer(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return srv, srv.Addr("sip").String()
}

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
