package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// listener accepts one service type on one address.
type listener struct {
	srv     *Server
	typ     configs.ServiceType
	addr    string
	ln      net.Listener
	handler Handler
}

// serve is the accept loop. Like net/http, it backs off on temporary
// errors (running out of file descriptors) instead of spinning or dying.
func (l *listener) serve() {
	defer l.srv.wg.Done()
	var backoff time.Duration
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			l.srv.log.Error("accept failed", "type", l.typ.Name, "addr", l.addr, "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		l.srv.wg.Add(1)
		go l.handle(raw)
	}
}

// handle runs the gate (blacklist, per-IP cap) and TLS termination, then
// hands the connection to the handler of its service type.
func (l *listener) handle(raw net.Conn) {
	defer l.srv.wg.Done()
	client := clientAddr(raw)
	blocked := l.srv.opts.Guard != nil && l.srv.opts.Guard.Blocked(client.Addr())
	l.srv.stats.accept(l.typ.Name, blocked)
	if blocked {
		// Closed before a byte is read or a TLS handshake is started.
		raw.Close()
		return
	}
	c := &Conn{
		Conn:    raw,
		raw:     raw,
		Info:    ConnInfo{Client: client, Type: l.typ},
		Table:   l.srv.Table(),
		srv:     l.srv,
		id:      l.srv.ids.Add(1),
		started: time.Now(),
	}
	if !l.srv.admit(c) {
		l.srv.log.Warn("connection limit reached", "client", client.Addr(), "type", l.typ.Name,
			"max_conns_per_ip", c.Table.Config.Limits.MaxConnsPerIP)
		raw.Close()
		return
	}
	defer l.srv.release(c)
	defer c.Close()

	// One deadline covers the handshake and the first packet: a client that
	// trickles bytes cannot hold a goroutine longer than that.
	limits := c.Table.Config.Limits
	raw.SetDeadline(time.Now().Add(limits.FirstPacketTimeout))
	if l.typ.TLS {
		if err := c.startTLS(); err != nil {
			c.Report("", ReasonTLS, err)
			return
		}
	}
	l.handler.ServeConn(c)
}

// startTLS terminates TLS on the client connection, within the deadline
// already set on it.
func (c *Conn) startTLS() error {
	// A plain type upgraded in band (LDAP StartTLS) uses its TLS sibling's
	// configuration.
	_, tlsType := familyTypes(c.Info.Type.Family)
	tc := tls.Server(c.Conn, c.Table.ServerTLS(tlsType))
	ctx, cancel := context.WithTimeout(context.Background(), c.Table.Config.Limits.FirstPacketTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	cs := tc.ConnectionState()
	c.Conn = tc
	c.Info.TLS = &cs
	c.Info.VerifiedCN = c.Table.verifiedCN(&cs)
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
