package proxy

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy/gate"
	"github.com/gatehouse-pbx/gatehouse/proxy/netpoll"
)

// TCP keep-alive of accepted connections: net's defaults (probes after 15 s
// quiet, every 15 s, 9 unanswered end the connection), set on the
// listening socket (listen_linux.go).
const (
	keepAliveIdle     = 15 * time.Second
	keepAliveInterval = 15 * time.Second
	keepAliveCount    = 9
)

// Guard is the fraud blacklist as the listener layer sees it, the gate's
// Guard: Blocked is asked for every accepted connection before anything
// is read from it, so it must be cheap; Report hears about every
// suspicious request. *blacklist.List implements it.
type Guard = gate.Guard

// Options are the parts of a Server that do not come from the configuration.
type Options struct {
	// Handlers serve each service type, by type name ("https", "sip", ...).
	// Every type in the configuration's listen section needs one.
	Handlers map[string]Handler
	// Guard refuses blocked clients and hears suspicious requests; nil
	// blocks nobody (refusals are still logged).
	Guard Guard
	// Logger receives one line per refused request; nil is slog.Default().
	Logger *slog.Logger
	// Gate is the accounting shared with the other listeners (TURN, admin):
	// blocked clients, limits.max_conns_per_ip and limits.max_conns, and the
	// connections closed when a client is blocked. The Server sets its
	// limits from the configuration. Nil makes one of the Server's own
	// around Guard.
	Gate *gate.Gate
	// Agents serves the services with agent (package tunnel); nil: such
	// services are always unavailable.
	Agents Agents
	// Certificates adds tls.acme's certificates and answers its challenges;
	// nil without tls.acme.
	Certificates CertSource
	// Health knows which targets are down; nil dials every target.
	Health Health
}

// Health is the targets' health as the listener layer asks it before
// dialing (*health.Checker implements it).
type Health interface {
	// Down reports whether the target at addr (host:port) is known to be
	// down: the request is refused at once with ReasonTargetDown.
	Down(addr string) bool
	// Observe hears the result of a dial to addr (nil: connected) and
	// reports whether the target is down after it.
	Observe(addr string, err error) bool
}

// Server runs one listener per configured service type and keeps track of
// every connection it accepted, so that Shutdown can wait for them.
type Server struct {
	opts   Options
	log    *slog.Logger
	table  atomic.Pointer[Table]
	ids    atomic.Uint64
	stats  *stats // counters for the admin UI (stats.go)
	aborts aborts // aborted TLS handshakes reported lately (handshake.go)

	mu        sync.Mutex // guards the fields below
	listeners map[string]*listener
	conns     map[*Conn]struct{}
	closing   bool
	poll      *netpoll.Poller // framed relays' (package netpoll), made by the first one
	noPoll    bool            // making it failed: relays keep a goroutine per direction

	wg sync.WaitGroup // accept loops and connections
}

// ALPNer is a Handler that negotiates application protocols on TLS ports
// (HTTP/2 for HTTPS).
type ALPNer interface {
	NextProtos() []string
}

// Reloader is a Handler that keeps state derived from the configuration.
type Reloader interface {
	Reload(t *Table)
}

// NewServer checks that every listened type has a handler, opens the
// listeners and starts accepting. A listener that cannot be opened fails
// the whole start, with the others closed again.
func NewServer(cfg *configs.Config, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		listeners: make(map[string]*listener),
		conns:     make(map[*Conn]struct{}),
		stats:     newStats(),
	}
	if s.opts.Gate == nil {
		s.opts.Gate = NewGate(opts.Guard, opts.Logger)
	}
	if err := s.apply(cfg); err != nil {
		s.closeListeners()
		return nil, err
	}
	return s, nil
}

// Table returns the configuration snapshot new connections use.
func (s *Server) Table() *Table { return s.table.Load() }

// Reload switches new connections to cfg; established ones keep theirs.
// Listeners whose address is unchanged stay open, so no connection attempt
// is refused during a reload.
func (s *Server) Reload(cfg *configs.Config) error {
	return s.apply(cfg)
}

func (s *Server) apply(cfg *configs.Config) error {
	for typ := range cfg.Listen {
		if s.opts.Handlers[typ] == nil && typ != configs.ListenAny {
			return fmt.Errorf("proxy: no handler for service type %q", typ)
		}
	}
	alpn := make(map[string][]string)
	for typ, h := range s.opts.Handlers {
		if a, ok := h.(ALPNer); ok {
			alpn[typ] = a.NextProtos()
		}
	}
	t := NewTable(cfg, alpn)
	t.agents = s.opts.Agents
	t.useCerts(s.opts.Certificates)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return ErrServerClosed
	}
	// Open every new listener before closing any old one, so that a bind
	// error leaves the running configuration untouched.
	opened := make(map[string]*listener)
	for typ, addr := range cfg.Listen {
		if old := s.listeners[typ]; old != nil && old.addr == addr {
			continue
		}
		st, _ := configs.LookupType(typ)
		raw, err := listenTCP(addr)
		if err != nil {
			for _, l := range opened {
				l.ln.Close()
			}
			return fmt.Errorf("proxy: listen %s on %s: %w", typ, addr, err)
		}
		ln := s.opts.Gate.Listen(raw, gate.Service, typ)
		ln.OnAccept = func(_ netip.Addr, v gate.Verdict) { s.stats.accept(typ, v == gate.Blocked) }
		opened[typ] = &listener{srv: s, typ: st, addr: addr, ln: ln, handler: s.opts.Handlers[typ], any: typ == configs.ListenAny}
	}
	s.table.Store(t)
	s.opts.Gate.SetLimits(gate.Limits{PerClient: cfg.Limits.MaxConnsPerIP, Total: cfg.Limits.MaxConns, RangePercent: int(cfg.Limits.MaxConnsPerRange)})
	for typ, old := range s.listeners {
		if addr, ok := cfg.Listen[typ]; !ok || opened[typ] != nil || addr != old.addr {
			old.ln.Close()
			delete(s.listeners, typ)
		}
	}
	for typ, l := range opened {
		s.listeners[typ] = l
		s.wg.Add(1)
		go l.serve()
	}
	for _, h := range s.opts.Handlers {
		if r, ok := h.(Reloader); ok {
			r.Reload(t)
		}
	}
	return nil
}

// Addr returns the address service type typ listens on, or nil.
func (s *Server) Addr(typ string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.listeners[typ]; l != nil {
		return l.ln.Addr()
	}
	return nil
}

// Shutdown stops accepting, closes the stream connections at once (SIP,
// LDAP, H.323, upgraded HTTP: their clients reconnect to the next
// process, and waiting for them would only hold the restart for
// shutdown_timeout), lets handlers that drain (HTTP) finish their requests
// in flight, and waits for connections to end until ctx is done; then it
// closes the rest. It returns ctx's error when it had to close connections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.closeListeners()
	s.closeStreams()
	for typ, h := range s.opts.Handlers {
		if sd, ok := h.(Shutdowner); ok {
			if err := sd.Shutdown(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("handler shutdown", "type", typ, "err", err)
			}
		}
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	defer s.stopPoller()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.abort()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// relayPoller returns the poller for framed relays, making it on first
// use; nil where there is none.
func (s *Server) relayPoller() *netpoll.Poller {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.poll == nil && !s.noPoll && !s.closing {
		p, err := netpoll.New()
		if err != nil {
			s.log.Warn("no poller for idle connections: one goroutine per relay direction", "err", err)
			s.noPoll = true
			return nil
		}
		s.poll = p
	}
	return s.poll
}

// stopPoller stops the poller once every connection has ended.
func (s *Server) stopPoller() {
	s.mu.Lock()
	p := s.poll
	s.poll, s.noPoll = nil, true
	s.mu.Unlock()
	if p != nil {
		p.Stop()
	}
}

// closeStreams closes the connections that do not drain by themselves:
// those of handlers that are no Shutdowner, and relayed ones (an upgraded
// HTTP connection). A connection that starts relaying later closes itself
// (Conn.streaming).
func (s *Server) closeStreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if _, drains := s.opts.Handlers[c.Info.Type.Name].(Shutdowner); !drains || c.stream.Load() {
			// The TCP conn under it: the handler's goroutine may be setting
			// c.Conn (a TLS handshake) right now, and closes it itself once
			// its reads fail.
			c.abort()
		}
	}
}

// streaming marks c as relaying a stream and reports whether it may go on:
// false once Shutdown has begun (closeStreams has run, or will see the mark).
func (s *Server) streaming(c *Conn) bool {
	c.stream.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closing
}

// shuttingDown reports whether Shutdown has begun.
func (s *Server) shuttingDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for typ, l := range s.listeners {
		l.ln.Close()
		delete(s.listeners, typ)
	}
}

// ConnStatus describes a live connection for the admin UI.
type ConnStatus struct {
	ID       uint64
	Client   netip.AddrPort
	Type     string
	Service  string
	Target   string
	Started  time.Time
	BytesIn  int64 // from the client
	BytesOut int64 // to the client
	// Identity is who the client said it is (Conn.SetIdentity): the
	// client's claim, unverified.
	Identity string
	// TLSVersion ("TLS 1.3"), SNI and ClientCN describe the client's TLS,
	// "" on plain connections; ClientCNVerified says the certificate
	// chains to tls.client_cas.
	TLSVersion, SNI, ClientCN string
	ClientCNVerified          bool
	// TargetTLS: gatehouse speaks TLS to the target.
	TargetTLS bool
}

// Conns lists the live connections, oldest first.
func (s *Server) Conns() []ConnStatus {
	s.mu.Lock()
	list := make([]ConnStatus, 0, len(s.conns))
	for c := range s.conns {
		list = append(list, c.Status())
	}
	s.mu.Unlock()
	slices.SortFunc(list, func(a, b ConnStatus) int { return cmp.Compare(a.ID, b.ID) })
	return list
}

// Drop closes the live connection with the given ID.
func (s *Server) Drop(id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.id == id {
			c.abort()
			return true
		}
	}
	return false
}

// track registers a new connection for Conns, Drop and Shutdown.
func (s *Server) track(c *Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// Gate is the gate the Server's listeners accept through.
func (s *Server) Gate() *gate.Gate { return s.opts.Gate }

// NewGate makes a gate around guard, with its client key and whitelist
// when guard offers them (*blacklist.List does).
func NewGate(guard Guard, log *slog.Logger) *gate.Gate {
	opts := gate.Options{Logger: log}
	if guard != nil {
		opts.Guard = guard
	}
	if k, ok := guard.(interface{ Key(netip.Addr) netip.Prefix }); ok {
		opts.Key = k.Key
	}
	if r, ok := guard.(interface{ Range(netip.Addr) netip.Prefix }); ok {
		opts.Range = r.Range
	}
	if w, ok := guard.(interface{ Whitelisted(netip.Addr) bool }); ok {
		opts.Whitelisted = w.Whitelisted
	}
	return gate.New(opts)
}

// report logs a refused request and hands it to the Guard, unless its
// target is down (not the client's fault). The Guard's
// event carries the refusal's text (reason and detail); the log line has
// the cause too.
func (s *Server) report(ev blacklist.Event, r *Refusal) {
	attrs := []any{"client", ev.Client, "type", ev.Type, "service", ev.Service, "reason", string(r.Reason)}
	if r.Detail != "" {
		attrs = append(attrs, "detail", r.Detail)
	}
	if r.Err != nil {
		attrs = append(attrs, "err", r.Err)
	}
	s.log.Info("refused", attrs...)
	s.stats.refuse(ev.Type, ev.Service, r.Reason, ev.Service != "" && s.Table().Config.Service(ev.Service) != nil)
	if s.opts.Guard != nil && r.Reason != ReasonTargetDown {
		s.opts.Guard.Report(ev)
	}
}

// Close stops the server at once: listeners and every connection.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Shutdown(ctx)
	return nil
}
