// Package h2mux multiplexes full-duplex byte streams over one HTTP/2
// connection, for agent tunnels: the client role (the edge) opens streams
// with a request's HEADERS, the server role (the agent) answers each with
// response HEADERS, and then both sides send DATA until END_STREAM. The wire
// is plain HTTP/2 (RFC 9113), framed by golang.org/x/net/http2's Framer and
// hpack, so any HTTP/2 peer can speak to either role; what this package
// leaves out of x/net's Transport and Server is what an idle stream costs
// there:
//
//   - No goroutine per stream: one reader goroutine per connection
//     demultiplexes frames; writes are made by the goroutine that writes,
//     under the connection's write lock, and the last writer in line flushes,
//     so that frames of many streams leave in one TLS write.
//   - No buffer per idle stream: DATA waits in chunks from a pool, bounded by
//     the stream's receive window, and the chunks go back once read.
//   - Flow control blocks only the stream whose window is spent; the
//     connection's window bounds what all streams together hold, and
//     readers that stop cannot keep it spent: Config.StallTimeout resets
//     them while it is short (stall.go).
//
// The receive side is strict: frames on unknown streams, window overflows,
// oversized frames, too many streams and floods of SETTINGS, PING or
// RST_STREAM end the connection (GOAWAY) or the stream (RST_STREAM), and
// Config.Misbehaved hears each of them. The reader never waits for the write
// lock (what it must answer is queued for the lock's holder), so that two
// peers that both write cannot deadlock each other.
package h2mux

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Defaults of Config.
const (
	DefaultStreamWindow = 1 << 20
	DefaultConnWindow   = 16 << 20
	// DefaultMaxFrame: DATA frames of 64 KiB (four TLS records) cost less
	// per byte in bulk than HTTP/2's default 16 KiB.
	DefaultMaxFrame   = 64 << 10
	DefaultMaxStreams = 10000
	maxHeaderList     = 16 << 10
	initialWindow     = 65535 // RFC 9113 6.9.2
	maxWindow         = 1<<31 - 1
	controlBudget     = 1000 // SETTINGS, PING, RST_STREAM and refused streams a peer may send per second
	writeBufferSize   = 32 << 10
)

// Config sets up a Conn.
type Config struct {
	// StreamWindow and ConnWindow are the receive windows: what one stream
	// and the whole connection may hold unread (Default* when 0).
	StreamWindow, ConnWindow int32
	// MaxFrame is the largest frame read and the SETTINGS_MAX_FRAME_SIZE
	// announced (DefaultMaxFrame when 0).
	MaxFrame uint32
	// MaxStreams caps the streams open at once: the server role announces
	// it as SETTINGS_MAX_CONCURRENT_STREAMS and refuses more; the client
	// role opens no more (DefaultMaxStreams when 0).
	MaxStreams int
	// CloseGrace is how long a stream closed by Close waits for the peer to
	// end its side before it is reset (0: at once).
	CloseGrace time.Duration
	// Handler serves each stream a client opens (server role only), in a
	// goroutine of its own that Wait waits for. It must answer with Respond.
	Handler func(*Stream)
	// Misbehaved hears each protocol error of the peer (connection or
	// stream); nil: they only end what they concern.
	Misbehaved func(error)
	// StallTimeout: while the connection's receive window is short, a
	// stream whose reader has taken nothing for this long is reset
	// (stall.go); 0: never.
	StallTimeout time.Duration
}

// ProtocolError is a peer's breach of HTTP/2 (or of this use of it).
type ProtocolError struct {
	Code   http2.ErrCode
	Stream uint32 // 0: the connection
	Reason string
}

func (e *ProtocolError) Error() string {
	if e.Stream == 0 {
		return fmt.Sprintf("h2mux: protocol error (%v): %s", e.Code, e.Reason)
	}
	return fmt.Sprintf("h2mux: protocol error on stream %d (%v): %s", e.Stream, e.Code, e.Reason)
}

// Errors of streams and connections.
var (
	ErrClosed      = errors.New("h2mux: connection closed")
	ErrGoAway      = errors.New("h2mux: the peer is draining the connection (GOAWAY)")
	ErrTooMany     = errors.New("h2mux: too many streams open")
	ErrStreamReset = errors.New("h2mux: stream reset")
)

// Conn is one HTTP/2 connection, in the client or the server role.
type Conn struct {
	nc     net.Conn
	cfg    Config
	server bool
	fr     *http2.Framer
	bw     *bufio.Writer

	// The write side: wsem is the write lock (a channel so that a ping can
	// give up waiting); writers counts those holding or awaiting it, so
	// that the last one flushes.
	wsem     chan struct{}
	writers  atomic.Int32
	henc     *hpack.Encoder // guarded by the write lock
	hbuf     []byte         // the encoder's output, guarded by the write lock
	ctrlMu   sync.Mutex
	ctrl     []control // frames the reader or a Read owes the peer
	ctrlWait atomic.Bool
	dirty    atomic.Bool // bytes in bw that no flush took yet

	mu            sync.Mutex // guards the fields below
	streams       map[uint32]*Stream
	nextID        uint32 // client: the next stream ID to open
	lastID        uint32 // server: the highest stream ID the peer opened
	sendWin       int64  // the connection's send window
	recvWin       int64  // what the peer may still send on the connection
	waitConn      []*Stream
	peerWindow    int32 // SETTINGS_INITIAL_WINDOW_SIZE of the peer
	peerMaxFrame  uint32
	peerMaxStream int
	connUnacked   int32 // bytes read (or dropped) not yet returned to the peer
	goneAway      bool  // the peer sent GOAWAY, or we did (Shutdown)
	pings         map[[8]byte]chan struct{}
	pingSeq       uint64
	err           error // why the connection ended
	budget        int
	budgetAt      time.Time
	stallArmed    bool        // a stall check is due (stall.go)
	stallTimer    *time.Timer // its timer

	lastRead  atomic.Int64 // unix nanoseconds of the last frame read
	bytesIn   atomic.Int64 // DATA payload received
	bytesOut  atomic.Int64 // DATA payload sent
	done      chan struct{}
	closeOnce sync.Once
	handlers  sync.WaitGroup
	reader    sync.WaitGroup
}

// control is a frame the reader (or a Read) queues for the write lock's
// holder: it must never wait for the lock itself.
type control struct {
	typ    http2.FrameType
	stream uint32
	val    uint32 // window increment, or error code
	ack    bool
	data   [8]byte
}

// Client starts the client role on nc: the preface and SETTINGS are written
// at once, and the reader goroutine started.
func Client(nc net.Conn, cfg Config) (*Conn, error) {
	c := newConn(nc, cfg, false)
	if _, err := io.WriteString(c.bw, http2.ClientPreface); err != nil {
		return nil, err
	}
	if err := c.start(); err != nil {
		return nil, err
	}
	return c, nil
}

// Server starts the server role on nc: it reads the client's preface, then
// writes its SETTINGS and starts the reader goroutine. The caller bounds
// the wait for the preface with nc's deadline.
func Server(nc net.Conn, cfg Config) (*Conn, error) {
	c := newConn(nc, cfg, true)
	var p [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(nc, p[:]); err != nil {
		return nil, err
	}
	if string(p[:]) != http2.ClientPreface {
		return nil, &ProtocolError{Code: http2.ErrCodeProtocol, Reason: "no HTTP/2 client preface"}
	}
	if err := c.start(); err != nil {
		return nil, err
	}
	return c, nil
}

func newConn(nc net.Conn, cfg Config, server bool) *Conn {
	if cfg.StreamWindow <= 0 {
		cfg.StreamWindow = DefaultStreamWindow
	}
	if cfg.ConnWindow <= 0 {
		cfg.ConnWindow = DefaultConnWindow
	}
	if cfg.MaxFrame == 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	c := &Conn{nc: nc, cfg: cfg, server: server, wsem: make(chan struct{}, 1),
		streams: map[uint32]*Stream{}, nextID: 1, sendWin: initialWindow, recvWin: int64(cfg.ConnWindow), peerWindow: initialWindow,
		peerMaxFrame: 16 << 10, peerMaxStream: cfg.MaxStreams, pings: map[[8]byte]chan struct{}{},
		budget: controlBudget, done: make(chan struct{})}
	c.bw = bufio.NewWriterSize(nc, writeBufferSize)
	c.fr = http2.NewFramer(c.bw, nc)
	c.fr.SetMaxReadFrameSize(cfg.MaxFrame)
	c.fr.SetReuseFrames()
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = maxHeaderList
	c.henc = hpack.NewEncoder(&hpackSink{c})
	// No dynamic table: the peer's SETTINGS_HEADER_TABLE_SIZE cannot be
	// exceeded, and a stream's fields are sent once anyway.
	c.henc.SetMaxDynamicTableSize(0)
	c.lastRead.Store(time.Now().UnixNano())
	return c
}

type hpackSink struct{ c *Conn }

func (h *hpackSink) Write(b []byte) (int, error) {
	h.c.hbuf = append(h.c.hbuf, b...)
	return len(b), nil
}

// start writes SETTINGS and the connection's window, and starts reading.
func (c *Conn) start() error {
	settings := []http2.Setting{
		{ID: http2.SettingInitialWindowSize, Val: uint32(c.cfg.StreamWindow)},
		{ID: http2.SettingMaxFrameSize, Val: c.cfg.MaxFrame},
		{ID: http2.SettingMaxHeaderListSize, Val: maxHeaderList},
	}
	if c.server {
		settings = append(settings, http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: uint32(c.cfg.MaxStreams)})
	} else {
		settings = append(settings, http2.Setting{ID: http2.SettingEnablePush, Val: 0},
			http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 0})
	}
	c.lock()
	err := c.fr.WriteSettings(settings...)
	if err == nil && c.cfg.ConnWindow > initialWindow {
		err = c.fr.WriteWindowUpdate(0, uint32(c.cfg.ConnWindow-initialWindow))
	}
	if uerr := c.unlock(); err == nil {
		err = uerr
	}
	if err != nil {
		return err
	}
	c.reader.Go(c.read)
	return nil
}

// lock takes the write lock.
func (c *Conn) lock() {
	c.writers.Add(1)
	c.wsem <- struct{}{}
}

// tryLock takes the write lock if nobody holds it.
func (c *Conn) tryLock() bool {
	select {
	case c.wsem <- struct{}{}:
		c.writers.Add(1)
		return true
	default:
		return false
	}
}

// unlockYield is unlock for a stream's HEADERS and DATA: before it flushes
// a small frame it yields once, so that the streams the same network poll
// made runnable (fifty keep-alive answers from the target) queue behind
// the lock meanwhile, and the last of them flushes them all in one TLS
// record and one write, where each would have paid its own. Large frames
// (bulk) and control frames (the reader's) flush at once.
func (c *Conn) unlockYield() error {
	if c.writers.Load() == 1 && c.bw.Buffered() > 0 && c.bw.Buffered() < yieldBelow {
		runtime.Gosched()
	}
	return c.unlock()
}

// yieldBelow: a write buffer this full flushes without yielding first.
const yieldBelow = 16 << 10

// unlock writes the queued control frames, flushes when nobody else waits
// to write (who does flushes after its own frames), and releases the lock.
func (c *Conn) unlock() error {
	err := c.writeControl()
	if c.writers.Load() == 1 {
		if ferr := c.bw.Flush(); err == nil {
			err = ferr
		}
		c.dirty.Store(false)
	} else {
		c.dirty.Store(true)
	}
	c.writers.Add(-1)
	<-c.wsem
	// A frame queued after writeControl looked, while tryLock failed
	// because this goroutine held the lock, or bytes left unflushed for a
	// waiter that is gone: written now.
	if (c.ctrlWait.Load() || c.dirty.Load() && c.writers.Load() == 0) && c.tryLock() {
		if uerr := c.unlock(); err == nil {
			err = uerr
		}
	}
	return err
}

func (c *Conn) writeControl() error {
	if !c.ctrlWait.Load() {
		return nil
	}
	c.ctrlMu.Lock()
	q := c.ctrl
	c.ctrl = nil
	c.ctrlWait.Store(false)
	c.ctrlMu.Unlock()
	var err error
	for _, f := range q {
		var e error
		switch f.typ {
		case http2.FrameWindowUpdate:
			e = c.fr.WriteWindowUpdate(f.stream, f.val)
		case http2.FrameRSTStream:
			e = c.fr.WriteRSTStream(f.stream, http2.ErrCode(f.val))
		case http2.FramePing:
			e = c.fr.WritePing(f.ack, f.data)
		case http2.FrameSettings:
			e = c.fr.WriteSettingsAck()
		case http2.FrameGoAway:
			e = c.fr.WriteGoAway(f.stream, http2.ErrCode(f.val), nil)
		}
		if err == nil {
			err = e
		}
	}
	return err
}

// queue hands f to whoever holds the write lock, or writes it now when
// nobody does. It never waits.
func (c *Conn) queue(f control) {
	c.ctrlMu.Lock()
	c.ctrl = append(c.ctrl, f)
	c.ctrlWait.Store(true)
	c.ctrlMu.Unlock()
	if c.tryLock() {
		if err := c.unlock(); err != nil {
			c.fail(err)
		}
	}
}

// Done is closed when the connection has ended; Err then says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the connection ended (nil while it is up).
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// NumStreams is how many streams are open.
func (c *Conn) NumStreams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.streams)
}

// CanOpen says whether the client role may open a stream now: the
// connection is up, not draining, and below its stream caps.
func (c *Conn) CanOpen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil && !c.goneAway && len(c.streams) < min(c.cfg.MaxStreams, c.peerMaxStream)
}

// BytesIn and BytesOut are the DATA bytes received and sent.
func (c *Conn) BytesIn() int64  { return c.bytesIn.Load() }
func (c *Conn) BytesOut() int64 { return c.bytesOut.Load() }

// LastRead is when the last frame arrived.
func (c *Conn) LastRead() time.Time { return time.Unix(0, c.lastRead.Load()) }

// Close ends the connection and every stream at once.
func (c *Conn) Close() error {
	c.fail(ErrClosed)
	return nil
}

// Wait waits for the reader goroutine and, in the server role, the handlers.
func (c *Conn) Wait() {
	c.reader.Wait()
	c.handlers.Wait()
}

// fail ends the connection with err: every stream gets it.
func (c *Conn) fail(err error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.err = err
		if c.stallTimer != nil {
			c.stallTimer.Stop()
		}
		streams := c.streams
		c.streams = map[uint32]*Stream{}
		for _, ch := range c.pings {
			close(ch)
		}
		c.pings = map[[8]byte]chan struct{}{}
		c.mu.Unlock()
		close(c.done)
		c.nc.Close()
		for _, s := range streams {
			s.abort(err)
		}
	})
}

// protocolError ends the connection for a peer's breach: GOAWAY with code
// (written if the lock is free within a moment), then close.
func (c *Conn) protocolError(code http2.ErrCode, format string, args ...any) {
	e := &ProtocolError{Code: code, Reason: fmt.Sprintf(format, args...)}
	if c.cfg.Misbehaved != nil {
		c.cfg.Misbehaved(e)
	}
	c.mu.Lock()
	last := c.lastID
	c.mu.Unlock()
	for deadline := time.Now().Add(100 * time.Millisecond); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if c.tryLock() {
			c.nc.SetWriteDeadline(time.Now().Add(time.Second))
			c.fr.WriteGoAway(last, code, []byte(e.Reason))
			c.bw.Flush()
			c.writers.Add(-1)
			<-c.wsem
			break
		}
	}
	c.fail(e)
}

// streamError resets one stream for a peer's breach.
func (c *Conn) streamError(id uint32, code http2.ErrCode, reason string) {
	e := &ProtocolError{Code: code, Stream: id, Reason: reason}
	if c.cfg.Misbehaved != nil {
		c.cfg.Misbehaved(e)
	}
	c.mu.Lock()
	s := c.streams[id]
	c.mu.Unlock()
	if s != nil {
		s.abort(e)
		c.forget(s)
	}
	c.queue(control{typ: http2.FrameRSTStream, stream: id, val: uint32(code)})
}

// spend takes one unit of the peer's control budget (controlBudget per
// second); false: the peer floods.
func (c *Conn) spend() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if now.Sub(c.budgetAt) >= time.Second {
		c.budget, c.budgetAt = controlBudget, now
	}
	c.budget--
	return c.budget >= 0
}

// Ping sends a PING and waits for its acknowledgement.
func (c *Conn) Ping(ctx context.Context) error {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.pingSeq++
	var data [8]byte
	for i := range 8 {
		data[i] = byte(c.pingSeq >> (8 * i))
	}
	ch := make(chan struct{})
	c.pings[data] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pings, data)
		c.mu.Unlock()
	}()
	c.queue(control{typ: http2.FramePing, data: data})
	select {
	case <-ch:
		return c.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown drains the connection: GOAWAY tells the peer that no new
// stream is served (the server role refuses any), the streams open finish,
// and the connection is closed when the last ends or ctx does.
func (c *Conn) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	c.goneAway = true
	last := c.lastID
	c.mu.Unlock()
	c.queue(control{typ: http2.FrameGoAway, stream: last, val: uint32(http2.ErrCodeNo)})
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for c.NumStreams() > 0 {
		select {
		case <-ctx.Done():
			c.Close()
			return ctx.Err()
		case <-c.done:
			return nil
		case <-tick.C:
		}
	}
	c.Close()
	return nil
}

// forget removes s from the open streams.
func (c *Conn) forget(s *Stream) {
	c.mu.Lock()
	if c.streams[s.id] == s {
		delete(c.streams, s.id)
	}
	c.mu.Unlock()
}

// credit returns n bytes read from stream s (nil: of no stream) to the
// peer's windows, in updates of at least a quarter window.
func (c *Conn) credit(s *Stream, n int32) {
	c.mu.Lock()
	c.connUnacked += n
	conn := int32(0)
	if c.connUnacked >= c.cfg.ConnWindow/4 {
		conn, c.connUnacked = c.connUnacked, 0
		c.recvWin += int64(conn)
	}
	c.mu.Unlock()
	if conn > 0 {
		c.queue(control{typ: http2.FrameWindowUpdate, val: uint32(conn)})
	}
	if s == nil {
		return
	}
	s.mu.Lock()
	s.unacked += n
	inc := int32(0)
	if s.unacked >= c.cfg.StreamWindow/4 && !s.rEnded && s.rErr == nil {
		inc, s.unacked = s.unacked, 0
		s.recvWin += inc
	}
	s.mu.Unlock()
	if inc > 0 {
		c.queue(control{typ: http2.FrameWindowUpdate, stream: s.id, val: uint32(inc)})
	}
}
