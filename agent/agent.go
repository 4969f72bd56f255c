// Package agent is the LAN side of agent tunnels (`gatehouse agent`): it
// dials out to every edge of its configuration over TLS, verifies the edge
// by SPKI fingerprint or CA, registers its services (package tunnel's
// hello), and then serves HTTP/2 on the connection (package h2mux, server
// role): each stream the edge opens is one forwarded connection, relayed to
// the target of the service it names. The agent dials only targets of its
// own configuration.
package agent

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/netpoll"
	"github.com/gatehouse-pbx/gatehouse/proxy/sockio"
	"github.com/gatehouse-pbx/gatehouse/tunnel"
	"github.com/gatehouse-pbx/gatehouse/tunnel/h2mux"
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
	// poll parks the targets' quiet sockets (see downward); nil where
	// there is no poller (not Linux): a goroutine waits for each.
	poll *netpoll.Poller
}

// The mux's settings on the agent's side of a tunnel.
var muxConfig = h2mux.Config{
	// The edge caps streams per tunnel (agents.max_streams); this only
	// bounds an edge gone wrong.
	MaxStreams: 10000,
	// Bounds the memory a slow target costs per stream and per tunnel.
	StreamWindow: 1 << 20,
	ConnWindow:   16 << 20,
	MaxFrame:     h2mux.DefaultMaxFrame,
	// The target closed: what the edge still sends has nowhere to go.
	CloseGrace: 0,
}

// New prepares an agent; Run starts it.
func New(cfg *configs.AgentConfig, log *slog.Logger, backoff Backoff) *Agent {
	return &Agent{cfg: cfg, log: log, backoff: backoff}
}

// Run keeps a tunnel to every edge until ctx ends, then drains: the edges
// are told (GOAWAY), streams in flight get cfg.ShutdownTimeout to finish.
func (a *Agent) Run(ctx context.Context) {
	if p, err := netpoll.New(); err != nil {
		a.log.Warn("no poller: one goroutine per quiet target connection", "err", err)
	} else {
		a.poll = p
		defer p.Stop() // after every session's streams have ended (wg.Wait)
	}
	var wg sync.WaitGroup
	for _, edge := range a.cfg.Edges {
		wg.Go(func() { a.keep(ctx, edge) })
	}
	<-ctx.Done()
	a.log.Info("agent leaving: draining tunnels", "grace", a.cfg.ShutdownTimeout)
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
	cfg := muxConfig
	var pumps sync.WaitGroup // the streams' relays, after their handlers returned
	defer pumps.Wait()
	cfg.Handler = func(s *h2mux.Stream) { a.stream(s, &pumps) }
	cfg.Misbehaved = func(err error) { a.log.Warn("tunnel: protocol error of the edge", "edge", edge, "err", err) }
	conn.SetDeadline(time.Now().Add(a.cfg.DialTimeout)) // for the edge's preface
	mc, err := h2mux.Server(conn, cfg)
	if err != nil {
		conn.Close()
		return true, err
	}
	conn.SetDeadline(time.Time{})
	var wg sync.WaitGroup
	wg.Go(func() { // drain when ctx ends: GOAWAY, then the streams in flight get the shutdown timeout
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
			mc.Shutdown(sctx)
			cancel()
		case <-mc.Done():
		}
	})
	wg.Go(func() { watch(mc, beat) })
	<-mc.Done()
	mc.Wait()
	wg.Wait()
	conn.Close()
	return true, fmt.Errorf("tunnel closed: %w", mc.Err())
}

// watch drops the tunnel when the edge goes silent: it pings every
// heartbeat, so silence for two of them, and a ping of ours unanswered
// for one more, is a dead tunnel (three missed).
func watch(mc *h2mux.Conn, beat time.Duration) {
	tick := time.NewTicker(beat)
	defer tick.Stop()
	for {
		select {
		case <-mc.Done():
			return
		case <-tick.C:
		}
		if time.Since(mc.LastRead()) < 2*beat {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), beat)
		err := mc.Ping(ctx)
		cancel()
		if err != nil {
			mc.Close()
			return
		}
	}
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
	dctx, cancel := context.WithTimeout(ctx, a.cfg.DialTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	c, err := d.DialContext(dctx, "tcp", edge)
	if err != nil {
		return nil, nil, err
	}
	conn := tls.Client(sockio.Wrap(c), tc) // the tunnel's reads and writes go raw
	if err := conn.HandshakeContext(dctx); err != nil {
		c.Close()
		return nil, nil, err
	}
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
func (a *Agent) stream(s *h2mux.Stream, pumps *sync.WaitGroup) {
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	h := http.Header{}
	for _, f := range s.Fields() {
		h.Add(f.Name, f.Value)
	}
	refuse := func(status int, why string) {
		s.Respond(status, []hpack.HeaderField{{Name: strings.ToLower(tunnel.HError), Value: why}}, true)
	}
	st, err := tunnel.ParseStream(h)
	if err != nil || s.Method() != http.MethodPost || s.Path() != tunnel.StreamPath {
		a.log.Warn("stream refused: malformed", "err", err)
		refuse(http.StatusBadRequest, "malformed stream header")
		return
	}
	svc := a.cfg.Service(st.Service)
	port, ok := 0, false
	if svc != nil {
		port, ok = svc.Ports[st.Type]
	}
	if !ok {
		a.log.Warn("stream refused: no such service or port", "client", st.Client, "service", st.Service, "type", st.Type)
		refuse(http.StatusNotFound, "no such service or port")
		return
	}
	addr := net.JoinHostPort(svc.Target, strconv.Itoa(port))
	target, err := a.dialTarget(context.Background(), svc, addr, st.TLS)
	if err != nil {
		a.log.Warn("target unreachable", "client", st.Client, "service", st.Service, "target", addr, "err", err)
		refuse(http.StatusBadGateway, "target unreachable")
		return
	}
	a.log.Debug("stream", "client", st.Client, "service", st.Service, "target", addr)
	if s.Respond(http.StatusOK, nil, false) != nil {
		target.Close()
		return
	}
	ok = true
	pumps.Add(1) // done when both directions have ended (pair.end)
	p := &pair{pumps: pumps}
	u := &upward{s: s, target: target, pair: p}
	u.raw, _ = target.(*sockio.Conn)
	u.ready = u.readable
	d := &downward{s: s, target: target, pair: p, poll: a.poll}
	p.down = d
	if a.poll != nil {
		if d.sock = sockio.Socket(target); d.sock != nil {
			a.poll.Add(nil, 0, d)
		}
	}
	// A stream reset, or the tunnel's end, closes the target: after the
	// edge's END_STREAM nothing reads the stream any more, and a quiet
	// target's parked side would otherwise wait (and the session's pumps
	// with it) until the target spoke or hung up.
	s.OnAbort(func() {
		target.Close()
		d.wake()
	})
	u.park()
	// target → edge on a goroutine of its own: it starts with a small stack,
	// where this one grew for the dial, and parks on the poller while the
	// target is quiet.
	go d.run()
}

// pair ends a stream's relay once both directions have ended: the
// session's pumps wait for that, so every goroutine of a direction
// (started by the stream's or the poller's callbacks) has an owner.
type pair struct {
	pumps *sync.WaitGroup
	ended atomic.Int32
	down  *downward
}

func (p *pair) end() {
	if p.ended.Add(1) == 2 {
		p.pumps.Done()
	}
}

// upward copies a stream's bytes to its target without a goroutine while
// the edge sends nothing: the stream calls back when bytes wait. What fits
// in the target's socket at once (a request, mostly) the callback writes
// itself; a goroutine takes over only for the rest, and parks the
// direction again when it has drained the stream.
type upward struct {
	s      *h2mux.Stream
	target net.Conn
	raw    *sockio.Conn // target, when plain TCP: the callback may write to it
	pair   *pair
	ready  func() // u.readable, bound once
}

// relayBuffers serve both directions, only while they run: a parked one
// holds none.
var relayBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (u *upward) park() { u.s.NotifyReadable(u.ready) }

// readable runs on the tunnel's frame reader (or on park's caller), which
// must not block: it writes only what the target's socket takes now.
func (u *upward) readable() {
	bp := relayBuffers.Get().(*[]byte)
	if u.raw == nil {
		go u.pump(bp, nil, false)
		return
	}
	u.pump(bp, nil, true)
}

// pump writes pending, then what waits in the stream, to the target, and
// parks the direction again when the stream has nothing more; at the
// edge's end it half-closes the target (or closes it on an error). now: on
// the frame reader, so only what the socket takes at once is written, and
// a goroutine waits for the target with the rest. bp holds pending and
// goes back to the pool when pump is done with it.
func (u *upward) pump(bp *[]byte, pending []byte, now bool) {
	for {
		if len(pending) == 0 {
			n, err := u.s.ReadAvailable(*bp) // bytes or an error, never both
			switch {
			case err != nil:
				relayBuffers.Put(bp)
				u.end(err)
				return
			case n == 0:
				relayBuffers.Put(bp)
				u.park()
				return
			}
			pending = (*bp)[:n]
		}
		var w int
		var err error
		if now {
			w, err = u.raw.TryWrite(pending)
		} else {
			w, err = u.target.Write(pending)
		}
		if err != nil {
			relayBuffers.Put(bp)
			u.end(err)
			return
		}
		if pending = pending[w:]; len(pending) > 0 {
			go u.pump(bp, pending, false) // the target is slow: wait for it there
			return
		}
	}
}

// end ends the direction: the edge's end (io.EOF) half-closes the target,
// anything else closes it.
func (u *upward) end(err error) {
	if cw, ok := u.target.(interface{ CloseWrite() error }); ok && errors.Is(err, io.EOF) {
		cw.CloseWrite()
	} else {
		u.target.Close()
		u.pair.down.wake() // a parked socket's close is no readiness event
	}
	u.pair.end()
}

// downward copies a target's bytes to its stream. While the target is
// quiet (a phone's registration: for minutes) it holds no goroutine: after
// proxy.ParkGrace without bytes it arms a one-shot wait for the target's
// socket on the agent's poller and returns; the poller starts it again
// when the socket is readable, upward when it closed the target.
type downward struct {
	s      *h2mux.Stream
	target net.Conn
	pair   *pair
	poll   *netpoll.Poller
	sock   syscall.RawConn // the target's TCP socket; nil: no parking
	token  uint64
	parked atomic.Bool
	noPark bool // arming failed: wait on the goroutine from then on
}

func (d *downward) SetToken(t uint64) { d.token = t }
func (d *downward) PollReady()        { d.wake() }

// wake starts a parked direction again; it does nothing to one running.
func (d *downward) wake() {
	if d.parked.CompareAndSwap(true, false) {
		go d.run()
	}
}

// run copies until the target is quiet (then parks) or ends.
//
// The grace is one deadline for a whole period of proxy.ParkGrace, not one
// per read: a busy target (HTTP keep-alive under load) would otherwise
// cost a clock read and a timer change per answer. A period in which bytes
// came starts another; the direction parks after one without any (after
// one to two periods of quiet).
//
// After a read that did not fill the buffer the socket is mostly empty,
// and the next read only finds EAGAIN before it waits; it is made anyway:
// a short read may also have stopped at the peer's FIN (or before a
// reset) whose readiness the netpoller already reported, and waiting
// without that read would wait for good.
func (d *downward) run() {
	bp := relayBuffers.Get().(*[]byte) // held only while running
	defer relayBuffers.Put(bp)
	graceSet, moved := false, false
	for {
		if !graceSet && d.sock != nil && !d.noPark {
			d.target.SetReadDeadline(time.Now().Add(proxy.ParkGrace))
			graceSet, moved = true, false
		}
		n, err := d.target.Read(*bp)
		if n > 0 {
			moved = true
			if _, werr := d.s.Write((*bp)[:n]); werr != nil {
				err = werr
			}
		}
		if graceSet && n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			graceSet = false
			if moved {
				continue // busy in the period that ended: another one
			}
			d.target.SetReadDeadline(time.Time{})
			if d.park() {
				return
			}
			continue // woken meanwhile, or arming failed: read on
		}
		if err != nil {
			d.finish() // the target's end or error, or the stream's
			return
		}
	}
}

// park arms the wait; false when the caller still owns the direction.
func (d *downward) park() bool {
	d.parked.Store(true)
	if err := d.poll.Arm(d.sock, d.token); err != nil {
		if d.parked.CompareAndSwap(true, false) {
			d.noPark = !errors.Is(err, net.ErrClosed) // closed: the read reports it
			return false
		}
	}
	return true
}

// finish ends the direction (EOF or an error alike): the target is done,
// and so is the stream (a reset if the edge has not ended).
func (d *downward) finish() {
	if d.sock != nil {
		d.poll.Remove(nil, d.token)
	}
	d.target.Close()
	d.s.Close()
	d.pair.end()
}

func (a *Agent) dialTarget(ctx context.Context, svc *configs.AgentService, addr string, useTLS bool) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c = sockio.Wrap(c) // raw reads and writes (sockio.Socket finds the socket under it)
	if !useTLS {
		return c, nil
	}
	tc := tls.Client(c, &tls.Config{ServerName: svc.Target, MinVersion: tls.VersionTLS12,
		InsecureSkipVerify: !svc.TLSVerify}) // tls_verify: false is the operator's choice for a self-signed PBX
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}
