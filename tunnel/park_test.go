package tunnel_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/proxytest"
)

// lines is a minimal framed protocol for the relay: "HELLO name" routes,
// then every line is a message.
type lines struct{}

func (lines) Sniff(first []byte, info *proxy.ConnInfo) (*proxy.Decision, error) {
	i := bytes.IndexByte(first, '\n')
	if i < 0 {
		return nil, proxy.ErrNeedMore
	}
	f := strings.Fields(string(first[:i]))
	if len(f) != 2 || f[0] != "HELLO" {
		return nil, proxy.Refuse(proxy.ReasonProtocol, "not a HELLO", nil)
	}
	return &proxy.Decision{Service: f[1], Watcher: lines{}}, nil
}

func (lines) Frame(dir proxy.Direction, buf []byte) (int, error) {
	if i := bytes.IndexByte(buf, '\n'); i >= 0 {
		return i + 1, nil
	}
	return 0, proxy.ErrNeedMore
}

func (lines) Client([]byte) proxy.Verdict          { return proxy.Verdict{} }
func (lines) Target([]byte) (*proxy.Refusal, bool) { return nil, false }

// goroutinesIn counts the goroutines running code of any of funcs.
func goroutinesIn(funcs ...string) int {
	buf := make([]byte, 4<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		for _, f := range funcs {
			if strings.Contains(g, f) {
				n++
				break
			}
		}
	}
	return n
}

// relayGoroutines counts the goroutines in the proxy's relay code.
func relayGoroutines() int { return goroutinesIn("proxy.(*relay)", "proxy.(*side)") }

// TestTunnelRelayParks: a quiet connection relayed through a tunnel holds
// no goroutine on the edge: the framed relay parks the client's side on
// the poller and the stream's side on the stream (proxy.ReadNotifier),
// and bytes from either end start it again. Nor does the agent: the
// edge's side waits on the stream, the target's on the agent's poller.
func TestTunnelRelayParks(t *testing.T) {
	r := newRig(t)
	r.agent("account: hq\ntoken: s3cret", "  - {name: echo.example.com, target: 127.0.0.5, ports: {sip: PORT}}\n")
	r.waitTunnels(1)
	cfg := r.config(fmt.Sprintf("listen: {sip: %q}\n", testpeer.FreeAddrOn(t, "127.0.0.2")))
	srv, err := proxy.NewServer(cfg, proxy.Options{Handlers: map[string]proxy.Handler{"sip": proxy.Stream(lines{})},
		Guard: &proxytest.Guard{}, Logger: slog.New(slog.DiscardHandler), Agents: r.edge})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), proxytest.Wait)
		defer cancel()
		srv.Shutdown(ctx)
	})
	const n = 8
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	for i := range conns {
		conns[i] = proxytest.DialFrom(t, fmt.Sprintf("127.0.0.%d", 10+i), srv.Addr("sip").String())
		readers[i] = bufio.NewReader(conns[i])
		fmt.Fprint(conns[i], "HELLO echo.example.com\nfirst\n")
		for _, want := range []string{"HELLO echo.example.com\n", "first\n"} {
			conns[i].SetReadDeadline(time.Now().Add(proxytest.Wait))
			if line, err := readers[i].ReadString('\n'); err != nil || line != want {
				t.Fatalf("conn %d: %q, %v", i, line, err)
			}
		}
	}
	agentGoroutines := func() int {
		return goroutinesIn("agent.(*upward)", "agent.(*downward)", "agent.(*Agent).stream")
	}
	deadline := time.Now().Add(proxytest.Wait)
	for relayGoroutines() > 0 || agentGoroutines() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("for %d quiet connections through a tunnel: %d goroutines in the edge's relay, %d in the agent; want 0 and 0",
				n, relayGoroutines(), agentGoroutines())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, c := range conns {
		fmt.Fprintf(c, "again %d\n", i)
		c.SetReadDeadline(time.Now().Add(proxytest.Wait))
		if line, err := readers[i].ReadString('\n'); err != nil || line != fmt.Sprintf("again %d\n", i) {
			t.Fatalf("conn %d after the quiet spell: %q, %v", i, line, err)
		}
		c.Close()
	}
}

// TestAgentDrainResumesParkedStreams: streams whose target side is parked
// on the agent's poller still carry bytes while the agent drains (SIGTERM:
// GOAWAY, then shutdown_timeout for the streams in flight), and the drain
// ends them and returns once the timeout is up: no parked direction is
// left behind for Run to wait on forever.
func TestAgentDrainResumesParkedStreams(t *testing.T) {
	r := newRig(t)
	stop := r.agent("account: hq\ntoken: s3cret", "  - {name: echo.example.com, target: 127.0.0.5, ports: {sip: PORT}}\n")
	r.waitTunnels(1)
	const n = 4
	streams := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	for i := range streams {
		s, err := r.edge.Dial(context.Background(), "hq", "echo.example.com", "sip", false, client)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		streams[i], readers[i] = s, bufio.NewReader(s)
		fmt.Fprintf(s, "first %d\n", i)
		s.SetReadDeadline(time.Now().Add(proxytest.Wait))
		if line, err := readers[i].ReadString('\n'); err != nil || line != fmt.Sprintf("first %d\n", i) {
			t.Fatalf("stream %d: %q, %v", i, line, err)
		}
	}
	deadline := time.Now().Add(proxytest.Wait)
	for goroutinesIn("agent.(*downward)") > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines in the agent's target side for %d quiet streams, want 0", goroutinesIn("agent.(*downward)"), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	for i, s := range streams { // in flight during the drain: still served
		fmt.Fprintf(s, "drain %d\n", i)
		s.SetReadDeadline(time.Now().Add(proxytest.Wait))
		if line, err := readers[i].ReadString('\n'); err != nil || line != fmt.Sprintf("drain %d\n", i) {
			t.Fatalf("stream %d during the drain: %q, %v", i, line, err)
		}
	}
	select {
	case <-stopped: // shutdown_timeout (1s) ended the parked streams
	case <-time.After(proxytest.Wait + 5*time.Second):
		t.Fatal("the agent's drain did not return with parked streams open")
	}
	for i, s := range streams {
		s.SetReadDeadline(time.Now().Add(proxytest.Wait))
		if line, err := readers[i].ReadString('\n'); err == nil {
			t.Fatalf("stream %d after the drain: %q, want its end", i, line)
		}
	}
}

// silentTarget accepts a connection on 127.0.0.5, reads it to the
// client's end and then keeps it open without a word until the test ends,
// as a PBX may.
func silentTarget(t *testing.T) (port int, sawEOF <-chan struct{}) {
	ln, err := net.Listen("tcp", "127.0.0.5:0")
	if err != nil {
		t.Fatal(err)
	}
	eof, end := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(end); ln.Close(); wg.Wait() })
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c)
		close(eof)
		<-end
	})
	return ln.Addr().(*net.TCPAddr).Port, eof
}

// TestAgentEndsHalfClosedStreamsWithTheTunnel: a stream the edge has
// half-closed, to a target that stays open and silent, has nothing left
// that reads it on the agent, and its target side parks; the tunnel's end
// (the agent's drain here) must still end it and let Run return, where
// Run would wait for that stream for as long as the target keeps quiet.
func TestAgentEndsHalfClosedStreamsWithTheTunnel(t *testing.T) {
	r := newRig(t)
	port, sawEOF := silentTarget(t)
	stop := r.agent("account: hq\ntoken: s3cret", fmt.Sprintf("  - {name: quiet.devices.example.com, target: 127.0.0.5, ports: {sip: %d}}\n", port))
	r.waitTunnels(1)
	s, err := r.edge.Dial(context.Background(), "hq", "quiet.devices.example.com", "sip", false, client)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	io.WriteString(s, "REGISTER, and nothing more\n")
	s.(interface{ CloseWrite() error }).CloseWrite()
	select {
	case <-sawEOF:
	case <-time.After(proxytest.Wait):
		t.Fatal("the target did not get the edge's end of the stream")
	}
	deadline := time.Now().Add(proxytest.Wait)
	for goroutinesIn("agent.(*downward)") > 0 { // parked after proxy.ParkGrace
		if time.Now().After(deadline) {
			t.Fatal("the silent target's side did not park")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(proxytest.Wait + 5*time.Second):
		t.Fatal("the agent's drain did not return: a half-closed stream to a silent target kept it")
	}
}
