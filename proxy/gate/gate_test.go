package gate_test

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy/gate"
)

func newGate(t *testing.T, cfg configs.Blacklist) (*gate.Gate, *blacklist.List) {
	t.Helper()
	bl, err := blacklist.New(cfg, blacklist.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	g := gate.New(gate.Options{Guard: bl, Key: bl.Key, Range: bl.Range, Whitelisted: bl.Whitelisted, Logger: slog.New(slog.DiscardHandler)})
	bl.OnBlock(g.Block)
	return g, bl
}

// pipe returns one end of a fresh in-memory connection, and closes both at the end.
func pipe(t *testing.T) net.Conn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a
}

func admit(t *testing.T, g *gate.Gate, ip string, c gate.Class) (*gate.Conn, gate.Verdict) {
	return g.Admit(pipe(t), netip.MustParseAddr(ip), c, "test")
}

// TestPerClientCapUsesTheClientKey: two addresses of one IPv6 /64 share one
// cap across listener classes; another /64 and IPv4 clients have their own.
func TestPerClientCapUsesTheClientKey(t *testing.T) {
	g, bl := newGate(t, configs.Blacklist{Threshold: 100})
	g.SetLimits(gate.Limits{PerClient: 2})
	if _, v := admit(t, g, "2001:db8::1", gate.Service); v != gate.Admitted {
		t.Fatal(v)
	}
	if _, v := admit(t, g, "2001:db8::2", gate.Admin); v != gate.Admitted {
		t.Fatal(v)
	}
	if _, v := admit(t, g, "2001:db8::ffff:3", gate.Service); v != gate.ClientCap {
		t.Fatalf("third connection of one /64: %v, want ClientCap", v)
	}
	if _, v := admit(t, g, "2001:db8:0:1::1", gate.Service); v != gate.Admitted {
		t.Fatalf("another /64: %v", v)
	}
	c, v := admit(t, g, "192.0.2.1", gate.Service)
	if v != gate.Admitted {
		t.Fatal(v)
	}
	// Closing gives the place back.
	admit(t, g, "192.0.2.1", gate.Service)
	if _, v := admit(t, g, "192.0.2.1", gate.Service); v != gate.ClientCap {
		t.Fatal(v)
	}
	c.Close()
	c.Close() // twice is harmless
	if _, v := admit(t, g, "192.0.2.1", gate.Service); v != gate.Admitted {
		t.Fatalf("after a close: %v", v)
	}
	// Every refusal was reported as suspicious.
	if e := bl.Entries(blacklist.Filter{Address: "192.0.2.1"}); len(e) != 1 || e[0].Total != 1 || e[0].Reasons[0].Reason != gate.ReasonClientCap {
		t.Fatalf("entries %+v", e)
	}
}

// TestTotalCapKeepsAReserve: at limits.max_conns service connections of
// ordinary clients are refused, the admin port and whitelisted clients
// still get in.
func TestTotalCapKeepsAReserve(t *testing.T) {
	g, _ := newGate(t, configs.Blacklist{Threshold: 100, Whitelist: []configs.Prefix{{Prefix: netip.MustParsePrefix("198.51.100.0/24")}}})
	g.SetLimits(gate.Limits{Total: 2})
	// In different /24s: the range rules (fair_test.go) are not the point here.
	admit(t, g, "192.0.2.1", gate.Service)
	admit(t, g, "203.0.113.2", gate.Service)
	if _, v := admit(t, g, "192.0.2.3", gate.Service); v != gate.TotalCap {
		t.Fatalf("over max_conns: %v", v)
	}
	for _, tc := range []struct {
		ip string
		c  gate.Class
	}{{"192.0.2.3", gate.Admin}, {"198.51.100.9", gate.Service}, {"198.51.100.9", gate.Service}} {
		if _, v := admit(t, g, tc.ip, tc.c); v != gate.Admitted {
			t.Errorf("%s class %d: %v, want the reserve", tc.ip, tc.c, v)
		}
	}
	if st := g.Stats(); st.Open != 5 || st.Capped != 2 || st.RefusedCap != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestBlockClosesWhatTheClientHasOpen: a block closes every connection of
// the client (of its /64 for IPv6), a manual entry every client inside it;
// others and whitelisted clients keep theirs.
func TestBlockClosesWhatTheClientHasOpen(t *testing.T) {
	g, bl := newGate(t, configs.Blacklist{Threshold: 1, Whitelist: []configs.Prefix{{Prefix: netip.MustParsePrefix("203.0.113.7/32")}}})
	open := func(ip string) (*gate.Conn, net.Conn) {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		c, v := g.Admit(a, netip.MustParseAddr(ip), gate.Service, "test")
		if v != gate.Admitted {
			t.Fatal(v)
		}
		return c, b
	}
	closed := func(peer net.Conn) bool {
		peer.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := peer.Read(make([]byte, 1))
		return errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe)
	}
	v6a, p6a := open("2001:db8::1")
	_, p6b := open("2001:db8::2")
	_, pOther := open("2001:db8:1::1")
	for range 2 {
		bl.Report(blacklist.Event{Client: netip.MustParseAddr("2001:db8::3"), Type: "sip", Reason: "x"})
	}
	if !closed(p6a) || !closed(p6b) || !v6a.Blocked() {
		t.Fatal("connections of the blocked /64 stay open")
	}
	// Manual entry for a network: every client inside, but not the whitelisted one.
	_, p1 := open("203.0.113.1")
	_, p2 := open("203.0.113.200")
	w, _ := open("203.0.113.7")
	if err := bl.AddManual(netip.MustParsePrefix("203.0.113.0/24"), "test"); err != nil {
		t.Fatal(err)
	}
	if !closed(p1) || !closed(p2) {
		t.Fatal("connections inside the manual entry stay open")
	}
	if w.Blocked() || pOther == nil {
		t.Fatal("whitelisted connection closed")
	}
	pOther.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := pOther.Read(make([]byte, 1)); !errors.Is(err, syscall.ETIMEDOUT) && !isTimeout(err) {
		t.Fatalf("another client's connection: %v", err)
	}
	if st := g.Stats(); st.CutAtBlock != 4 || st.Open != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// failingListener fails its first n accepts with EMFILE, then hands out
// real connections from l.
type failingListener struct {
	net.Listener
	mu sync.Mutex
	n  int
}

func (f *failingListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	if f.n > 0 {
		f.n--
		f.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	f.mu.Unlock()
	return f.Listener.Accept()
}

// TestListenerOutlivesExhaustion: accept errors are retried (Accept does
// not return them), reported by Exhausted, and the listener serves again.
func TestListenerOutlivesExhaustion(t *testing.T) {
	g, _ := newGate(t, configs.Blacklist{})
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := g.Listen(&failingListener{Listener: raw, n: 4}, gate.Service, "test")
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err == nil {
			defer c.Close()
			c.Read(make([]byte, 1))
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("Accept returned %v", err)
	}
	gc := c.(*gate.Conn)
	if gc.Client() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("client %v", gc.Client())
	}
	if ex, msg := g.Exhausted(); !ex || msg == "" {
		t.Fatal("exhaustion not reported")
	}
	c.Close()
	// Closing the listener ends an Accept in progress with an error.
	done := make(chan error, 1)
	go func() { _, err := ln.Accept(); done <- err }()
	ln.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}
