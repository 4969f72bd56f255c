package tunnel_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-pbx/gatehouse/agent"
	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/tunnel"
	"github.com/gatehouse-pbx/gatehouse/tunnel/h2mux"
)

// events records what the edge reports, as the refusal log would.
type events struct {
	mu  sync.Mutex
	evs []blacklist.Event
}

func (e *events) Report(ev blacklist.Event) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
}

func (e *events) reasons() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var s []string
	for _, ev := range e.evs {
		s = append(s, ev.Client.String()+" "+ev.Service+": "+ev.Reason)
	}
	return strings.Join(s, "\n")
}

type rig struct {
	t      testing.TB
	ca     *testpki.CA
	cert   *testpki.Issued
	addr   string
	edge   *tunnel.Server
	events *events
	echo   string // a TCP echo server on 127.0.0.5
	hash   string
}

// newRig starts an edge on 127.0.0.2 whose account hq (token "s3cret")
// may register echo.example.com and *.devices.example.com, and an echo
// target on 127.0.0.5.
func newRig(t testing.TB) *rig { return newRigLog(t, nil) }

// newRigLog is newRig whose edge also logs into capture (when not nil).
func newRigLog(t testing.TB, capture *testpeer.Log) *rig {
	ca := testpki.NewCA(t, "edge")
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	r := &rig{t: t, ca: ca, cert: ca.Server("edge.example.com"), events: &events{}, hash: string(hash),
		addr: testpeer.FreeAddrOn(t, "127.0.0.2")}
	cfg := r.config("")
	log := testLogger(t)
	if capture != nil {
		log = slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{t}, capture), nil))
	}
	edge, err := tunnel.New(cfg, tunnel.Options{Logger: log, Guard: r.events})
	if err != nil {
		t.Fatal(err)
	}
	r.edge = edge
	t.Cleanup(func() { edge.Close() })

	r.echo = testpeer.Serve(t, "127.0.0.5:0", func(c net.Conn) { io.Copy(c, c) })
	return r
}

// config is the edge's configuration with extra accounts yaml.
func (r *rig) config(extra string) *configs.Config {
	r.t.Helper()
	cfg, err := configs.Parse("edge.yaml", []byte(fmt.Sprintf(`tls: {certificates: [{cert: %s, key: %s}]}
agents:
  listen: %q
  heartbeat: 1s
  accounts:
    - {name: hq, token_hash: %q, names: [echo.example.com, "*.devices.example.com"]}
    - {name: fleet, client_ca: %s, names: ["*.fleet.example.com"]}
%s
services:
  - {name: echo.example.com, agent: hq}
  - {name: "*.devices.example.com", agent: hq}
  - {name: "*.fleet.example.com", agent: fleet}
`, r.cert.CertFile, r.cert.KeyFile, r.addr, r.hash, r.ca.File, extra)))
	if err != nil {
		r.t.Fatal(err)
	}
	return cfg
}

// agent runs an agent with the given auth lines and services until the test ends.
// agent runs an agent until the test ends, or until stop: the agent's
// drain (SIGTERM); stop returns when Run has returned.
func (r *rig) agent(auth, services string) (stop func()) {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.echo)
	cfg, err := configs.ParseAgent("agent.yaml", []byte(fmt.Sprintf(`edges: [%q]
%s
edge_fingerprint: %q
shutdown_timeout: 1s
services:
%s`, r.addr, auth, configs.Fingerprint(r.cert.TLS.Leaf), strings.ReplaceAll(services, "PORT", port))))
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		agent.New(cfg, testLogger(r.t), agent.Backoff{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond, Stable: time.Minute}).Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	r.t.Cleanup(stop)
	return stop
}

func (r *rig) waitTunnels(n int) {
	r.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); len(r.edge.Tunnels()) != n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			r.t.Fatalf("%d tunnels, want %d; events:\n%s", len(r.edge.Tunnels()), n, r.events.reasons())
		}
	}
}

var client = netip.MustParseAddrPort("192.0.2.7:5060")

// echo sends a line through a stream to name and reads it back.
// floodAgent starts an agent for echo.example.com and for
// flood.devices.example.com, a target that writes to every connection
// without end, and waits for its tunnel.
func (r *rig) floodAgent() {
	flood := testpeer.Serve(r.t, "127.0.0.5:0", func(c net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	_, floodPort, _ := net.SplitHostPort(flood)
	r.agent("account: hq\ntoken: s3cret", `  - {name: echo.example.com, target: 127.0.0.5, ports: {sip: PORT}}
  - {name: flood.devices.example.com, target: 127.0.0.5, ports: {sip: `+floodPort+`}}
`)
	r.waitTunnels(1)
}

// filled waits until the tunnel has taken all it will from the agent (its
// byte count stops growing) and returns that count.
func (r *rig) filled() int64 {
	var last int64 = -1
	for range 100 {
		time.Sleep(50 * time.Millisecond)
		now := r.edge.Tunnels()[0].BytesIn
		if now == last {
			break
		}
		last = now
	}
	return last
}

func (r *rig) echoThrough(account, name string) error {
	c, err := r.edge.Dial(context.Background(), account, name, "sip", false, client)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "ping "+name); err != nil {
		return err
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	got, err := io.ReadAll(c) // EOF comes back once the echo server saw ours
	if err != nil {
		return err
	}
	if string(got) != "ping "+name {
		return fmt.Errorf("echoed %q", got)
	}
	return nil
}

func TestTunnelStreams(t *testing.T) {
	r := newRig(t)
	if _, ok := r.edge.Ports("hq", "echo.example.com"); ok {
		t.Fatal("ports before any agent")
	}
	if _, err := r.edge.Dial(context.Background(), "hq", "echo.example.com", "sip", false, client); err == nil || !isNoTunnel(err) {
		t.Fatalf("dial without tunnel: %v, want ErrNoTunnel", err)
	}
	r.agent("account: hq\ntoken: s3cret", `  - {name: echo.example.com, target: 127.0.0.5, ports: {sip: PORT}}
  - {name: dev-1.devices.example.com, target: 127.0.0.5, ports: {sip: PORT}}
  - {name: other.example.com, target: 127.0.0.5, ports: {sip: PORT}}
`)
	r.waitTunnels(1)
	if p, ok := r.edge.Ports("hq", "echo.example.com"); !ok || p["sip"] == 0 {
		t.Fatalf("ports %v %v", p, ok)
	}
	if _, ok := r.edge.Ports("hq", "other.example.com"); ok {
		t.Error("a name the account may not have was registered")
	}
	if _, ok := r.edge.Ports("fleet", "echo.example.com"); ok {
		t.Error("another account's name is served")
	}
	// Many streams at once, half-closed each, over one tunnel.
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		name := "echo.example.com"
		if i%2 == 1 {
			name = "dev-1.devices.example.com"
		}
		wg.Go(func() { errs <- r.echoThrough("hq", name) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := r.edge.Tunnels()[0]
	if st.Account != "hq" || len(st.Names) != 2 || st.BytesIn == 0 || st.BytesOut != st.BytesIn {
		t.Errorf("status %+v", st)
	}
	if !strings.Contains(r.events.reasons(), "127.0.0.1 hq: agent name refused (not in the account's names)") {
		t.Errorf("refused name not reported:\n%s", r.events.reasons())
	}
}

func isNoTunnel(err error) bool {
	r, ok := err.(*proxy.Refusal)
	return ok && r.Reason == proxy.ReasonUnavailable
}

func TestTunnelAuthentication(t *testing.T) {
	r := newRig(t)
	r.agent("account: hq\ntoken: guess", "  - {name: echo.example.com, target: 127.0.0.5, ports: {sip: PORT}}\n")
	r.agent("account: nobody\ntoken: s3cret", "  - {name: echo.example.com, target: 127.0.0.5, ports: {sip: PORT}}\n")
	// A client certificate of the fleet account, and one of another CA.
	good := r.ca.Client("fleet")
	r.agent(fmt.Sprintf("account: fleet\ncert: %s\nkey: %s", good.CertFile, good.KeyFile),
		"  - {name: d1.fleet.example.com, target: 127.0.0.5, ports: {sip: PORT}}\n")
	bad := testpki.NewCA(t, "rogue").Client("fleet")
	r.agent(fmt.Sprintf("account: fleet\ncert: %s\nkey: %s", bad.CertFile, bad.KeyFile),
		"  - {name: d2.fleet.example.com, target: 127.0.0.5, ports: {sip: PORT}}\n")
	r.waitTunnels(1)
	if err := r.echoThrough("fleet", "d1.fleet.example.com"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"127.0.0.1 hq: agent authentication failed", "127.0.0.1 nobody: agent authentication failed",
		"127.0.0.1 fleet: agent authentication failed"} {
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(r.events.reasons(), want); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in\n%s", want, r.events.reasons())
			}
		}
	}
	if len(r.edge.Tunnels()) != 1 {
		t.Errorf("tunnels: %+v", r.edge.Tunnels())
	}
}

// TestTunnelFailover: two agents serve one name; streams keep working
// when one is disconnected, and a reload that removes the account drops both.
func TestTunnelFailover(t *testing.T) {
	r := newRig(t)
	svc := "  - {name: echo.example.com, target: 127.0.0.5, ports: {sip: PORT}}\n"
	r.agent("account: hq\ntoken: s3cret", svc)
	r.agent("account: hq\ntoken: s3cret", svc)
	r.waitTunnels(2)
	first := r.edge.Tunnels()[0]
	if !r.edge.Disconnect(first.ID) {
		t.Fatal("Disconnect found no tunnel")
	}
	// At once: the other tunnel serves, with no wait for a heartbeat.
	if err := r.echoThrough("hq", "echo.example.com"); err != nil {
		t.Fatal(err)
	}
	r.waitTunnels(2) // the disconnected agent redials
	r.edge.Reload(r.config("    - {name: extra, token_hash: \"" + r.hash + "\", names: [x]}"))
	if len(r.edge.Tunnels()) != 2 {
		t.Fatal("a reload that left the account alone dropped its tunnels")
	}
	cfg, err := configs.Parse("edge.yaml", []byte(fmt.Sprintf(`tls: {certificates: [{cert: %s, key: %s}]}
agents:
  listen: %q
  accounts: [{name: other, token_hash: %q, names: [x]}]
`, r.cert.CertFile, r.cert.KeyFile, r.addr, r.hash)))
	if err != nil {
		t.Fatal(err)
	}
	r.edge.Reload(cfg)
	r.waitTunnels(0)
	if _, ok := r.edge.Ports("hq", "echo.example.com"); ok {
		t.Error("a revoked account still serves")
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	if _, bench := w.t.(*testing.B); bench {
		return len(b), nil // a benchmark's log would only be noise
	}
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// TestTunnelSlowReader: clients that stop reading hold their streams, not
// the tunnel: what one takes from the agent stays bounded (the stream's
// window and the socket pair's buffers hold the rest back there), and with
// fifteen such streams, one short of spending the tunnel's window, another
// stream of the same tunnel still flows. (The client side here is the
// edge's stream itself, read by nobody.)
func TestTunnelSlowReader(t *testing.T) {
	r := newRig(t)
	r.floodAgent()
	stuck, err := r.edge.Dial(context.Background(), "hq", "flood.devices.example.com", "sip", false, client)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	if got := r.filled(); got > tunnel.StreamWindow+(1<<20) {
		t.Errorf("%d bytes taken from the agent for a client that reads nothing (window %d)", got, tunnel.StreamWindow)
	}
	for range 14 { // fifteen in all: the tunnel's window must outlast them
		c, err := r.edge.Dial(context.Background(), "hq", "flood.devices.example.com", "sip", false, client)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	got := r.filled()
	t.Logf("fifteen stopped readers hold %d bytes of the tunnel window of %d", got, tunnel.TunnelWindow)
	if got > tunnel.TunnelWindow-tunnel.StreamWindow/2 {
		t.Errorf("fifteen stopped readers took %d bytes of a tunnel window of %d", got, tunnel.TunnelWindow)
	}
	if err := r.echoThrough("hq", "echo.example.com"); err != nil {
		t.Fatalf("another stream of the tunnel: %v", err)
	}
}

// TestTunnelStalledReadersAreReset: clients that stop reading and spend a
// tunnel's whole window (sixteen of them, and one more) are reset once
// they have read nothing for the stall timeout, each with a log line that
// names the client and the service, and the tunnel's other streams flow
// again.
func TestTunnelStalledReadersAreReset(t *testing.T) {
	old := tunnel.SetStallTimeout(300 * time.Millisecond)
	t.Cleanup(func() { tunnel.SetStallTimeout(old) })
	logs := &testpeer.Log{}
	r := newRigLog(t, logs)
	r.floodAgent()
	const stoppers = tunnel.TunnelWindow/tunnel.StreamWindow + 1
	stuck := make([]net.Conn, 0, stoppers)
	for range stoppers {
		c, err := r.edge.Dial(context.Background(), "hq", "flood.devices.example.com", "sip", false, client)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		stuck = append(stuck, c)
	}
	for deadline := time.Now().Add(10 * time.Second); r.edge.Tunnels()[0].BytesIn < tunnel.TunnelWindow; {
		if time.Now().After(deadline) {
			t.Fatalf("the stopped readers took %d bytes, not the tunnel's window of %d", r.edge.Tunnels()[0].BytesIn, tunnel.TunnelWindow)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := r.echoThrough("hq", "echo.example.com"); err != nil {
		t.Fatalf("another stream of the tunnel: %v", err)
	}
	// A reset stream's first read says so (its bytes were dropped); a
	// stream that was not reset reads bytes.
	reset := 0
	buf := make([]byte, 1<<20)
	for _, c := range stuck {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); errors.Is(err, h2mux.ErrStalled) {
			reset++
		}
	}
	if reset < stoppers-1 {
		t.Errorf("%d of %d stopped readers were reset for it", reset, stoppers)
	}
	if n := strings.Count(logs.String(), "its client read nothing while the tunnel's window ran short"); n != reset {
		t.Errorf("%d log lines for %d streams reset:\n%s", n, reset, logs.String())
	}
	if !strings.Contains(logs.String(), "service=flood.devices.example.com") || !strings.Contains(logs.String(), "client="+client.String()) {
		t.Errorf("the log lines do not name the client and the service:\n%s", logs.String())
	}
}

// BenchmarkIdleStreams reports what one idle stream through a tunnel
// costs (heap and stacks, edge and agent together, in this one process)
// beyond an idle TCP connection straight to the same target: open
// IDLE_STREAMS (default 1000) of each, measure, close. Run with
// go test ./tunnel -run '^$' -bench IdleStreams -benchtime 1x.
func BenchmarkIdleStreams(b *testing.B) {
	n := 1000
	if v := os.Getenv("IDLE_STREAMS"); v != "" {
		fmt.Sscan(v, &n)
	}
	r := newRig(b)
	cfg := r.config("")
	cfg.Agents.MaxStreams = n
	r.edge.Reload(cfg)
	r.agent("account: hq\ntoken: s3cret", "  - {name: echo.example.com, target: 127.0.0.5, ports: {sip: PORT}}\n")
	r.waitTunnels(1)
	measure := func(open func() (net.Conn, error)) float64 {
		before := inUse()
		conns := make([]net.Conn, 0, n)
		for range n {
			c, err := open()
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		time.Sleep(500 * time.Millisecond) // every goroutine reaches its idle read
		per := float64(inUse()-before) / float64(n)
		if f := os.Getenv("IDLE_HEAPPROFILE"); f != "" && len(conns) > 0 {
			writeHeap(b, f) // the last measure's (the tunnel's) wins
		}
		for _, c := range conns {
			c.Close()
		}
		time.Sleep(500 * time.Millisecond)
		return per
	}
	for range b.N {
		direct := measure(func() (net.Conn, error) { return net.Dial("tcp", r.echo) })
		tunnel := measure(func() (net.Conn, error) {
			return r.edge.Dial(context.Background(), "hq", "echo.example.com", "sip", false, client)
		})
		b.ReportMetric(direct, "B/direct-conn")
		b.ReportMetric(tunnel, "B/tunnel-stream")
		b.ReportMetric(tunnel-direct, "B/stream-beyond-direct")
	}
}

// writeHeap writes a heap profile (what is held, by allocation site) and
// the goroutines (what each stream's stacks are) next to it.
func writeHeap(b *testing.B, file string) {
	for name, f := range map[string]string{"heap": file, "goroutine": file + ".goroutines"} {
		out, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		pprof.Lookup(name).WriteTo(out, 0)
		out.Close()
	}
}

func inUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// TestTunnelStreamCap: agents.max_streams bounds the streams of a tunnel;
// one more is refused (unavailable), and a closed stream frees its place.
func TestTunnelStreamCap(t *testing.T) {
	r := newRig(t)
	cfg := r.config("")
	cfg.Agents.MaxStreams = 2
	r.edge.Reload(cfg)
	r.agent("account: hq\ntoken: s3cret", "  - {name: echo.example.com, target: 127.0.0.5, ports: {sip: PORT}}\n")
	r.waitTunnels(1)
	var open []net.Conn
	for range 2 {
		c, err := r.edge.Dial(context.Background(), "hq", "echo.example.com", "sip", false, client)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	if _, err := r.edge.Dial(context.Background(), "hq", "echo.example.com", "sip", false, client); !isNoTunnel(err) {
		t.Fatalf("a third stream: %v, want refused", err)
	}
	open[0].Close()
	for deadline := time.Now().Add(5 * time.Second); r.edge.Tunnels()[0].Streams > 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the closed stream is still counted: %+v", r.edge.Tunnels())
		}
	}
	if err := r.echoThrough("hq", "echo.example.com"); err != nil {
		t.Fatal(err)
	}
	open[1].Close()
}

// TestTunnelServeTLS: an agent that reached another TLS listener (an https
// port that also offers h2) with ALPN gatehouse-agent/1 is handed over and
// served as on agents.listen.
func TestTunnelServeTLS(t *testing.T) {
	r := newRig(t)
	ln, err := tls.Listen("tcp", "127.0.0.3:0", &tls.Config{Certificates: []tls.Certificate{r.cert.TLS},
		NextProtos: []string{"h2", "http/1.1", tunnel.ALPN}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); r.edge.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if tc.Handshake() != nil || tc.ConnectionState().NegotiatedProtocol != tunnel.ALPN {
				tc.Close()
				continue
			}
			wg.Go(func() { r.edge.ServeTLS(tc) })
		}
	})
	r.addr = ln.Addr().String() // the agent dials the https-like listener
	r.agent("account: hq\ntoken: s3cret", "  - {name: echo.example.com, target: 127.0.0.5, ports: {sip: PORT}}\n")
	r.waitTunnels(1)
	if err := r.echoThrough("hq", "echo.example.com"); err != nil {
		t.Fatal(err)
	}
}

// TestTunnelStreamKeepAlive: one stream carries many exchanges (an HTTP
// keep-alive connection in the edge's pool), says it is alive between
// them, honours read deadlines, and is released when closed.
func TestTunnelStreamKeepAlive(t *testing.T) {
	r := newRig(t)
	r.agent("account: hq\ntoken: s3cret", "  - {name: echo.example.com, target: 127.0.0.5, ports: {sip: PORT}}\n")
	r.waitTunnels(1)
	c, err := r.edge.Dial(context.Background(), "hq", "echo.example.com", "sip", false, client)
	if err != nil {
		t.Fatal(err)
	}
	alive := c.(interface{ Alive() bool })
	buf := make([]byte, 64)
	for i := range 50 {
		msg := fmt.Sprintf("exchange %d", i)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil || string(buf[:len(msg)]) != msg {
			t.Fatalf("exchange %d: %q, %v", i, buf[:len(msg)], err)
		}
		if !alive.Alive() {
			t.Fatalf("not alive after exchange %d", i)
		}
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var ne net.Error
	if _, err := c.Read(buf); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	if n := r.edge.Tunnels()[0].Streams; n != 1 {
		t.Fatalf("%d streams counted, want 1", n)
	}
	c.Close()
	if alive.Alive() {
		t.Fatal("alive after Close")
	}
	// The agent ends the stream when its target has seen the end; if that
	// is slow, the edge cancels it closeGrace (5 s) after Close.
	for deadline := time.Now().Add(10 * time.Second); r.edge.Tunnels()[0].Streams > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the closed stream is still counted: %+v", r.edge.Tunnels())
		}
	}
}
