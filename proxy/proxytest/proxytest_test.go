package proxytest_test

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/proxytest"
)

// next is a guard behind the Guard: it blocks 127.0.0.9 and counts.
type next struct{ reports int }

func (n *next) Blocked(ip netip.Addr) bool { return ip == netip.MustParseAddr("127.0.0.9") }
func (n *next) Report(blacklist.Event)     { n.reports++ }

func TestGuard(t *testing.T) {
	n := &next{}
	g := &proxytest.Guard{Next: n}
	g.Block(netip.MustParseAddr("127.0.0.2"))
	for ip, want := range map[string]bool{"127.0.0.2": true, "127.0.0.9": true, "127.0.0.3": false} {
		if got := g.Blocked(netip.MustParseAddr(ip)); got != want {
			t.Errorf("Blocked(%s) = %v, want %v", ip, got, want)
		}
	}
	if g.Asked() != 3 {
		t.Errorf("Asked = %d, want 3", g.Asked())
	}
	g.Report(blacklist.Event{Service: "a", Reason: "one"})
	g.Report(blacklist.Event{Service: "b", Reason: "two"})
	if evs := g.WaitEvents(2); len(evs) != 2 || evs[1].Reason != "two" || n.reports != 2 {
		t.Fatalf("events %v, passed on %d", evs, n.reports)
	}
	if ev := g.WaitReason(t, "one"); ev.Service != "a" {
		t.Fatalf("WaitReason found %+v", ev)
	}
}

// hello routes a connection whose first line is "HELLO <service>".
type hello struct{}

func (hello) Sniff(first []byte, _ *proxy.ConnInfo) (*proxy.Decision, error) {
	var svc string
	if _, err := fmt.Sscanf(string(first), "HELLO %s\n", &svc); err != nil || first[len(first)-1] != '\n' {
		return nil, proxy.ErrNeedMore
	}
	return &proxy.Decision{Service: svc}, nil
}

// TestServer routes one connection through the harness to a target and
// sees the unknown service of another reported.
func TestServer(t *testing.T) {
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := target.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Fprintf(c, "target got %s", line)
	}()
	t.Cleanup(func() { target.Close(); <-done })

	srv := proxytest.NewServer(t, fmt.Sprintf(`listen: {sip: "127.0.0.1:%d"}
services:
  - {name: pbx.example.com, target: 127.0.0.1, ports: {sip: %d}}
`, testpeer.FreePort(t), target.Addr().(*net.TCPAddr).Port), map[string]proxy.Handler{"sip": proxy.Stream(hello{})}, nil)

	c, err := net.DialTimeout("tcp", srv.Addr("sip"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, "HELLO pbx.example.com\n")
	if line, err := bufio.NewReader(c).ReadString('\n'); line != "target got HELLO pbx.example.com\n" {
		t.Fatalf("client got %q, %v", line, err)
	}

	u := proxytest.DialFrom(t, "127.0.0.3", srv.Addr("sip"))
	fmt.Fprint(u, "HELLO nobody.example.com\n")
	if ev := srv.Guard.WaitReason(t, string(proxy.ReasonUnknownService)); ev.Service != "nobody.example.com" || ev.Client != netip.MustParseAddr("127.0.0.3") {
		t.Fatalf("event %+v", ev)
	}
}

// TestNewBlacklist: the real blacklist behind the Guard blocks a client
// reported more than threshold times, and the Guard keeps every event.
func TestNewBlacklist(t *testing.T) {
	cfg, err := configs.Parse("test.yaml", []byte("blacklist: {threshold: 2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	g := proxytest.NewBlacklist(t, cfg.Blacklist)
	ip := netip.MustParseAddr("127.0.0.4")
	for i := range 3 {
		if g.Blocked(ip) {
			t.Fatalf("blocked after %d events", i)
		}
		g.Report(blacklist.Event{Client: ip, Service: "pbx.example.com", Reason: "test", Time: time.Now()})
	}
	if !g.Blocked(ip) || len(g.Events()) != 3 {
		t.Fatalf("blocked %v after %d events, want blocked after 3", g.Blocked(ip), len(g.Events()))
	}
}
