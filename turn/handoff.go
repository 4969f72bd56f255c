package turn

import (
	"net"
	"sync"
)

// listen.any hands TURN over TCP and over TLS to the server here: the
// proxy has accepted the connection (through the gate), told STUN framing
// or the stun.turn ALPN from the other protocols and, for TLS, terminated
// it. pion takes such connections from a listener of their own (handoff)
// like from turn.listen's, so allocate_timeout, the request limiter and
// the caps apply to them alike.

// handoff is a net.Listener whose connections come from ServeConn.
type handoff struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.closed:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error {
	h.once.Do(func() { close(h.closed) })
	return nil
}

func (h *handoff) Addr() net.Addr { return h.addr }

// handed is a connection given to pion by ServeConn; its Close tells
// ServeConn that pion is done with it.
type handed struct {
	net.Conn
	done chan struct{}
	once sync.Once
}

func (c *handed) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.done) })
	return err
}

// ServeConn serves STUN and TURN on conn, a client stream whose first
// bytes are STUN (decrypted already when it arrived over TLS), and returns
// once the server is done with it: pion closed it, or the server is closing
// (Close then closes it). The caller keeps owning conn's place in the gate
// and closes conn again after ServeConn returns (a second Close is harmless).
func (s *Server) ServeConn(conn net.Conn) {
	c := &handed{Conn: conn, done: make(chan struct{})}
	select {
	case s.handoff.conns <- c:
	case <-s.handoff.closed:
		return
	case <-s.closing:
		return
	}
	select {
	case <-c.done:
	case <-s.closing:
		<-c.done // Close closes every tracked conn, this one too
	}
}
