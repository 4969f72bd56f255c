package http

import (
	"bufio"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/gatehouse-pbx/gatehouse/proxy/sockio"
)

// targetConn is a connection to a target, kept alive between requests.
type targetConn struct {
	conn net.Conn // TCP, or TLS over it
	// sock is the raw socket under conn (TCP), for the liveness check
	// (peek, its callback made once, and peekOK its result). An agent
	// tunnel's stream has none: it answers Alive itself.
	sock   syscall.RawConn
	peek   func(fd uintptr) bool
	peekOK bool
	key    poolKey
	cr     countReader
	br     *bufio.Reader
	bw     *bufio.Writer
	// idleSince is when the connection went back into the pool; zero for
	// a fresh one.
	idleSince time.Time
	dl        time.Time // the deadline last set by renew
	// watch: the read deadline is awaitTarget's watch (until watchDL),
	// not dl; the next read beyond the peek restores dl (cr.rearm).
	watch   bool
	watchDL time.Time
	restore func() // restoreDeadline, made once
}

func newTargetConn(conn net.Conn, key poolKey) *targetConn {
	tc := &targetConn{conn: conn, key: key}
	raw := conn
	if t, ok := conn.(*tls.Conn); ok {
		raw = t.NetConn()
	}
	if sc, ok := raw.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			tc.sock = rc
			tc.peek = tc.peekFD
		}
	}
	tc.restore = tc.restoreDeadline
	rw := sockio.Wrap(conn) // raw reads and writes (tc.conn stays the *net.TCPConn, for splice)
	tc.cr = countReader{r: rw}
	tc.br = bufio.NewReaderSize(&tc.cr, bufSize)
	tc.bw = bufio.NewWriterSize(rw, bufSize)
	return tc
}

// restoreDeadline gives reads the idle deadline again after awaitTarget's
// watch.
func (tc *targetConn) restoreDeadline() {
	if tc.watch {
		tc.watch = false
		tc.conn.SetReadDeadline(tc.dl)
	}
}

// setReadDeadline sets the read deadline to t, for good.
func (tc *targetConn) setReadDeadline(t time.Time) {
	tc.watch, tc.cr.rearm = false, nil
	tc.conn.SetReadDeadline(t)
}

func (tc *targetConn) reused() bool { return !tc.idleSince.IsZero() }

func (tc *targetConn) close() { tc.conn.Close() }

// alive reports whether an idle connection can still carry a request: the
// target has neither closed it nor sent anything unasked (a TLS
// close_notify, a 408) while it sat in the pool. It peeks at the socket
// without blocking: one system call, made only where a failed reuse could
// not simply be retried.
func (tc *targetConn) alive() bool {
	if tc.br.Buffered() > 0 {
		return false
	}
	if a, ok := tc.conn.(interface{ Alive() bool }); ok {
		return a.Alive() // an agent tunnel's stream (package tunnel) is no socket
	}
	if tc.sock == nil {
		return true
	}
	tc.peekOK = false
	if tc.sock.Read(tc.peek) != nil {
		return false
	}
	return tc.peekOK
}

func (tc *targetConn) peekFD(fd uintptr) bool {
	var b [1]byte
	// Raw, as sockio's reads are: a peek never blocks (see sockio's doc).
	_, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	tc.peekOK = errno == syscall.EAGAIN
	return true // never wait for readiness
}

// poolKey names a target: its address, and the TLS configuration used
// towards it (nil for plain TCP), which pins the CAs and the server name.
type poolKey struct {
	addr string
	tls  *tls.Config
}

// pool keeps idle target connections per target, most recently used on
// top. It is bounded per target; connections idle longer than maxIdle are
// closed when the pool is next used (no timer: an unused pool only holds
// sockets until the generation is retired).
type pool struct {
	perTarget int
	maxIdle   time.Duration

	mu     sync.Mutex
	idle   map[poolKey][]*targetConn
	closed bool

	// peeks counts the liveness checks that looked at a socket, refused
	// those that found it closed or with bytes unasked (for tests).
	peeks, refused atomic.Int64
}

// alive checks an idle connection with tc.alive, counting the peeks.
func (p *pool) alive(tc *targetConn) bool {
	if tc.sock != nil && tc.br.Buffered() == 0 {
		p.peeks.Add(1)
	}
	ok := tc.alive()
	if !ok {
		p.refused.Add(1)
	}
	return ok
}

func newPool(perTarget int, maxIdle time.Duration) *pool {
	return &pool{perTarget: perTarget, maxIdle: maxIdle, idle: make(map[poolKey][]*targetConn)}
}

// get returns the most recently used idle connection to key, or nil.
func (p *pool) get(key poolKey) *targetConn {
	now := time.Now()
	p.mu.Lock()
	list := p.idle[key]
	if len(list) == 0 {
		p.mu.Unlock()
		return nil
	}
	tc := list[len(list)-1]
	list[len(list)-1] = nil
	list = list[:len(list)-1]
	var stale []*targetConn
	if now.Sub(tc.idleSince) > p.maxIdle {
		// Everything below is older still.
		stale, list = append(list, tc), list[:0]
		tc = nil
	}
	p.idle[key] = list
	p.mu.Unlock()
	for _, s := range stale {
		s.close()
	}
	return tc
}

// put returns tc to the pool, or closes it when the pool is full or closed.
func (p *pool) put(tc *targetConn) {
	now := time.Now()
	tc.idleSince = now
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		tc.close()
		return
	}
	list := p.idle[tc.key]
	// Drop connections idle too long from the bottom.
	n := 0
	for n < len(list) && now.Sub(list[n].idleSince) > p.maxIdle {
		n++
	}
	stale := append([]*targetConn(nil), list[:n]...)
	list = append(list[:0], list[n:]...)
	full := len(list) >= p.perTarget
	if !full {
		list = append(list, tc)
	}
	p.idle[tc.key] = list
	p.mu.Unlock()
	for _, s := range stale {
		s.close()
	}
	if full {
		tc.close()
	}
}

// closeAll closes every idle connection; later puts close theirs.
func (p *pool) closeAll() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = make(map[poolKey][]*targetConn)
	p.mu.Unlock()
	for _, list := range idle {
		for _, tc := range list {
			tc.close()
		}
	}
}
