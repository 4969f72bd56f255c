package proxy

import (
	"sync/atomic"
	"time"

	"github.com/gatehouse-pbx/gatehouse/proxy/netpoll"
)

// Park waits for the client's next bytes without a goroutine: an HTTP
// keep-alive connection between requests (a phone's, for hours) would
// otherwise keep one parked in a read, with a stack of 8 KiB. Park hands
// c to the Server's poller and reports true; the caller's goroutine must
// then return without closing c or touching it again. resume runs on a
// new goroutine, which owns c from then on, when the client's socket is
// readable or closed (ended false), or when the wait ends otherwise
// (ended true: idle for idle, Unpark, Shutdown's close, Drop), when the
// connection should end. The caller must have nothing buffered from the
// client (crypto/tls included: read it with a deadline in the past
// first). Whoever ends a connection that was parked calls Done.
//
// Park reports false when there is no poller (not Linux) or c is neither
// a TCP connection nor a [ReadNotifier]: the caller waits itself.
func (c *Conn) Park(idle time.Duration, resume func(ended bool)) bool {
	if c.srv == nil {
		return false
	}
	wait := waitableOf(c.Conn)
	if !wait.ok() {
		return false
	}
	p := c.srv.relayPoller()
	if p == nil {
		return false
	}
	w := &parked{c: c, poll: p, resume: resume, idle: idle, since: time.Now().UnixNano()}
	p.Add(w, idle, w)
	c.detached.Store(true)
	c.parked.Store(w)
	if !wait.arm(p, w.token, w.PollReady) {
		w.fire(true)
	}
	return true
}

// Unpark ends a wait begun by Park: its resume runs with ended true. It
// does nothing when c is not parked.
func (c *Conn) Unpark() {
	if w := c.parked.Load(); w != nil {
		w.fire(true)
	}
}

// Done ends a connection that was parked (Park returned true once):
// closes it and ends its accounting. It does nothing for one that never
// was, which its handler's return ends.
func (c *Conn) Done() {
	if c.detached.Load() {
		c.release()
	}
}

// parked is a Conn waiting on the poller.
type parked struct {
	c      *Conn
	poll   *netpoll.Poller
	resume func(ended bool)
	idle   time.Duration
	since  int64
	token  uint64
	fired  atomic.Bool
}

func (w *parked) PollReady()        { w.fire(false) }
func (w *parked) SetToken(t uint64) { w.token = t }

func (w *parked) IdleAt(now int64) bool { return w.idle > 0 && now-w.since >= int64(w.idle) }

func (w *parked) Kill() { w.fire(true) }

// fire ends the wait once: the first of readiness, the sweep, Unpark and
// abort starts resume.
func (w *parked) fire(ended bool) {
	if !w.fired.CompareAndSwap(false, true) {
		return
	}
	w.poll.Remove(w, w.token)
	w.c.parked.CompareAndSwap(w, nil)
	go w.resume(ended)
}
