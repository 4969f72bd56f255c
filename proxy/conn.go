package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/proxy/gate"
)

// Conn is a client connection on its way through gatehouse. Handlers read
// and write it as a net.Conn (the TLS stream on TLS ports) and use its
// methods to route, dial and report.
type Conn struct {
	net.Conn          // the client stream: the raw TCP conn, or TLS over it
	Info     ConnInfo // who the client is
	// Table is the configuration the connection was accepted under.
	Table *Table

	raw     net.Conn   // the TCP conn under any TLS
	gate    *gate.Conn // its place in the gate; nil in tests that build a Conn by hand
	srv     *Server
	id      uint64
	started time.Time
	// firstDeadline bounds the TLS handshake and the first packet
	// (limits.first_packet_timeout from accept).
	firstDeadline time.Time

	closeOnce sync.Once
	stream    atomic.Bool // relaying a stream: Shutdown closes it at once
	// detached: a detached relay or a Park's resume owns the connection
	// (its handler's goroutine has returned or is returning) and releases
	// it when it ends. relay is that relay, parked the wait of a Park:
	// what abort ends.
	detached  atomic.Bool
	relay     atomic.Pointer[relay]
	parked    atomic.Pointer[parked] // waiting in Park
	mu        sync.Mutex             // guards the fields below
	service   string
	target    string
	targetTLS bool   // gatehouse speaks TLS to the target
	identity  string // who the client said it is (SetIdentity)
	tls       tlsFacts
	bytesIn   atomic.Int64
	bytesOut  atomic.Int64
}

// FirstDeadline is when the handshake and the first packet must be done
// (limits.first_packet_timeout after accept), the read deadline the
// listener set: a handler that moves it while waiting for the first
// request puts it back for the request's head.
func (c *Conn) FirstDeadline() time.Time { return c.firstDeadline }

// Close closes the client connection; it may be called more than once.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.Conn.Close()
		if c.Conn != c.raw {
			c.raw.Close()
		}
		if c.gate != nil {
			c.gate.Close()
		}
	})
	return err
}

// abort ends the connection from another goroutine than its owner's
// (Shutdown, Drop): it closes the TCP conn under any TLS, so the owner's
// reads and writes fail and it returns, and leaves c.Conn, which the owner
// may be replacing meanwhile (TLS termination, listen.any), to the owner's
// Close.
func (c *Conn) abort() {
	if r := c.relay.Load(); r != nil {
		r.Kill() // a parked direction would not notice its socket closing
		return
	}
	c.raw.Close()
	c.Unpark() // likewise
}

// release closes the connection and ends its accounting in the Server:
// the last thing done for it, by its handler's goroutine or its relay.
func (c *Conn) release() {
	c.Close()
	c.srv.untrack(c)
	c.srv.wg.Done()
}

// Blocked reports whether the connection was closed because its client was
// blocked while it was open. A handler that holds requests it has already
// read (pipelined, or buffered) must not forward them when it is true.
func (c *Conn) Blocked() bool { return c.gate != nil && c.gate.Blocked() }

// tlsFacts are what the admin UI shows of the client's TLS, copied when
// the handshake is done (Info.TLS is the handler's, not the UI's, to read).
type tlsFacts struct {
	version, sni, cn string
	verified         bool
}

// maxIdentity caps what SetIdentity keeps of a client's claim.
const maxIdentity = 256

// SetIdentity records who the client said it is, as the protocol saw it
// (SIP address of record, LDAP bind name, H.323 alias, HTTP Host), for
// the admin UI; the latest call wins. It is the client's claim, kept to
// maxIdentity bytes of printable text.
func (c *Conn) SetIdentity(who string) {
	if who == "" {
		return
	}
	c.mu.Lock()
	same := c.identity == who // a kept-alive HTTP client's Host, request after request
	c.mu.Unlock()
	if same {
		return
	}
	who = printable(who, maxIdentity)
	c.mu.Lock()
	c.identity = who
	c.mu.Unlock()
}

// printable returns s without control bytes, cut to max bytes.
func printable(s string, max int) string {
	b := make([]byte, 0, min(len(s), max))
	for i := 0; i < len(s) && len(b) < max; i++ {
		if s[i] >= 0x20 && s[i] != 0x7f {
			b = append(b, s[i])
		}
	}
	return string(b)
}

// setTLS records the client's TLS facts after a handshake.
func (c *Conn) setTLS(cs *tls.ConnectionState, verifiedCN string) {
	f := tlsFacts{version: tls.VersionName(cs.Version), sni: printable(cs.ServerName, maxIdentity), cn: verifiedCN, verified: verifiedCN != ""}
	if f.cn == "" && len(cs.PeerCertificates) > 0 {
		f.cn = printable(cs.PeerCertificates[0].Subject.CommonName, maxIdentity)
	}
	c.mu.Lock()
	c.tls = f
	c.mu.Unlock()
}

// Status describes the connection for the admin UI.
func (c *Conn) Status() ConnStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ConnStatus{
		ID: c.id, Client: c.Info.Client, Type: c.Info.Type.Name,
		Service: c.service, Target: c.target, Started: c.started,
		BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load(),
		Identity: c.identity, TargetTLS: c.targetTLS,
		TLSVersion: c.tls.version, SNI: c.tls.sni, ClientCN: c.tls.cn, ClientCNVerified: c.tls.verified,
	}
}

// CountIn and CountOut add n bytes to the connection's traffic, from the
// client and to the client, for handlers that move the bytes themselves
// (HTTP): the admin UI shows them live.
func (c *Conn) CountIn(n int)  { c.bytesIn.Add(int64(n)) }
func (c *Conn) CountOut(n int) { c.bytesOut.Add(int64(n)) }

// setRoute records where the connection goes, for Status.
func (c *Conn) setRoute(service, target string, targetTLS bool) {
	c.mu.Lock()
	c.service, c.target, c.targetTLS = service, target, targetTLS
	c.mu.Unlock()
}

// Report reports a suspicious request on this connection for service (""
// when none is known yet): it is logged with r's reason, detail and cause,
// counted by r.Reason, and handed to the Guard as a blacklist event whose
// Reason is r.Text().
func (c *Conn) Report(service string, r *Refusal) {
	subject := r.Subject
	if subject == "" {
		c.mu.Lock()
		subject = c.identity
		c.mu.Unlock()
	}
	c.srv.report(blacklist.Event{
		Client: c.Info.Client.Addr(), Type: c.Info.Type.Name, Service: service,
		Reason: r.Text(), Time: time.Now(), Subject: printable(subject, maxIdentity),
	}, r)
}

// Route resolves the routing key name for this connection (see
// Table.Resolve), reporting a refusal. Its error is a *Refusal.
func (c *Conn) Route(name, identity string) (*Route, error) {
	r, ref := c.Table.Resolve(c.Info.Client.Addr(), c.Info.Type, c.Info.TLS != nil, name, identity, c.Info.VerifiedCN)
	if ref != nil && ref.Reason == ReasonUnavailable {
		c.srv.log.Info("refused", "client", c.Info.Client.Addr(), "type", c.Info.Type.Name, "service", ref.Service, "reason", ref.Text())
		return nil, ref
	}
	if ref != nil {
		c.Report(ref.Service, ref)
		return nil, ref
	}
	c.srv.log.Debug("routed", "client", c.Info.Client.Addr(), "type", c.Info.Type.Name,
		"service", r.Service.Name, "target", r.Addr, "target_type", r.Type)
	c.setRoute(r.Service.Name, r.Addr, r.TLS != nil)
	return r, nil
}

// Forwarded counts a request that passed every rule and reached r's
// service: a stream connection, or one HTTP request (which Route alone
// cannot tell, as the allowed-URL rule comes after it and a kept-alive
// connection routes once per Host). Call it once the target connection is
// there (after Dial, or with a pooled one): a request whose dial fails is
// counted once, as refused.
func (c *Conn) Forwarded(r *Route) {
	c.srv.stats.forward(c.Info.Type.Name, r.Service.Name)
}

// Available refuses a request to a target known to be down, reported and
// counted as ReasonTargetDown (not against the client); nil when the
// target may be dialed. Dial asks it itself; handlers that dial otherwise
// (HTTP/2's transport) ask before.
func (c *Conn) Available(r *Route) *Refusal {
	if h := c.srv.opts.Health; h != nil && h.Down(r.Addr) {
		ref := Refuse(ReasonTargetDown, "", nil)
		c.Report(r.Service.Name, ref)
		return ref
	}
	return nil
}

// Dialed hears the result of a dial to r's target made outside Dial; a
// failure is reported and returned as a *Refusal: ReasonUnreachable, or
// ReasonTargetDown when the target is down after it.
func (c *Conn) Dialed(r *Route, err error) error {
	down := false
	if h := c.srv.opts.Health; h != nil {
		down = h.Observe(r.Addr, err)
	}
	if err == nil {
		return nil
	}
	ref := Refuse(ReasonUnreachable, "", err)
	if down {
		ref.Reason = ReasonTargetDown
	}
	c.Report(r.Service.Name, ref)
	return ref
}

// Dial connects to the route's target within limits.dial_timeout, with TLS
// when the route says so (after upgrade, for in-band StartTLS). A target
// known to be down is not dialed. A failure is reported (see Dialed) and
// its error is a *Refusal: the contract counts failed target connections
// as suspicious, except while the target is down.
func (c *Conn) Dial(ctx context.Context, r *Route, upgrade func(net.Conn) error) (net.Conn, error) {
	if c.Blocked() {
		return nil, errBlocked
	}
	if ref := c.Available(r); ref != nil {
		return nil, ref
	}
	ctx, cancel := context.WithTimeout(ctx, c.Table.Config.Limits.DialTimeout)
	defer cancel()
	if r.Agent != nil {
		return c.dialAgent(ctx, r)
	}
	var d net.Dialer
	start := time.Now()
	conn, err := d.DialContext(ctx, "tcp", r.Addr)
	if err == nil && r.ProxyProtocol() {
		err = c.sendProxyHeader(ctx, conn, r)
	}
	if err == nil && r.TLS != nil {
		conn, err = c.clientTLS(ctx, conn, r, upgrade)
	}
	if err := c.Dialed(r, err); err != nil {
		return nil, err
	}
	c.srv.stats.dialed(r.Service.Name, time.Since(start))
	return conn, nil
}

// dialAgent opens a stream through an agent's tunnel. No tunnel is the
// service being unavailable, not the client's fault; the agent failing to
// reach its target is reported as a direct dial's failure is.
func (c *Conn) dialAgent(ctx context.Context, r *Route) (net.Conn, error) {
	start := time.Now()
	var conn net.Conn
	err := error(ErrNoTunnel)
	if c.srv.opts.Agents != nil {
		conn, err = c.srv.opts.Agents.Dial(ctx, r.Agent.Account, r.Agent.Name, r.Type, r.Agent.TLS, c.Info.Client)
	}
	switch {
	case errors.Is(err, ErrNoTunnel):
		c.srv.log.Info("refused", "client", c.Info.Client.Addr(), "type", c.Info.Type.Name, "service", r.Service.Name,
			"reason", ErrNoTunnel.Text(), "err", err)
		return nil, ErrNoTunnel.withService(r.Service.Name).With(err)
	case err != nil:
		c.Report(r.Service.Name, Refuse(ReasonUnreachable, "through agent", err))
		return nil, err
	}
	c.srv.stats.dialed(r.Service.Name, time.Since(start))
	return conn, nil
}

// sendProxyHeader writes the PROXY protocol header first on conn, closing
// conn when it cannot.
func (c *Conn) sendProxyHeader(ctx context.Context, conn net.Conn, r *Route) error {
	hdr, err := c.ProxyHeader(r)
	if err == nil {
		if dl, ok := ctx.Deadline(); ok {
			conn.SetWriteDeadline(dl)
		}
		_, err = conn.Write(hdr)
		conn.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		conn.Close()
	}
	return err
}

func (c *Conn) clientTLS(ctx context.Context, conn net.Conn, r *Route, upgrade func(net.Conn) error) (net.Conn, error) {
	if r.StartTLS {
		if upgrade == nil {
			conn.Close()
			return nil, errNoStartTLS
		}
		if dl, ok := ctx.Deadline(); ok {
			conn.SetDeadline(dl)
		}
		err := upgrade(conn)
		conn.SetDeadline(time.Time{})
		if err != nil {
			conn.Close()
			return nil, err
		}
	}
	tc := tls.Client(conn, r.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}
