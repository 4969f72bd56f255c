package http

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	stdhttp "net/http"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/protocols/http/h1"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/sockio"
)

// HTTP/1.x is served by a loop of its own rather than by net/http's server
// and httputil.ReverseProxy: one goroutine per client connection (the
// proxy's) reads a request, routes and checks it, writes it to a pooled
// target connection and copies the answer back, with no hand-off to other
// goroutines for a request without a body. The rules are those of the
// HTTP/2 path (rules.go); what differs is only who frames the bytes.
//
// Both directions are read by package h1, strictly, and written anew from
// what it read: the target never sees the client's framing bytes, only
// gatehouse's reading of them, so no request can be smuggled past the
// rules (exchange.go).

// maxResponseHead caps a target's response head.
const maxResponseHead = 1 << 20

// aLongTimeAgo is a deadline that has passed: setting it wakes a blocked
// read or write at once.
var aLongTimeAgo = time.Unix(1, 0)

// h1conn is one HTTP/1.x client connection.
type h1conn struct {
	h      *Handler
	g      *generation
	pc     *proxy.Conn
	conn   net.Conn
	limits configs.Limits
	cr     countReader   // under br
	cw     countWriter   // under bw
	br     *bufio.Reader // from the pool while a request is in flight (see awaitRequest)
	bw     *bufio.Writer
	one    [1]byte // the first byte of a request, read while br is back in the pool
	proto  string  // for X-Forwarded-Proto
	ip     string  // the client address, for X-Forwarded-For
	wdl    time.Time
	// graceSet: the client's read deadline is awaitRequest's grace
	// (until graceDL), set by the connection's goroutine; see awaitRequest.
	graceSet bool
	graceDL  time.Time
	headDL   func() // headDeadline, made once

	// The route of the last request, reused while the Host stays the same:
	// the table, the client address and the service type are fixed for
	// the connection, so the answer would be the same.
	host  string
	route *proxy.Route

	// kept is the target connection of the client's last request, held
	// for its next one while the client keeps sending (see keep): the
	// connection's goroutine only, never while parked.
	kept *targetConn

	// reqBody reads the request in flight's body: the connection's own, as
	// every exchange (and its body copy) ends before the next begins.
	reqBody h1.Body

	yield    bool // yieldBeforeRead yields: the process runs on one P
	lastBody bool // the previous request had a body (see serveOne)
	// linger: the loop ends with an answer written while the client may
	// still be sending (a body not read, junk); see lingerClose.
	linger bool

	mu      sync.Mutex  // guards the fields below, against Shutdown's look at them
	idle    bool        // waiting for the next request
	target  *targetConn // in use for the request in flight
	aborted bool        // Shutdown ran out of time
}

// serveH1 runs the request loop until the client closes, breaks the
// protocol, goes idle too long, or the handler shuts down.
func (h *Handler) serveH1(g *generation, pc *proxy.Conn) {
	c := &h1conn{h: h, g: g, pc: pc, conn: pc.Conn, limits: pc.Table.Config.Limits,
		ip: pc.Info.Client.Addr().String(), proto: "http", yield: runtime.GOMAXPROCS(0) == 1}
	if pc.Info.TLS != nil {
		c.proto = "https"
	}
	if !g.track(c) {
		return
	}
	c.headDL = c.headDeadline
	// Plain HTTP reads and writes raw (pc.Conn stays the *net.TCPConn,
	// for splice); under TLS the listener wrapped the socket already.
	rw := sockio.Wrap(pc.Conn)
	c.cr = countReader{r: rw, total: pc.CountIn}
	c.cw = countWriter{w: rw, total: pc.CountOut}
	c.acquire()
	// The listener's deadline still bounds the first request's head; its
	// write half is renewed per response.
	c.wdl = time.Now().Add(c.limits.FirstPacketTimeout)
	c.loop(true)
}

// loop serves requests until the connection ends, or parks between two
// (see awaitRequest): then it returns at once, and resume goes on.
func (c *h1conn) loop(first bool) {
	for ; ; first = false {
		switch c.awaitRequest(first, true) {
		case parked:
			return
		case stop:
			c.end()
			return
		}
		if !c.serveOne() {
			c.end()
			return
		}
	}
}

// end ends the connection's loop.
func (c *h1conn) end() {
	c.unkeep()
	if c.linger {
		c.lingerClose()
	}
	c.release()
	c.g.untrack(c)
	c.pc.Done()
}

// resume goes on with a parked connection: its client sent something, or
// (ended) it is to end.
func (c *h1conn) resume(ended bool) {
	if ended || !c.firstByte() {
		c.end()
		return
	}
	if !c.serveOne() {
		c.end()
		return
	}
	c.loop(false)
}

// lingerClose lets the client read the last answer before the connection
// closes: closing a socket with unread input resets the connection, and a
// reset can destroy the answer before the client has read it. So the
// write side is closed first and what the client still sends is read and
// dropped, until it closes too or half a second has passed (as net/http
// does).
func (c *h1conn) lingerClose() {
	cw, ok := c.conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.setReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.CopyN(io.Discard, c.conn, 256<<10)
}

func after(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// renew moves a deadline last set to *dl to now+d and reports whether it
// moved. It leaves one alone that would come less than a second early, so
// that a busy connection does not reset its timers on every request.
func renew(dl *time.Time, now time.Time, d time.Duration) bool {
	if d <= 0 {
		if dl.IsZero() {
			return false
		}
		*dl = time.Time{}
		return true
	}
	next := now.Add(d)
	if !dl.IsZero() && next.Sub(*dl) < time.Second {
		return false
	}
	*dl = next
	return true
}

// acquire takes the buffered reader and writer from their pools, when the
// connection does not hold them.
func (c *h1conn) acquire() {
	if c.br == nil {
		c.br = readers.get(&c.cr)
	}
	if c.bw == nil {
		c.bw = writers.get(&c.cw)
	}
}

// release gives the reader and writer back to their pools. An idle
// kept-alive connection (a phone's, for hours) then holds neither: 8 KiB
// less per connection. Only empty buffers go back; a reader with a
// pipelined request in it is kept.
func (c *h1conn) release() {
	c.reqBody = h1.Body{} // no hold on a pooled reader or a trailer
	if c.br != nil && c.br.Buffered() == 0 {
		readers.put(c.br)
		c.br = nil
	}
	if c.bw != nil && c.bw.Buffered() == 0 {
		writers.put(c.bw)
		c.bw = nil
	}
}

// awaitRequest waits up to limits.idle_timeout for the first byte of the
// next request, then gives its head limits.first_packet_timeout (the first
// request: the listener's deadline, which covers the handshake too). It
// returns stop when the connection should end quietly.
//
// A request that comes within proxy.ParkGrace is read whole, with one
// system call, into the reader the connection holds. After that the wait
// holds no buffers (the first byte is read into c.one and handed to the
// reader taken afterwards, through the count reader's stash) and, between
// two requests, no goroutine either: the connection parks on the proxy's
// poller (proxy.Conn.Park) and resume goes on when the client sends the
// next one.
func (c *h1conn) awaitRequest(first, mayPark bool) await {
	if c.br.Buffered() > 0 || len(c.cr.stash) > 0 {
		if c.g.closing.Load() {
			return stop
		}
		if !first {
			c.setReadDeadline(after(c.limits.FirstPacketTimeout))
		}
		return serve
	}
	if !c.setIdle(true) {
		return stop
	}
	idle := c.limits.IdleTimeout // the wait's deadline: the listener's for the first request
	var wait time.Time
	if first {
		wait = c.pc.FirstDeadline()
	} else {
		wait = after(idle)
	}
	now := time.Now()
	grace := now.Add(proxy.ParkGrace)
	if !wait.IsZero() && wait.Before(grace) {
		grace = wait
	}
	// A grace set for an earlier request that is still at least half of
	// ParkGrace away serves again (the connection then parks after 50 to
	// 100 ms): a busy connection does not modify its timer per request.
	c.cr.rearm = nil
	if first || !c.graceSet || c.graceDL.Before(now.Add(proxy.ParkGrace/2)) || grace.Before(c.graceDL) {
		c.conn.SetReadDeadline(grace)
		c.graceSet, c.graceDL = true, grace
	}
	_, err := c.br.Peek(1)
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || c.g.closing.Load() || !time.Now().Before(wait) && !wait.IsZero() {
		if err != nil || !c.setIdle(false) {
			return stop // the end: EOF, the deadline, Shutdown's wake
		}
		if first {
			c.setReadDeadline(wait)
		} else {
			// The head's deadline, first_packet_timeout, is set when the
			// head needs a second read (headDeadline); most come whole in
			// the first.
			c.cr.rearm = c.headDL
		}
		return serve
	}
	c.unkeep() // a quiet client holds no target connection
	c.release()
	if !first && mayPark {
		rest := time.Duration(0) // no idle timeout
		if idle > 0 {
			rest = max(time.Until(wait), time.Nanosecond)
		}
		if c.pc.Park(rest, c.resume) {
			if c.g.closing.Load() {
				c.pc.Unpark() // Shutdown's wake may have come before the park
			}
			return parked
		}
	}
	// Nothing read is an EOF, the deadline or Shutdown's wake: the
	// connection ends quietly.
	c.setReadDeadline(wait)
	n, _ := c.conn.Read(c.one[:])
	return c.gotFirst(n, first)
}

// await is what awaitRequest found.
type await int

const (
	serve  await = iota // a request is there
	stop                // the connection ends quietly
	parked              // it waits on the poller; resume goes on
)

// gotFirst goes on after n (0 or 1) bytes read into c.one, the first of a
// request; the first request's head keeps the listener's deadline.
func (c *h1conn) gotFirst(n int, first bool) await {
	c.acquire()
	c.cr.stash = c.one[:n]
	if !c.setIdle(false) || n == 0 {
		return stop
	}
	if !first {
		c.setReadDeadline(after(c.limits.FirstPacketTimeout))
	}
	return serve
}

// yieldBeforeRead comes before the read of the target's answer, right
// after the request went to it, which would usually find nothing yet. It
// lets the other goroutines run first. Go's reads try the system call
// first and wait for readiness only after it failed with EAGAIN, so a read
// made too early costs a system call, a park on the poller and a wake-up;
// after the other connections' goroutines have had their turn, the answer
// is usually there. With nothing else to run, the yield returns at once.
//
// Not before the client's next request, though that read fails as often:
// a goroutine that yields stays runnable, and the runtime polls the
// network only when no goroutine is runnable (or every 10 ms, from its
// monitor). With both reads yielding, a busy connection went round the run
// queue without ever parking, and the few that had parked waited for
// the 10 ms poll: p99 three times HAProxy's. The client's read parks
// instead, so the run queue empties once a round and the parked are
// polled (bench/README.md: p99 halved, 5% fewer requests per second).
//
// Only on one P (GOMAXPROCS=1, read when the connection starts): with
// more, runtime.Gosched also wakes an idle P's thread to take the yielded
// goroutine (a futex call, and the goroutine moves to another CPU), which
// cost more than the reads it saved (bench with GOMAXPROCS=2: 0.5-0.7
// futex calls and +5-10 us of CPU per request).
func (c *h1conn) yieldBeforeRead() {
	if c.yield {
		runtime.Gosched()
	}
}

// setReadDeadline sets the client's read deadline for good (not a grace,
// not one deferred to the next read); the connection's goroutine only.
func (c *h1conn) setReadDeadline(t time.Time) {
	c.cr.rearm, c.graceSet = nil, false
	c.conn.SetReadDeadline(t)
}

// headDeadline bounds the rest of a head that did not come whole in
// awaitRequest's first read by first_packet_timeout.
func (c *h1conn) headDeadline() {
	c.graceSet = false
	c.conn.SetReadDeadline(after(c.limits.FirstPacketTimeout))
}

// firstByte reads the first byte of a request after a park: the socket is
// readable, but a TLS record may not be all there yet.
func (c *h1conn) firstByte() bool {
	c.setReadDeadline(after(c.limits.FirstPacketTimeout))
	n, _ := c.conn.Read(c.one[:])
	return c.gotFirst(n, false) == serve
}

// setIdle records whether the connection waits for a request, and reports
// whether it may go on: not once Shutdown has begun.
func (c *h1conn) setIdle(idle bool) bool {
	c.mu.Lock()
	c.idle = idle
	c.mu.Unlock()
	return !c.g.closing.Load()
}

// wake ends the wait for a next request, for Shutdown.
func (c *h1conn) wake() {
	c.mu.Lock()
	if c.idle {
		c.conn.SetReadDeadline(aLongTimeAgo)
	}
	c.mu.Unlock()
	c.pc.Unpark()
}

// hold records the target connection the request in flight uses, so that
// abort can close it; nil when done with it. It returns tc.
func (c *h1conn) hold(tc *targetConn) *targetConn {
	c.mu.Lock()
	c.target = tc
	if tc != nil && c.aborted {
		tc.close()
	}
	c.mu.Unlock()
	return tc
}

// abort closes the target connection of the request in flight, when
// Shutdown's time is up: the proxy closes client connections then, but a
// request loop may be waiting on its target rather than its client.
func (c *h1conn) abort() {
	c.mu.Lock()
	c.aborted = true
	if c.target != nil {
		c.target.close()
	}
	c.mu.Unlock()
}

// serveOne reads, checks and forwards one request; it reports whether the
// connection can carry another.
func (c *h1conn) serveOne() bool {
	if c.lastBody {
		// Some old clients send a CRLF after a body (RFC 9112 section 2.2
		// asks a server to ignore at least one empty line).
		c.lastBody = false
		if b, _ := c.br.Peek(2); len(b) == 2 && b[0] == '\r' && b[1] == '\n' {
			c.br.Discard(2)
			if c.br.Buffered() == 0 {
				return c.awaitRequest(false, false) == serve && c.serveOne()
			}
		}
	}
	req, err := h1.ReadRequest(c.br, int(c.limits.FirstPacketMax))
	if err != nil {
		// Something arrived (awaitRequest saw a byte) but it was not a
		// request: junk, TLS on the plain port, smuggling tricks, a cut-off
		// or too slow head.
		c.pc.Report("", proxy.Refuse(proxy.ReasonUnreadable, "", err))
		var ne net.Error
		if err != io.EOF && err != io.ErrUnexpectedEOF && !(errors.As(err, &ne) && ne.Timeout()) {
			c.writeError(h1.Status(err), true, false)
		}
		return false
	}
	c.lastBody = req.ContentLength != 0
	if c.pc.Blocked() {
		// Blocked while the connection was open (a pipelined or kept-alive
		// request after the one that tipped the count): nothing more
		// reaches a target.
		c.writeError(stdhttp.StatusForbidden, true, req.Method == "HEAD")
		return false
	}
	route, status := admit(c.pc, request{method: req.Method, host: req.Host, path: req.Path, form: req.Form}, c.routeFor)
	if route == nil {
		c.writeError(status, true, req.Method == "HEAD")
		return false
	}
	return c.forward(req, route)
}

// routeFor resolves the request's Host; on refusal it returns the status
// to answer: 403 for a network not allowed, else 421.
func (c *h1conn) routeFor(key string) (*proxy.Route, error) {
	if c.route != nil && key == c.host {
		if c.h.log.Enabled(context.Background(), slog.LevelDebug) {
			c.h.log.Debug("routed", "client", c.pc.Info.Client.Addr(), "type", c.pc.Info.Type.Name,
				"service", c.route.Service.Name, "target", c.route.Addr)
		}
		return c.route, nil
	}
	r, err := c.pc.Route(key, "")
	if err != nil {
		return nil, err
	}
	c.host, c.route = key, r
	return r, nil
}

// writeError answers with the bare status: nothing about the inside.
func (c *h1conn) writeError(code int, close, head bool) {
	text := statusText(code)
	bw := c.bw
	if renew(&c.wdl, time.Now(), c.limits.IdleTimeout) {
		c.conn.SetWriteDeadline(c.wdl)
	}
	writeStatusLine(bw, code, "")
	bw.WriteString("Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: ")
	h1.WriteInt(bw, int64(len(text)+1))
	if close {
		c.linger = true
		bw.WriteString("\r\nConnection: close")
	}
	bw.WriteString("\r\n\r\n")
	if !head {
		bw.WriteString(text)
		bw.WriteByte('\n')
	}
	bw.Flush()
}

func (c *h1conn) targetError(route *proxy.Route, err error) {
	c.h.log.Warn("target error", "client", c.pc.Info.Client.Addr(), "type", c.pc.Info.Type.Name,
		"service", route.Service.Name, "target", route.Addr, "err", err)
}
