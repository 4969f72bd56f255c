package http

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/gatehouse-pbx/gatehouse/protocols/http/h1"
)

// bodyCopy streams a request body to the target on a goroutine of its
// own, while the connection's goroutine waits for the answer: a target may
// answer before it has read the whole body, or ask for it (100 Continue).
// The connection's goroutine owns it: it waits for done (stopBody) before
// the exchange ends.
type bodyCopy struct {
	done chan struct{}
	err  error // the client side's failure; set before done closes

	// The body must have arrived by start + timeout, plus a second for
	// every minBodyRate bytes received: a client that trickles a body
	// holds a target connection for nothing.
	start    time.Time
	timeout  time.Duration
	received int64

	mu      sync.Mutex // orders deadline renewals against stop
	stopped bool
}

// minBodyRate is the slowest a request body may arrive on average once
// limits.body_timeout has passed, in bytes per second.
const minBodyRate = 1 << 10

// renew moves the copy's deadlines on, unless it is being stopped: the
// target's by idle d, the client's by d as well but never beyond the
// body's own deadline.
func (b *bodyCopy) renew(c *h1conn, tc *targetConn, d time.Duration) {
	b.mu.Lock()
	if !b.stopped {
		rd := after(d)
		if b.timeout > 0 {
			bd := b.start.Add(b.timeout + time.Duration(b.received/minBodyRate)*time.Second)
			if rd.IsZero() || bd.Before(rd) {
				rd = bd
			}
		}
		c.conn.SetReadDeadline(rd)
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

// copyBody streams the request body from the client to the target, framed
// anew: the same length, or chunks of gatehouse's own with the trailer
// fields that may pass. On a failure it closes the target connection, so
// that the wait for an answer that cannot come ends.
func (c *h1conn) copyBody(b *bodyCopy, tc *targetConn, body *h1.Body) {
	defer close(b.done)
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	idle := c.limits.IdleTimeout
	b.renew(c, tc, idle)
	last := time.Now()
	chunked := body.Chunked()
	var err error
	for {
		n, rerr := body.Read(buf)
		b.received += int64(n)
		if n > 0 {
			if chunked {
				h1.WriteChunk(tc.bw, buf[:n])
			} else {
				tc.bw.Write(buf[:n])
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
				h1.WriteLastChunk(tc.bw, body.Trailer)
			}
			err = tc.bw.Flush()
			break
		}
		if rerr != nil {
			err = rerr
			b.err = rerr // the client's side failed (or broke the framing)
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

// watchAfter is how long a request waits for its answer before the loop
// starts watching the client as well.
const watchAfter = time.Second

// awaitTarget waits for the first byte of the target's answer. Most come
// at once; when one is slow, a watcher reads the client meanwhile, so that
// a client that goes away ends the wait (and, by closing the target
// connection, the target's work) rather than leaving the loop waiting up
// to idle_timeout for an answer nobody reads. That costs a goroutine only
// for slow answers, and the loop waits for it.
//
// The watch deadline is set anew only when the one set before is less
// than half of watchAfter away (so the watch starts after 0.5 to 1 s), and
// the idle deadline comes back only when the answer needs a second read:
// a busy kept-alive target connection modifies no timer per request.
func (c *h1conn) awaitTarget(tc *targetConn, now time.Time) error {
	if tc.br.Buffered() > 0 || c.br.Buffered() > 0 {
		tc.restoreDeadline()
		return nil // an answer is here, or the client is pipelining: alive
	}
	tc.cr.rearm = nil
	if !tc.watch || tc.watchDL.Before(now.Add(watchAfter/2)) {
		tc.watch, tc.watchDL = true, now.Add(watchAfter)
		tc.conn.SetReadDeadline(tc.watchDL)
	}
	_, err := tc.br.Peek(1)
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		tc.cr.rearm = tc.restore // the rest of the answer, if any, reads by dl
		return err
	}
	tc.setReadDeadline(tc.dl)
	c.setReadDeadline(after(c.limits.IdleTimeout))
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
	c.setReadDeadline(aLongTimeAgo)
	<-done
	if n > 0 {
		c.cr.stash = append(c.cr.stash, b[0]) // the start of the next request
	}
	if gone {
		return errClientGone
	}
	return err
}
