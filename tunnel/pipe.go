package tunnel

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// halfPipe moves the bytes of one direction of a stream in memory: a write
// offers its slice to the reader and returns once the reader has taken all
// of it. Nothing is buffered (an idle direction holds no buffer) and no
// system call is made, where a socket pair cost two per write and a wakeup
// through the poller.
type halfPipe struct {
	wmu      sync.Mutex    // one write at a time
	data     chan []byte   // a writer's bytes, offered to a reader
	took     chan int      // how many of them the reader took
	wdone    chan struct{} // closed by closeWrite: readers get werr
	rdone    chan struct{} // closed by closeRead: writers get net.ErrClosed
	werr     error         // io.EOF, or why the writer stopped; set before wdone is closed
	wonce    sync.Once
	ronce    sync.Once
	pending  atomic.Int64 // bytes a writer offers that no reader took yet
	rdl, wdl deadline
}

func newHalfPipe() *halfPipe {
	return &halfPipe{data: make(chan []byte), took: make(chan int),
		wdone: make(chan struct{}), rdone: make(chan struct{})}
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (p *halfPipe) read(b []byte) (int, error) {
	switch {
	case closed(p.rdone):
		return 0, net.ErrClosed
	case closed(p.rdl.wait()):
		return 0, os.ErrDeadlineExceeded
	case len(b) == 0:
		return 0, nil
	}
	select {
	case bw := <-p.data:
		n := copy(b, bw)
		p.pending.Add(-int64(n)) // before the writer hears: Alive right after a Read is exact
		p.took <- n
		return n, nil
	case <-p.wdone:
		return 0, p.werr
	case <-p.rdone:
		return 0, net.ErrClosed
	case <-p.rdl.wait():
		return 0, os.ErrDeadlineExceeded
	}
}

func (p *halfPipe) write(b []byte) (n int, err error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.pending.Add(int64(len(b)))
	defer func() { p.pending.Add(-int64(len(b))) }() // what no reader took
	for len(b) > 0 {
		switch {
		case closed(p.wdone), closed(p.rdone):
			return n, net.ErrClosed
		case closed(p.wdl.wait()):
			return n, os.ErrDeadlineExceeded
		}
		select {
		case p.data <- b:
			k := <-p.took
			b = b[k:]
			n += k
		case <-p.wdone:
			return n, net.ErrClosed
		case <-p.rdone:
			return n, net.ErrClosed
		case <-p.wdl.wait():
			return n, os.ErrDeadlineExceeded
		}
	}
	return n, nil
}

// closeWrite ends the direction: readers get err (io.EOF for nil) once
// they have taken what was written.
func (p *halfPipe) closeWrite(err error) {
	p.wonce.Do(func() {
		if err == nil {
			err = io.EOF
		}
		p.werr = err
		close(p.wdone)
	})
}

// closeRead tells writers that nobody reads any more.
func (p *halfPipe) closeRead() { p.ronce.Do(func() { close(p.rdone) }) }

// deadline is a read or write deadline of a halfPipe (as net.Pipe has):
// wait returns a channel closed when it has passed, nil while none is set,
// so that a stream that never sets one allocates nothing for it.
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{}
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait for it to close cancel
	}
	d.timer = nil
	expired := d.cancel != nil && closed(d.cancel)
	if t.IsZero() {
		if expired {
			d.cancel = nil
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if d.cancel == nil || expired {
			d.cancel = make(chan struct{})
		}
		c := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(c) })
		return
	}
	switch {
	case d.cancel == nil:
		d.cancel = make(chan struct{})
		close(d.cancel)
	case !expired:
		close(d.cancel)
	}
}

func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

// streamConn is the edge's end of one stream, handed to the proxy: Write
// goes to the HTTP/2 request body (the transport reads up directly), Read
// takes what the stream's pump copies from the response body into down.
type streamConn struct {
	up, down *halfPipe
	addr     streamAddr
	once     sync.Once
	onClose  func() // when Close is first called
}

func newStreamConn(service string, onClose func()) *streamConn {
	return &streamConn{up: newHalfPipe(), down: newHalfPipe(), addr: streamAddr(service), onClose: onClose}
}

func (c *streamConn) Read(b []byte) (int, error)  { return c.down.read(b) }
func (c *streamConn) Write(b []byte) (int, error) { return c.up.write(b) }

// CloseWrite half-closes: the agent reads the end of the stream.
func (c *streamConn) CloseWrite() error {
	c.up.closeWrite(nil)
	return nil
}

// Close ends both directions; what was written is still delivered.
func (c *streamConn) Close() error {
	c.up.closeWrite(nil)
	c.down.closeRead()
	c.once.Do(c.onClose)
	return nil
}

// Alive says whether an idle stream can carry more: neither side closed
// it, and the agent sent nothing unasked (what a socket's MSG_PEEK tells
// for a TCP target).
func (c *streamConn) Alive() bool {
	return !closed(c.down.rdone) && !closed(c.down.wdone) && !closed(c.up.wdone) && c.down.pending.Load() == 0
}

func (c *streamConn) LocalAddr() net.Addr  { return c.addr }
func (c *streamConn) RemoteAddr() net.Addr { return c.addr }

func (c *streamConn) SetDeadline(t time.Time) error {
	c.down.rdl.set(t)
	c.up.wdl.set(t)
	return nil
}

func (c *streamConn) SetReadDeadline(t time.Time) error {
	c.down.rdl.set(t)
	return nil
}

func (c *streamConn) SetWriteDeadline(t time.Time) error {
	c.up.wdl.set(t)
	return nil
}

// streamAddr names a stream's far end by its service: the edge never
// knows the target's address.
type streamAddr string

func (a streamAddr) Network() string { return "agent" }
func (a streamAddr) String() string  { return "agent:" + string(a) }

// upBody is the request body of a stream: the transport reads what the
// proxy writes, and closes it when the stream's sending side is done.
type upBody struct {
	p       *halfPipe
	count   *atomic.Int64
	once    sync.Once
	onClose func()
}

func (b *upBody) Read(p []byte) (int, error) {
	n, err := b.p.read(p)
	b.count.Add(int64(n))
	return n, err
}

func (b *upBody) Close() error {
	b.p.closeRead()
	b.once.Do(b.onClose)
	return nil
}
