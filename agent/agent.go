// Package agent is the LAN side of agent tunnels (`gatehouse agent`): it
// dials out to every edge of its configuration over TLS, verifies the edge
// by SPKI fingerprint or CA, registers its services (package tunnel's
// hello), and then serves HTTP/2 on the connection: each stream the edge
// opens is one forwarded connection, relayed to the target of the service
// it names. The agent dials only targets of its own configuration.
package agent

//lint:file-ignore SA1019 the tunnel is HTTP/2 on one accepted or dialled conn, which only x/net/http2 serves and dials (ServeConn, NewClientConn) with its windows and pings set per tunnel

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/tunnel"
)

// Backoff is the redial delay: Min doubling to Max, with jitter, back to
// Min once a tunnel stayed up for Stable.
type Backoff struct {
	Min, Max, Stable time.Duration
	cur              time.Duration
}

// DefaultBackoff: 1 s doubling to 30 s, reset after a stable minute.
func DefaultBackoff() Backoff {
	return Backoff{Min: time.Second, Max: 30 * time.Second, Stable: time.Minute}
}

// Next returns the delay before the next dial, after a tunnel that was up
// for up (0: the dial failed). The delay is drawn from [d/2, d] so that
// agents restarted together do not redial together.
func (b *Backoff) Next(up time.Duration) time.Duration {
	switch {
	case up >= b.Stable || b.cur == 0:
		b.cur = b.Min
	default:
		b.cur = min(2*b.cur, b.Max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

// Agent runs the tunnels of one configuration.
type Agent struct {
	cfg     *configs.AgentConfig
	log     *slog.Logger
	backoff Backoff
	base    *http.Server // for the graceful shutdown of every HTTP/2 connection
	h2      *http2.Server
}

// New prepares an agent; Run starts it.
func New(cfg *configs.AgentConfig, log *slog.Logger, backoff Backoff) *Agent {
	a := &Agent{cfg: cfg, log: log, backoff: backoff, base: &http.Server{}}
	a.h2 = &http2.Server{
		// The edge caps streams per tunnel (agents.max_streams); this only
		// bounds an edge gone wrong.
		MaxConcurrentStreams: 10000,
		// Bounds the memory a slow target costs per stream and per tunnel.
		MaxUploadBufferPerStream:     1 << 20,
		MaxUploadBufferPerConnection: 16 << 20,
		// What the edge sends is framed by this; the edge holds a buffer of
		// this size per stream while it waits for client bytes.
		MaxReadFrameSize: 16 << 10,
		IdleTimeout:      0, // a tunnel is kept open, idle or not
	}
	http2.ConfigureServer(a.base, a.h2)
	return a
}

// Run keeps a tunnel to every edge until ctx ends, then drains: the edges
// are told (GOAWAY), streams in flight get cfg.ShutdownTimeout to finish.
func (a *Agent) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, edge := range a.cfg.Edges {
		wg.Go(func() { a.keep(ctx, edge) })
	}
	<-ctx.Done()
	a.log.Info("agent leaving: draining tunnels", "grace", a.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	a.base.Shutdown(sctx) // sends GOAWAY on every tunnel
	wg.Wait()
}

// keep dials edge and redials it with backoff until ctx ends.
func (a *Agent) keep(ctx context.Context, edge string) {
	b := a.backoff
	for {
		start := time.Now()
		up, err := a.session(ctx, edge)
		if ctx.Err() != nil {
			return
		}
		var lived time.Duration
		if up {
			lived = time.Since(start)
		}
		d := b.Next(lived)
		a.log.Warn("tunnel down: redialling", "edge", edge, "err", err, "in", d.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

// session is one tunnel's life; up says it got as far as serving.
func (a *Agent) session(ctx context.Context, edge string) (up bool, err error) {
	conn, w, err := a.dial(ctx, edge)
	if err != nil {
		return false, err
	}
	for _, r := range w.Refused {
		a.log.Warn("edge refused a name", "edge", edge, "name", r.Name, "reason", r.Reason)
	}
	a.log.Info("tunnel up", "edge", edge, "registered", w.Accepted)
	beat := time.Duration(w.HeartbeatMS) * time.Millisecond
	// Stop serving the connection when ctx ends, after the drain.
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		time.AfterFunc(a.cfg.ShutdownTimeout, func() { conn.Close() })
	})
	defer stop()
	srv := *a.h2
	// The edge pings every heartbeat: silence for two of them, and a ping
	// unanswered for one more, is a dead tunnel (three missed).
	srv.ReadIdleTimeout, srv.PingTimeout = 2*beat, beat
	srv.ServeConn(conn, &http2.ServeConnOpts{Context: sctx, BaseConfig: a.base, Handler: http.HandlerFunc(a.stream)})
	conn.Close()
	return true, errors.New("tunnel closed")
}

// dial connects to edge, verifies it, and registers.
func (a *Agent) dial(ctx context.Context, edge string) (*tls.Conn, *tunnel.Welcome, error) {
	host, _, _ := net.SplitHostPort(edge)
	tc := &tls.Config{ServerName: host, NextProtos: []string{tunnel.ALPN}, MinVersion: tls.VersionTLS12}
	if a.cfg.Loaded != nil {
		tc.Certificates = []tls.Certificate{*a.cfg.Loaded}
	}
	if a.cfg.Fingerprint != nil {
		// The pin replaces the chain check: the edge is who holds the key.
		tc.InsecureSkipVerify = true
		want := a.cfg.Fingerprint
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("agent: the edge sent no certificate")
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].RawSubjectPublicKeyInfo)
			if subtle.ConstantTimeCompare(sum[:], want) != 1 {
				return fmt.Errorf("agent: the edge's certificate has fingerprint %s, not edge_fingerprint",
					configs.Fingerprint(cs.PeerCertificates[0]))
			}
			return nil
		}
	} else {
		tc.RootCAs = a.cfg.EdgeCAPool
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: a.cfg.DialTimeout, KeepAlive: 30 * time.Second}, Config: tc}
	dctx, cancel := context.WithTimeout(ctx, a.cfg.DialTimeout)
	defer cancel()
	c, err := d.DialContext(dctx, "tcp", edge)
	if err != nil {
		return nil, nil, err
	}
	conn := c.(*tls.Conn)
	if p := conn.ConnectionState().NegotiatedProtocol; p != tunnel.ALPN {
		conn.Close()
		return nil, nil, fmt.Errorf("agent: the edge does not speak %s (ALPN %q)", tunnel.ALPN, p)
	}
	h := tunnel.Hello{Version: 1, Account: a.cfg.Account, Token: a.cfg.Token}
	for _, s := range a.cfg.Services {
		h.Services = append(h.Services, tunnel.Register{Name: s.Name, Ports: s.Ports})
	}
	conn.SetDeadline(time.Now().Add(a.cfg.DialTimeout))
	if err := tunnel.Write(conn, h); err != nil {
		conn.Close()
		return nil, nil, err
	}
	w, err := tunnel.ReadWelcome(conn)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if w.Error != "" {
		conn.Close()
		return nil, nil, fmt.Errorf("agent: the edge refused the tunnel: %s", w.Error)
	}
	conn.SetDeadline(time.Time{})
	return conn, w, nil
}

// stream serves one forwarded connection: the target of the service the
// stream names, dialled here, and the bytes both ways.
func (a *Agent) stream(w http.ResponseWriter, r *http.Request) {
	st, err := tunnel.ParseStream(r.Header)
	if err != nil || r.Method != http.MethodPost || r.URL.Path != tunnel.StreamPath {
		a.log.Warn("stream refused: malformed", "err", err)
		w.Header().Set(tunnel.HError, "malformed stream header")
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	svc := a.cfg.Service(st.Service)
	port, ok := 0, false
	if svc != nil {
		port, ok = svc.Ports[st.Type]
	}
	if !ok {
		a.log.Warn("stream refused: no such service or port", "client", st.Client, "service", st.Service, "type", st.Type)
		w.Header().Set(tunnel.HError, "no such service or port")
		w.WriteHeader(http.StatusNotFound)
		return
	}
	addr := net.JoinHostPort(svc.Target, strconv.Itoa(port))
	target, err := a.dialTarget(r.Context(), svc, addr, st.TLS)
	if err != nil {
		a.log.Warn("target unreachable", "client", st.Client, "service", st.Service, "target", addr, "err", err)
		w.Header().Set(tunnel.HError, "target unreachable")
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	defer target.Close()
	stop := context.AfterFunc(r.Context(), func() { target.Close() }) // the edge reset the stream
	defer stop()
	a.log.Debug("stream", "client", st.Client, "service", st.Service, "target", addr)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()

	var up sync.WaitGroup
	up.Go(func() { // edge → target
		_, err := tunnel.Copy(target, r.Body, nil)
		if cw, ok := target.(interface{ CloseWrite() error }); ok && err == nil {
			cw.CloseWrite()
		} else {
			target.Close()
		}
	})
	tunnel.Copy(w, target, rc.Flush) // target → edge, flushed as it comes
	target.Close()
	r.Body.Close() // unblocks the upward copy
	up.Wait()
}

func (a *Agent) dialTarget(ctx context.Context, svc *configs.AgentService, addr string, useTLS bool) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil || !useTLS {
		return c, err
	}
	tc := tls.Client(c, &tls.Config{ServerName: svc.Target, MinVersion: tls.VersionTLS12,
		InsecureSkipVerify: !svc.TLSVerify}) // tls_verify: false is the operator's choice for a self-signed PBX
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}
