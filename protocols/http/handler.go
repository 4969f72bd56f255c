// Package http routes HTTP and HTTPS per request, not per connection.
//
// Unlike the stream protocols, HTTP carries many requests on one connection
// (keep-alive, and HTTP/2 streams on the TLS side), and each may be for
// another service, so the first packet does not decide a connection's fate.
// The proxy hands each accepted (and, for HTTPS, TLS-terminated) connection
// to this package; every request is then routed by its Host, checked
// against the service's allowed networks and URLs, and forwarded over
// target connections that are kept alive between requests.
//
// HTTP/1.x runs on a request loop of its own (h1.go) that does this work
// on the connection's goroutine, which is what makes gatehouse's
// keep-alive throughput comparable to HAProxy's. HTTP/2 (negotiated by
// ALPN on the TLS port) goes through net/http's server and
// httputil.ReverseProxy (serve.go), under the same rules.
package http

import (
	"context"
	"errors"
	"log/slog"
	"net"
	stdhttp "net/http"
	"net/http/httputil"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// Handler serves the http and https service types. It implements
// proxy.Handler, proxy.ALPNer, proxy.Reloader and proxy.Shutdowner.
//
// Each configuration gets its own generation: a pool of target connections
// for HTTP/1.x, and a net/http server and transport for HTTP/2 with that
// configuration's limits and target CAs. A reload starts a new generation
// for new connections; connections already accepted finish on the
// generation that accepted them.
type Handler struct {
	log     *slog.Logger
	current atomic.Pointer[generation]
	conns   sync.Map // net.Conn given to a generation's server → *entry

	mu   sync.Mutex // guards gens
	gens []*generation
}

var (
	_ proxy.Handler    = (*Handler)(nil)
	_ proxy.ALPNer     = (*Handler)(nil)
	_ proxy.Reloader   = (*Handler)(nil)
	_ proxy.Shutdowner = (*Handler)(nil)
)

// generation is the HTTP machinery for one configuration. A retired
// generation is dropped (its server closed, its pools emptied, its entry in
// Handler.gens removed) once its last connection has ended, so reloads leave
// nothing behind.
type generation struct {
	h     *Handler
	table *proxy.Table

	// HTTP/1.x: the request loops' target connections, and the loops.
	pool    *pool
	closing atomic.Bool // Shutdown began: finish requests in flight, take no more
	mu      sync.Mutex  // guards conns, h2conns, retired and dropped
	conns   map[*h1conn]struct{}
	h2conns int  // HTTP/2 connections being served
	retired bool // a newer generation takes new connections
	dropped bool

	// HTTP/2.
	srv       *stdhttp.Server
	ln        *connListener
	rp        *httputil.ReverseProxy
	transport *stdhttp.Transport
	serving   sync.WaitGroup // the Serve goroutine
}

// Target connections idle in a pool: at most this many per target, for at
// most this long (as net/http's Transport was configured before).
const (
	poolPerTarget = 256
	poolMaxIdle   = 90 * time.Second
)

// track registers a request loop; false once Shutdown has begun.
func (g *generation) track(c *h1conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing.Load() {
		return false
	}
	g.conns[c] = struct{}{}
	return true
}

// untrack ends a request loop's registration; the last connection of a
// retired generation drops it.
func (g *generation) untrack(c *h1conn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
	g.dropIfDone()
}

// trackH2 registers an HTTP/2 connection; false once the generation is
// retired, when the caller must use the current one.
func (g *generation) trackH2() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.retired {
		return false
	}
	g.h2conns++
	return true
}

func (g *generation) untrackH2() {
	g.mu.Lock()
	g.h2conns--
	g.mu.Unlock()
	g.dropIfDone()
}

// retire hands new connections to a newer generation.
func (g *generation) retire() {
	g.mu.Lock()
	g.retired = true
	g.mu.Unlock()
	g.ln.Close()
	g.transport.CloseIdleConnections()
	g.dropIfDone()
}

// dropIfDone drops a retired generation that serves no connection any more.
func (g *generation) dropIfDone() {
	g.mu.Lock()
	done := g.retired && !g.dropped && len(g.conns) == 0 && g.h2conns == 0
	if done {
		g.dropped = true
	}
	g.mu.Unlock()
	if !done {
		return
	}
	g.pool.closeAll()
	g.srv.Close()
	g.serving.Wait()
	g.transport.CloseIdleConnections()
	g.h.forget(g)
}

// beginShutdown stops the request loops at their next request boundary:
// idle ones at once.
func (g *generation) beginShutdown() {
	g.closing.Store(true)
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.conns {
		c.wake()
	}
}

// abort ends the request loops' waits on their targets.
func (g *generation) abort() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.conns {
		c.abort()
	}
}

func (g *generation) active() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// New returns a Handler; it serves once the proxy has called Reload with the
// first configuration, which NewServer does before accepting.
func New(logger *slog.Logger) *Handler {
	if logger == nil {
		logger = slog.Default()
	}
	return &Handler{log: logger}
}

// NextProtos offers HTTP/2 on the TLS port.
func (h *Handler) NextProtos() []string { return []string{"h2", "http/1.1"} }

// forget removes a dropped generation from the list Shutdown walks.
func (h *Handler) forget(g *generation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, x := range h.gens {
		if x == g {
			h.gens = append(h.gens[:i], h.gens[i+1:]...)
			return
		}
	}
}

// Reload starts a generation for t and retires the previous one: it stops
// taking connections and its idle target connections are closed. The
// proxy calls it once per service type the handler serves (http and
// https); a table it already serves is not started again.
func (h *Handler) Reload(t *proxy.Table) {
	if cur := h.current.Load(); cur != nil && cur.table == t {
		return
	}
	l := t.Config.Limits
	g := &generation{
		h:     h,
		table: t,
		ln:    newConnListener(),
		pool:  newPool(poolPerTarget, poolMaxIdle),
		conns: make(map[*h1conn]struct{}),
	}
	direct := (&net.Dialer{Timeout: l.DialTimeout}).DialContext
	g.transport = &stdhttp.Transport{
		// A route through an agent tunnel is dialled by the proxy; its
		// Addr is unique per agent name, type and port, so the Transport's
		// pool keys its streams apart from every direct target.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if rt, ok := ctx.Value(routeKey{}).(*routed); ok && rt.route.Agent != nil && rt.route.Addr == addr {
				return rt.e.pc.Dial(ctx, rt.route, nil)
			}
			return direct(ctx, network, addr)
		},
		TLSClientConfig:       t.TargetTLSBase(),
		TLSHandshakeTimeout:   l.DialTimeout,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
	}
	g.rp = &httputil.ReverseProxy{
		Rewrite:        h.rewrite,
		Transport:      byProxyProtocol{plain: g.transport, pp: newProxyProtocolTransport(l.DialTimeout, t.TargetTLSBase())},
		ModifyResponse: h.modifyResponse,
		ErrorHandler:   h.proxyError,
		ErrorLog:       slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
		BufferPool:     copyBuffers,
		// FlushInterval 0: httputil already flushes at once for streams
		// (server-sent events, bodies of unknown length).
	}
	g.srv = &stdhttp.Server{
		Handler:           stdhttp.HandlerFunc(func(w stdhttp.ResponseWriter, r *stdhttp.Request) { h.serveHTTP(g, w, r) }),
		ConnContext:       h.connContext,
		ConnState:         h.connState,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
		ReadHeaderTimeout: l.FirstPacketTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    int(l.FirstPacketMax),
	}
	g.serving.Add(1)
	go func() {
		defer g.serving.Done()
		g.srv.Serve(g.ln)
	}()
	h.mu.Lock()
	h.gens = append(h.gens, g)
	h.mu.Unlock()
	if old := h.current.Swap(g); old != nil {
		old.retire()
	}
}

// Shutdown stops taking connections, closes idle keep-alive connections and
// waits for requests in flight until ctx is done.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	gens := h.gens
	h.gens = nil
	h.mu.Unlock()
	for _, g := range gens {
		g.beginShutdown()
	}
	var errs []error
	for _, g := range gens {
		errs = append(errs, g.srv.Shutdown(ctx))
		g.serving.Wait()
		g.transport.CloseIdleConnections()
	}
	// Like net/http's Shutdown, poll: a loop ends when its request does.
	wait := time.Millisecond
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		n := 0
		for _, g := range gens {
			n += g.active()
		}
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			// The proxy closes the client connections now; end the waits
			// on targets too, so that every loop returns.
			for _, g := range gens {
				g.abort()
			}
			errs = append(errs, ctx.Err())
		case <-timer.C:
			wait = min(2*wait, 100*time.Millisecond)
			timer.Reset(wait)
			continue
		}
		break
	}
	for _, g := range gens {
		g.pool.closeAll()
	}
	return errors.Join(errs...)
}

// entry follows one HTTP/2 client connection through the net/http server.
type entry struct {
	pc       *proxy.Conn
	hijacked atomic.Bool // upgraded: ServeHTTP owns it until it returns
	doneOnce sync.Once
	done     chan struct{}
}

func (e *entry) finish() { e.doneOnce.Do(func() { close(e.done) }) }

// ServeConn serves c until the client or gatehouse ends it: HTTP/1.x on
// the request loop, HTTP/2 on the generation's net/http server.
func (h *Handler) ServeConn(c *proxy.Conn) {
	g := h.current.Load()
	if g == nil {
		return // not configured yet
	}
	if c.Info.TLS != nil && c.Info.TLS.NegotiatedProtocol == "h2" {
		h.serveH2(g, c)
		return
	}
	h.serveH1(g, c)
}

// serveH2 gives c to the HTTP/2 server of the current generation and
// waits until the server is done with it, so that the proxy's connection
// accounting stays right. A reload that retires the generation while c is
// on its way to it hands c to the next one: no connection is dropped.
func (h *Handler) serveH2(g *generation, c *proxy.Conn) {
	e := &entry{pc: c, done: make(chan struct{})}
	// net/http serves HTTP/2 only on a *tls.Conn it can see.
	nc := c.Conn
	h.conns.Store(nc, e)
	defer h.conns.Delete(nc)
	for {
		if g.trackH2() {
			if g.ln.push(nc) {
				break
			}
			g.untrackH2()
		}
		next := h.current.Load()
		if next == g || g.closing.Load() {
			return // shutting down
		}
		g = next
	}
	defer g.untrackH2()
	<-e.done
}

type ctxKey struct{}

func (h *Handler) connContext(ctx context.Context, nc net.Conn) context.Context {
	if e, ok := h.conns.Load(nc); ok {
		return context.WithValue(ctx, ctxKey{}, e)
	}
	return ctx
}

func (h *Handler) connState(nc net.Conn, state stdhttp.ConnState) {
	v, ok := h.conns.Load(nc)
	if !ok {
		return
	}
	e := v.(*entry)
	switch state {
	case stdhttp.StateHijacked:
		e.hijacked.Store(true)
	case stdhttp.StateClosed:
		e.finish()
	}
}

// connListener is the net.Listener the HTTP server accepts from: the proxy
// pushes connections that passed its gate into it.
type connListener struct {
	ch        chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), closed: make(chan struct{})}
}

var _ net.Listener = (*connListener)(nil)

func (l *connListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4zero}
}

func clientIP(e *entry) netip.Addr { return e.pc.Info.Client.Addr() }
