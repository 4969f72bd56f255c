// Package netpoll lets a quiet connection wait for its next bytes without
// a goroutine: a goroutine parked in a read for minutes keeps a stack of
// 4–8 KiB, more than the rest of a connection's state. A quiet reader
// arms a one-shot readiness wait on its TCP socket in the Poller's epoll
// set and returns; the Poller's one goroutine calls its Waiter when bytes
// (or EOF) arrive. The Go runtime's own netpoller keeps the socket too:
// one socket may be in several epoll sets. Linux only: New fails
// elsewhere, and callers wait on a goroutine as before.
//
// The proxy's framed relays and parked keep-alive connections use it
// (with its idle sweep: limits.idle_timeout without a timer per
// connection), and so does the agent for its targets' quiet sockets.
package netpoll

import (
	"errors"
	"sync"
	"syscall"
	"time"
)

// Poller is one epoll set and the goroutine that waits on it. Besides
// readiness it sweeps what was added with an idle timeout every tick, so
// that none needs a timer or a read deadline. Stop ends the goroutine and
// waits for it.
type Poller struct {
	epfd int
	wake [2]int // a pipe: a byte on it ends EpollWait early (new tick, stop)

	mu      sync.Mutex        // guards the fields below
	waiters map[uint64]Waiter // by token: whom a readiness event is for
	swept   map[Swept]struct{}
	next    uint64 // the last token handed out; 0 is the wake pipe's
	tick    time.Duration
	stopped bool

	done chan struct{} // closed when the loop has returned
}

const (
	maxPollTick = time.Second
	minPollTick = 10 * time.Millisecond
)

// New makes a Poller and starts its goroutine.
func New() (*Poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	p := &Poller{epfd: epfd, waiters: make(map[uint64]Waiter), swept: make(map[Swept]struct{}),
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

func (p *Poller) closeFDs() {
	syscall.Close(p.wake[0])
	syscall.Close(p.wake[1])
	syscall.Close(p.epfd)
}

// poke ends the loop's current wait.
func (p *Poller) poke() { syscall.Write(p.wake[1], []byte{0}) }

// Stop ends the loop and waits for it. Whatever was added must have been
// removed: no waiter is called afterwards.
func (p *Poller) Stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.poke()
	<-p.done
	p.closeFDs()
}

// Waiter is woken by readiness of the socket its token was armed for.
type Waiter interface {
	SetToken(uint64) // called by Add, under the poller's lock
	PollReady()
}

// Swept is subject to the idle sweep.
type Swept interface {
	IdleAt(now int64) bool // nothing has moved for its idle timeout at now (UnixNano)
	Kill()
}

// Add registers x for the idle sweep, with idle its idle timeout (> 0),
// and waiters for readiness events, to whom it gives their tokens. x may
// be nil: waiters only, no sweep.
func (p *Poller) Add(x Swept, idle time.Duration, waiters ...Waiter) {
	p.mu.Lock()
	for _, w := range waiters {
		p.next++
		w.SetToken(p.next)
		p.waiters[p.next] = w
	}
	if x == nil {
		p.mu.Unlock()
		return
	}
	p.swept[x] = struct{}{}
	tick := min(max(idle/4, minPollTick), maxPollTick)
	faster := tick < p.tick
	p.tick = min(p.tick, tick)
	first := len(p.swept) == 1
	p.mu.Unlock()
	if faster || first {
		p.poke()
	}
}

// Remove forgets x (nil: none) and tokens once they have ended: an event
// still in flight for one of their sockets finds no waiter.
func (p *Poller) Remove(x Swept, tokens ...uint64) {
	p.mu.Lock()
	if x != nil {
		delete(p.swept, x)
	}
	for _, t := range tokens {
		delete(p.waiters, t)
	}
	p.mu.Unlock()
}

// Arm waits (once) for the socket of sock to be readable, then calls the
// PollReady of token's waiter. The socket is named through its raw conn,
// so the descriptor cannot be closed and reused meanwhile; once it is
// closed, the kernel drops it from the epoll set by itself.
func (p *Poller) Arm(sock syscall.RawConn, token uint64) error {
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

func (p *Poller) loop() {
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
				w.PollReady()
			}
		}
		if !idle && time.Since(lastSweep) >= tick {
			lastSweep = time.Now()
			p.sweep(lastSweep)
		}
	}
}

// sweep ends what has been idle for its idle timeout.
func (p *Poller) sweep(now time.Time) {
	var idle []Swept
	p.mu.Lock()
	for x := range p.swept {
		if x.IdleAt(now.UnixNano()) {
			idle = append(idle, x)
		}
	}
	p.mu.Unlock()
	for _, x := range idle {
		x.Kill()
	}
}
