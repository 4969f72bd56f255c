// Package gate is the one door every TCP listener of gatehouse accepts
// through: the service listeners (proxy), TURN over TCP and TLS (turn) and
// the admin port (webui). It answers, before a byte is read or a TLS
// handshake started, whether a new connection may stay, with one accounting
// for all of them:
//
//   - a blocked client is closed at once;
//   - limits.max_conns_per_ip caps the connections of one client, counted
//     by the blacklist's client key (an IPv4 address, an IPv6 /64 by
//     default), across every listener;
//   - limits.max_conns caps the service connections of clients that are not
//     whitelisted, so that the admin port and whitelisted clients keep a
//     reserve of file descriptors an operator can always log in with;
//   - fairness (fair.go): one range (the blacklist's aggregation prefix, a
//     /24 or /48) holds at most limits.max_conns_per_range of
//     limits.max_conns, and once the appliance is nearly full only ranges
//     holding less than their share get in, so that a flood spread over
//     many addresses cannot lock out everyone else.
//
// A connection over a cap is closed and reported as suspicious. The gate
// also keeps every admitted connection by client, so that when the
// blacklist blocks a client ([Gate.Block]) what it has open is closed at
// once, on every listener and whatever the protocol. [Listener] wraps a
// net.Listener with all of this and with the accept backoff of net/http.
package gate

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
)

// Guard is the blacklist as the gate sees it; *blacklist.List and
// EventLog implement it.
type Guard interface {
	Blocked(ip netip.Addr) bool
	Report(ev blacklist.Event)
}

// Options are what New needs. Every field may be left zero.
type Options struct {
	// Guard refuses blocked clients and hears connections over a cap; nil
	// blocks nobody and reports nothing. When it is an AcceptLog (the
	// command's *EventLog) every refusal at accept is also recorded there.
	Guard Guard
	// Key returns the client an address belongs to (blacklist.List.Key);
	// nil counts IPv4 addresses and IPv6 /64s.
	Key func(netip.Addr) netip.Prefix
	// Range returns the network an address is counted in for fairness
	// (blacklist.List.Range); nil counts IPv4 /24s and IPv6 /48s, or the
	// client key where that is wider.
	Range func(netip.Addr) netip.Prefix
	// Whitelisted tells whether an address is exempt from limits.max_conns
	// (blacklist.List.Whitelisted); nil exempts nobody.
	Whitelisted func(netip.Addr) bool
	// Logger gets the gate's lines, rate-limited; nil is slog.Default().
	Logger *slog.Logger
}

// Class says which caps apply to a listener's connections.
type Class int

const (
	// Service connections count against limits.max_conns and
	// limits.max_conns_per_ip.
	Service Class = iota
	// Admin connections count against limits.max_conns_per_ip only: they
	// use the reserve limits.max_conns leaves.
	Admin
)

// Verdict is what the gate decided about a new connection.
type Verdict int

const (
	Admitted  Verdict = iota
	Blocked           // the blacklist refuses the client
	ClientCap         // the client is at limits.max_conns_per_ip
	TotalCap          // the appliance is at limits.max_conns
	RangeCap          // the client's range holds its share of limits.max_conns (fair.go)
	Closing           // the listener is closing
)

// Reasons reported to the blacklist for connections over a cap, and the
// refusal log's reason for a blocked client's connection.
const (
	ReasonBlocked   = "blocked"
	ReasonClientCap = "connection limit per client"
	ReasonTotalCap  = "connection limit"
	ReasonRangeCap  = "connection limit per range"
)

// Limits are the caps the gate enforces; a zero field is no cap.
type Limits struct {
	PerClient int // limits.max_conns_per_ip
	Total     int // limits.max_conns
	// RangePercent is limits.max_conns_per_range: the percentage of Total
	// one range may hold (0 or 100: Total itself). The nearly-full rule
	// (fair.go) applies whatever its value, whenever Total is set.
	RangePercent int
}

// Gate is the accounting shared by every listener. Its methods are safe for
// concurrent use.
type Gate struct {
	opts Options
	log  *slog.Logger
	// accepts is the Guard as the refusal log (an *EventLog), when it is
	// one: refusals at accept go there, coalesced.
	accepts AcceptLog

	limits atomic.Pointer[Limits]

	// Accept failures (running out of descriptors), for /healthz.
	acceptErrAt  atomic.Int64 // unix nanoseconds of the latest failed accept
	acceptErrMsg atomic.Pointer[string]

	refusedCap   atomic.Uint64
	refusedRange atomic.Uint64
	cut          atomic.Uint64
	logs         rateLog

	mu      sync.Mutex // guards the fields below
	clients map[netip.Prefix]*client
	ranges  map[netip.Prefix]int // capped connections by range (fair.go)
	capped  int                  // service connections of clients that are not whitelisted
	open    int                  // every admitted connection
}

// client is what the gate holds for one client key.
type client struct {
	conns map[*Conn]struct{}
}

// New makes a Gate with no caps; SetLimits sets them.
func New(opts Options) *Gate {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	g := &Gate{opts: opts, log: opts.Logger, clients: make(map[netip.Prefix]*client), ranges: make(map[netip.Prefix]int)}
	g.accepts, _ = opts.Guard.(AcceptLog)
	g.limits.Store(&Limits{})
	return g
}

// SetLimits sets the caps. Connections already open stay.
func (g *Gate) SetLimits(l Limits) {
	l.PerClient, l.Total = max(l.PerClient, 0), max(l.Total, 0)
	if l.RangePercent <= 0 || l.RangePercent > 100 {
		l.RangePercent = 100
	}
	g.limits.Store(&l)
}

// Key returns the client key of ip.
func (g *Gate) Key(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap().WithZone("")
	if g.opts.Key != nil {
		return g.opts.Key(ip)
	}
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

// Admit decides about a new connection from ip on a listener of class c
// (typ names the listener in reports). An admitted conn is registered and
// wrapped: closing the returned Conn releases its place.
func (g *Gate) Admit(raw net.Conn, ip netip.Addr, c Class, typ string) (*Conn, Verdict) {
	if g.opts.Guard != nil && g.opts.Guard.Blocked(ip) {
		if g.accepts != nil {
			g.accepts.AcceptRefused(blacklist.Event{Client: ip, Type: typ, Reason: ReasonBlocked, Time: time.Now()}, false)
		}
		return nil, Blocked
	}
	key := g.Key(ip)
	exempt := c == Admin || (g.opts.Whitelisted != nil && g.opts.Whitelisted(ip))
	var rng netip.Prefix
	if !exempt {
		rng = g.Range(ip)
	}
	lim := g.limits.Load()
	g.mu.Lock()
	cl := g.clients[key]
	v := Admitted
	switch {
	case lim.PerClient > 0 && cl != nil && len(cl.conns) >= lim.PerClient:
		v = ClientCap
	case !exempt && lim.Total > 0 && g.capped >= lim.Total:
		v = TotalCap
	case !exempt && lim.Total > 0 && !g.fairLocked(rng, lim):
		v = RangeCap
	}
	if v != Admitted {
		held := g.ranges[rng]
		g.mu.Unlock()
		g.refuse(ip, typ, v, lim, rng, held)
		return nil, v
	}
	if cl == nil {
		cl = &client{conns: make(map[*Conn]struct{})}
		g.clients[key] = cl
	}
	conn := &Conn{Conn: raw, g: g, key: key, rng: rng, ip: ip, capped: !exempt}
	cl.conns[conn] = struct{}{}
	g.open++
	if conn.capped {
		g.capped++
		g.ranges[rng]++
	}
	g.mu.Unlock()
	return conn, Admitted
}

// refuse reports a connection over a cap: suspicious, since one client
// holding hundreds of connections, or a flood filling the appliance, is
// how a denial of service looks. The log line is rate-limited.
func (g *Gate) refuse(ip netip.Addr, typ string, v Verdict, lim *Limits, rng netip.Prefix, held int) {
	g.refusedCap.Add(1)
	reason, args := ReasonClientCap, []any{"limits.max_conns_per_ip", lim.PerClient}
	switch v {
	case TotalCap:
		reason, args = ReasonTotalCap, []any{"limits.max_conns", lim.Total}
	case RangeCap:
		g.refusedRange.Add(1)
		reason, args = ReasonRangeCap, []any{"range", rng.String(), "held", held, "limits.max_conns_per_range", rangeCap(lim)}
	}
	g.logs.log(g.log, slog.LevelWarn, "connection refused: "+reason, append([]any{"client", ip, "service", typ}, args...)...)
	ev := blacklist.Event{Client: ip, Type: typ, Reason: reason, Time: time.Now()}
	switch {
	case g.accepts != nil:
		g.accepts.AcceptRefused(ev, true) // coalesced in the refusal log, then reported
	case g.opts.Guard != nil:
		g.opts.Guard.Report(ev)
	}
}

func (g *Gate) release(c *Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	cl := g.clients[c.key]
	if cl == nil {
		return
	}
	if _, ok := cl.conns[c]; !ok {
		return
	}
	delete(cl.conns, c)
	if len(cl.conns) == 0 {
		delete(g.clients, c.key)
	}
	g.open--
	if c.capped {
		g.capped--
		if g.ranges[c.rng]--; g.ranges[c.rng] <= 0 {
			delete(g.ranges, c.rng)
		}
	}
}

// Block closes the connections of the clients inside p whom the Guard
// blocks now (a whitelisted one stays). The blacklist calls it for every
// new block: automatic, manual, aggregated or reloaded.
func (g *Gate) Block(p netip.Prefix) {
	if g.opts.Guard == nil || !p.IsValid() {
		return
	}
	var victims []*Conn
	g.mu.Lock()
	if cl := g.clients[p]; cl != nil {
		for c := range cl.conns {
			victims = append(victims, c)
		}
	} else {
		for key, cl := range g.clients {
			if key.Overlaps(p) {
				for c := range cl.conns {
					victims = append(victims, c)
				}
			}
		}
	}
	g.mu.Unlock()
	n := 0
	for _, c := range victims {
		if p.Contains(c.ip) && g.refuses(c.ip) {
			c.cutOff()
			n++
		}
	}
	if n > 0 {
		g.cut.Add(uint64(n))
		g.log.Info("blocked client's connections closed", "client", p.String(), "connections", n)
	}
}

// refuses asks the Guard whether ip is blocked without counting an attempt
// when it can tell: closing what a client has open is not its attempt.
func (g *Gate) refuses(ip netip.Addr) bool {
	if r, ok := g.opts.Guard.(refuser); ok {
		return r.Refuses(ip)
	}
	return g.opts.Guard.Blocked(ip)
}

// noteAcceptError records a failed accept for Exhausted.
func (g *Gate) noteAcceptError(err error) {
	msg := err.Error()
	g.acceptErrMsg.Store(&msg)
	g.acceptErrAt.Store(time.Now().UnixNano())
}

// exhaustedFor is how long after the latest failed accept Exhausted still
// reports it: longer than the longest backoff, so that a listener failing
// once a second is reported without a gap.
const exhaustedFor = 2 * time.Second

// Exhausted reports whether an accept failed within the last two seconds
// (the process is out of file descriptors, typically), and the error.
func (g *Gate) Exhausted() (bool, string) {
	at := g.acceptErrAt.Load()
	if at == 0 || time.Since(time.Unix(0, at)) > exhaustedFor {
		return false, ""
	}
	return true, *g.acceptErrMsg.Load()
}

// Stats are the gate's figures for the admin UI and metrics.
type Stats struct {
	Open        int    `json:"open"`                   // admitted connections open now, on every listener
	Capped      int    `json:"capped"`                 // of them, those counted against limits.max_conns
	Clients     int    `json:"clients"`                // distinct clients with a connection open
	Ranges      int    `json:"ranges"`                 // distinct ranges holding connections counted against limits.max_conns
	RefusedCap  uint64 `json:"refused_cap"`            // connections closed at accept for a cap
	RefusedFair uint64 `json:"refused_fair"`           // of them, those refused by the range rules (fair.go)
	CutAtBlock  uint64 `json:"cut_at_block"`           // connections closed because their client was blocked
	MaxConns    int    `json:"max_conns"`              // limits.max_conns in force (0: no cap)
	MaxPerIP    int    `json:"max_conns_per_ip"`       // limits.max_conns_per_ip in force (0: no cap)
	MaxPerRange int    `json:"max_conns_per_range"`    // connections one range may hold (0: no cap)
	AcceptError string `json:"accept_error,omitempty"` // the latest accept failure, while Exhausted
}

// Stats returns the current figures.
func (g *Gate) Stats() Stats {
	g.mu.Lock()
	st := Stats{Open: g.open, Capped: g.capped, Clients: len(g.clients), Ranges: len(g.ranges)}
	g.mu.Unlock()
	st.RefusedCap, st.RefusedFair, st.CutAtBlock = g.refusedCap.Load(), g.refusedRange.Load(), g.cut.Load()
	lim := g.limits.Load()
	st.MaxConns, st.MaxPerIP = lim.Total, lim.PerClient
	if lim.Total > 0 {
		st.MaxPerRange = rangeCap(lim)
	}
	_, st.AcceptError = g.Exhausted()
	return st
}

// Conn is an admitted connection. Closing it releases its place in the
// gate; so does its client being blocked, which closes it.
type Conn struct {
	net.Conn // the accepted conn (*net.TCPConn for TCP listeners)
	g        *Gate
	key      netip.Prefix
	rng      netip.Prefix // counted in Gate.ranges when capped
	ip       netip.Addr
	capped   bool
	once     sync.Once
	blocked  atomic.Bool
}

// Close closes the connection and releases its place; it may be called
// more than once.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.g.release(c) })
	return err
}

// Client is the client's address, IPv4-mapped addresses unmapped.
func (c *Conn) Client() netip.Addr { return c.ip }

// Blocked reports whether the gate closed the connection because its
// client was blocked: a protocol that reads ahead (pipelined requests)
// must not forward what it already holds.
func (c *Conn) Blocked() bool { return c.blocked.Load() }

// closeGrace is how long a blocked client's connection may still write
// after its reading side was shut: the answer to the request that caused
// the block (a 403, an LDAP error) gets out, nothing more comes in.
const closeGrace = time.Second

// cutOff ends a blocked client's connection: its reading side is shut, so
// a read waiting now ends with EOF; the answer being written gets
// closeGrace, then the connection is closed whatever the handler does.
// Linux still hands a later read what arrives after shutdown(SHUT_RD), so
// whoever forwards client bytes checks Blocked first (the proxy's relay
// does; so must a handler that reads requests itself).
func (c *Conn) cutOff() {
	c.blocked.Store(true)
	if cr, ok := c.Conn.(interface{ CloseRead() error }); ok && cr.CloseRead() == nil {
		time.AfterFunc(closeGrace, func() { c.Close() })
		return
	}
	c.Close()
}

// rateLog writes a repetitive line at most once per interval, with how many
// were suppressed since.
type rateLog struct {
	mu         sync.Mutex
	next       time.Time
	suppressed int
}

const logInterval = 10 * time.Second

func (r *rateLog) log(l *slog.Logger, level slog.Level, msg string, args ...any) {
	r.mu.Lock()
	now := time.Now()
	if now.Before(r.next) {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	n := r.suppressed
	r.suppressed, r.next = 0, now.Add(logInterval)
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.Log(context.Background(), level, msg, args...)
}
