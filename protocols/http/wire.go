package http

import (
	"bufio"
	"errors"
	"io"
	"math"
	stdhttp "net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// This file holds the HTTP/1.x wire helpers of the per-connection loop
// (h1.go): which headers cross the proxy, how a message is framed on the
// way out, and the readers and buffers it reuses.

// hopHeader reports whether a header belongs to one connection only and
// must not be forwarded (RFC 9110 section 7.6.1), or is one that the loop
// writes itself: the framing (Content-Length, Transfer-Encoding) is
// recomputed from what was parsed, so what reaches the other side is
// exactly what gatehouse understood, never a second reading of the bytes.
func hopHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Content-Length":
		return true
	}
	return false
}

// requestOnlyHeader reports headers of a request that gatehouse sets
// itself: the forwarding headers (a client cannot forge X-Forwarded-Proto
// or Forwarded) and Host, which is written from the routed request.
func requestOnlyHeader(k string) bool {
	switch k {
	case "Host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded":
		return true
	}
	return false
}

// connectionListed reports whether the Connection header values name k,
// which makes k hop-by-hop as well.
func connectionListed(conn []string, k string) bool {
	for _, v := range conn {
		for len(v) > 0 {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(tok), k) {
				return true
			}
		}
	}
	return false
}

// hasToken reports whether a comma-separated header holds token.
func hasToken(vs []string, token string) bool { return connectionListed(vs, token) }

// isUpgrade reports whether h asks to switch protocols (WebSocket).
func isUpgrade(h stdhttp.Header) bool {
	return len(h["Upgrade"]) > 0 && hasToken(h["Connection"], "upgrade")
}

// writeHeaders writes every end-to-end header of h. extra decides further
// headers to leave out.
func writeHeaders(w *bufio.Writer, h stdhttp.Header, skip func(string) bool) {
	conn := h["Connection"]
	for k, vs := range h {
		if hopHeader(k) || (skip != nil && skip(k)) || (len(conn) > 0 && connectionListed(conn, k)) {
			continue
		}
		for _, v := range vs {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
}

func writeHeader(w *bufio.Writer, k, v string) {
	w.WriteString(k)
	w.WriteString(": ")
	w.WriteString(v)
	w.WriteString("\r\n")
}

func writeInt(w *bufio.Writer, n int64) {
	w.Write(strconv.AppendInt(w.AvailableBuffer(), n, 10))
}

func writeHex(w *bufio.Writer, n int) {
	w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(n), 16))
}

// copyBufs holds the body copy buffers of the request loop.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func getBuf() *[]byte  { return copyBufs.Get().(*[]byte) }
func putBuf(b *[]byte) { copyBufs.Put(b) }

// writeStatusLine writes "HTTP/1.1 code reason".
func writeStatusLine(w *bufio.Writer, code int, status string) {
	w.WriteString("HTTP/1.1 ")
	writeInt(w, int64(code))
	w.WriteByte(' ')
	// Response.Status is "200 OK" as the target sent it; keep its reason
	// phrase, or use the standard one when it sent none.
	if _, reason, ok := strings.Cut(status, " "); ok && reason != "" {
		w.WriteString(reason)
	} else {
		w.WriteString(stdhttp.StatusText(code))
	}
	w.WriteString("\r\n")
}

// validHost reports whether a Host header holds only bytes that can appear
// in a host and port (the lenient rule net/http applies too).
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		if !validHostByte[h[i]] {
			return false
		}
	}
	return true
}

var validHostByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!$%&'()*+,-.:;=[]_~@" {
		t[c] = true
	}
	return t
}()

// idempotent reports whether a request may be sent again when a reused
// target connection failed before answering (RFC 9110 section 9.2.2; the
// same methods net/http's Transport retries).
func idempotent(r *stdhttp.Request) bool {
	switch r.Method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// bodyless reports whether a response to method with status code has no
// body whatever its headers say.
func bodyless(method string, code int) bool {
	return method == "HEAD" || code/100 == 1 || code == 204 || code == 304
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
