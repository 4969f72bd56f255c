package proxy

import (
	"errors"
	"sync"
	"syscall"
	"time"
)

// poller lets a framed relay's quiet directions wait without a goroutine
// of their own: a registered phone's connection is quiet for minutes, and
// a goroutine parked for that long keeps a stack of 4–8 KiB (more than
// the rest of the connection's state). A quiet direction arms a one-shot
// readiness wait on its TCP socket in the poller's epoll set and returns;
// the poller's one goroutine starts the direction again when bytes (or
// EOF) arrive. The Go runtime's own netpoller keeps the socket too: one
// socket may be in several epoll sets.
//
// The same wait serves a handler's connection between requests (Conn.Park:
// an HTTP keep-alive connection). The poller also applies
// limits.idle_timeout to its relays and parked connections by a sweep
// every tick, so that none needs a timer or a read deadline.
type poller struct {
	epfd int
	wake [2]int // a pipe: a byte on it ends EpollWait early (new tick, stop)

	mu      sync.Mutex            // guards the fields below
	waiters map[uint64]pollWaiter // by token: whom a readiness event is for
	swept   map[pollSwept]struct{}
	next    uint64 // the last token handed out; 0 is the wake pipe's
	tick    time.Duration
	stopped bool

	done chan struct{} // closed when the loop has returned
}

const (
	maxPollTick = time.Second
	minPollTick = 10 * time.Millisecond
)

func newPoller() (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	p := &poller{epfd: epfd, waiters: make(map[uint64]pollWaiter), swept: make(map[pollSwept]struct{}),
		tick: maxPollTick, done: make(chan struct{})}
	if err := syscall.Pipe2(p.wake[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		syscall.Close(epfd)
		return nil, err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		p.closeFDs()
		return nil, err
	}
	go p.loop()
	return p, nil
}

func (p *poller) closeFDs() {
	syscall.Close(p.wake[0])
	syscall.Close(p.wake[1])
	syscall.Close(p.epfd)
}

// poke ends the loop's current wait.
func (p *poller) poke() { syscall.Write(p.wake[1], []byte{0}) }

// stop ends the loop and waits for it. Every relay must have ended.
func (p *poller) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.poke()
	<-p.done
	p.closeFDs()
}

// pollWaiter is woken by readiness of the socket its token was armed for.
type pollWaiter interface {
	setToken(uint64) // called by add, under the poller's lock
	pollReady()
}

// pollSwept is subject to the idle sweep.
type pollSwept interface {
	idleAt(now int64) bool // nothing has moved for its idle timeout at now (UnixNano)
	kill()
}

// add registers x for the idle sweep, with idle its idle timeout (> 0),
// and waiters for readiness events, to whom it gives their tokens.
func (p *poller) add(x pollSwept, idle time.Duration, waiters ...pollWaiter) {
	p.mu.Lock()
	p.swept[x] = struct{}{}
	for _, w := range waiters {
		p.next++
		w.setToken(p.next)
		p.waiters[p.next] = w
	}
	tick := min(max(idle/4, minPollTick), maxPollTick)
	faster := tick < p.tick
	p.tick = min(p.tick, tick)
	first := len(p.swept) == 1
	p.mu.Unlock()
	if faster || first {
		p.poke()
	}
}

// remove forgets x and its tokens once it has ended: an event still in
// flight for one of its sockets finds no waiter.
func (p *poller) remove(x pollSwept, tokens ...uint64) {
	p.mu.Lock()
	delete(p.swept, x)
	for _, t := range tokens {
		delete(p.waiters, t)
	}
	p.mu.Unlock()
}

// arm waits (once) for the socket of sock to be readable, then calls the
// pollReady of token's waiter. The socket is named through its raw conn,
// so the descriptor cannot be closed and reused meanwhile; once it is
// closed, the kernel drops it from the epoll set by itself.
func (p *poller) arm(sock syscall.RawConn, token uint64) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd: int32(uint32(token)), Pad: int32(uint32(token >> 32))}
	var cerr error
	err := sock.Control(func(fd uintptr) {
		cerr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
		if errors.Is(cerr, syscall.ENOENT) {
			cerr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		}
	})
	if err != nil {
		return err
	}
	return cerr
}

func (p *poller) loop() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 128)
	var drain [64]byte
	lastSweep := time.Now()
	for {
		p.mu.Lock()
		stopped, tick, idle := p.stopped, p.tick, len(p.swept) == 0
		p.mu.Unlock()
		if stopped {
			return
		}
		wait := -1
		if !idle {
			wait = int(max(tick-time.Since(lastSweep), 0) / time.Millisecond)
		}
		n, err := syscall.EpollWait(p.epfd, events, wait)
		if err != nil && err != syscall.EINTR {
			// Cannot happen with a valid epoll descriptor and buffer;
			// sleep so that a surprise does not spin a core.
			time.Sleep(tick)
		}
		for _, ev := range events[:max(n, 0)] {
			token := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if token == 0 {
				for {
					if k, _ := syscall.Read(p.wake[0], drain[:]); k <= 0 {
						break
					}
				}
				continue
			}
			p.mu.Lock()
			w := p.waiters[token]
			p.mu.Unlock()
			if w != nil {
				w.pollReady()
			}
		}
		if !idle && time.Since(lastSweep) >= tick {
			lastSweep = time.Now()
			p.sweep(lastSweep)
		}
	}
}

// sweep ends what has been idle for its idle timeout.
func (p *poller) sweep(now time.Time) {
	var idle []pollSwept
	p.mu.Lock()
	for x := range p.swept {
		if x.idleAt(now.UnixNano()) {
			idle = append(idle, x)
		}
	}
	p.mu.Unlock()
	for _, x := range idle {
		x.kill()
	}
}
