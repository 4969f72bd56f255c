package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-pbx/gatehouse/agent"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/tunnel"
)

func TestAgentKeys(t *testing.T) {
	for _, name := range []string{"hq.example.com", "example.com/branch", "a_b-c.", "x"} {
		k := key(name, "node-a_1")
		if strings.ContainsAny(k[:strings.IndexByte(k, '.')], "./*> ") {
			t.Errorf("%q: key %q has a separator or wildcard in its name token", name, k)
		}
		n, node, err := parseKey(k)
		if err != nil || n != name || node != "node-a_1" {
			t.Errorf("%q: key %q read back as %q %q %v", name, k, n, node, err)
		}
	}
	for _, bad := range []string{"aHE", "aHE.", "aHE.a.b", "!!.a", "aHE.a*"} {
		if n, node, err := parseKey(bad); err == nil {
			t.Errorf("%q read as %q %q", bad, n, node)
		}
	}
}

// agentNode is a member with an edge of agent tunnels and its Agents.
type agentNode struct {
	*member
	edge    *tunnel.Server
	agents  *Agents
	cfg     *configs.Config
	changed atomic.Int32 // calls of tunnel.Options.Changed
}

// agentCluster starts two nodes on 127.0.0.2 and .3, each with agents.listen
// and cluster.forward_listen, an account hq (token s3cret) for
// echo.example.com, and an echo target on 127.0.0.5.
func agentCluster(t *testing.T) (nodes []*agentNode, echo string, edgeCert *testpki.Issued) {
	ms := testCluster(t, 2)
	ca := testpki.NewCA(t, "edge")
	edgeCert = ca.Server("edge.example.com")
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	echoAddr := testpeer.Serve(t, "127.0.0.5:0", func(c net.Conn) { io.Copy(c, c) })
	for _, m := range ms {
		m.cfg.Replicas = 1
		m.cfg.ForwardListen = fmt.Sprintf("%s:%d", m.ip, freePort(t, m.ip))
		cfg, err := configs.Parse("edge.yaml", []byte(fmt.Sprintf(`tls: {certificates: [{cert: %s, key: %s}]}
agents:
  listen: "%s:%d"
  heartbeat: 1s
  accounts:
    - {name: hq, token_hash: %q, names: [echo.example.com]}
services:
  - {name: echo.example.com, agent: hq}
`, edgeCert.CertFile, edgeCert.KeyFile, m.ip, freePort(t, m.ip), hash)))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Cluster = m.cfg
		m.start(t)
		n := &agentNode{member: m, cfg: cfg, agents: NewAgents(m.node)}
		changed := func() { n.changed.Add(1); n.agents.Changed() }
		if n.edge, err = tunnel.New(cfg, tunnel.Options{Logger: testLogger(t, m.name), Changed: changed}); err != nil {
			t.Fatal(err)
		}
		if err := n.agents.Start(cfg, n.edge); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.agents.Close(); n.edge.Close(); m.stop() })
		nodes = append(nodes, n)
	}
	return nodes, echoAddr, edgeCert
}

// runAgent connects an agent for echo.example.com to edge until stop is called.
func runAgent(t *testing.T, edge *tunnel.Server, cert *testpki.Issued, echo string) (stop func()) {
	_, port, _ := net.SplitHostPort(echo)
	cfg, err := configs.ParseAgent("agent.yaml", []byte(fmt.Sprintf(`edges: [%q]
account: hq
token: s3cret
edge_fingerprint: %q
shutdown_timeout: 1s
services:
  - {name: echo.example.com, target: 127.0.0.5, ports: {sip: %s}}
`, edge.Addr().String(), configs.Fingerprint(cert.TLS.Leaf), port)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		agent.New(cfg, testLogger(t, "agent"), agent.Backoff{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond, Stable: time.Minute}).Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

var agentClient = netip.MustParseAddrPort("192.0.2.7:5060")

// echoVia sends a line to echo.example.com through a's Dial and reads it back.
func echoVia(a *Agents) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := a.Dial(ctx, "hq", "echo.example.com", "sip", false, agentClient)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "ping"); err != nil {
		return err
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(got) != "ping" {
		return fmt.Errorf("echoed %q", got)
	}
	return nil
}

// TestAgentsForwarded: an agent on node a serves echo.example.com on node
// b too, through b's copy of the registrations and a's forward_listen; the
// registration goes when the tunnel drops, and b answers "no tunnel".
func TestAgentsForwarded(t *testing.T) {
	nodes, echo, cert := agentCluster(t)
	a, b := nodes[0], nodes[1]
	if _, ok := b.agents.Ports("hq", "echo.example.com"); ok {
		t.Fatal("b has ports before any agent")
	}
	stop := runAgent(t, a.edge, cert, echo)
	took := eventually(t, "b sees a's registration", func() bool { _, ok := b.agents.Ports("hq", "echo.example.com"); return ok })
	t.Logf("registration reached b in %v", took)
	if len(b.edge.Tunnels()) != 0 {
		t.Fatal("b has a tunnel of its own")
	}
	if a.changed.Load() == 0 || b.changed.Load() != 0 {
		t.Errorf("tunnel.Options.Changed called %d times on a, %d on b", a.changed.Load(), b.changed.Load())
	}
	if err := echoVia(b.agents); err != nil {
		t.Fatalf("through b: %v", err)
	}
	if err := echoVia(a.agents); err != nil {
		t.Fatalf("through a: %v", err)
	}
	ts := b.agents.Tunnels()
	if len(ts) != 1 || ts[0].Node != "nodea" || !ts[0].Remote || ts[0].Account != "hq" || ts[0].Names[0] != "echo.example.com" {
		t.Errorf("b's view of the tunnels: %+v", ts)
	}
	if ts := a.agents.Tunnels(); len(ts) != 1 || ts[0].Node != "nodea" || ts[0].Remote {
		t.Errorf("a's view of the tunnels: %+v", ts)
	}
	if f := b.agents.Forwards(); len(f) != 1 || f[0] != (ForwardStat{Direction: "out", Service: "echo.example.com", Node: "nodea", Carried: 1}) {
		t.Errorf("b's forwards: %+v", f)
	}
	if f := a.agents.Forwards(); len(f) != 1 || f[0] != (ForwardStat{Direction: "in", Service: "echo.example.com", Node: "nodeb", Carried: 1}) {
		t.Errorf("a's forwards: %+v", f)
	}

	// The tunnel drops: a deletes its registration (not left to expire).
	stop()
	eventually(t, "b forgets the registration", func() bool { _, ok := b.agents.Ports("hq", "echo.example.com"); return !ok })
	b.agents.mu.Lock()
	kv := b.agents.kv
	b.agents.mu.Unlock()
	if _, err := kv.Get(context.Background(), key("echo.example.com", "nodea")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("a's registration after its tunnel dropped: %v, want deleted", err)
	}
	if err := echoVia(b.agents); !errors.Is(err, proxy.ErrNoTunnel) {
		t.Errorf("no tunnel anywhere: %v, want ErrNoTunnel", err)
	}
}

// TestAgentRegistrationExpires: a registration its node stops rewriting
// (a node killed with SIGKILL) is dropped by the others within AgentTTL,
// and until then a connection for it is "no tunnel", not an error of the
// client's, when the node cannot be reached.
func TestAgentRegistrationExpires(t *testing.T) {
	nodes, _, _ := agentCluster(t)
	b := nodes[1]
	eventually(t, "b's bucket open", func() bool { b.agents.mu.Lock(); defer b.agents.mu.Unlock(); return b.agents.kv != nil })
	b.agents.mu.Lock()
	kv := b.agents.kv
	b.agents.mu.Unlock()
	// nodez registered once and died: its forward port refuses.
	dead := fmt.Sprintf("127.0.0.9:%d", freePort(t, "127.0.0.9"))
	r := Registration{Name: "echo.example.com", Node: "nodez", Account: "hq", Forward: dead, Epoch: 1,
		Ports: map[string]int{"sip": 5060}, Tunnels: []TunnelRef{{ID: 1, Agent: "192.0.2.9:1", Since: time.Now()}}}
	val, _ := json.Marshal(r)
	written := time.Now()
	if _, err := kv.Put(context.Background(), key(r.Name, r.Node), val); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b sees nodez", func() bool { _, ok := b.agents.Ports("hq", "echo.example.com"); return ok })
	if ts := b.agents.Tunnels(); len(ts) != 1 || ts[0].Node != "nodez" {
		t.Errorf("b's view: %+v", ts)
	}
	if err := echoVia(b.agents); !errors.Is(err, proxy.ErrNoTunnel) {
		t.Errorf("node out of reach: %v, want ErrNoTunnel", err)
	}
	for {
		if _, ok := b.agents.Ports("hq", "echo.example.com"); !ok {
			break
		}
		// The bound: its age in the bucket, or in b's copy, plus b's sweep.
		if time.Since(written) > AgentTTL+AgentRefresh+converge {
			t.Fatalf("nodez's registration still held %v after it was written", time.Since(written))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("gone %v after it was written (AgentTTL %v)", time.Since(written), AgentTTL)
	if ts := b.agents.Tunnels(); len(ts) != 0 {
		t.Errorf("b's view after expiry: %+v", ts)
	}

	// A registration of b's name from before its restart (b has no
	// tunnel): b deletes it, it is not left to expire.
	r.Node = "nodeb"
	val, _ = json.Marshal(r)
	stale := key(r.Name, r.Node)
	if _, err := kv.Put(context.Background(), stale, val); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), converge)
	defer cancel()
	w, err := kv.Watch(ctx, stale, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	b.agents.adopt(kv)
	b.agents.Changed()
	for e := range w.Updates() {
		if e == nil {
			continue
		}
		if e.Operation() != jetstream.KeyValueDelete {
			t.Fatalf("b's stale registration: %v, want deleted by b", e.Operation())
		}
		break
	}
	if ctx.Err() != nil {
		t.Fatal("b's stale registration was never deleted")
	}
}

// TestForwardListenRefuses: forward_listen takes only cluster nodes'
// certificates, and only names with an agent here.
func TestForwardListenRefuses(t *testing.T) {
	nodes, _, _ := agentCluster(t)
	a, b := nodes[0], nodes[1]
	addr := a.agents.fwd.Addr().String()

	stranger := testpki.NewCA(t, "not the cluster").Node("nodeb", "127.0.0.3").TLS
	c, err := tls.Dial("tcp", addr, &tls.Config{Certificates: []tls.Certificate{stranger}, InsecureSkipVerify: true,
		NextProtos: []string{ALPNForward}})
	if err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err == nil {
		t.Error("a certificate of another CA was accepted")
	}

	ask := func(name string) byte {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, b.agents.clientTLS(b.cfg, "nodea", addr))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tunnel.WriteStream(conn, tunnel.Stream{Service: name, Type: "sip", Client: agentClient}); err != nil {
			t.Fatal(err)
		}
		var answer [1]byte
		if _, err := io.ReadFull(conn, answer[:]); err != nil {
			t.Fatal(err)
		}
		return answer[0]
	}
	if got := ask("other.example.com"); got != fwdNotServed {
		t.Errorf("a name a does not serve: answer %d, want %d", got, fwdNotServed)
	}
	if got := ask("echo.example.com"); got != fwdNoTunnel {
		t.Errorf("a name without a tunnel on a: answer %d, want %d", got, fwdNoTunnel)
	}

	// Where b dials a: forward_listen as given, or with the host of a's
	// route (which may be a's listen address or its source address on
	// loopback) when it has none.
	eventually(t, "b routes to a", func() bool {
		rz, err := b.node.ns.Routez(nil)
		return err == nil && len(rz.Routes) > 0 && rz.Routes[0].RemoteName == "nodea"
	})
	for forward, want := range map[string]string{"127.0.0.2:7444": "127.0.0.2:7444", ":7444": "", "0.0.0.0:7444": "", "[::]:7444": ""} {
		got, err := b.agents.forwardAddr(Registration{Node: "nodea", Forward: forward})
		host, port, _ := net.SplitHostPort(got)
		ip, _ := netip.ParseAddr(host)
		switch {
		case err != nil:
			t.Errorf("%s: %v", forward, err)
		case want != "" && got != want, want == "" && (port != "7444" || !ip.IsLoopback()):
			t.Errorf("%s dialled at %s", forward, got)
		}
	}
	if got, err := b.agents.forwardAddr(Registration{Node: "nodez", Forward: ":7444"}); err == nil {
		t.Errorf("a node with neither route nor address dialled at %s", got)
	}
}
