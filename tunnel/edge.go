package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/net/http2/hpack"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/gate"
	"github.com/gatehouse-pbx/gatehouse/proxy/sockio"
	"github.com/gatehouse-pbx/gatehouse/tunnel/h2mux"
)

// helloTimeout bounds the TLS handshake and the hello of a new tunnel: an
// agent sends its hello at once, so a silent peer only holds a slot this long.
const helloTimeout = 10 * time.Second

// maxHandshakes caps the tunnels being authenticated at once: bcrypt costs
// tens of milliseconds of CPU, which strangers must not be able to queue up.
const maxHandshakes = 8

// The receive windows of a tunnel on the edge: per stream, enough that a
// download is not held back by a few milliseconds in which the edge is not
// scheduled (on a busy host 1 MiB made bulk through the tunnel 0.65-0.95x as
// fast; bench/README.md) nor by a WAN's round trips (4 MiB is 200 MB/s at
// 20 ms); per tunnel, a bound on what one tunnel holds, sixteen streams'
// windows, so that clients that stop reading must be many to spend it and
// stall the tunnel's other streams (TestTunnelSlowReader: fifteen do not).
// Neither is memory until bytes wait: a stream's chunks come from a pool.
const (
	streamWindow = 4 << 20
	tunnelWindow = 16 * streamWindow
	// maxFrame: large DATA frames cost less per byte on bulk transfers.
	maxFrame = h2mux.DefaultMaxFrame
)

// stallTimeout: while a tunnel's window is short, a stream whose client
// has read nothing for this long is reset, so that clients that stop
// reading cannot hold the tunnel's other streams (h2mux's StallTimeout).
// A variable for tests.
var stallTimeout = 10 * time.Second

// missedBeats is how many heartbeats a tunnel may miss before it is dropped.
const missedBeats = 3

// Options are the parts of a Server that do not come from the configuration.
type Options struct {
	// Logger is slog.Default() when nil.
	Logger *slog.Logger
	// Gate admits agents' connections as it does clients' (blocked
	// addresses, per-address caps; a block closes the tunnel); nil admits all.
	Gate *gate.Gate
	// Guard hears agents that misbehave (a failed TLS handshake, a
	// malformed hello, a wrong token or certificate, names the account may
	// not have): the refusal log and the blacklist; nil only logs them.
	Guard interface{ Report(blacklist.Event) }
	// Changed hears that the set of tunnels changed (one came up or went
	// down), for the cluster's registrations; nil: nobody listens. It is
	// called with no lock held and must not block.
	Changed func()
}

// Server is the edge's side of agent tunnels: it accepts agents on
// agents.listen, keeps their tunnels, and opens streams through them
// (proxy.Agents).
type Server struct {
	log   *slog.Logger
	guard interface{ Report(blacklist.Event) }
	hear  func() // Options.Changed, never nil
	cfg   atomic.Pointer[configs.Config]
	ln    net.Listener
	sem   chan struct{} // handshakes in progress
	ids   atomic.Uint64

	mu      sync.Mutex // guards the fields below
	byName  map[string][]*tunnel
	tunnels map[*tunnel]struct{}
	next    uint64 // spreads streams over the tunnels of a name
	closed  bool

	wg sync.WaitGroup // accept loop and tunnels
}

var _ proxy.Agents = (*Server)(nil)

// New listens on cfg.Agents.Listen with the tls certificates; it does not
// listen when that is "" (every service with agent is then unavailable).
func New(cfg *configs.Config, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{log: log, guard: opts.Guard, hear: opts.Changed, sem: make(chan struct{}, maxHandshakes),
		byName: map[string][]*tunnel{}, tunnels: map[*tunnel]struct{}{}}
	if s.hear == nil {
		s.hear = func() {}
	}
	s.cfg.Store(cfg)
	if cfg.Agents.Listen == "" {
		return s, nil
	}
	ln, err := net.Listen("tcp", cfg.Agents.Listen)
	if err != nil {
		return nil, fmt.Errorf("tunnel: agents.listen: %w", err)
	}
	s.ln = ln
	if opts.Gate != nil {
		s.ln = opts.Gate.Listen(ln, gate.Service, "agent")
	}
	s.wg.Go(s.accept)
	log.Info("accepting agents", "listen", ln.Addr().String())
	return s, nil
}

// Addr is the address agents dial, nil when not listening.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Reload takes the accounts and services of cfg for new tunnels, and drops
// the tunnels whose account is gone, or whose authentication or names
// changed (revocation). A changed agents.listen needs a restart.
func (s *Server) Reload(cfg *configs.Config) {
	old := s.cfg.Swap(cfg)
	s.mu.Lock()
	var drop []*tunnel
	for t := range s.tunnels {
		before, after := old.Agents.Account(t.account), cfg.Agents.Account(t.account)
		if after == nil || before == nil || before.TokenHash != after.TokenHash ||
			before.ClientCA != after.ClientCA || !sameNames(before.Names, after.Names) {
			drop = append(drop, t)
		}
	}
	s.mu.Unlock()
	for _, t := range drop {
		s.log.Info("agent tunnel closed: its account changed", "account", t.account, "agent", t.remote)
		t.close()
	}
}

func sameNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Close stops accepting agents, closes every tunnel and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	ts := make([]*tunnel, 0, len(s.tunnels))
	for t := range s.tunnels {
		ts = append(ts, t)
	}
	s.mu.Unlock()
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for _, t := range ts {
		t.close()
	}
	s.wg.Wait()
	return err
}

func (s *Server) accept() {
	delay := 5 * time.Millisecond
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("agents: accept", "err", err)
			time.Sleep(delay)
			delay = min(2*delay, time.Second)
			continue
		}
		delay = 5 * time.Millisecond
		select {
		case s.sem <- struct{}{}:
		default:
			s.log.Warn("agent refused: too many tunnels being authenticated", "agent", c.RemoteAddr().String())
			c.Close()
			continue
		}
		s.wg.Go(func() { s.serve(c) })
	}
}

// serve authenticates one agent and keeps its tunnel until it ends.
func (s *Server) serve(raw net.Conn) {
	t, err := s.handshake(raw, nil)
	<-s.sem
	s.run(raw, t, err)
}

// ServeTLS serves an agent that reached another TLS listener of the edge
// (listen.https or listen.any) and negotiated ALPN gatehouse-agent/1 there:
// the hello, authentication and the tunnel, as on agents.listen. The
// handshake must be complete; conn belongs to ServeTLS, which returns when
// the tunnel ends (at once when too many agents are being authenticated).
// Close waits for it. The listener's TLS configuration must request client
// certificates for accounts with client_ca.
func (s *Server) ServeTLS(conn *tls.Conn) {
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if closed {
		conn.Close()
		return
	}
	defer s.wg.Done()
	select {
	case s.sem <- struct{}{}:
	default:
		s.log.Warn("agent refused: too many tunnels being authenticated", "agent", conn.RemoteAddr().String())
		conn.Close()
		return
	}
	t, err := s.handshake(conn.NetConn(), conn)
	<-s.sem
	s.run(conn, t, err)
}

// run keeps the tunnel t, or reports why the handshake on raw failed.
func (s *Server) run(raw net.Conn, t *tunnel, err error) {
	if err != nil {
		s.log.Warn("agent refused", "agent", raw.RemoteAddr().String(), "err", err)
		var r *refusal
		if errors.As(err, &r) {
			s.report(raw, r.account, r.reason)
		}
		raw.Close()
		return
	}
	defer t.close()
	s.log.Info("agent tunnel up", "account", t.account, "agent", t.remote, "names", t.names)
	t.heartbeat()
	s.log.Info("agent tunnel down", "account", t.account, "agent", t.remote, "err", t.err())
}

// refusal is a handshake failure the agent is to blame for: reported.
type refusal struct {
	account string
	reason  string // the blacklist event's reason
	err     error
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// report hands a misbehaving agent to the guard, as a client refusal.
func (s *Server) report(c net.Conn, account, reason string) {
	if s.guard == nil {
		return
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return
	}
	s.guard.Report(blacklist.Event{Client: ap.Addr().Unmap(), Type: "agent", Service: account, Reason: reason, Time: time.Now()})
}

// errAuth is all an agent is told when its account, token or certificate
// is wrong: which of them is for the edge's log only.
var errAuth = errors.New("authentication failed")

// rawIO gives the tunnel's socket raw reads and writes (sockio), under
// the gate's conn when the listener is the gate's, whose Close frees the
// client's place.
func rawIO(c net.Conn) net.Conn {
	if gc, ok := c.(*gate.Conn); ok {
		if tcp, ok := gc.Conn.(*net.TCPConn); ok {
			return sockio.Under(gc, tcp)
		}
	}
	return sockio.Wrap(c)
}

// handshake authenticates the agent on raw, TLS first unless conn is
// raw's TLS conn, already handshaken by another listener.
func (s *Server) handshake(raw net.Conn, conn *tls.Conn) (*tunnel, error) {
	cfg := s.cfg.Load()
	if conn == nil {
		var certs []tls.Certificate
		for _, ck := range cfg.TLS.Certificates {
			certs = append(certs, ck.Loaded)
		}
		conn = tls.Server(rawIO(raw), &tls.Config{
			Certificates: certs,
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{ALPN},
			// Verified per account below: each has its own CA.
			ClientAuth: tls.RequestClientCert,
		})
	}
	conn.SetDeadline(time.Now().Add(helloTimeout))
	if err := conn.Handshake(); err != nil {
		return nil, &refusal{reason: string(proxy.ReasonTLS), err: fmt.Errorf("tls handshake: %w", err)}
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != ALPN {
		return nil, fmt.Errorf("application protocol %q, not %q", p, ALPN)
	}
	h, err := ReadHello(conn)
	if err != nil {
		return nil, &refusal{reason: "unreadable agent hello", err: err}
	}
	acc := cfg.Agents.Account(h.Account)
	if err := authenticate(acc, h, conn.ConnectionState()); err != nil {
		Write(conn, Welcome{Error: errAuth.Error()})
		return nil, &refusal{account: h.Account, reason: "agent authentication failed",
			err: fmt.Errorf("account %q: %w", h.Account, err)}
	}
	w := Welcome{HeartbeatMS: cfg.Agents.Heartbeat.Milliseconds()}
	ports := map[string]map[string]int{}
	for _, r := range h.Services {
		if reason := allowed(cfg, acc, r.Name); reason != "" {
			w.Refused = append(w.Refused, Refused{Name: r.Name, Reason: reason})
			continue
		}
		w.Accepted = append(w.Accepted, r.Name)
		ports[r.Name] = r.Ports
	}
	if len(w.Refused) > 0 {
		s.log.Warn("agent registration refused in part", "account", acc.Name, "agent", raw.RemoteAddr().String(), "refused", w.Refused)
		for _, r := range w.Refused {
			s.report(raw, acc.Name, "agent name refused ("+r.Reason+")")
		}
	}
	t := &tunnel{s: s, id: s.ids.Add(1), account: acc.Name, remote: raw.RemoteAddr().String(), since: time.Now(),
		names: w.Accepted, ports: ports, maxStreams: int64(cfg.Agents.MaxStreams), beat: cfg.Agents.Heartbeat,
		dead: make(chan struct{})}
	// Set before t is shared: close() may run from now on (Disconnect, Close).
	t.conn = conn
	if !s.add(t, cfg.Agents.MaxTunnels) {
		Write(conn, Welcome{Error: "too many tunnels for this account"})
		return nil, fmt.Errorf("account %q: more than agents.max_tunnels (%d) tunnels", acc.Name, cfg.Agents.MaxTunnels)
	}
	if err := Write(conn, w); err != nil {
		s.remove(t)
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	// Flow control bounds what a client that stops reading costs the
	// edge: streamWindow per stream, tunnelWindow per tunnel. The agent
	// sets its side's windows.
	mc, err := h2mux.Client(conn, h2mux.Config{StreamWindow: streamWindow, ConnWindow: tunnelWindow,
		MaxFrame: maxFrame, MaxStreams: int(t.maxStreams), CloseGrace: closeGrace, StallTimeout: stallTimeout,
		Misbehaved: func(err error) {
			s.log.Warn("agent tunnel: protocol error", "account", t.account, "agent", t.remote, "err", err)
			s.report(conn, t.account, "agent protocol error")
		}})
	if err != nil {
		s.remove(t)
		return nil, err
	}
	t.mc = mc
	t.lastBeat.Store(time.Now().UnixNano())
	if !s.publish(t) {
		// Closed or disconnected while it authenticated: close() found no
		// conn to close then, so it is closed here.
		t.conn.Close()
		return nil, errors.New("tunnel closed while the agent authenticated")
	}
	return t, nil
}

// authenticate checks the hello's token or the TLS client certificate
// against the account.
func authenticate(acc *configs.AgentAccount, h *Hello, cs tls.ConnectionState) error {
	switch {
	case acc == nil:
		return errors.New("unknown account")
	case h.Token != "":
		if acc.TokenHash == "" || bcrypt.CompareHashAndPassword([]byte(acc.TokenHash), []byte(h.Token)) != nil {
			return errors.New("wrong token")
		}
		return nil
	case acc.ClientCAPool != nil && len(cs.PeerCertificates) > 0:
		leaf := cs.PeerCertificates[0]
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: acc.ClientCAPool, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			return fmt.Errorf("client certificate: %w", err)
		}
		if leaf.Subject.CommonName != acc.Name {
			return fmt.Errorf("client certificate of %q", leaf.Subject.CommonName)
		}
		return nil
	}
	return errors.New("neither token nor client certificate")
}

// allowed says why acc may not register name, or "".
func allowed(cfg *configs.Config, acc *configs.AgentAccount, name string) string {
	if !acc.Allows(name) {
		return "not in the account's names"
	}
	svc := cfg.Service(name)
	if svc == nil || svc.Agent != acc.Name {
		return "no service of this account has the name"
	}
	return ""
}

// add counts t against its account's cap; it is not routed to yet.
func (s *Server) add(t *tunnel, maxTunnels int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for o := range s.tunnels {
		if o.account == t.account {
			n++
		}
	}
	if s.closed || n >= maxTunnels {
		return false
	}
	s.tunnels[t] = struct{}{}
	return true
}

// publish routes t's names to it, unless t was removed meanwhile.
func (s *Server) publish(t *tunnel) bool {
	defer s.hear()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tunnels[t]; !ok || s.closed {
		return false
	}
	t.up = true
	for _, n := range t.names {
		s.byName[n] = append(s.byName[n], t)
	}
	return true
}

// remove forgets t: no new stream goes to it.
func (s *Server) remove(t *tunnel) {
	defer s.hear()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tunnels, t)
	for _, n := range t.names {
		ts := s.byName[n]
		for i := range ts {
			if ts[i] == t {
				ts = append(ts[:i:i], ts[i+1:]...)
				break
			}
		}
		if len(ts) == 0 {
			delete(s.byName, n)
		} else {
			s.byName[n] = ts
		}
	}
}

// live returns the tunnels of account serving name, starting with the
// next in turn.
func (s *Server) live(account, name string) []*tunnel {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*tunnel
	ts := s.byName[name]
	s.next++
	for i := range ts {
		t := ts[(int(s.next)+i)%len(ts)]
		if t.account == account && !t.isDead() {
			out = append(out, t)
		}
	}
	return out
}

// Ports implements proxy.Agents.
func (s *Server) Ports(account, name string) (map[string]int, bool) {
	ts := s.live(account, name)
	if len(ts) == 0 {
		return nil, false
	}
	return ts[0].ports[name], true
}

// Dial implements proxy.Agents: a stream through the first live tunnel
// that opens one, so that a tunnel that just dropped costs nothing.
func (s *Server) Dial(ctx context.Context, account, name, typ string, useTLS bool, client netip.AddrPort) (net.Conn, error) {
	st := Stream{Service: name, Type: typ, TLS: useTLS, Client: client}
	var errs []error
	for _, t := range s.live(account, name) {
		c, err := t.open(ctx, st)
		if err == nil {
			return c, nil
		}
		if errors.Is(err, errAgentRefused) || ctx.Err() != nil {
			return nil, err // the agent answered: another tunnel of the name would too
		}
		errs = append(errs, err)
	}
	return nil, proxy.ErrNoTunnel.With(errors.Join(errs...))
}

// Status describes one tunnel for the admin UI and API.
type Status struct {
	ID            uint64    `json:"id"`
	Account       string    `json:"account"`
	Agent         string    `json:"agent"` // its address
	Since         time.Time `json:"since"`
	Names         []string  `json:"names"`
	Streams       int64     `json:"streams"`
	BytesIn       int64     `json:"bytes_in"`  // from the agent
	BytesOut      int64     `json:"bytes_out"` // to the agent
	LastHeartbeat time.Time `json:"last_heartbeat"`
	// Node is the cluster node holding the tunnel; "" for this one
	// outside a cluster. The cluster's view fills it in (Streams, bytes
	// and heartbeat are then this node's knowledge: zero for another's).
	Node string `json:"node,omitempty"`
	// Remote: another node holds it (it cannot be disconnected here).
	Remote bool `json:"remote,omitempty"`
}

// Tunnels lists the tunnels, oldest first.
func (s *Server) Tunnels() []Status {
	s.mu.Lock()
	out := make([]Status, 0, len(s.tunnels))
	for t := range s.tunnels {
		if !t.up {
			continue // still in its handshake
		}
		out = append(out, Status{ID: t.id, Account: t.account, Agent: t.remote, Since: t.since, Names: t.names,
			Streams: int64(t.mc.NumStreams()), BytesIn: t.mc.BytesIn(), BytesOut: t.mc.BytesOut(),
			LastHeartbeat: time.Unix(0, t.lastBeat.Load())})
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Disconnect closes the tunnel with id; it reports whether there was one.
func (s *Server) Disconnect(id uint64) bool {
	s.mu.Lock()
	var found *tunnel
	for t := range s.tunnels {
		if t.id == id {
			found = t
		}
	}
	s.mu.Unlock()
	if found != nil {
		found.close()
	}
	return found != nil
}

// tunnel is one agent's connection.
type tunnel struct {
	s          *Server
	id         uint64
	account    string
	remote     string
	since      time.Time
	names      []string
	ports      map[string]map[string]int // by name
	maxStreams int64
	beat       time.Duration
	conn       net.Conn
	mc         *h2mux.Conn
	up         bool // routed to; guarded by Server.mu

	lastBeat  atomic.Int64 // unix nanoseconds of the last answered ping
	dead      chan struct{}
	closeOnce sync.Once
	cause     atomic.Pointer[error]
}

// isDead: closed, gone, or draining (the agent sent GOAWAY), or at its
// stream cap: no new stream goes to it.
func (t *tunnel) isDead() bool {
	select {
	case <-t.dead:
		return true
	default:
		return !t.mc.CanOpen()
	}
}

func (t *tunnel) err() error {
	if e := t.cause.Load(); e != nil {
		return *e
	}
	return nil
}

// close ends the tunnel; its streams end with it.
func (t *tunnel) close() {
	t.closeOnce.Do(func() {
		t.s.remove(t)
		close(t.dead)
		t.conn.Close() // the mux's reader ends, and every stream with it
	})
}

// heartbeat pings the agent every heartbeat until the tunnel ends or misses
// missedBeats pings in a row; it then waits for the tunnel's streams.
func (t *tunnel) heartbeat() {
	defer t.mc.Wait()
	defer t.close()
	tick := time.NewTicker(t.beat)
	defer tick.Stop()
	missed := 0
	for {
		select {
		case <-t.dead:
			return
		case <-t.mc.Done():
			err := t.mc.Err()
			t.cause.Store(&err)
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), t.beat)
		err := t.mc.Ping(ctx)
		cancel()
		switch {
		case err == nil:
			missed = 0
			t.lastBeat.Store(time.Now().UnixNano())
		case errors.Is(err, context.DeadlineExceeded):
			if missed++; missed >= missedBeats {
				e := fmt.Errorf("missed %d heartbeats", missed)
				t.cause.Store(&e)
				return
			}
		default:
			t.cause.Store(&err)
			return
		}
	}
}

// closeGrace is how long a stream the proxy closed waits for the agent to
// end it before it is reset: long enough to deliver what was written last.
const closeGrace = 5 * time.Second

// open opens one stream and returns its end as a net.Conn: the mux's
// stream, whose bytes wait in the tunnel's reader's buffers, so that an
// idle stream holds no goroutine and no buffer here.
func (t *tunnel) open(ctx context.Context, st Stream) (net.Conn, error) {
	h := http.Header{}
	st.SetHeader(h)
	fields := make([]hpack.HeaderField, 0, len(h))
	for k, vs := range h {
		for _, v := range vs {
			fields = append(fields, hpack.HeaderField{Name: strings.ToLower(k), Value: v})
		}
	}
	s, err := t.mc.Open(ctx, "agent", StreamPath, fields)
	if err != nil {
		if errors.Is(err, h2mux.ErrTooMany) {
			return nil, fmt.Errorf("tunnel: agents.max_streams (%d) streams open", t.maxStreams)
		}
		return nil, err
	}
	if s.Status() != http.StatusOK {
		s.Close()
		return nil, fmt.Errorf("%w: %s", errAgentRefused, fieldValue(s.Fields(), strings.ToLower(HError)))
	}
	s.OnAbort(func() {
		if s.Stalled() {
			t.s.log.Warn("agent tunnel: stream reset: its client read nothing while the tunnel's window ran short",
				"client", st.Client, "service", st.Service, "account", t.account, "agent", t.remote, "after", stallTimeout)
		}
	})
	return &streamConn{Stream: s, addr: streamAddr(st.Service)}, nil
}

func fieldValue(fields []hpack.HeaderField, name string) string {
	for _, f := range fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// streamConn is the edge's end of one stream, handed to the proxy: the
// mux's stream (Read, Write, CloseWrite, deadlines, Alive), named by its
// service: the edge never knows the target's address.
type streamConn struct {
	*h2mux.Stream
	addr streamAddr
}

func (c *streamConn) LocalAddr() net.Addr  { return c.addr }
func (c *streamConn) RemoteAddr() net.Addr { return c.addr }

// streamAddr names a stream's far end by its service.
type streamAddr string

func (a streamAddr) Network() string { return "agent" }
func (a streamAddr) String() string  { return "agent:" + string(a) }

var errAgentRefused = errors.New("tunnel: the agent refused the stream")
