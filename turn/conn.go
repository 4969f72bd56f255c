package turn

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/turn/v4"
)

const (
	// firstFrameTimeout bounds a new stream's TLS handshake and first
	// message, so idle connections cannot pin goroutines.
	firstFrameTimeout = 10 * time.Second
	// writeTimeout bounds one write to a stream client that stopped reading.
	writeTimeout = 10 * time.Second
	// maxFrame fits the largest STUN message or ChannelData frame (16-bit
	// length plus header), so no frame is ever truncated before admit.
	maxFrame = 1<<16 + 64
)

// packetConn is a UDP socket pion reads from, with admit in front. It
// reads in batches (recvmmsg) and queues what pion writes to it and to its
// relays while a batch is handled, sent (sendmmsg) before the next
// receive; see batch_linux.go.
type packetConn struct {
	net.PacketConn
	s     *Server
	done  func()    // pion's read loop has stopped
	fast  udpReader // PacketConn when it reads without allocating
	addrs addrCache
	in    *batchReader // nil: one datagram per read
	out   *outbox      // nil: writes go straight out

	mu    sync.Mutex   // guards dirty and spare
	dirty []*relayConn // relays written to since the last flush
	spare []*relayConn
}

func newPacketConn(s *Server, pc net.PacketConn) *packetConn {
	c := &packetConn{PacketConn: pc, s: s, done: sync.OnceFunc(s.wg.Done)}
	c.fast, _ = pc.(udpReader)
	c.in = newBatchReader(pc, c.flush)
	c.out = newOutbox(pc, func(int) {})
	return c
}

// flush sends what pion wrote while the reader handled its last batch: to
// the relays (a client's datagrams for peers) and to this socket (its
// answers). Only pion's reader of this socket writes to its relays.
func (c *packetConn) flush() {
	c.mu.Lock()
	list := c.dirty
	c.dirty, c.spare = c.spare[:0], nil
	for _, r := range list {
		r.dirty = false
	}
	c.mu.Unlock()
	for i, r := range list {
		r.out.flush()
		list[i] = nil
	}
	c.mu.Lock()
	c.spare = list[:0]
	c.mu.Unlock()
	if c.out != nil {
		c.out.flush()
	}
}

// markDirty has r flushed with the socket's next flush.
func (c *packetConn) markDirty(r *relayConn) {
	c.mu.Lock()
	if !r.dirty {
		r.dirty = true
		c.dirty = append(c.dirty, r)
	}
	c.mu.Unlock()
}

// read is the next datagram; oversized reports one that did not fit p.
func (c *packetConn) read(p []byte) (n int, addr net.Addr, oversized bool, err error) {
	if c.in == nil {
		c.flush()
		n, addr, err = readFrom(c.PacketConn, c.fast, &c.addrs, p)
		return n, addr, err == nil && n >= len(p), err
	}
	n, ap, trunc, err := c.in.next(p)
	if err != nil {
		return 0, nil, false, err
	}
	return n, c.addrs.get(ap), trunc || n >= len(p), nil
}

func (c *packetConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, oversized, err := c.read(p)
		if err != nil {
			c.done() // pion stops reading on any error
			return n, addr, err
		}
		if oversized {
			// pion's buffer is its MTU: the datagram was truncated.
			c.s.stats.malformed.Add(1)
			c.s.logs.Log(slog.LevelDebug, "turn: oversized datagram dropped", "client", addr, "service", "turn")
			continue
		}
		if isBindingRequest(p[:n]) {
			// Answered here, classic ones too, from whichever of the
			// discovery sockets CHANGE-REQUEST names (discovery.go).
			c.s.serveBinding(primary, c.PacketConn, addr, p[:n])
			continue
		}
		frame, v := c.s.admit(addrOf(addr), p[:n], nil)
		if v == reply {
			c.PacketConn.WriteTo(frame, addr)
			continue
		}
		if v != pass {
			continue
		}
		if !sameSlice(frame, p[:n]) { // rewritten
			if len(frame) >= len(p) {
				c.s.stats.malformed.Add(1)
				continue
			}
			n = copy(p, frame)
		}
		return n, addr, nil
	}
}

// WriteTo queues p for the next flush: pion writes from this socket's
// reader (answers) and from its relays' readers (peers' datagrams), each
// of which flushes before it waits again.
func (c *packetConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	return queueOrWrite(c.out, c.PacketConn, p, addr)
}

// queueOrWrite adds p to out, or writes p straight
// (after what is queued) when it cannot be queued.
func queueOrWrite(out *outbox, pc net.PacketConn, p []byte, addr net.Addr) (int, error) {
	if out != nil {
		if u, isUDP := addr.(*net.UDPAddr); isUDP {
			if out.add(p, u.AddrPort()) {
				return len(p), nil
			}
		}
		out.flush()
	}
	return pc.WriteTo(p, addr)
}

// sameSlice reports whether a and b are the same bytes in memory.
func sameSlice(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// listener hands pion TCP (or TLS) connections the gate admitted (not
// blocked, under the connection caps), each framed and filtered by a
// streamConn. The gate's listener backs off on accept errors itself, so
// any error here means closed: pion gives up on any error.
type listener struct {
	net.Listener // a *gate.Listener
	s            *Server
	tls          *tls.Config // nil: plain TCP
	done         func()      // pion's accept loop has stopped
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		l.done()
		return nil, err
	}
	sc := newStreamConn(l.s, c, l.tls)
	if !l.s.trackConn(sc) {
		c.Close()
		l.done()
		return nil, net.ErrClosed
	}
	return sc, nil
}

// streamConn is a client's TCP or TLS connection as pion sees it. Read
// returns whole STUN and ChannelData frames that passed admit; pion
// re-frames them, which costs a copy on the less used transport but lets
// one admit serve UDP and streams alike.
type streamConn struct {
	net.Conn          // what pion reads, writes and closes: TLS or the TCP conn
	raw      net.Conn // the TCP conn, closed to stop pion at shutdown
	s        *Server
	src      netip.Addr
	frames   *turn.STUNConn
	buf      []byte
	pending  []byte // admitted frame bytes not yet returned to pion
	idle     time.Duration
	first    bool
	once     sync.Once
	// allocs counts the connection's allocations; while it is 0 the
	// connection must allocate by bare+turn.allocate_timeout.
	allocs atomic.Int32
	bare   atomic.Int64 // unix nanoseconds: accepted, or its last allocation ended
}

func newStreamConn(s *Server, raw net.Conn, cfg *tls.Config) *streamConn {
	c := &streamConn{Conn: raw, raw: raw, s: s, src: addrOf(raw.RemoteAddr()), idle: s.cfg.maxLifetime, first: true}
	c.bare.Store(time.Now().UnixNano())
	if cfg != nil {
		c.Conn = tls.Server(raw, cfg)
	}
	c.frames = turn.NewSTUNConn(firstByte{Conn: c.Conn, seen: new(bool)})
	return c
}

// firstByte refuses a stream whose first byte cannot start a STUN message
// (RFC 7983: 0 to 3). A client's first frame is a request: ChannelData
// needs a channel first. Without this, text ("GET /") would be taken for
// ChannelData of some kilobytes and wait for it.
type firstByte struct {
	net.Conn
	seen *bool
}

func (f firstByte) Read(p []byte) (int, error) {
	n, err := f.Conn.Read(p)
	if n > 0 && !*f.seen {
		*f.seen = true
		if p[0] > 3 {
			return 0, errNotSTUN
		}
	}
	return n, err
}

var errNotSTUN = errors.New("turn: stream does not start with a STUN message")

func (c *streamConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		if c.buf == nil {
			c.buf = make([]byte, maxFrame)
		}
		// The deadline covers a whole frame (and, first, the TLS
		// handshake), so trickling bytes does not keep a conn alive.
		timeout := c.idle
		if c.first {
			timeout, c.first = firstFrameTimeout, false
		}
		deadline := time.Now().Add(timeout)
		if c.allocs.Load() == 0 {
			// Without an allocation the connection only costs a
			// descriptor; it gets turn.allocate_timeout from when it
			// became bare, however many indications it sends.
			if d := time.Unix(0, c.bare.Load()).Add(c.s.cfg.allocateTimeout); d.Before(deadline) {
				deadline = d
			}
		}
		_ = c.Conn.SetReadDeadline(deadline)
		n, _, err := c.frames.ReadFrom(c.buf)
		if err != nil {
			c.readFailed(err)
			return 0, err
		}
		frame, v := c.s.admit(c.src, c.buf[:n], c)
		switch v {
		case block:
			return 0, errBlocked
		case pass:
			c.pending = frame
		case reply:
			// A whole message in one Write: pion's own writes on this
			// conn cannot interleave with it.
			if _, err := c.Conn.Write(frame); err != nil {
				return 0, err
			}
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

var errBlocked = errors.New("turn: source address is blacklisted")

// readFailed counts a stream that broke STUN framing or TLS. Peers hanging
// up and idle timeouts are ordinary.
func (c *streamConn) readFailed(err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, syscall.ECONNRESET) {
		return
	}
	c.s.stats.malformed.Add(1)
	c.s.logs.Log(slog.LevelDebug, "turn: stream closed on bad input", "client", c.src, "service", "turn", "error", err)
}

func (c *streamConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return c.Conn.Write(p)
}

// Close is called by pion once it is done with the connection.
func (c *streamConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.s.untrackConn(c) })
	return err
}
