package webui

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/health"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/acme"
	"github.com/gatehouse-pbx/gatehouse/proxy/gate"
	"github.com/gatehouse-pbx/gatehouse/tunnel"
	"github.com/gatehouse-pbx/gatehouse/turn"
)

// Errors New returns; test them with errors.Is.
var (
	// ErrNoUsers: admin.users is empty, and an admin listener nobody can
	// log in to would only be a target.
	ErrNoUsers = errors.New("webui: admin.users is empty: the admin listener refuses to start without users " +
		"(add one with a hash from `gatehouse hash-password`)")
	// ErrNoListen: admin.listen is not set.
	ErrNoListen = errors.New("webui: admin.listen is not set")
	// ErrMissingPart: Options lacks the proxy or the blacklist.
	ErrMissingPart = errors.New("webui: Options.Proxy and Options.Blacklist are required")
)

// Options are the running parts the admin interface shows and changes.
type Options struct {
	// Proxy and Blacklist are required.
	Proxy     *proxy.Server
	Blacklist *blacklist.List
	// Guard hears failed logins; nil means Blacklist. Blocked clients are
	// closed at accept by the proxy's gate, which the admin listener
	// shares. The command passes its gate.EventLog, so failed logins also
	// appear among the recent refusals.
	Guard proxy.Guard
	// Events are the recent suspicious requests; nil shows none.
	Events *gate.EventLog
	// TURN returns the running TURN server, nil when there is none; a nil
	// func means none.
	TURN func() *turn.Server
	// ACME lists tls.acme's certificates for the certificates page; nil
	// means there are none.
	ACME func() []acme.Certificate
	// Apply switches gatehouse to a validated configuration: the same
	// function SIGHUP calls. It must call Server.Reconfigure. Nil refuses to
	// apply configurations (they can still be checked).
	Apply func(*configs.Config) error
	// Logger is nil for slog.Default().
	Logger *slog.Logger
	// Clock tells the time; nil is time.Now. Tests move it to expire sessions.
	Clock func() time.Time
	// Version is shown on the dashboard and in /api/status.
	Version string
	// Cluster is this node's cluster membership; nil when alone. It adds
	// GET /api/cluster, the cluster_* metrics and a /healthz failure
	// when the node has lost the cluster.
	Cluster ClusterStatus
	// Health lists the targets' health (*health.Checker); nil shows none.
	Health interface{ Targets() []health.Target }
	// Agents lists and disconnects agent tunnels; nil shows none.
	Agents Agents
}

// Agents is the edge's side of agent tunnels (tunnel.Server).
type Agents interface {
	Tunnels() []tunnel.Status
	Disconnect(id uint64) bool
}

// Server is the admin listener.
type Server struct {
	opts     Options
	log      *slog.Logger
	now      func() time.Time
	started  time.Time
	cfg      atomic.Pointer[configs.Config]
	certs    atomic.Pointer[[]tls.Certificate]
	sessions *sessions
	basic    *basicCache
	http     *http.Server
	mux      *http.ServeMux
	metrics  http.Handler
	applyMu  sync.Mutex // one configuration change through the UI or API at a time

	mu     sync.Mutex // guards the fields below
	ln     net.Listener
	addr   string
	closed bool

	wg sync.WaitGroup // serve loops
}

// Timeouts of the admin listener: generous for a person on a slow link,
// short enough that idle or trickling clients do not pile up.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = time.Minute
	writeTimeout      = time.Minute
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// New checks the admin section of cfg, prepares the certificate (making a
// self-signed one in admin.state_dir when none is configured), opens
// admin.listen and starts serving.
func New(cfg *configs.Config, opts Options) (*Server, error) {
	if cfg.Admin.Listen == "" {
		return nil, ErrNoListen
	}
	if len(cfg.Admin.Users) == 0 {
		return nil, ErrNoUsers
	}
	if opts.Proxy == nil || opts.Blacklist == nil {
		return nil, ErrMissingPart
	}
	if opts.Guard == nil {
		opts.Guard = opts.Blacklist
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.TURN == nil {
		opts.TURN = func() *turn.Server { return nil }
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		now:     opts.Clock,
		started: opts.Clock(),
		basic:   newBasicCache(),
	}
	s.sessions = newSessions(s.now)
	s.cfg.Store(cfg)
	certs, err := s.certificates(cfg)
	if err != nil {
		return nil, err
	}
	s.certs.Store(&certs)
	s.metrics = s.newMetrics()
	s.mux = s.routes()
	s.http = &http.Server{
		Handler:           s.secure(s.mux),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: s.getCertificate,
		},
		// net/http logs failed handshakes (scanners, browsers refusing the
		// self-signed certificate): debug level, not noise at info.
		ErrorLog: slog.NewLogLogger(s.log.With("component", "admin").Handler(), slog.LevelDebug),
	}
	if err := s.listen(cfg.Admin.Listen); err != nil {
		return nil, err
	}
	s.log.Info("admin UI listening", "addr", s.Addr().String(), "users", len(cfg.Admin.Users))
	return s, nil
}

// listen opens addr and serves it; an open listener on another address is
// closed once the new one works.
func (s *Server) listen(addr string) error {
	raw, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("webui: listen on admin.listen %s: %w", addr, err)
	}
	// The gate closes blocked clients before the TLS handshake, counts the
	// admin port's connections per client with the service listeners'
	// (limits.max_conns_per_ip; limits.max_conns leaves the admin port a
	// reserve) and backs off when descriptors run out.
	ln := s.gate().Listen(raw, gate.Admin, "admin")
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		raw.Close()
		return http.ErrServerClosed
	}
	old := s.ln
	s.ln, s.addr = ln, addr
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		if err := s.http.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.log.Error("admin listener stopped", "addr", addr, "err", err)
		}
	}()
	if old != nil {
		old.Close()
	}
	return nil
}

// Addr is the address the admin listener accepts on.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ln.Addr()
}

// Config is the configuration the admin interface works with: the running one.
func (s *Server) Config() *configs.Config { return s.cfg.Load() }

// Reconfigure takes a newly applied configuration: users, certificates,
// metrics_public and, when admin.listen moved, the listener. Sessions of
// users that are gone end. An error leaves the listener as it was; the
// rest of the new configuration is in force.
func (s *Server) Reconfigure(cfg *configs.Config) error {
	old := s.cfg.Swap(cfg)
	s.basic.clear()
	s.sessions.keepUsers(cfg.Admin.Users)
	var errs []error
	if certs, err := s.certificates(cfg); err != nil {
		errs = append(errs, err)
	} else {
		s.certs.Store(&certs)
	}
	if cfg.Admin.Listen != old.Admin.Listen && cfg.Admin.Listen != "" {
		if err := s.listen(cfg.Admin.Listen); err != nil {
			errs = append(errs, err)
		} else {
			s.log.Info("admin UI moved", "addr", s.Addr().String())
		}
	}
	return errors.Join(errs...)
}

// Shutdown stops the admin listener and waits for requests in progress
// until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.http.Shutdown(ctx)
	s.wg.Wait()
	return err
}

// Close stops the admin listener at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.http.Close()
	s.wg.Wait()
	return err
}

// getCertificate picks the certificate for a handshake as crypto/tls would
// from a fixed list (the first that fits the client, else the first), from
// the list in force now.
func (s *Server) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	certs := *s.certs.Load()
	for i := range certs {
		if hello.SupportsCertificate(&certs[i]) == nil {
			return &certs[i], nil
		}
	}
	return &certs[0], nil
}

// gate is the proxy's gate, shared by every listener.
func (s *Server) gate() *gate.Gate { return s.opts.Proxy.Gate() }

// clientIP is the address of the client of r.
func clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// report hands a suspicious admin request to the blacklist.
func (s *Server) report(r *http.Request, reason string) {
	ip := clientIP(r)
	s.log.Warn("admin: "+reason, "client", ip, "path", r.URL.Path)
	s.opts.Guard.Report(blacklist.Event{Client: ip, Type: "admin", Reason: reason, Time: s.now()})
}

// secure adds the headers every answer carries: nothing is framed, sniffed,
// cached or sent as a referrer, and only our own scripts and styles run.
func (s *Server) secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			hd.Set("Cache-Control", "no-store")
		}
		h.ServeHTTP(w, r)
	})
}
