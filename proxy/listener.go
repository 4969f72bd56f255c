package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy/gate"
	"github.com/gatehouse-pbx/gatehouse/proxy/sockio"
)

// listener accepts one service type on one address.
type listener struct {
	srv     *Server
	typ     configs.ServiceType
	addr    string
	ln      *gate.Listener
	handler Handler
	any     bool // listen.any: the type is detected per connection (any.go)
}

// serve is the accept loop. The gate's listener backs off on temporary
// errors (running out of file descriptors) and closes blocked clients and
// connections over a cap, so what comes out of Accept is served.
func (l *listener) serve() {
	defer l.srv.wg.Done()
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			return // closed: the gate's listener returns no other error
		}
		l.srv.wg.Add(1)
		go l.handle(raw.(*gate.Conn))
	}
}

// handle runs TLS termination, then hands the connection to the handler of
// its service type.
func (l *listener) handle(gc *gate.Conn) {
	raw := gc.Conn // the *net.TCPConn, so that relays can splice
	table := l.srv.Table()
	c := &Conn{
		Conn:    raw,
		raw:     raw,
		gate:    gc,
		Info:    ConnInfo{Client: clientAddr(raw), Type: l.typ, MaxMessage: int(table.Config.Limits.FirstPacketMax)},
		Table:   table,
		srv:     l.srv,
		id:      l.srv.ids.Add(1),
		started: time.Now(),
	}
	if !l.srv.track(c) {
		gc.Close()
		l.srv.wg.Done()
		return
	}
	defer func() {
		if !c.detached.Load() { // else its relay releases it
			c.release()
		}
	}()

	// One deadline covers the handshake and the first packet: a client that
	// trickles bytes cannot hold a goroutine longer than that.
	limits := c.Table.Config.Limits
	c.firstDeadline = time.Now().Add(limits.FirstPacketTimeout)
	raw.SetDeadline(c.firstDeadline)
	handler := l.handler
	if l.any {
		var ok bool
		if handler, ok = l.detectAny(c); !ok {
			return
		}
	} else if l.typ.TLS {
		if err := c.startTLS(); err != nil {
			c.reportHandshake(err)
			return
		}
	}
	if c.Info.TLS != nil && acmeHandshake(c.Info.TLS) {
		return // a TLS-ALPN-01 validation: the handshake was all of it
	}
	if c.Info.TLS != nil && c.Info.TLS.NegotiatedProtocol == alpnAgent {
		// An agent on listen.https (table.go gave it the tunnel's TLS).
		if s := c.Table.agentServer(); s != nil {
			s.ServeTLS(c.Conn.(*tls.Conn)) // the tunnel sets its own deadlines
		}
		return
	}
	if c.Info.Type.Name == "http" && c.answerHTTPChallenge() {
		return
	}
	handler.ServeConn(c)
}

// startTLS terminates TLS on the client connection, within the deadline
// already set on it.
func (c *Conn) startTLS() error {
	// A plain type upgraded in band (LDAP StartTLS) uses its TLS sibling's
	// configuration.
	_, tlsType := familyTypes(c.Info.Type.Family)
	tc := tls.Server(sockio.Wrap(c.Conn), c.Table.ServerTLS(tlsType))
	ctx, cancel := context.WithTimeout(context.Background(), c.Table.Config.Limits.FirstPacketTimeout)
	defer cancel()
	// The handshake runs on a goroutine of its own that ends with it: its
	// key exchange and signature grow a stack to tens of KiB, which the
	// connection's own goroutine would otherwise keep while it sits idle
	// for hours (a stack shrinks only when the GC finds it mostly unused).
	done := make(chan error, 1)
	go func() { done <- tc.HandshakeContext(ctx) }()
	if err := <-done; err != nil {
		return err
	}
	cs := tc.ConnectionState()
	c.Conn = tc
	c.Info.TLS = &cs
	c.Info.VerifiedCN = c.Table.verifiedCN(&cs)
	c.setTLS(&cs, c.Info.VerifiedCN)
	return nil
}

func clientAddr(c net.Conn) netip.AddrPort {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	return ap
}
