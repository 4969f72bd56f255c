package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gatehouse-pbx/gatehouse/proxy/netpoll"
	"github.com/gatehouse-pbx/gatehouse/proxy/sockio"
)

// relay moves bytes between a routed client and its target until both
// directions have ended, or the connection has been idle for
// limits.idle_timeout. run copies client→target itself and starts one
// goroutine for target→client, which it waits for.
type relay struct {
	conn    *Conn
	target  net.Conn
	watcher Watcher
	service string

	up, down side
	// live counts bytes as they move rather than when a copy returns, for
	// the admin UI's live view of long-lived upgraded streams; it costs
	// splice(2).
	live      bool
	clientMu  sync.Mutex // serialises writes to the client: target data and watcher replies
	closeOnce sync.Once

	// With poll (a framed relay of a Server, on Linux) a quiet direction
	// holds no goroutine: it parks on the poller and is started again when
	// its socket is readable (see poller). The handler's goroutine returns
	// at once and the relay owns the connection: the last direction to end
	// closes both sides and releases the Conn.
	poll    *netpoll.Poller
	last    atomic.Int64 // UnixNano of the latest read that moved bytes: the poller's idle sweep
	mu      sync.Mutex   // guards running, killed and the sides' parked and over
	running int          // direction goroutines alive
	killed  bool
}

// side is one direction of a relay.
type side struct {
	src, dst net.Conn
	dir      Direction
	bytes    *atomic.Int64
	// Idle detection without a timer per connection: each direction reads
	// with a deadline of idle_timeout. A direction that moved nothing in that
	// time pokes the other (sets its read deadline to now) to learn whether
	// it is idle too; only two fresh "nothing moved" answers close the
	// connection. A poke still unanswered after another idle_timeout means
	// the other direction is stuck writing to a peer that does not read.
	idle, poked, done atomic.Bool

	raw   syscall.RawConn // src's, when it is plain TCP (see fill)
	small [64]byte        // the first bytes after a quiet spell, when src is not

	// With the relay's poller: how a parked direction waits for src (its
	// socket, or its notification; neither: the direction never parks),
	// its token in the poller, and its state.
	relay        *relay
	wait         waitable
	token        uint64
	parked, over bool
}

func (r *relay) run(first []byte) {
	c := r.conn
	if c.srv != nil && !c.srv.streaming(c) {
		c.Close() // shutting down: a stream is not waited for
		return
	}
	r.up = side{src: c.Conn, dst: r.target, dir: FromClient, bytes: &c.bytesIn}
	r.down = side{src: r.target, dst: c.Conn, dir: FromTarget, bytes: &c.bytesOut}
	if r.watcher != nil {
		r.up.raw, r.down.raw = sockio.Raw(r.up.src), sockio.Raw(r.down.src)
		if c.srv != nil {
			r.poll = c.srv.relayPoller()
		}
	}
	if r.poll != nil {
		r.detach(first)
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.finish(&r.down, r.pump(&r.down, &r.up, nil))
	}()
	r.finish(&r.up, r.pump(&r.up, &r.down, first))
	wg.Wait()
}

// detach starts both directions on goroutines of their own, which park
// while quiet, and hands the connection to the relay: the handler returns.
func (r *relay) detach(first []byte) {
	c := r.conn
	r.up.relay, r.down.relay = r, r
	r.up.wait, r.down.wait = waitableOf(r.up.src), waitableOf(r.down.src)
	r.touch()
	r.poll.Add(r, r.idleTimeout(), &r.up, &r.down)
	c.detached.Store(true)
	c.relay.Store(r)
	r.running = 2
	go r.direction(&r.down, nil, false)
	go r.direction(&r.up, first, false)
}

func (r *relay) touch() { r.last.Store(time.Now().UnixNano()) }

// direction runs direction s of a detached relay until it parks or ends.
// resumed: started by the poller, the socket is readable.
func (r *relay) direction(s *side, first []byte, resumed bool) {
	for {
		err := r.framedLive(s, first, resumed)
		if err == errParked {
			if r.park(s) {
				return
			}
			first, resumed = nil, true // killed meanwhile: read the closed socket's error
			continue
		}
		r.finish(s, err)
		r.mu.Lock()
		s.over = true
		r.running--
		last := r.running == 0 && r.up.over && r.down.over
		r.mu.Unlock()
		if last {
			r.end()
		}
		return
	}
}

// park leaves s waiting on the poller; false when the relay was killed.
func (r *relay) park(s *side) bool {
	r.mu.Lock()
	if r.killed {
		r.mu.Unlock()
		return false
	}
	s.parked = true
	r.running--
	r.mu.Unlock()
	if !s.wait.arm(r.poll, s.token, s.PollReady) {
		r.wake(s) // closed meanwhile: the direction reads the error
	}
	return true
}

// wake starts parked direction s again.
func (r *relay) wake(s *side) {
	r.mu.Lock()
	resume := s.parked
	if resume {
		s.parked = false
		r.running++
	}
	r.mu.Unlock()
	if resume {
		go r.direction(s, nil, true)
	}
}

func (s *side) PollReady()        { s.relay.wake(s) }
func (s *side) SetToken(t uint64) { s.token = t }

func (r *relay) IdleAt(now int64) bool { return now-r.last.Load() >= int64(r.idleTimeout()) }

// kill ends a detached relay from outside (idle sweep, Shutdown, Drop):
// both sides are closed, and parked directions started to see it.
func (r *relay) Kill() {
	r.closeBoth()
	r.mu.Lock()
	r.killed = true
	r.mu.Unlock()
	r.wake(&r.up)
	r.wake(&r.down)
}

func (r *relay) closeBoth() {
	r.closeOnce.Do(func() {
		r.conn.Close()
		r.target.Close()
	})
}

// end runs once both directions of a detached relay have ended.
func (r *relay) end() {
	r.poll.Remove(r, r.up.token, r.down.token)
	r.closeBoth()
	r.conn.release()
}

// framedLive is framed for a detached relay: no read deadlines (the poller's
// sweep applies the idle rule), and errParked when s has nothing pending
// and nothing is readable.
func (r *relay) framedLive(s *side, first []byte, resumed bool) error {
	limit := int(r.conn.Table.Config.Limits.FirstPacketMax)
	var buf []byte
	end := 0
	if len(first) > 0 {
		buf = frameBuf(limit, len(first))
		end = copy(buf, first)
	}
	for {
		if end > 0 {
			start, err := r.messages(s, buf, 0, end)
			if err != nil {
				putFrameBuf(buf)
				return err
			}
			end = copy(buf, buf[start:end])
		}
		var err error
		if buf, err = r.settle(s, buf, end, limit); err != nil {
			return err
		}
		var n int
		if buf == nil && s.wait.ok() {
			buf, n, err = s.try(limit, resumed)
			if errors.Is(err, errWouldBlock) {
				return errParked
			}
		} else {
			buf, n, err = s.fill(buf, end, limit)
		}
		resumed = false
		if n > 0 {
			r.touch()
		}
		end += n
		if err != nil {
			if errors.Is(err, io.EOF) {
				_, ferr := r.messages(s, buf, 0, end)
				putFrameBuf(buf)
				return ferr
			}
			putFrameBuf(buf)
			return err
		}
	}
}

// try reads the next bytes of a direction with nothing pending, waiting
// for them up to ParkGrace: errWouldBlock when none came (the direction
// parks then). resumed: the poller saw the socket readable, so no grace:
// a plain TCP source is read non-blocking, and a TLS source waits for the
// rest of the record that made it readable.
func (s *side) try(limit int, resumed bool) ([]byte, int, error) {
	if !resumed {
		s.src.SetReadDeadline(time.Now().Add(ParkGrace))
		defer s.src.SetReadDeadline(time.Time{})
	}
	if s.raw != nil {
		buf, n, err := s.readRaw(limit, !resumed)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = errWouldBlock
		}
		return buf, n, err
	}
	n, err := s.src.Read(s.small[:])
	if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, 0, errWouldBlock
	}
	var buf []byte
	if n > 0 {
		buf = frameBuf(limit, 0)
		copy(buf, s.small[:n])
	}
	return buf, n, err
}

// ParkGrace is how long a relay direction with nothing pending, or a
// handler between requests, waits on its own goroutine before it parks
// (Conn.Park): a busy connection (an LDAP client's searches, HTTP
// keep-alive under load) keeps its goroutine between messages and pays
// no park and wake for each; a phone's, quiet for a minute, parks after
// this.
const ParkGrace = 100 * time.Millisecond

// Relay relays raw bytes between c and target until both directions have
// ended or neither has moved a byte for limits.idle_timeout: the stream
// protocols' relay, for a handler whose connection has switched protocols
// (an HTTP upgrade to WebSocket). first is written to target before
// anything else. The caller still owns target and closes it afterwards.
func (c *Conn) Relay(target net.Conn, service string, first []byte) {
	c.Conn.SetDeadline(time.Time{})
	target.SetDeadline(time.Time{})
	rl := &relay{conn: c, target: target, service: service, live: true}
	rl.run(first)
}

// finish ends one direction: a clean EOF half-closes the other side's
// writer, anything else ends the whole connection.
func (r *relay) finish(s *side, err error) {
	s.done.Store(true)
	if err == nil {
		if cw, ok := s.dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			return
		}
	}
	r.closeOnce.Do(func() {
		r.conn.Close()
		r.target.Close()
	})
}

func (r *relay) pump(s, other *side, first []byte) error {
	if r.watcher != nil {
		return r.framed(s, other, first)
	}
	if len(first) > 0 {
		if _, err := s.dst.Write(first); err != nil {
			return err
		}
		s.bytes.Add(int64(len(first)))
	}
	src, dst := s.src, s.dst
	st, srcTCP := src.(*net.TCPConn)
	dt, dstTCP := dst.(*net.TCPConn)
	splice := srcTCP && dstTCP && !r.live
	var buf []byte
	var w io.Writer = writerOnly{dst}
	if !splice {
		buf = make([]byte, 32<<10)
	}
	if r.live {
		w = writerFunc(func(p []byte) (int, error) {
			if s.dir == FromClient && r.conn.Blocked() {
				return 0, errBlocked // see write
			}
			n, err := dst.Write(p)
			s.bytes.Add(int64(n))
			return n, err
		})
	}
	for {
		src.SetReadDeadline(time.Now().Add(r.idleTimeout()))
		var n int64
		var err error
		if splice {
			n, err = dt.ReadFrom(st) // splice(2): zero copy between plain TCP conns
		} else {
			n, err = io.CopyBuffer(w, readerOnly{src}, buf)
		}
		if !r.live {
			s.bytes.Add(n)
		}
		if err == nil {
			return nil
		}
		if stop, ierr := r.timedOut(s, other, n, err); stop {
			return ierr
		}
	}
}

func (r *relay) idleTimeout() time.Duration { return r.conn.Table.Config.Limits.IdleTimeout }

// timedOut applies the idle rule (see side) after a read returned err
// having moved n bytes. It reports whether the direction must stop.
func (r *relay) timedOut(s, other *side, n int64, err error) (bool, error) {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return true, err
	}
	wasPoked := s.poked.Swap(false)
	if n > 0 {
		s.idle.Store(false)
		return false, nil
	}
	s.idle.Store(true)
	switch {
	case other.done.Load(), wasPoked && other.idle.Load(), other.poked.Load():
		return true, errIdle
	}
	other.poked.Store(true)
	other.src.SetReadDeadline(time.Now())
	return false, nil
}

// settle keeps a direction's buffer once its whole messages are passed
// on and the unfinished one moved to its front (end bytes): none when
// nothing is left (a quiet direction holds no buffer), twice the size, up
// to limit, when the unfinished message fills it.
func (r *relay) settle(s *side, buf []byte, end, limit int) ([]byte, error) {
	switch {
	case end == 0:
		putFrameBuf(buf)
		return nil, nil
	case end == len(buf):
		if len(buf) >= limit {
			return buf, r.framingError(s, Refuse(ReasonTooLarge, "message head", errHeadTooLarge))
		}
		grown := make([]byte, min(limit, 2*len(buf)))
		copy(grown, buf[:end])
		putFrameBuf(buf)
		return grown, nil
	}
	return buf, nil
}

// framed relays one direction message by message through the watcher. The
// buffer starts small and grows to first_packet_max only for long heads.
// A direction that has nothing pending holds no buffer while it waits (a
// registered phone's connection is quiet for minutes between keep-alives):
// it takes one from framePool once bytes are there (see fill).
func (r *relay) framed(s, other *side, first []byte) error {
	limit := int(r.conn.Table.Config.Limits.FirstPacketMax)
	var buf []byte
	end := 0
	if len(first) > 0 {
		buf = frameBuf(limit, len(first))
		end = copy(buf, first)
	}
	start := 0
	for {
		var err error
		if end > 0 {
			if start, err = r.messages(s, buf, start, end); err != nil {
				return err
			}
			// Keep the unfinished message at the front; grow when it fills the buffer.
			end = copy(buf, buf[start:end])
			start = 0
		}
		if buf, err = r.settle(s, buf, end, limit); err != nil {
			return err
		}
		s.src.SetReadDeadline(time.Now().Add(r.idleTimeout()))
		var n int
		var rerr error
		buf, n, rerr = s.fill(buf, end, limit)
		end += n
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				// Complete messages still go through; a message cut off
				// by the close is dropped.
				_, err := r.messages(s, buf, 0, end)
				return err
			}
			if stop, err := r.timedOut(s, other, int64(n), rerr); stop {
				return err
			}
		}
	}
}

// framePool holds the framed relay's read buffers of initialPeek bytes.
var framePool = sync.Pool{New: func() any { b := make([]byte, initialPeek); return &b }}

// frameBuf returns a buffer for at least n bytes (capped at limit where n
// allows): from the pool when that size does.
func frameBuf(limit, n int) []byte {
	size := max(min(initialPeek, limit), n)
	if size > initialPeek {
		return make([]byte, size)
	}
	return (*framePool.Get().(*[]byte))[:size]
}

// putFrameBuf gives a buffer of the pool's size back; a grown one is left
// to the collector, so that a direction shrinks back after a long message.
func putFrameBuf(b []byte) {
	if cap(b) == initialPeek {
		b = b[:initialPeek]
		framePool.Put(&b)
	}
}

// readRaw reads a plain TCP source through its raw connection, taking a
// buffer from the pool only once the kernel has bytes for it. On EAGAIN it
// waits for readiness (until the read deadline) when wait is set, else
// returns errWouldBlock at once. EOF is io.EOF; no buffer is returned
// without bytes in it.
func (s *side) readRaw(limit int, wait bool) ([]byte, int, error) {
	var buf []byte
	var n int
	var rerr error
	err := s.raw.Read(func(fd uintptr) bool {
		b := frameBuf(limit, 0)
		for {
			n, rerr = syscall.Read(int(fd), b)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			putFrameBuf(b)
			rerr = errWouldBlock
			return !wait
		}
		buf = b
		return true
	})
	switch {
	case err != nil:
		rerr = err
	case rerr == errWouldBlock:
	case rerr != nil:
		rerr = os.NewSyscallError("read", rerr)
	case n == 0:
		rerr = io.EOF
	}
	n = max(n, 0)
	if n == 0 && buf != nil {
		putFrameBuf(buf)
		buf = nil
	}
	return buf, n, rerr
}

// fill reads the next bytes of direction s into buf[end:] and returns the
// buffer, which it takes from the pool when buf is nil (the direction was
// quiet), and how many bytes it read. A plain TCP source is read through
// its raw connection: the kernel's readiness tells when bytes are there,
// so the buffer is taken only then, at no extra system call. Any other
// source (TLS) is read into the side's small array first; crypto/tls
// keeps the rest of the record for the next read.
func (s *side) fill(buf []byte, end, limit int) ([]byte, int, error) {
	if buf != nil {
		n, err := s.src.Read(buf[end:])
		return buf, n, err
	}
	if s.raw != nil {
		return s.readRaw(limit, true)
	}
	n, err := s.src.Read(s.small[:])
	if n > 0 {
		buf = frameBuf(limit, 0)
		copy(buf, s.small[:n])
	}
	return buf, n, err
}

// messages frames and judges the complete messages in buf[start:end],
// forwards what the watcher lets through in as few writes as possible, and
// returns where the first incomplete message starts.
func (r *relay) messages(s *side, buf []byte, start, end int) (int, error) {
	limit := int(r.conn.Table.Config.Limits.FirstPacketMax)
	flushFrom := start
	flush := func(upto int) error {
		if upto > flushFrom {
			if err := r.write(s, buf[flushFrom:upto]); err != nil {
				return err
			}
		}
		flushFrom = upto
		return nil
	}
	for start < end {
		n, err := r.watcher.Frame(s.dir, buf[start:end])
		if errors.Is(err, ErrNeedMore) {
			break
		}
		if err == nil && n <= 0 {
			err = errEmptyMessage
		}
		if err != nil {
			flush(start)
			return start, r.framingError(s, err)
		}
		avail := end - start
		if avail < min(n, limit) {
			break // the head is not all here yet
		}
		head := buf[start : start+min(n, limit)]
		forward := true
		if s.dir == FromClient {
			v := r.watcher.Client(head)
			if v.Refusal != nil {
				r.conn.Report(r.service, v.Refusal)
			}
			if v.Reply != nil {
				forward = false
				if err := flush(start); err != nil {
					return start, err
				}
				if err := r.writeClient(v.Reply); err != nil {
					return start, err
				}
			}
			if v.Close {
				flush(start)
				return start, errWatcherClosed
			}
		} else {
			ref, drop := r.watcher.Target(head)
			if ref != nil {
				r.conn.Report(r.service, ref)
			}
			if drop {
				forward = false
				if err := flush(start); err != nil {
					return start, err
				}
			}
		}
		if n <= avail {
			start += n
			if !forward {
				flushFrom = start
			}
			continue
		}
		// A message longer than the buffer: forward (or skip) what is here,
		// then stream the rest without buffering it.
		if forward {
			if err := flush(end); err != nil {
				return end, err
			}
		}
		if err := r.stream(s, int64(n-avail), forward); err != nil {
			return end, err
		}
		return end, nil
	}
	return start, flush(start)
}

// stream copies (or, for a dropped message, discards) the next n bytes of
// a message whose head has been judged.
func (r *relay) stream(s *side, n int64, forward bool) error {
	var dst io.Writer = io.Discard
	if forward {
		dst = writerFunc(func(p []byte) (int, error) { return len(p), r.write(s, p) })
	}
	if r.poll == nil {
		s.src.SetReadDeadline(time.Now().Add(r.idleTimeout()))
	}
	_, err := io.CopyN(dst, readerOnly{s.src}, n)
	if err == nil && r.poll != nil {
		r.touch()
	}
	return err
}

// write forwards p in direction s, counting it.
func (r *relay) write(s *side, p []byte) error {
	var err error
	if s.dir == FromTarget {
		err = r.writeClient(p)
	} else {
		if r.conn.Blocked() {
			// The gate shut the client's reading side at the block, but
			// Linux still hands over what arrives after shutdown(SHUT_RD):
			// nothing read from a blocked client reaches its target.
			return errBlocked
		}
		_, err = s.dst.Write(p)
	}
	if err == nil {
		s.bytes.Add(int64(len(p)))
	}
	return err
}

func (r *relay) writeClient(p []byte) error {
	r.clientMu.Lock()
	defer r.clientMu.Unlock()
	_, err := r.conn.Conn.Write(p)
	return err
}

// framingError ends a direction whose bytes the watcher cannot frame; from
// the client it is suspicious, from the target it is only logged.
func (r *relay) framingError(s *side, err error) error {
	if s.dir == FromClient {
		r.conn.Report(r.service, AsRefusal(err))
	} else {
		r.conn.srv.log.Warn("target sent unframeable data", "client", r.conn.Info.Client.Addr(),
			"type", r.conn.Info.Type.Name, "service", r.service, "err", err)
	}
	return err
}

// readerOnly and writerOnly hide ReaderFrom/WriterTo so io.CopyBuffer uses
// the buffer it is given instead of allocating.
type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
