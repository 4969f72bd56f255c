package http

// The buffers and counting readers and writers of the HTTP/1.x loop.

import (
	"bufio"
	"io"
	"sync"
)

// copyBuffers holds the body copy buffers of both HTTP versions: the
// request loop's (getBuf, putBuf) and the reverse proxy's (its
// BufferPool), which would otherwise allocate 32 KiB for every request.
var copyBuffers = &bufferPool{}

type bufferPool struct{ p sync.Pool }

// copyBufSize is the size of a body copy buffer, io.Copy's own.
const copyBufSize = 32 << 10

func getBuf() *[]byte {
	if v, ok := copyBuffers.p.Get().(*[]byte); ok {
		return v
	}
	b := make([]byte, copyBufSize)
	return &b
}

func putBuf(b *[]byte) { copyBuffers.p.Put(b) }

// Get and Put make the pool an httputil.BufferPool.
func (b *bufferPool) Get() []byte    { return *getBuf() }
func (b *bufferPool) Put(buf []byte) { putBuf(&buf) }

// idempotent reports whether a request may be sent again when a reused
// target connection failed before answering (RFC 9110 section 9.2.2; the
// same methods net/http's Transport retries).
func idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// countReader sits under a bufio.Reader: it counts what was read from the
// connection (to tell whether a peer sent anything, and for the admin UI).
// Message heads are capped by the h1 parser.
type countReader struct {
	r     io.Reader
	n     int64       // bytes read so far
	stash []byte      // read from r by someone else, to be read first
	total func(n int) // also counts here, when set (proxy.Conn.CountIn)
	// rearm, when set, runs once before the next read from r: a read
	// deadline meant only for a wait (awaitRequest's grace, awaitTarget's
	// watch) is replaced by the one for reading the rest of a message
	// only when there is a rest to read, which for most requests there
	// is not (each SetReadDeadline modifies a runtime timer).
	rearm func()
}

// countWriter counts what is written to the client, for the admin UI.
type countWriter struct {
	w     io.Writer
	total func(n int) // proxy.Conn.CountOut
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.total(n)
	return n, err
}

func (c *countReader) Read(p []byte) (int, error) {
	if len(c.stash) > 0 {
		n := copy(p, c.stash)
		c.stash = c.stash[n:]
		c.n += int64(n)
		c.count(n)
		return n, nil
	}
	if c.rearm != nil {
		f := c.rearm
		c.rearm = nil
		f()
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.count(n)
	return n, err
}

func (c *countReader) count(n int) {
	if c.total != nil && n > 0 {
		c.total(n)
	}
}

// bufSize is the size of the buffered readers and writers: one read or
// write system call carries a whole small request or response.
const bufSize = 4 << 10

// The pools of buffered readers and writers, one of each per client
// connection while it lives.
var (
	readers = newBufPool[io.Reader](func() *bufio.Reader { return bufio.NewReaderSize(nil, bufSize) })
	writers = newBufPool[io.Writer](func() *bufio.Writer { return bufio.NewWriterSize(nil, bufSize) })
)

// A bufPool keeps buffered readers or writers (B) of streams S for reuse.
type bufPool[S any, B interface{ Reset(S) }] struct{ p sync.Pool }

func newBufPool[S any, B interface{ Reset(S) }](newBuf func() B) *bufPool[S, B] {
	return &bufPool[S, B]{p: sync.Pool{New: func() any { return newBuf() }}}
}

// get returns a buffer on s.
func (p *bufPool[S, B]) get(s S) B {
	b := p.p.Get().(B)
	b.Reset(s)
	return b
}

// put takes b back, reset to no stream: a pooled buffer keeps no
// connection alive.
func (p *bufPool[S, B]) put(b B) {
	var none S
	b.Reset(none)
	p.p.Put(b)
}
