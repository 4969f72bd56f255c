package h2mux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// chunkSize is the unit of a stream's receive buffer: DATA that waits for
// its reader sits in chunks from chunks, released once read.
const chunkSize = 16 << 10

var chunks = sync.Pool{New: func() any { b := make([]byte, 0, chunkSize); return &b }}

// Stream is one full-duplex byte stream: a net.Conn whose Read takes the
// peer's DATA and whose Write sends DATA, within the flow-control windows.
type Stream struct {
	c      *Conn
	id     uint32
	fields []hpack.HeaderField // the request's (server role) or response's (client role) regular fields
	path   string              // server role: the request's :path
	method string              // server role: the request's :method
	status int                 // client role: the response's :status

	wmu sync.Mutex // one Write or CloseWrite at a time

	mu   sync.Mutex // guards the fields below
	cond sync.Cond
	// Receive side.
	buf     []*[]byte // chunks of unread DATA
	head    int       // read offset into buf[0]
	unread  int
	recvWin int32  // what the peer may still send
	unacked int32  // read, not yet returned in a WINDOW_UPDATE
	rEnded  bool   // END_STREAM received
	rErr    error  // reset, or the connection ended
	closed  bool   // Close was called: what arrives is dropped
	reads   uint32 // reads that took bytes, for the stall checks
	// The stall checks' (stall.go): reads at the last check, and since when
	// the reader has taken nothing while bytes waited and the window was short.
	stallReads uint32
	stallFrom  time.Time
	stalled    bool // reset for its stalled reader
	// Send side.
	sendWin     int64
	wEnded      bool // END_STREAM sent
	wErr        error
	connBlocked bool   // waiting for the connection's send window
	headers     bool   // client: response HEADERS arrived; server: Respond was called
	done        bool   // forgotten by the connection
	notify      func() // NotifyReadable's callback, until it runs
	aborted     bool   // reset, or the connection ended
	onAbort     func() // OnAbort's callback, until it runs
	rdl, wdl    deadline
}

// deadline is one direction's deadline. Its timer wakes the stream's
// waiters when it comes and marks it passed, so that a Read or Write asks
// a flag, not the clock (a kept-alive request's Write through the tunnel
// would otherwise read the clock each time).
type deadline struct {
	t      time.Time
	timer  *time.Timer
	passed bool
}

func (c *Conn) newStream(id uint32) *Stream {
	s := &Stream{c: c, id: id, recvWin: c.cfg.StreamWindow, sendWin: int64(c.peerWindow)}
	s.cond.L = &s.mu
	return s
}

// ID is the stream's HTTP/2 stream identifier.
func (s *Stream) ID() uint32 { return s.id }

// Fields are the regular header fields the peer sent: the request's in the
// server role, the response's in the client role.
func (s *Stream) Fields() []hpack.HeaderField { return s.fields }

// Path and Method are the request's :path and :method (server role).
func (s *Stream) Path() string   { return s.path }
func (s *Stream) Method() string { return s.method }

// Status is the response's :status (client role).
func (s *Stream) Status() int { return s.status }

// Open opens a stream (client role): HEADERS of a POST to authority and
// path with fields, then it waits for the response's HEADERS or ctx.
func (c *Conn) Open(ctx context.Context, authority, path string, fields []hpack.HeaderField) (*Stream, error) {
	if c.server {
		return nil, errors.New("h2mux: the server role opens no streams")
	}
	c.lock()
	c.mu.Lock()
	var err error
	switch {
	case c.err != nil:
		err = c.err
	case c.goneAway:
		err = ErrGoAway
	case len(c.streams) >= min(c.cfg.MaxStreams, c.peerMaxStream):
		err = ErrTooMany
	case c.nextID > maxWindow:
		err = errors.New("h2mux: stream IDs exhausted")
	}
	if err != nil {
		c.mu.Unlock()
		c.unlock()
		return nil, err
	}
	s := c.newStream(c.nextID)
	c.nextID += 2
	c.streams[s.id] = s
	c.mu.Unlock()
	c.hbuf = c.hbuf[:0]
	c.henc.WriteField(hpack.HeaderField{Name: ":method", Value: "POST"})
	c.henc.WriteField(hpack.HeaderField{Name: ":scheme", Value: "https"})
	c.henc.WriteField(hpack.HeaderField{Name: ":authority", Value: authority})
	c.henc.WriteField(hpack.HeaderField{Name: ":path", Value: path})
	for _, f := range fields {
		c.henc.WriteField(f)
	}
	if len(c.hbuf) > 16<<10 {
		err = errors.New("h2mux: header block too large")
	} else {
		err = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: s.id, BlockFragment: c.hbuf, EndHeaders: true})
	}
	if uerr := c.unlockYield(); err == nil {
		err = uerr
	}
	if err != nil {
		c.fail(err)
		return nil, err
	}
	stop := context.AfterFunc(ctx, s.wake)
	defer stop()
	s.mu.Lock()
	for !s.headers && s.rErr == nil && ctx.Err() == nil {
		s.cond.Wait()
	}
	err = s.rErr
	s.mu.Unlock()
	if err == nil && !s.headers {
		err = ctx.Err()
		s.Reset(http2.ErrCodeCancel)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Respond sends the response's HEADERS (server role), with END_STREAM when
// end: a refusal.
func (s *Stream) Respond(status int, fields []hpack.HeaderField, end bool) error {
	c := s.c
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	switch {
	case !c.server || s.headers:
		s.mu.Unlock()
		return errors.New("h2mux: answered twice or not a server")
	case s.wErr != nil:
		err := s.wErr
		s.mu.Unlock()
		return err
	}
	s.headers = true
	s.wEnded = end
	s.mu.Unlock()
	c.lock()
	c.hbuf = c.hbuf[:0]
	c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(status)})
	for _, f := range fields {
		c.henc.WriteField(f)
	}
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: s.id, BlockFragment: c.hbuf, EndHeaders: true, EndStream: end})
	if uerr := c.unlockYield(); err == nil {
		err = uerr
	}
	if err != nil {
		c.fail(err)
		return err
	}
	if end {
		s.maybeDone()
	}
	return nil
}

func (s *Stream) wake() {
	s.mu.Lock()
	s.cond.Broadcast()
	s.mu.Unlock()
}

// Read reads DATA the peer sent; io.EOF after its END_STREAM.
func (s *Stream) Read(b []byte) (int, error) { return s.read(b, true) }

// ReadAvailable is Read that never waits: (0, nil) when nothing is there
// yet (NotifyReadable tells when there is).
func (s *Stream) ReadAvailable(b []byte) (int, error) { return s.read(b, false) }

func (s *Stream) read(b []byte, wait bool) (int, error) {
	s.mu.Lock()
	for s.unread == 0 {
		var err error
		switch {
		case s.closed:
			err = net.ErrClosed
		case s.rEnded:
			err = io.EOF
		case s.rErr != nil:
			err = s.rErr
		case s.rdl.passed:
			err = os.ErrDeadlineExceeded
		case len(b) == 0 || !wait:
		default:
			s.cond.Wait()
			continue
		}
		s.mu.Unlock()
		return 0, err
	}
	n := 0
	for n < len(b) && s.unread > 0 {
		first := *s.buf[0]
		k := copy(b[n:], first[s.head:])
		n += k
		s.head += k
		s.unread -= k
		if s.head == len(first) {
			s.release()
		}
	}
	s.reads++
	s.mu.Unlock()
	s.c.credit(s, int32(n))
	return n, nil
}

// release returns the first chunk to the pool; s.mu is held.
func (s *Stream) release() {
	p := s.buf[0]
	*p = (*p)[:0]
	chunks.Put(p)
	s.buf[0] = nil
	s.buf = s.buf[1:]
	s.head = 0
	if len(s.buf) == 0 {
		s.buf = nil
	}
}

// push appends DATA to the receive buffer; s.mu is held.
func (s *Stream) push(data []byte) {
	for len(data) > 0 {
		if len(s.buf) == 0 || len(*s.buf[len(s.buf)-1]) == chunkSize {
			s.buf = append(s.buf, chunks.Get().(*[]byte))
		}
		last := s.buf[len(s.buf)-1]
		k := copy((*last)[len(*last):chunkSize], data)
		*last = (*last)[:len(*last)+k]
		data = data[k:]
		s.unread += k
	}
}

// drop releases what waits unread; s.mu is held. It returns how many bytes.
func (s *Stream) drop() int32 {
	n := int32(s.unread)
	for len(s.buf) > 0 {
		s.release()
	}
	s.unread = 0
	return n
}

// Write sends b as DATA, waiting for window as it must.
func (s *Stream) Write(b []byte) (int, error) {
	c := s.c
	s.wmu.Lock()
	defer s.wmu.Unlock()
	written := 0
	for len(b) > 0 {
		s.mu.Lock()
		for {
			err := s.writeErr()
			if err != nil {
				s.mu.Unlock()
				return written, err
			}
			if s.sendWin > 0 {
				break
			}
			s.cond.Wait()
		}
		n := int(min(int64(len(b)), s.sendWin))
		s.mu.Unlock()
		n, err := s.takeConnWindow(n)
		if err != nil {
			return written, err
		}
		c.lock()
		s.mu.Lock()
		err = s.writeErr()
		if err == nil {
			s.sendWin -= int64(n)
		}
		s.mu.Unlock()
		if err == nil {
			err = c.fr.WriteData(s.id, false, b[:n])
		} else {
			c.giveBack(n)
		}
		if uerr := c.unlockYield(); err == nil && uerr != nil {
			err = uerr
			c.fail(err)
		}
		if err != nil {
			return written, err
		}
		c.bytesOut.Add(int64(n))
		written += n
		b = b[n:]
	}
	return written, nil
}

// writeErr says why s cannot send now; s.mu is held.
func (s *Stream) writeErr() error {
	switch {
	case s.wErr != nil:
		return s.wErr
	case s.wEnded || s.closed:
		return net.ErrClosed
	case !s.headers:
		return errors.New("h2mux: DATA before the response")
	case s.wdl.passed:
		return os.ErrDeadlineExceeded
	}
	return nil
}

// takeConnWindow takes up to n bytes of the connection's send window,
// waiting for some when it is spent.
func (s *Stream) takeConnWindow(n int) (int, error) {
	c := s.c
	for {
		c.mu.Lock()
		if c.err != nil {
			c.mu.Unlock()
			return 0, c.err
		}
		if c.sendWin > 0 {
			k := int(min(int64(n), c.sendWin, int64(c.peerMaxFrame)))
			c.sendWin -= int64(k)
			c.mu.Unlock()
			return k, nil
		}
		s.mu.Lock()
		s.connBlocked = true
		s.mu.Unlock()
		c.waitConn = append(c.waitConn, s)
		c.mu.Unlock()
		s.mu.Lock()
		for s.connBlocked {
			if err := s.writeErr(); err != nil {
				s.mu.Unlock()
				return 0, err
			}
			s.cond.Wait()
		}
		s.mu.Unlock()
	}
}

// giveBack returns connection window taken for a write that did not happen.
func (c *Conn) giveBack(n int) {
	c.mu.Lock()
	c.sendWin += int64(n)
	ws := c.waitConn
	c.waitConn = nil
	c.mu.Unlock()
	wakeConn(ws)
}

func wakeConn(ws []*Stream) {
	for _, s := range ws {
		s.mu.Lock()
		s.connBlocked = false
		s.cond.Broadcast()
		s.mu.Unlock()
	}
}

// CloseWrite sends END_STREAM: the peer reads the end of the stream.
func (s *Stream) CloseWrite() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.closeWrite()
}

// closeWrite: s.wmu is held.
func (s *Stream) closeWrite() error {
	s.mu.Lock()
	if s.wEnded || s.wErr != nil || !s.headers {
		s.mu.Unlock()
		return nil
	}
	s.wEnded = true
	s.mu.Unlock()
	c := s.c
	c.lock()
	err := c.fr.WriteData(s.id, true, nil)
	if uerr := c.unlock(); err == nil && uerr != nil {
		err = uerr
		c.fail(err)
	}
	s.maybeDone()
	return err
}

// Close ends the stream here: what waits unread is dropped, END_STREAM is
// sent after what was written, and the stream is reset when the peer has
// not ended its side within Config.CloseGrace.
func (s *Stream) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	dropped := s.drop()
	s.wakeUnlock() // a blocked Write gives up
	if dropped > 0 {
		s.c.credit(nil, dropped)
	}
	s.wmu.Lock() // a blocked Write has given up
	s.closeWrite()
	s.mu.Lock()
	open := !s.done
	s.mu.Unlock()
	s.wmu.Unlock()
	if open {
		if g := s.c.cfg.CloseGrace; g > 0 {
			time.AfterFunc(g, func() { s.Reset(http2.ErrCodeCancel) })
		} else {
			s.Reset(http2.ErrCodeCancel)
		}
	}
	return nil
}

// Reset ends the stream at once with RST_STREAM(code), unless it ended.
func (s *Stream) Reset(code http2.ErrCode) {
	s.reset(fmt.Errorf("%w here (%v)", ErrStreamReset, code), code)
}

// reset is Reset with the error the stream's side here gets.
func (s *Stream) reset(err error, code http2.ErrCode) {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done {
		return
	}
	s.abort(err)
	s.c.forget(s)
	s.c.queue(control{typ: http2.FrameRSTStream, stream: s.id, val: uint32(code)})
}

// abort ends both sides with err (a reset, or the connection's end): what
// was received stays readable.
func (s *Stream) abort(err error) {
	s.mu.Lock()
	if s.rErr == nil {
		s.rErr = err
	}
	if s.wErr == nil {
		s.wErr = err
	}
	s.done = true
	s.connBlocked = false
	s.aborted = true
	gone := s.onAbort
	s.onAbort = nil
	s.wakeUnlock()
	if gone != nil {
		gone()
	}
}

// OnAbort calls fn once when the stream is reset (by either side) or its
// connection ends, on the goroutine that ended it; at once when that has
// happened already. fn must not block. It is what tells a side that has
// stopped reading (after the peer's END_STREAM) that the stream is gone.
func (s *Stream) OnAbort(fn func()) {
	s.mu.Lock()
	if s.aborted {
		s.mu.Unlock()
		fn()
		return
	}
	s.onAbort = fn
	s.mu.Unlock()
}

// maybeDone forgets s once both sides have ended.
func (s *Stream) maybeDone() {
	s.mu.Lock()
	fin := s.rEnded && s.wEnded && !s.done
	if fin {
		s.done = true
	}
	s.mu.Unlock()
	if fin {
		s.c.forget(s)
	}
}

// NotifyReadable calls fn once when a Read would not block: DATA, the
// peer's end, a reset, or Close (proxy.ReadNotifier). fn runs on the
// connection's reader goroutine, or on the caller's when the stream is
// readable already; it must not block. A later call replaces fn.
func (s *Stream) NotifyReadable(fn func()) bool {
	s.mu.Lock()
	if s.readable() {
		s.notify = nil
		s.mu.Unlock()
		fn()
		return true
	}
	s.notify = fn
	s.mu.Unlock()
	return true
}

// readable: a Read would not block; s.mu is held.
func (s *Stream) readable() bool { return s.unread > 0 || s.rEnded || s.rErr != nil || s.closed }

// wakeUnlock tells the stream's waiters that its state changed: it wakes
// blocked Reads and Writes, releases s.mu (held by the caller), and then
// runs NotifyReadable's callback if s became readable.
func (s *Stream) wakeUnlock() {
	s.cond.Broadcast()
	fn := s.notify
	if fn != nil && s.readable() {
		s.notify = nil
	} else {
		fn = nil
	}
	s.mu.Unlock()
	if fn != nil {
		fn()
	}
}

// Alive says whether an idle stream can carry more: open both ways, and
// the peer sent nothing unasked (what MSG_PEEK tells of a socket).
func (s *Stream) Alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && !s.done && !s.rEnded && !s.wEnded && s.unread == 0
}

func (s *Stream) setDeadline(d *deadline, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d.t = t
	d.passed = false
	switch {
	case t.IsZero():
		if d.timer != nil {
			d.timer.Stop()
		}
	default:
		wait := time.Until(t)
		d.passed = wait <= 0
		if d.timer == nil {
			d.timer = time.AfterFunc(wait, func() { s.expire(d) })
		} else {
			d.timer.Reset(wait)
		}
	}
	s.cond.Broadcast()
}

// expire is d's timer: d has passed unless it was moved meanwhile.
func (s *Stream) expire(d *deadline) {
	s.mu.Lock()
	if !d.t.IsZero() && !time.Now().Before(d.t) {
		d.passed = true
	}
	s.cond.Broadcast()
	s.mu.Unlock()
}

func (s *Stream) SetReadDeadline(t time.Time) error {
	s.setDeadline(&s.rdl, t)
	return nil
}

func (s *Stream) SetWriteDeadline(t time.Time) error {
	s.setDeadline(&s.wdl, t)
	return nil
}

func (s *Stream) SetDeadline(t time.Time) error {
	s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

// LocalAddr and RemoteAddr are the connection's.
func (s *Stream) LocalAddr() net.Addr  { return s.c.nc.LocalAddr() }
func (s *Stream) RemoteAddr() net.Addr { return s.c.nc.RemoteAddr() }

var _ net.Conn = (*Stream)(nil)
