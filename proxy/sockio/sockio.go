// Package sockio reads and writes TCP sockets with system calls the Go
// runtime does not treat as blocking.
//
// net.TCPConn's Read and Write enter the kernel through syscall.Syscall,
// which marks the goroutine's P as in a system call; the runtime's monitor
// (sysmon) takes a P back from any system call older than 20 µs and hands
// it to another thread, and then polls every 20 µs while that keeps
// happening. A proxy's reads and writes never block (the sockets are
// non-blocking: an empty socket answers EAGAIN and the goroutine waits in
// the runtime's netpoller), but on loopback a write also runs the
// receiver's TCP input, and on a busy virtual machine that often passes
// 20 µs. With GOMAXPROCS=1 each such hand-off is a futex wake, a second
// thread and a P that must come back, and the monitor's polling costs
// more again: in a profile of the HTTP keep-alive path under load, about
// 15% of the process's time was the monitor and the hand-offs.
//
// Conn does the same reads and writes with syscall.RawSyscall inside
// syscall.RawConn's Read and Write, which keep the netpoller's waiting and
// the connection's deadlines: a system call that would block still waits
// in the netpoller, a deadline still ends a wait with
// os.ErrDeadlineExceeded, a closed connection still answers net.ErrClosed.
// Only calls that cannot block go raw; splice(2) and anything else that
// may take long stays with net (Conn embeds the *net.TCPConn, so ReadFrom
// still splices).
package sockio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a TCP connection whose Read and Write are raw system calls.
// Every other method is the *net.TCPConn's.
type Conn struct {
	*net.TCPConn
	rc   syscall.RawConn
	r, w op
}

// op is the state of one direction's call, shared with the function
// RawConn calls (bound once, so that a call allocates nothing).
type op struct {
	mu    sync.Mutex // Conn allows concurrent calls, as net.Conn does
	p     []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
	once  func(fd uintptr) bool // fn that never waits: TryWrite's
}

// New returns c with raw reads and writes, or nil if c has no raw
// connection.
func New(c *net.TCPConn) *Conn {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	s := &Conn{TCPConn: c, rc: rc}
	s.r.fn = func(fd uintptr) bool { return s.r.call(syscall.SYS_READ, fd) }
	s.w.fn = func(fd uintptr) bool { return s.w.call(syscall.SYS_WRITE, fd) }
	s.w.once = func(fd uintptr) bool { s.w.call(syscall.SYS_WRITE, fd); return true }
	return s
}

// Wrap returns c as a Conn when it is a *net.TCPConn, else c itself.
func Wrap(c net.Conn) net.Conn {
	if tc, ok := c.(*net.TCPConn); ok {
		if s := New(tc); s != nil {
			return s
		}
	}
	return c
}

// Under returns c with raw reads and writes on tcp, the socket under it;
// every other method is c's: its Close, say, when c is a wrapper that
// accounts for the connection (the gate's).
func Under(c net.Conn, tcp *net.TCPConn) net.Conn {
	s := New(tcp)
	if s == nil {
		return c
	}
	return &under{Conn: c, s: s}
}

type under struct {
	net.Conn
	s *Conn
}

func (u *under) Read(p []byte) (int, error)  { return u.s.Read(p) }
func (u *under) Write(p []byte) (int, error) { return u.s.Write(p) }

// TCP returns the *net.TCPConn under c, whether c is one, a Conn or
// Under's.
func TCP(c net.Conn) (*net.TCPConn, bool) {
	switch c := c.(type) {
	case *net.TCPConn:
		return c, true
	case *Conn:
		return c.TCPConn, true
	case *under:
		return c.s.TCPConn, true
	}
	return nil, false
}

// Raw returns the raw connection of c's socket when c is plain TCP (a
// *net.TCPConn or a Conn), else nil.
func Raw(c net.Conn) syscall.RawConn {
	tcp, ok := TCP(c)
	if !ok {
		return nil
	}
	rc, err := tcp.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// Socket returns the raw connection of the TCP socket under c, through
// TLS (a conn with NetConn, as *tls.Conn has), else nil: what a poller
// waits on for c.
func Socket(c net.Conn) syscall.RawConn {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn()
	}
	return Raw(c)
}

// call makes one read or write; false means EAGAIN, and RawConn waits for
// the socket in the netpoller and calls again.
func (o *op) call(trap, fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&o.p[0])), uintptr(len(o.p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		o.n, o.errno = int(n), e
		return true
	}
}

// Read reads like net.Conn's Read: io.EOF at the peer's end, an
// *net.OpError otherwise.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.r.mu.Lock()
	n, err := c.do(&c.r, p, false, c.r.fn)
	c.r.mu.Unlock()
	if err == nil && n == 0 {
		return 0, io.EOF
	}
	return n, err
}

// Write writes all of p, as net.Conn's Write does, waiting in the
// netpoller while the socket's buffer is full.
func (c *Conn) Write(p []byte) (int, error) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	done := 0
	for done < len(p) {
		n, err := c.do(&c.w, p[done:], true, c.w.fn)
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// TryWrite writes what of p the socket's buffer takes now and never
// waits: a short count and a nil error when the buffer is full. It lets a
// goroutine that must not block (a tunnel's frame reader) hand bytes on
// itself when they fit, and start a goroutine only when they do not.
func (c *Conn) TryWrite(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	return c.do(&c.w, p, true, c.w.once)
}

// do makes o's system call on p through RawConn's Read or Write (which
// calls fn again after each wait for the socket) and words its error as
// net does; o.mu is held.
func (c *Conn) do(o *op, p []byte, write bool, fn func(fd uintptr) bool) (int, error) {
	o.p, o.n, o.errno = p, 0, 0
	var err error
	if write {
		err = c.rc.Write(fn)
	} else {
		err = c.rc.Read(fn)
	}
	n, errno := o.n, o.errno
	o.p = nil
	name := "read"
	if write {
		name = "write"
	}
	switch {
	case err != nil:
		return 0, c.opError(name, err)
	case errno != 0:
		return 0, c.opError(name, os.NewSyscallError(name, errno))
	}
	return n, nil
}

// opError names the operation as net does ("read", not RawConn's
// "raw-read"), so that logs and errors.Is read the same.
func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
