package http

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	stdhttp "net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gatehouse-pbx/gatehouse/protocols/http/h1"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// This file is the exchange of one HTTP/1.x request with a target: get a
// target connection (pooled or new), write the request as gatehouse read
// it, read the answer by gatehouse's framing, pass it on, and decide
// whether the target connection can carry another request.

// exchange is one request on its way to a target and back.
type exchange struct {
	c     *h1conn
	req   *h1.Request
	route *proxy.Route
	key   poolKey
	tc    *targetConn
	body  *bodyCopy // the request body's copy, when it runs on its own goroutine
	// reqBody reads the request body by gatehouse's framing.
	reqBody *h1.Body
	// closeClient: the client connection ends after this answer.
	closeClient bool
}

// forward sends req to the route's target and its answer to the client.
// It reports whether the client connection can carry another request.
func (c *h1conn) forward(req *h1.Request, route *proxy.Route) bool {
	c.reqBody.Reset(c.br, req.ContentLength)
	x := &exchange{c: c, req: req, route: route, key: poolKey{addr: route.Addr, tls: route.TLS},
		reqBody: &c.reqBody, closeClient: req.Close}
	defer c.hold(nil)
	if err := x.connect(); err != nil {
		return x.refuse(dialStatus(err))
	}
	c.pc.Forwarded(route)
	resp, err := x.roundTrip()
	if err != nil {
		return x.failed(err)
	}
	if (resp.StatusCode == stdhttp.StatusUnauthorized || resp.StatusCode == stdhttp.StatusForbidden) &&
		req.Header.Has("Authorization") {
		c.pc.Report(route.Service.Name, credentialsRejected(resp.StatusCode))
	}
	if resp.StatusCode == stdhttp.StatusSwitchingProtocols {
		return x.switchProtocols(resp)
	}
	ok := x.answer(resp)
	// Both heads are done with (the body copy, if any, has its own
	// h1.Body); the upgrade above and the error paths leave theirs to the
	// collector.
	resp.Release()
	req.Release()
	return ok
}

// refuse answers a request that could not be sent with status. The client
// connection carries on only when no body of it is left unread.
func (x *exchange) refuse(status int) bool {
	keep := !x.closeClient && x.req.ContentLength == 0
	x.c.writeError(status, !keep, x.req.Method == "HEAD")
	return keep
}

// connect takes a pooled target connection or dials one.
//
// A target connection that starts with a PROXY protocol header (the
// service's proxy_protocol) carries one client's address: it is never
// pooled, so each request of such a service gets a connection of its own
// and no client's request travels under another client's header.
func (x *exchange) connect() error {
	c := x.c
	if !x.route.ProxyProtocol() {
		if x.tc = c.hold(c.takeKept(x.key, x.retryable())); x.tc != nil {
			return nil
		}
		if x.tc = c.hold(c.targetFor(x.key)); x.tc != nil {
			return nil
		}
	}
	tc, err := c.dial(x.route, x.key)
	x.tc = c.hold(tc)
	return err
}

// dialStatus answers a request whose target connection failed: 503 when
// the target is down (package health) or no agent tunnel serves it (it
// dropped, or the cluster node holding it died, after the route was
// chosen), else 502.
func dialStatus(err error) int {
	if r := proxy.AsRefusal(err).Reason; r == proxy.ReasonTargetDown || r == proxy.ReasonUnavailable {
		return stdhttp.StatusServiceUnavailable
	}
	return stdhttp.StatusBadGateway
}

// roundTrip sends the request and reads the head of the final answer. A
// pooled connection that the target closed just as it was reused, before
// answering, is replaced once for a request that can safely be sent again.
func (x *exchange) roundTrip() (*h1.Response, error) {
	n0 := x.tc.cr.n
	resp, err := x.send()
	if err != nil && x.retryable() && x.tc.reused() &&
		x.tc.cr.n == n0 && !errors.Is(err, errClientGone) && !isMalformed(err) {
		x.c.h.log.Debug("retrying on a new target connection", "client", x.c.pc.Info.Client.Addr(),
			"service", x.route.Service.Name, "err", err)
		x.tc.close()
		tc, derr := x.c.dial(x.route, x.key)
		if x.tc = x.c.hold(tc); derr != nil {
			return nil, fmt.Errorf("%w: %w", errDialFailed, derr)
		}
		resp, err = x.send()
	}
	return resp, err
}

// retryable reports whether the request may be sent again on a new
// target connection when a reused one failed before answering.
func (x *exchange) retryable() bool { return x.req.ContentLength == 0 && idempotent(x.req.Method) }

// failed handles a request whose answer could not be read.
func (x *exchange) failed(err error) bool {
	c := x.c
	if x.tc != nil {
		x.tc.close()
	}
	if errors.Is(err, errClientGone) {
		return false
	}
	if x.body != nil {
		c.stopBody(x.body, x.tc)
		if err := x.body.err; err != nil {
			switch {
			case isFraming(err):
				// A chunked body gatehouse refuses to read: what was sent of
				// it ends with the target connection, the rest never leaves.
				c.pc.Report(x.route.Service.Name, proxy.Refuse(proxy.ReasonUnreadable, "request body", err))
				c.writeError(stdhttp.StatusBadRequest, true, x.req.Method == "HEAD")
			case errors.Is(err, os.ErrDeadlineExceeded):
				c.h.log.Info("request body too slow", "client", c.pc.Info.Client.Addr(), "type", c.pc.Info.Type.Name,
					"service", x.route.Service.Name, "body_timeout", c.limits.BodyTimeout)
				c.writeError(stdhttp.StatusRequestTimeout, true, x.req.Method == "HEAD")
			}
			return false // else the client broke off its own request: nobody to answer
		}
	}
	if !errors.Is(err, errDialFailed) {
		c.targetError(x.route, err)
	}
	status := stdhttp.StatusBadGateway
	switch {
	case errors.Is(err, errDialFailed):
		status = dialStatus(err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		status = stdhttp.StatusGatewayTimeout
	}
	return x.refuse(status)
}

// isFraming reports a request body that broke its chunked framing.
func isFraming(err error) bool { return errors.Is(err, h1.ErrChunk) || errors.Is(err, h1.ErrTrailer) }

// isMalformed reports a target answer that h1 refused: never retried,
// since the target did answer.
func isMalformed(err error) bool {
	var ne net.Error
	return !errors.As(err, &ne) && err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, net.ErrClosed)
}

// targetFor takes an idle connection to key from the pool that is still
// open and has sent nothing since its last answer: bytes that arrive
// unasked (the answer to a request gatehouse never sent, a body longer
// than framed) must never be read as the answer to another client's
// request, so such a connection is closed, not used.
func (c *h1conn) targetFor(key poolKey) *targetConn {
	for {
		tc := c.g.pool.get(key)
		if tc == nil {
			return nil
		}
		if c.g.pool.alive(tc) {
			return tc
		}
		tc.close()
	}
}

// keep holds tc, which has just carried one of the client's requests to
// the end of its answer, for the client's next request, as HAProxy's
// http-reuse safe does: a client that keeps sending to one service uses
// one target connection, without the liveness peek (one system call) that
// a connection taken from the shared pool needs.
//
// What the peek guards against is bytes that arrive unasked after an
// answer (an answer longer than framed, a second answer, a 408) being
// read as the answer to someone else's request. On a kept connection,
// such bytes could only reach the client whose own request made the
// target send them, on the connection that request came on: what that
// client would see talking to the target directly, and nothing of another
// client's. Whenever a connection crosses to another client it goes
// through the pool, and targetFor peeks: unkeep hands it back when the
// client goes quiet (before the loop parks: a quiet client holds no
// target connection) or goes away, and takeKept when the client's next
// request routes to another target.
func (c *h1conn) keep(tc *targetConn) {
	if tc.idleSince.IsZero() {
		tc.idleSince = time.Now() // reused from now on (roundTrip's retry)
	}
	c.kept = tc
}

// takeKept returns the kept target connection when it goes to key, for
// the client's next request. One that goes elsewhere (the request routes
// to another service) goes back to the pool. A request that could not be
// sent again if the kept connection failed (a body, or a method that is
// not idempotent) still has its liveness checked, for a target that
// closed it meanwhile; its peek reads nothing.
func (c *h1conn) takeKept(key poolKey, retryable bool) *targetConn {
	tc := c.kept
	if tc == nil {
		return nil
	}
	c.kept = nil
	if tc.key != key {
		c.g.pool.put(tc)
		return nil
	}
	if tc.br.Buffered() > 0 || !retryable && !c.g.pool.alive(tc) {
		tc.close()
		return nil
	}
	return tc
}

// unkeep gives the kept target connection back to the pool.
func (c *h1conn) unkeep() {
	if c.kept != nil {
		c.g.pool.put(c.kept)
		c.kept = nil
	}
}

// dial opens a new target connection; a failure is reported by
// proxy.Conn.Dial, and is a *proxy.Refusal.
func (c *h1conn) dial(route *proxy.Route, key poolKey) (*targetConn, error) {
	conn, err := c.pc.Dial(context.Background(), route, nil)
	if err != nil {
		return nil, err
	}
	return newTargetConn(conn, key), nil
}

// maxInformational bounds the 1xx answers passed on before the final one.
const maxInformational = 16

// send writes the request to the target and reads the answer up to the
// head of its final response, passing informational (1xx) responses on
// to the client. A request body is sent along: at once when it is already
// buffered and small, else by a bodyCopy that the answer waits for.
func (x *exchange) send() (*h1.Response, error) {
	c, tc, req := x.c, x.tc, x.req
	now := time.Now()
	idle := c.limits.IdleTimeout
	// Reading the answer is bounded by idle_timeout: no byte from the
	// target in that time is a 504.
	if renew(&tc.dl, now, idle) {
		if tc.watch {
			tc.conn.SetWriteDeadline(tc.dl) // reads get it back from restoreDeadline
		} else {
			tc.conn.SetDeadline(tc.dl)
		}
	}
	if renew(&c.wdl, now, idle) {
		c.conn.SetWriteDeadline(c.wdl)
	}
	c.writeRequestHead(tc.bw, req)
	switch n := req.ContentLength; {
	case n == 0:
	case n > 0 && n <= int64(c.br.Buffered()) && n <= bufSize && !expectsContinue(req):
		// Small and already here: one write carries head and body.
		if _, err := io.Copy(tc.bw, x.reqBody); err != nil {
			return nil, err
		}
	default:
		if err := tc.bw.Flush(); err != nil {
			return nil, err
		}
		// From here on tc.bw is the body copy's, and so are the client's
		// read deadlines.
		c.cr.rearm, c.graceSet = nil, false
		x.body = &bodyCopy{done: make(chan struct{}), start: now, timeout: c.limits.BodyTimeout}
		go c.copyBody(x.body, tc, x.reqBody)
	}
	if x.body == nil {
		if err := tc.bw.Flush(); err != nil {
			return nil, err
		}
		// (With a body copy under way, it notices a client that leaves.)
		c.yieldBeforeRead()
		if err := c.awaitTarget(tc, now); err != nil {
			return nil, err
		}
	}
	for i := 0; ; i++ {
		resp, err := h1.ReadResponse(tc.br, maxResponseHead, req.Method)
		if err != nil {
			return nil, err
		}
		switch {
		case resp.StatusCode == stdhttp.StatusSwitchingProtocols:
			if !req.Upgrade() {
				return nil, errUnexpected1xx
			}
			return resp, nil
		case resp.StatusCode/100 != 1:
			return resp, nil
		case i == maxInformational:
			return nil, errInformational
		}
		if req.Minor == 1 { // 1xx means nothing to HTTP/1.0
			writeStatusLine(c.bw, resp.StatusCode, resp.Reason)
			h1.WriteFields(c.bw, resp.Header, nil)
			c.bw.WriteString("\r\n")
			if err := c.bw.Flush(); err != nil {
				return nil, errClientGone
			}
		}
		resp.Release()
	}
}

func expectsContinue(req *h1.Request) bool { return req.Header.HasToken("Expect", "100-continue") }

// answer passes the final response on and settles both connections.
func (x *exchange) answer(resp *h1.Response) bool {
	c, req := x.c, x.req
	if x.body != nil && !x.body.wait(bodyGrace) {
		// The target answered before the whole body was sent: it may not
		// want it (a refusal, or no 100 Continue). Where the client's next
		// request would start is then unknown.
		x.closeClient = true
	}
	if x.body != nil && x.body.finished() && isFraming(x.body.err) {
		// The target answered the head (nginx does, without waiting for
		// the body), but the body broke its framing: the request was never
		// whole, so its answer is gatehouse's refusal, not the target's.
		x.tc.close()
		c.pc.Report(x.route.Service.Name, proxy.Refuse(proxy.ReasonUnreadable, "request body", x.body.err))
		c.writeError(stdhttp.StatusBadRequest, true, req.Method == "HEAD")
		return false
	}
	if c.g.closing.Load() {
		x.closeClient = true
	}
	chunked := false
	switch resp.BodyLength {
	case h1.Chunked, h1.UntilClose:
		if req.Minor == 1 {
			chunked = true
		} else {
			x.closeClient = true // an HTTP/1.0 client reads to the close
		}
	}
	x.writeResponseHead(resp, chunked)
	respBody := h1.NewBody(x.tc.br, resp.BodyLength)
	reuse := !resp.Close
	if resp.BodyLength != 0 {
		targetErr, clientErr := x.copyResponse(respBody, chunked)
		if targetErr != nil {
			// The answer is cut off or malformed; the client can only learn
			// that from the connection closing.
			c.targetError(x.route, targetErr)
			reuse, x.closeClient = false, true
		}
		if clientErr != nil {
			reuse, x.closeClient = false, true
		}
	}
	if x.body != nil {
		if !x.body.finished() {
			// The target answered without reading the whole body; where
			// the client's next request would start is unknown.
			c.stopBody(x.body, x.tc)
			reuse, x.closeClient, c.linger = false, true, true
		}
		if x.body.err != nil {
			if isFraming(x.body.err) {
				c.pc.Report(x.route.Service.Name, proxy.Refuse(proxy.ReasonUnreadable, "request body", x.body.err))
			}
			reuse, x.closeClient = false, true
		}
	}
	if !x.reqBody.Done() {
		reuse, x.closeClient = false, true
	}
	// Only a connection whose answer ended exactly where its framing said,
	// with nothing after it, answers the next request.
	if !respBody.Done() || x.tc.br.Buffered() > 0 {
		reuse = false
	}
	// The target connection is kept for the client's next request (or,
	// when the client leaves, goes back to the pool) before the client has
	// the last bytes of the answer, so that the next request finds it.
	switch {
	case reuse && !x.route.ProxyProtocol() && !x.closeClient: // see connect
		c.keep(x.tc)
	case reuse && !x.route.ProxyProtocol():
		c.g.pool.put(x.tc)
	default:
		x.tc.close()
	}
	if err := c.bw.Flush(); err != nil {
		x.closeClient = true
	}
	return !x.closeClient
}

// writeResponseHead writes the answer's head to the client, with framing
// of gatehouse's own.
func (x *exchange) writeResponseHead(resp *h1.Response, chunked bool) {
	c, bw := x.c, x.c.bw
	writeStatusLine(bw, resp.StatusCode, resp.Reason)
	h1.WriteFields(bw, resp.Header, func(name string) bool {
		return !chunked && strings.EqualFold(name, "Trailer")
	})
	switch {
	case resp.BodyLength == 0:
		// HEAD and 304 tell the length of the GET.
		if resp.ContentLength >= 0 && resp.StatusCode != 204 && resp.StatusCode/100 != 1 {
			bw.WriteString("Content-Length: ")
			h1.WriteInt(bw, resp.ContentLength)
			bw.WriteString("\r\n")
		}
	case chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case resp.BodyLength > 0:
		bw.WriteString("Content-Length: ")
		h1.WriteInt(bw, resp.BodyLength)
		bw.WriteString("\r\n")
	}
	if x.closeClient {
		c.linger = c.linger || (x.body != nil && (!x.body.finished() || x.body.err != nil))
		bw.WriteString("Connection: close\r\n")
	} else if x.req.Minor == 0 {
		bw.WriteString("Connection: keep-alive\r\n")
	}
	bw.WriteString("\r\n")
}

// copyResponse copies the response body to the client, chunked when the
// target did not tell its length and the client speaks HTTP/1.1. A body of
// unknown length is passed on as it comes, for streams (server-sent
// events); the caller flushes the end.
func (x *exchange) copyResponse(body *h1.Body, chunked bool) (targetErr, clientErr error) {
	c, tc, bw := x.c, x.tc, x.c.bw
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	idle := c.limits.IdleTimeout
	var last time.Time
	for {
		if !chunked {
			if dst, src := x.spliceable(body); dst != nil {
				return x.spliceResponse(body, dst, src)
			}
		}
		n, rerr := body.Read(buf)
		if n > 0 {
			if chunked {
				h1.WriteChunk(bw, buf[:n])
				if tc.br.Buffered() == 0 {
					if err := bw.Flush(); err != nil {
						return nil, err
					}
				}
			} else if _, err := bw.Write(buf[:n]); err != nil {
				return nil, err
			}
		}
		if rerr == io.EOF || rerr == nil && body.Done() {
			break // (a small body ends without looking at the clock)
		}
		if rerr != nil {
			bw.Flush()
			return rerr, nil
		}
		now := time.Now()
		if last.IsZero() {
			last = now
		}
		if idle > 0 && now.Sub(last) > time.Second {
			last = now
			tc.setReadDeadline(now.Add(idle))
			c.wdl = now.Add(idle)
			c.conn.SetWriteDeadline(c.wdl)
		}
	}
	if chunked {
		h1.WriteLastChunk(bw, body.Trailer)
	}
	return nil, nil // the caller flushes
}

// spliceMin is the least of a body left to move for splice(2): below it
// the pipe's two system calls per round cost more than the copy they save.
// spliceChunk is what one splice round moves at most, so that the idle
// deadlines are renewed between rounds as the copy loop renews them.
const (
	spliceMin   = 256 << 10
	spliceChunk = 4 << 20
)

// splicedBytes counts what spliceResponse moved, for tests.
var splicedBytes atomic.Int64

// spliceable returns the client's and the target's TCP sockets when the
// rest of a response body can move between them in the kernel: framed by
// Content-Length with at least spliceMin left, nothing of it buffered in
// user space, and both ends plain TCP (no TLS, which must see the bytes).
func (x *exchange) spliceable(body *h1.Body) (dst, src *net.TCPConn) {
	tc := x.tc
	if body.Remaining() < spliceMin || tc.br.Buffered() > 0 || len(tc.cr.stash) > 0 {
		return nil, nil
	}
	dst, _ = x.c.conn.(*net.TCPConn)
	src, _ = tc.conn.(*net.TCPConn)
	if dst == nil || src == nil {
		return nil, nil
	}
	return dst, src
}

// spliceResponse moves the rest of a Content-Length body from the target
// to the client with splice(2) (net.TCPConn.ReadFrom of a LimitedReader
// over a TCPConn): exactly the bytes the framing says, so the framing is
// kept as in copyResponse; what the target sends beyond them stays in its
// socket, where the pool's liveness check finds it. A failed round is
// charged to the client (ReadFrom does not say which side failed), except
// a target that ends the body early.
func (x *exchange) spliceResponse(body *h1.Body, dst, src *net.TCPConn) (targetErr, clientErr error) {
	c, tc := x.c, x.tc
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	idle := c.limits.IdleTimeout
	for left := body.Remaining(); left > 0; left = body.Remaining() {
		if idle > 0 {
			now := time.Now()
			tc.setReadDeadline(now.Add(idle))
			c.wdl = now.Add(idle)
			c.conn.SetWriteDeadline(c.wdl)
		}
		want := min(left, spliceChunk)
		n, err := dst.ReadFrom(&io.LimitedReader{R: src, N: want})
		body.Advance(n)
		splicedBytes.Add(n)
		tc.cr.n += n
		c.cw.total(int(n))
		switch {
		case err != nil:
			return nil, err
		case n < want:
			return io.ErrUnexpectedEOF, nil
		}
	}
	return nil, nil
}

// writeRequestHead writes the request as it goes to the target: the
// request line in origin form, the Host the client asked for, the
// end-to-end fields, X-Forwarded-For with the client appended,
// X-Forwarded-Proto and X-Real-IP, and framing of gatehouse's own. None of
// the fields gatehouse writes can be suppressed by the client naming them
// in Connection, and none of the client's forwarding fields passes.
func (c *h1conn) writeRequestHead(w *bufio.Writer, req *h1.Request) {
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(req.RequestURI())
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(req.Host)
	w.WriteString("\r\n")
	chunked := req.ContentLength == h1.Chunked
	h1.WriteFields(w, req.Header, func(name string) bool {
		return requestOnlyHeader(name) || (!chunked && strings.EqualFold(name, "Trailer"))
	})
	if req.Upgrade() {
		w.WriteString("Connection: Upgrade\r\n")
		up, _ := req.Header.Get("Upgrade")
		h1.WriteField(w, "Upgrade", up)
	}
	if req.Header.HasToken("TE", "trailers") {
		w.WriteString("TE: trailers\r\n")
	}
	w.WriteString("X-Forwarded-For: ")
	for _, f := range req.Header {
		if strings.EqualFold(f.Name, "X-Forwarded-For") {
			w.WriteString(f.Value)
			w.WriteString(", ")
		}
	}
	w.WriteString(c.ip)
	w.WriteString("\r\nX-Forwarded-Proto: ")
	w.WriteString(c.proto)
	w.WriteString("\r\nX-Real-IP: ")
	w.WriteString(c.ip)
	w.WriteString("\r\n")
	switch {
	case req.ContentLength > 0:
		w.WriteString("Content-Length: ")
		h1.WriteInt(w, req.ContentLength)
		w.WriteString("\r\n")
	case chunked:
		w.WriteString("Transfer-Encoding: chunked\r\n")
	case req.Method == "POST" || req.Method == "PUT" || req.Method == "PATCH":
		w.WriteString("Content-Length: 0\r\n")
	}
	w.WriteString("\r\n")
}

// requestOnlyHeader reports fields of a request that gatehouse writes
// itself or drops: Host (written from the parsed request) and every
// forwarding field, which a client could otherwise forge (X-Forwarded-Host
// and Forwarded are dropped, X-Real-IP replaced, X-Forwarded-For appended
// to, X-Forwarded-Proto set).
func requestOnlyHeader(name string) bool {
	for _, n := range [...]string{"Host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
		"Forwarded", "X-Real-IP", "Upgrade"} {
		if strings.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// writeStatusLine writes "HTTP/1.1 code reason"; the standard reason when
// the target sent none.
func writeStatusLine(w *bufio.Writer, code int, reason string) {
	w.WriteString("HTTP/1.1 ")
	w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(code), 10))
	w.WriteByte(' ')
	if reason == "" {
		reason = statusText(code)
	}
	w.WriteString(reason)
	w.WriteString("\r\n")
}

func statusText(code int) string { return stdhttp.StatusText(code) }
