package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/tunnel"
)

// The forwarding carrier, on cluster.forward_listen: a node that has a
// connection for an agent's name but no tunnel for it dials the node that
// registered one, under mutual TLS with the node certificates (ALPN
// ALPNForward), and writes the stream header (tunnel.WriteStream: name,
// service type, TLS towards the target, the client's address). The
// receiving node answers one byte (fwd*), and on fwdOK the conn carries
// the connection's bytes both ways from then on, the first packet the edge
// has already read included: the forwarding node writes it as it would to
// a local stream. The receiving node opens the stream through its own
// tunnel, so the agent sees the real client's address, and the HTTP
// handler of the first node has already written X-Real-IP.
const ALPNForward = "gatehouse-forward/1"

// forwardTimeout bounds the TLS handshake and the stream header of a
// forwarded connection on the receiving node: a node sends both at once.
const forwardTimeout = 10 * time.Second

// maxForwardHandshakes caps the connections on forward_listen that have not
// shown a node certificate and a stream header yet: a stranger reaching the
// port holds at most this many goroutines, for forwardTimeout each.
const maxForwardHandshakes = 64

// The receiving node's answer.
const (
	fwdOK          byte = iota
	fwdNoTunnel         // no live tunnel here serves the name (any longer)
	fwdNotServed        // no service with an agent has the name here
	fwdAgentFailed      // the agent could not open the stream (its target is unreachable)
)

// errAgentFailed: the other node's agent answered, and could not reach
// its target; another node's agent would not do better.
var errAgentFailed = errors.New("cluster: the agent behind the other node could not open the stream")

// forwarder accepts connections forwarded by the other nodes.
type forwarder struct {
	a   *Agents
	ln  net.Listener
	tls *tls.Config
	sem chan struct{} // connections before their stream header

	mu     sync.Mutex // guards the fields below
	conns  map[net.Conn]struct{}
	closed bool

	wg sync.WaitGroup // the connections' handlers
}

// listenForward opens cluster.forward_listen: TLS with this node's
// certificate, and only clients with a certificate of the cluster CA
// (as the routes between the embedded NATS servers take them).
func (a *Agents) listenForward(cfg *configs.Config) (*forwarder, error) {
	k := &cfg.Cluster
	if k.TLS.Loaded == nil || k.TLS.CAPool == nil {
		return nil, errors.New("cluster.forward_listen needs cluster.tls (cert, key and ca)")
	}
	ln, err := net.Listen("tcp", k.ForwardListen)
	if err != nil {
		return nil, fmt.Errorf("cluster.forward_listen: %w", err)
	}
	a.n.log.Info("cluster: accepting forwarded agent connections", "listen", ln.Addr().String())
	return &forwarder{a: a, ln: ln, conns: map[net.Conn]struct{}{}, sem: make(chan struct{}, maxForwardHandshakes), tls: &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*k.TLS.Loaded},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    k.TLS.CAPool,
		NextProtos:   []string{ALPNForward},
	}}, nil
}

// Addr is where the forwarder listens.
func (f *forwarder) Addr() net.Addr { return f.ln.Addr() }

func (f *forwarder) accept() {
	delay := 5 * time.Millisecond
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			f.a.n.log.Warn("cluster: forward_listen accept", "err", err)
			time.Sleep(delay)
			delay = min(2*delay, time.Second)
			continue
		}
		delay = 5 * time.Millisecond
		select {
		case f.sem <- struct{}{}:
		default:
			f.a.n.log.Warn("cluster: forwarded connection refused: too many in their handshake", "from", c.RemoteAddr().String())
			c.Close()
			continue
		}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			<-f.sem
			c.Close()
			return
		}
		f.conns[c] = struct{}{}
		f.wg.Add(1)
		f.mu.Unlock()
		go func() {
			defer f.wg.Done()
			f.handle(c)
			f.mu.Lock()
			delete(f.conns, c)
			f.mu.Unlock()
		}()
	}
}

// close stops accepting, cuts the forwarded connections and waits for them.
func (f *forwarder) close() error {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	err := f.ln.Close()
	f.wg.Wait()
	return err
}

// handle serves one forwarded connection: who sent it, for what, then
// the stream through a local tunnel.
func (f *forwarder) handle(raw net.Conn) {
	defer raw.Close()
	held := true
	release := func() {
		if held {
			held = false
			<-f.sem
		}
	}
	defer release()
	from := raw.RemoteAddr().String()
	conn := tls.Server(raw, f.tls)
	conn.SetDeadline(time.Now().Add(forwardTimeout))
	if err := conn.Handshake(); err != nil {
		f.a.n.log.Warn("cluster: forwarded connection refused: TLS (not a cluster node?)", "from", from, "err", err)
		return
	}
	cs := conn.ConnectionState()
	node := cs.PeerCertificates[0].Subject.CommonName
	if cs.NegotiatedProtocol != ALPNForward {
		f.a.n.log.Warn("cluster: forwarded connection refused: application protocol", "from", from, "from_node", node, "alpn", cs.NegotiatedProtocol)
		return
	}
	st, err := tunnel.ReadStream(conn)
	if err != nil {
		f.a.n.log.Warn("cluster: forwarded connection refused: unreadable stream header", "from", from, "from_node", node, "err", err)
		return
	}
	release() // a node's: what follows is bounded by the node's own limits
	cfg := f.a.cfg.Load()
	svc := cfg.Service(st.Service)
	if svc == nil || svc.Agent == "" {
		f.a.n.log.Warn("cluster: forwarded connection refused: no service with an agent has the name here",
			"from", from, "from_node", node, "service", st.Service, "client", st.Client.String())
		f.a.count("in", st.Service, node, false)
		conn.Write([]byte{fwdNotServed})
		return
	}
	ctx, cancel := context.WithTimeout(f.a.ctx, cfg.Limits.DialTimeout)
	stream, err := f.a.local.Dial(ctx, svc.Agent, st.Service, st.Type, st.TLS, st.Client)
	cancel()
	if err != nil {
		answer := fwdAgentFailed
		if errors.Is(err, proxy.ErrNoTunnel) {
			answer = fwdNoTunnel
		}
		f.a.n.log.Info("cluster: forwarded connection not served", "from", from, "from_node", node, "service", st.Service,
			"client", st.Client.String(), "err", err)
		f.a.count("in", st.Service, node, false)
		conn.Write([]byte{answer})
		return
	}
	defer stream.Close()
	if _, err := conn.Write([]byte{fwdOK}); err != nil {
		return
	}
	conn.SetDeadline(time.Time{})
	f.a.count("in", st.Service, node, true)
	relay(conn, stream)
}

// relay copies a and b both ways until both directions end: an end of
// file is passed on as a half-close, an error cuts both.
func relay(a, b net.Conn) {
	var wg sync.WaitGroup
	one := func(dst, src net.Conn) {
		if _, err := io.Copy(dst, src); err != nil {
			a.Close()
			b.Close()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Go(func() { one(b, a) })
	one(a, b)
	wg.Wait()
}

// forward carries a connection to r's node: the stream header, then the
// connection's bytes, on the conn returned. A node out of reach, or one
// that no longer has the tunnel, is an error for the caller to try the
// next; errAgentFailed is the agent's answer.
func (a *Agents) forward(ctx context.Context, r Registration, st tunnel.Stream) (net.Conn, error) {
	addr, err := a.forwardAddr(r)
	if err != nil {
		a.count("out", st.Service, r.Node, false)
		return nil, err
	}
	cfg := a.cfg.Load()
	c, err := (&tls.Dialer{Config: a.clientTLS(cfg, r.Node, addr)}).DialContext(ctx, "tcp", addr)
	if err != nil {
		a.count("out", st.Service, r.Node, false)
		return nil, fmt.Errorf("node %s at %s: %w", r.Node, addr, err)
	}
	conn := c.(*tls.Conn)
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	var answer [1]byte
	if err = tunnel.WriteStream(conn, st); err == nil {
		_, err = io.ReadFull(conn, answer[:])
	}
	if err == nil && answer[0] != fwdOK {
		err = map[byte]error{fwdNoTunnel: errors.New("no tunnel for the name there any longer"),
			fwdNotServed:   errors.New("not a service with an agent there (do the nodes' configurations differ?)"),
			fwdAgentFailed: errAgentFailed}[answer[0]]
		if err == nil {
			err = fmt.Errorf("answer %d", answer[0])
		}
	}
	if err != nil {
		conn.Close()
		a.count("out", st.Service, r.Node, false)
		return nil, fmt.Errorf("node %s at %s: %w", r.Node, addr, err)
	}
	conn.SetDeadline(time.Time{})
	a.count("out", st.Service, r.Node, true)
	return conn, nil
}

// clientTLS presents this node's certificate and accepts the other node's
// when the cluster CA signed it and it names the address dialled or the
// node (the address may come from the route, not from a DNS name on the
// certificate).
func (a *Agents) clientTLS(cfg *configs.Config, node, addr string) *tls.Config {
	k := &cfg.Cluster
	host, _, _ := net.SplitHostPort(addr)
	t := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    k.TLS.CAPool,
		NextProtos: []string{ALPNForward},
		// Verified below: by the CA, and the address or the node name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no certificate")
			}
			leaf := cs.PeerCertificates[0]
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: k.TLS.CAPool, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return err
			}
			if leaf.VerifyHostname(host) == nil || leaf.Subject.CommonName == node || slices.Contains(leaf.DNSNames, node) {
				return nil
			}
			return fmt.Errorf("the certificate names neither %s nor node %s", host, node)
		},
	}
	if k.TLS.Loaded != nil {
		t.Certificates = []tls.Certificate{*k.TLS.Loaded}
	}
	return t
}

type fwdKey struct{ dir, service, node string }

// count adds a forwarded connection, carried or not, to the figures.
func (a *Agents) count(dir, service, node string, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := fwdKey{dir, service, node}
	s := a.stats[k]
	if s == nil {
		if len(a.stats) >= 10000 { // names are the configuration's; nodes the cluster's: never reached
			return
		}
		s = &fwdStats{}
		a.stats[k] = s
	}
	if ok {
		s.ok++
	} else {
		s.failed++
	}
}

type fwdStats struct{ ok, failed uint64 }

// ForwardStat counts connections carried between nodes, for /metrics.
type ForwardStat struct {
	// Direction is "out" (this node carried the client's connection to
	// Node) or "in" (Node carried it here, to a local tunnel).
	Direction string
	Service   string
	Node      string
	Carried   uint64
	Failed    uint64 // out: the node was out of reach or had no tunnel; in: refused or not served
}

// Forwards returns the figures of forwarded connections.
func (a *Agents) Forwards() []ForwardStat {
	a.mu.Lock()
	out := make([]ForwardStat, 0, len(a.stats))
	for k, s := range a.stats {
		out = append(out, ForwardStat{Direction: k.dir, Service: k.service, Node: k.node, Carried: s.ok, Failed: s.failed})
	}
	a.mu.Unlock()
	slices.SortFunc(out, func(x, y ForwardStat) int {
		return strings.Compare(x.Direction+x.Service+x.Node, y.Direction+y.Service+y.Node)
	})
	return out
}
