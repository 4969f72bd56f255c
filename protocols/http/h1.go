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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// HTTP/1.x is served by a loop of its own rather than by net/http's server
// and httputil.ReverseProxy: one goroutine per client connection (the
// proxy's) reads a request, routes and checks it, writes it to a pooled
// target connection and copies the answer back, with no hand-off to other
// goroutines for a request without a body. The rules are those of the
// HTTP/2 path in serve.go; what differs is only who frames the bytes.
//
// Both directions are re-framed from what net/http's parsers understood
// (http.ReadRequest, http.ReadResponse): the target never sees the
// client's Content-Length or Transfer-Encoding bytes, only gatehouse's
// reading of them, so no request can be smuggled past the rules.

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
	cr     countReader // under br
	cw     countWriter // under bw
	br     *bufio.Reader
	bw     *bufio.Writer
	proto  string // for X-Forwarded-Proto
	ip     string // the client address, for X-Forwarded-For
	wdl    time.Time

	// The route of the last request, reused while the Host stays the same:
	// the table, the client address and the service type are fixed for
	// the connection, so the answer would be the same.
	host  string
	route *proxy.Route

	lastPost bool // the previous request was a POST (see serveOne)
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
		ip: pc.Info.Client.Addr().String(), proto: "http"}
	if pc.Info.TLS != nil {
		c.proto = "https"
	}
	if !g.track(c) {
		return
	}
	defer g.untrack(c)
	in, out := pc.Traffic()
	c.cr = countReader{r: pc.Conn, limit: noLimit, total: in}
	c.cw = countWriter{w: pc.Conn, total: out}
	c.br = getReader(&c.cr)
	c.bw = getWriter(&c.cw)
	defer func() {
		putReader(c.br)
		putWriter(c.bw)
	}()
	// The listener's deadline still bounds the first request's head; its
	// write half is renewed per response.
	c.wdl = time.Now().Add(c.limits.FirstPacketTimeout)
	for first := true; c.awaitRequest(first) && c.serveOne(); first = false {
	}
	if c.linger {
		c.lingerClose()
	}
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
	c.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
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

// awaitRequest waits up to limits.idle_timeout for the first byte of the
// next request, then gives its head limits.first_packet_timeout. It
// returns false when the connection should end quietly.
func (c *h1conn) awaitRequest(first bool) bool {
	if c.br.Buffered() == 0 {
		if !first {
			c.conn.SetReadDeadline(after(c.limits.IdleTimeout))
		}
		if !c.setIdle(true) {
			return false
		}
		_, err := c.br.Peek(1)
		if !c.setIdle(false) || err != nil {
			return false
		}
	} else if c.g.closing.Load() {
		return false
	}
	if !first {
		c.conn.SetReadDeadline(after(c.limits.FirstPacketTimeout))
	}
	return true
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
	if c.lastPost {
		// Some old clients send a CRLF after a POST body (net/http
		// tolerates it too).
		c.lastPost = false
		if b, _ := c.br.Peek(c.br.Buffered()); len(b) > 0 {
			n := 0
			for n < len(b) && n < 4 && (b[n] == '\r' || b[n] == '\n') {
				n++
			}
			c.br.Discard(n)
			if n == len(b) {
				return c.awaitRequest(false) && c.serveOne()
			}
		}
	}
	c.cr.capHead(int64(c.limits.FirstPacketMax))
	req, err := stdhttp.ReadRequest(c.br)
	tooLarge := c.cr.n >= c.cr.limit
	c.cr.uncap()
	status := stdhttp.StatusBadRequest
	if err == nil {
		status, err = checkRequest(req)
	} else if tooLarge || errors.Is(err, errTooLarge) {
		status = stdhttp.StatusRequestHeaderFieldsTooLarge
	}
	if err != nil {
		// Something arrived (awaitRequest saw a byte) but it was not a
		// request: junk, TLS on the plain port, a cut-off or too slow head.
		c.pc.Report("", "unreadable request", err)
		var ne net.Error
		if err != io.EOF && err != io.ErrUnexpectedEOF && !(errors.As(err, &ne) && ne.Timeout()) {
			c.writeError(status, true, false)
		}
		return false
	}
	c.lastPost = req.Method == "POST"
	route, status := admit(c.pc, req, c.routeFor)
	if route == nil {
		c.writeError(status, true, req.Method == "HEAD")
		return false
	}
	return c.forward(req, route)
}

// checkRequest applies what net/http's server checks beyond parsing: the
// version and the Host (http.ReadRequest has refused a repeated Host
// header and moved the one there is to req.Host).
func checkRequest(req *stdhttp.Request) (int, error) {
	if req.ProtoMajor != 1 {
		return stdhttp.StatusHTTPVersionNotSupported, errors.New("unsupported protocol version " + req.Proto)
	}
	if req.Host == "" && req.ProtoAtLeast(1, 1) {
		return stdhttp.StatusBadRequest, errors.New("missing Host header")
	}
	if !validHost(req.Host) {
		return stdhttp.StatusBadRequest, errors.New("malformed Host header")
	}
	// The request target must have one of the forms RFC 9112 section 3.2
	// allows (CONNECT's is refused later, with its own reason).
	u := req.URL
	switch {
	case req.Method == stdhttp.MethodConnect:
	case strings.HasPrefix(req.RequestURI, "/"):
	case req.RequestURI == "*" && req.Method == stdhttp.MethodOptions:
	case (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Opaque == "":
	default:
		return stdhttp.StatusBadRequest, errors.New("malformed request target")
	}
	return 0, nil
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
	text := stdhttp.StatusText(code)
	bw := c.bw
	if renew(&c.wdl, time.Now(), c.limits.IdleTimeout) {
		c.conn.SetWriteDeadline(c.wdl)
	}
	writeStatusLine(bw, code, "")
	bw.WriteString("Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: ")
	writeInt(bw, int64(len(text)+1))
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

// bodyCopy streams a request body to the target on a goroutine of its
// own, while the connection's goroutine waits for the answer: a target may
// answer before it has read the whole body, or ask for it (100 Continue).
type bodyCopy struct {
	done chan struct{}
	err  error // the client side's failure; set before done closes

	mu      sync.Mutex // orders deadline renewals against stop
	stopped bool
}

// renew moves the copy's deadlines on, unless it is being stopped.
func (b *bodyCopy) renew(c *h1conn, tc *targetConn, d time.Duration) {
	b.mu.Lock()
	if !b.stopped {
		c.conn.SetReadDeadline(after(d))
		tc.conn.SetWriteDeadline(after(d))
	}
	b.mu.Unlock()
}

// bodyGrace is how long an answer waits for the end of a body copy that
// has not finished when the answer's head arrives: usually it is just
// about to, having written the last bytes the target answered.
const bodyGrace = 100 * time.Millisecond

// wait waits up to d for the copy to end and reports whether it did.
func (b *bodyCopy) wait(d time.Duration) bool {
	if b.finished() {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-b.done:
		return true
	case <-t.C:
		return false
	}
}

func (b *bodyCopy) finished() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// forward sends req to the route's target and its answer to the client.
// It reports whether the client connection can carry another request.
func (c *h1conn) forward(req *stdhttp.Request, route *proxy.Route) bool {
	key := poolKey{addr: route.Addr, tls: route.TLS}
	hasBody := req.ContentLength != 0
	canRetry := !hasBody && idempotent(req)
	defer c.hold(nil)
	tc := c.hold(c.targetFor(key, canRetry))
	if tc == nil {
		if tc = c.hold(c.dial(route, key)); tc == nil {
			c.writeError(stdhttp.StatusBadGateway, hasBody || req.Close, req.Method == "HEAD")
			return !hasBody && !req.Close
		}
	}
	n0 := tc.cr.n
	resp, body, err := c.exchange(tc, req)
	if err != nil && canRetry && tc.reused() && tc.cr.n == n0 && !errors.Is(err, errClientGone) {
		// The target closed a pooled connection just as it was reused,
		// before answering: safe to send a request without effects again.
		c.h.log.Debug("retrying on a new target connection", "client", c.pc.Info.Client.Addr(),
			"service", route.Service.Name, "err", err)
		tc.close()
		if tc = c.hold(c.dial(route, key)); tc == nil {
			c.writeError(stdhttp.StatusBadGateway, req.Close, req.Method == "HEAD")
			return !req.Close
		}
		resp, body, err = c.exchange(tc, req)
	}
	if err != nil {
		if errors.Is(err, errClientGone) {
			tc.close()
			return false
		}
		if body != nil {
			clientFailed := body.finished() && body.err != nil
			tc.close()
			c.stopBody(body, tc)
			if clientFailed {
				// The client broke off its own request: nobody to answer.
				return false
			}
		}
		tc.close()
		c.targetError(route, err)
		c.writeError(targetErrorStatus(err), hasBody || req.Close, req.Method == "HEAD")
		return !hasBody && !req.Close
	}
	if (resp.StatusCode == stdhttp.StatusUnauthorized || resp.StatusCode == stdhttp.StatusForbidden) &&
		len(req.Header["Authorization"]) > 0 {
		c.pc.Report(route.Service.Name, proxy.ReasonCredentials, nil)
	}
	if resp.StatusCode == stdhttp.StatusSwitchingProtocols {
		return c.switchProtocols(req, resp, tc, route, body)
	}

	closeClient := req.Close || c.g.closing.Load()
	if body != nil && !body.wait(bodyGrace) {
		// The target answered before the whole body was sent: it may not
		// want it (a refusal, or no 100 Continue). Where the client's next
		// request would start is then unknown.
		closeClient = true
	}
	noBody := bodyless(req.Method, resp.StatusCode)
	chunked := false
	if !noBody && resp.ContentLength < 0 {
		if req.ProtoAtLeast(1, 1) {
			chunked = true
		} else {
			closeClient = true // an HTTP/1.0 client reads to the close
		}
	}
	bw := c.bw
	writeStatusLine(bw, resp.StatusCode, resp.Status)
	writeHeaders(bw, resp.Header, nil)
	switch {
	case noBody:
		if cl := resp.Header["Content-Length"]; len(cl) > 0 && resp.StatusCode != 204 && resp.StatusCode/100 != 1 {
			writeHeader(bw, "Content-Length", cl[0]) // HEAD and 304 tell the length of the GET
		}
	case chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		if len(resp.Trailer) > 0 {
			bw.WriteString("Trailer: ")
			sep := ""
			for k := range resp.Trailer {
				bw.WriteString(sep)
				bw.WriteString(k)
				sep = ", "
			}
			bw.WriteString("\r\n")
		}
	case resp.ContentLength >= 0:
		bw.WriteString("Content-Length: ")
		writeInt(bw, resp.ContentLength)
		bw.WriteString("\r\n")
	}
	if closeClient {
		c.linger = c.linger || (body != nil && (!body.finished() || body.err != nil))
		bw.WriteString("Connection: close\r\n")
	} else if !req.ProtoAtLeast(1, 1) {
		bw.WriteString("Connection: keep-alive\r\n")
	}
	bw.WriteString("\r\n")

	reuse := !resp.Close
	if !noBody {
		targetErr, clientErr := c.copyResponse(resp, tc, chunked)
		if targetErr != nil {
			// The answer is cut off; the client can only learn that from
			// the connection closing.
			c.targetError(route, targetErr)
			reuse, closeClient = false, true
		}
		if clientErr != nil {
			reuse, closeClient = false, true
		}
	}
	if body != nil {
		if !body.finished() {
			// The target answered without reading the whole body; where
			// the client's next request would start is unknown.
			c.stopBody(body, tc)
			reuse, closeClient, c.linger = false, true, true
		}
		if body.err != nil {
			reuse, closeClient = false, true
		}
	}
	// The target connection goes back to the pool before the client has
	// the last bytes of the answer, so that the client's next request (on
	// this connection or another) finds it there.
	if reuse {
		c.g.pool.put(tc)
	} else {
		tc.close()
	}
	if err := bw.Flush(); err != nil {
		closeClient = true
	}
	return !closeClient
}

// targetFor takes an idle connection to key from the pool, checking that
// it is still open where a failure could not be retried, or where it sat
// long enough for the target to have given up on it.
func (c *h1conn) targetFor(key poolKey, canRetry bool) *targetConn {
	for {
		tc := c.g.pool.get(key)
		if tc == nil {
			return nil
		}
		if tc.br.Buffered() == 0 && ((canRetry && time.Since(tc.idleSince) < time.Second) || tc.alive()) {
			return tc
		}
		tc.close()
	}
}

// dial opens a new target connection; a failure is reported as suspicious
// by proxy.Conn.Dial.
func (c *h1conn) dial(route *proxy.Route, key poolKey) *targetConn {
	conn, err := c.pc.Dial(context.Background(), route, nil)
	if err != nil {
		return nil
	}
	return newTargetConn(conn, key)
}

func targetErrorStatus(err error) int {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return stdhttp.StatusGatewayTimeout
	}
	return stdhttp.StatusBadGateway
}

func (c *h1conn) targetError(route *proxy.Route, err error) {
	c.h.log.Warn("target error", "client", c.pc.Info.Client.Addr(), "type", c.pc.Info.Type.Name,
		"service", route.Service.Name, "target", route.Addr, "err", err)
}

// exchange writes the request to tc and reads the target's answer up to
// the head of its final response, passing informational (1xx) responses
// on to the client. A request body is sent along: at once when it is
// already buffered and small, else by a bodyCopy the caller must wait for.
func (c *h1conn) exchange(tc *targetConn, req *stdhttp.Request) (*stdhttp.Response, *bodyCopy, error) {
	now := time.Now()
	idle := c.limits.IdleTimeout
	// Reading the answer is bounded by idle_timeout: no byte from the
	// target in that time is a 504.
	if renew(&tc.dl, now, idle) {
		tc.conn.SetDeadline(tc.dl)
	}
	if renew(&c.wdl, now, idle) {
		c.conn.SetWriteDeadline(c.wdl)
	}
	c.writeRequestHead(tc.bw, req)
	var body *bodyCopy
	switch {
	case req.ContentLength == 0:
	case req.ContentLength > 0 && req.ContentLength <= int64(c.br.Buffered()) &&
		req.ContentLength <= bufSize && !hasToken(req.Header["Expect"], "100-continue"):
		// Small and already here: one write carries head and body.
		if _, err := io.Copy(tc.bw, req.Body); err != nil {
			return nil, nil, err
		}
	default:
		if err := tc.bw.Flush(); err != nil {
			return nil, nil, err
		}
		// From here on tc.bw is the body copy's.
		body = &bodyCopy{done: make(chan struct{})}
		go c.copyBody(body, tc, req)
	}
	if body == nil {
		if err := tc.bw.Flush(); err != nil {
			return nil, nil, err
		}
		// (With a body copy under way, it notices a client that leaves.)
		if err := c.awaitTarget(tc); err != nil {
			return nil, nil, err
		}
	}
	for {
		tc.cr.capHead(maxResponseHead)
		resp, err := stdhttp.ReadResponse(tc.br, req)
		tc.cr.uncap()
		if err != nil {
			return nil, body, err
		}
		if resp.StatusCode/100 != 1 || resp.StatusCode == stdhttp.StatusSwitchingProtocols {
			return resp, body, nil
		}
		if req.ProtoAtLeast(1, 1) { // 1xx means nothing to HTTP/1.0
			writeStatusLine(c.bw, resp.StatusCode, resp.Status)
			writeHeaders(c.bw, resp.Header, nil)
			c.bw.WriteString("\r\n")
			if err := c.bw.Flush(); err != nil {
				return nil, body, err
			}
		}
	}
}

// watchAfter is how long a request waits for its answer before the loop
// starts watching the client as well.
const watchAfter = time.Second

// errClientGone ends a wait for a target's answer that nobody wants any
// more.
var errClientGone = errors.New("the client closed the connection")

// awaitTarget waits for the first byte of the target's answer. Most come
// at once; when one is slow, a watcher reads the client meanwhile, so that
// a client that goes away ends the wait (and, by closing the target
// connection, the target's work) rather than leaving the loop waiting up
// to idle_timeout for an answer nobody reads. That costs a goroutine only
// for slow answers.
func (c *h1conn) awaitTarget(tc *targetConn) error {
	if tc.br.Buffered() > 0 || c.br.Buffered() > 0 {
		return nil // an answer is here, or the client is pipelining: alive
	}
	tc.conn.SetReadDeadline(time.Now().Add(watchAfter))
	_, err := tc.br.Peek(1)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		tc.conn.SetReadDeadline(tc.dl)
		return err
	}
	tc.conn.SetReadDeadline(tc.dl)
	c.conn.SetReadDeadline(after(c.limits.IdleTimeout))
	var (
		done = make(chan struct{})
		gone bool
		b    [1]byte
		n    int
	)
	go func() {
		defer close(done)
		var err error
		n, err = c.conn.Read(b[:])
		var ne net.Error
		if n == 0 && !(errors.As(err, &ne) && ne.Timeout()) {
			gone = true
			tc.close()
		}
	}()
	_, err = tc.br.Peek(1)
	c.conn.SetReadDeadline(aLongTimeAgo)
	<-done
	if n > 0 {
		c.cr.stash = append(c.cr.stash, b[0]) // the start of the next request
	}
	if gone {
		return errClientGone
	}
	return err
}

// writeRequestHead writes the request as it goes to the target: the Host
// the client asked for, the end-to-end headers, X-Forwarded-For with the
// client appended and X-Forwarded-Proto, and framing of gatehouse's own.
func (c *h1conn) writeRequestHead(w *bufio.Writer, req *stdhttp.Request) {
	uri := req.RequestURI
	if !strings.HasPrefix(uri, "/") && uri != "*" {
		uri = req.URL.RequestURI() // absolute form: the target gets the path
	}
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(req.Host)
	w.WriteString("\r\n")
	writeHeaders(w, req.Header, requestOnlyHeader)
	if isUpgrade(req.Header) {
		w.WriteString("Connection: Upgrade\r\n")
		writeHeader(w, "Upgrade", strings.Join(req.Header["Upgrade"], ", "))
	}
	if hasToken(req.Header["Te"], "trailers") {
		w.WriteString("Te: trailers\r\n")
	}
	w.WriteString("X-Forwarded-For: ")
	for _, v := range req.Header["X-Forwarded-For"] {
		w.WriteString(v)
		w.WriteString(", ")
	}
	w.WriteString(c.ip)
	w.WriteString("\r\nX-Forwarded-Proto: ")
	w.WriteString(c.proto)
	w.WriteString("\r\n")
	switch {
	case req.ContentLength > 0:
		w.WriteString("Content-Length: ")
		writeInt(w, req.ContentLength)
		w.WriteString("\r\n")
	case req.ContentLength < 0:
		w.WriteString("Transfer-Encoding: chunked\r\n")
	case len(req.Header["Content-Length"]) > 0 || req.Method == "POST" || req.Method == "PUT" || req.Method == "PATCH":
		w.WriteString("Content-Length: 0\r\n")
	}
	w.WriteString("\r\n")
}

// copyBody streams the request body from the client to the target. On a
// failure it closes the target connection, so that the wait for an
// answer that cannot come ends.
func (c *h1conn) copyBody(b *bodyCopy, tc *targetConn, req *stdhttp.Request) {
	defer close(b.done)
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	idle := c.limits.IdleTimeout
	b.renew(c, tc, idle)
	last := time.Now()
	chunked := req.ContentLength < 0
	var err error
	for {
		n, rerr := req.Body.Read(buf)
		if n > 0 {
			if chunked {
				writeHex(tc.bw, n)
				tc.bw.WriteString("\r\n")
			}
			tc.bw.Write(buf[:n])
			if chunked {
				tc.bw.WriteString("\r\n")
			}
			if c.br.Buffered() == 0 {
				// Pass on what came; more may take time.
				if err = tc.bw.Flush(); err != nil {
					break
				}
			}
		}
		if rerr == io.EOF {
			if chunked {
				tc.bw.WriteString("0\r\n\r\n")
			}
			err = tc.bw.Flush()
			break
		}
		if rerr != nil {
			err = rerr
			b.err = rerr // the client's side failed
			break
		}
		if now := time.Now(); idle > 0 && now.Sub(last) > time.Second {
			last = now
			b.renew(c, tc, idle)
		}
	}
	if err != nil {
		tc.close()
	}
}

// stopBody ends a body copy that is no longer wanted and waits for it.
func (c *h1conn) stopBody(b *bodyCopy, tc *targetConn) {
	b.mu.Lock()
	b.stopped = true
	if !b.finished() {
		c.conn.SetReadDeadline(aLongTimeAgo)
		tc.conn.SetWriteDeadline(aLongTimeAgo)
	}
	b.mu.Unlock()
	<-b.done
}

// copyResponse copies the response body to the client, chunked when the
// target did not tell its length and the client speaks HTTP/1.1. A body of
// unknown length is passed on as it comes, for streams (server-sent
// events); the caller flushes the end.
func (c *h1conn) copyResponse(resp *stdhttp.Response, tc *targetConn, chunked bool) (targetErr, clientErr error) {
	bw := c.bw
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	idle := c.limits.IdleTimeout
	last := time.Now()
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if chunked {
				writeHex(bw, n)
				bw.WriteString("\r\n")
				bw.Write(buf[:n])
				bw.WriteString("\r\n")
				if tc.br.Buffered() == 0 {
					if err := bw.Flush(); err != nil {
						return nil, err
					}
				}
			} else if _, err := bw.Write(buf[:n]); err != nil {
				return nil, err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			bw.Flush()
			return rerr, nil
		}
		if now := time.Now(); idle > 0 && now.Sub(last) > time.Second {
			last = now
			tc.conn.SetReadDeadline(now.Add(idle))
			c.wdl = now.Add(idle)
			c.conn.SetWriteDeadline(c.wdl)
		}
	}
	if chunked {
		bw.WriteString("0\r\n")
		for k, vs := range resp.Trailer {
			for _, v := range vs {
				writeHeader(bw, k, v)
			}
		}
		bw.WriteString("\r\n")
	}
	return nil, nil // the caller flushes
}

// switchProtocols passes a 101 answer to an upgrade request (WebSocket)
// on, then relays raw bytes both ways until either side closes. The
// connection is the upgraded protocol's from then on.
func (c *h1conn) switchProtocols(req *stdhttp.Request, resp *stdhttp.Response, tc *targetConn, route *proxy.Route, body *bodyCopy) bool {
	if body != nil {
		c.stopBody(body, tc)
	}
	want, got := req.Header.Get("Upgrade"), resp.Header.Get("Upgrade")
	if !isUpgrade(req.Header) || !strings.EqualFold(want, got) {
		tc.close()
		c.targetError(route, errors.New("switching protocols to "+strconv.Quote(got)+" when "+strconv.Quote(want)+" was asked"))
		c.writeError(stdhttp.StatusBadGateway, true, false)
		return false
	}
	defer tc.close()
	writeStatusLine(c.bw, resp.StatusCode, resp.Status)
	writeHeaders(c.bw, resp.Header, nil)
	c.bw.WriteString("Connection: Upgrade\r\n")
	writeHeader(c.bw, "Upgrade", got)
	c.bw.WriteString("\r\n")
	if c.bw.Flush() != nil {
		return false
	}
	// An upgraded stream is the relay of the stream protocols from now on,
	// with their idle timeout: a WebSocket whose peers both went silent
	// (myPBX pings its own) holds two sockets for nothing.
	c.conn.SetDeadline(time.Time{})
	tc.conn.SetDeadline(time.Time{})
	u := &upgraded{idle: c.limits.IdleTimeout}
	u.touch()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		u.pipe(&c.cw, tc.br, tc.conn) // what the target sent after its 101, then the rest
		c.conn.SetDeadline(aLongTimeAgo)
	}()
	u.pipe(tc.conn, c.br, c.conn)
	tc.conn.SetDeadline(aLongTimeAgo)
	wg.Wait()
	tc.close()
	return false
}

// upgraded relays an upgraded stream both ways. The stream is idle when
// neither direction has moved a byte for idle: each direction reads with
// that deadline and, when it expires, ends only if the other direction has
// been as quiet.
type upgraded struct {
	idle time.Duration // 0: none
	last atomic.Int64  // unix nanoseconds of the last byte either way
	done atomic.Bool   // one direction has ended: so does the other
}

func (u *upgraded) touch() { u.last.Store(time.Now().UnixNano()) }

// pipe copies src, read through its buffered reader br, to dst until
// either fails, the other direction ends, or the stream is idle.
func (u *upgraded) pipe(dst io.Writer, br *bufio.Reader, src net.Conn) {
	defer u.done.Store(true)
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	for !u.done.Load() {
		if u.idle > 0 {
			src.SetReadDeadline(time.Now().Add(u.idle))
		}
		n, err := br.Read(buf)
		if n > 0 {
			u.touch()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			var ne net.Error
			quiet := time.Since(time.Unix(0, u.last.Load()))
			if errors.As(err, &ne) && ne.Timeout() && !u.done.Load() && quiet < u.idle {
				continue // the other direction is busy
			}
			return
		}
	}
}
