package http

// The buffers and counting readers and writers of the HTTP/1.x loop.

import (
	"bufio"
	"errors"
	"io"
	"math"
	"sync"
	"sync/atomic"
)

// copyBufs holds the body copy buffers of the request loop.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func getBuf() *[]byte  { return copyBufs.Get().(*[]byte) }
func putBuf(b *[]byte) { copyBufs.Put(b) }

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

const noLimit = math.MaxInt64

var errTooLarge = errors.New("message head too large")

// countReader sits under a bufio.Reader: it counts what was read from the
// connection (to tell whether a peer sent anything) and caps how much a
// message head may take.
type countReader struct {
	r     io.Reader
	n     int64         // bytes read so far
	limit int64         // reads stop at n == limit
	stash []byte        // read from r by someone else, to be read first
	total *atomic.Int64 // also counts here, when set (the client's counter)
}

// countWriter counts what is written to the client, for the admin UI.
type countWriter struct {
	w     io.Writer
	total *atomic.Int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.total.Add(int64(n))
	return n, err
}

func (c *countReader) Read(p []byte) (int, error) {
	if c.n >= c.limit {
		return 0, errTooLarge
	}
	if rem := c.limit - c.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	if len(c.stash) > 0 {
		n := copy(p, c.stash)
		c.stash = c.stash[n:]
		c.n += int64(n)
		c.count(n)
		return n, nil
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.count(n)
	return n, err
}

func (c *countReader) count(n int) {
	if c.total != nil && n > 0 {
		c.total.Add(int64(n))
	}
}

// capHead limits reads to max more bytes than the reader already holds.
func (c *countReader) capHead(max int64) { c.limit = c.n + max }

func (c *countReader) uncap() { c.limit = noLimit }

// bufSize is the size of the buffered readers and writers: one read or
// write system call carries a whole small request or response.
const bufSize = 4 << 10

var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}
)

func getReader(r io.Reader) *bufio.Reader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readers.Put(br)
}

func getWriter(w io.Writer) *bufio.Writer {
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	writers.Put(bw)
}
