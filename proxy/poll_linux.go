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
// The poller also applies limits.idle_timeout to its relays by a sweep
// every tick, so that no relay needs a timer or a read deadline.
type poller struct {
	epfd int
	wake [2]int // a pipe: a byte on it ends EpollWait early (new tick, stop)

	mu      sync.Mutex // guards the fields below
	sides   map[uint64]*side
	relays  map[*relay]struct{}
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
	p := &poller{epfd: epfd, sides: make(map[uint64]*side), relays: make(map[*relay]struct{}),
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

// add registers r for the idle sweep and gives its sides their tokens.
func (p *poller) add(r *relay) {
	p.mu.Lock()
	p.relays[r] = struct{}{}
	for _, s := range []*side{&r.up, &r.down} {
		p.next++
		s.token = p.next
		p.sides[s.token] = s
	}
	tick := min(max(r.idleTimeout()/4, minPollTick), maxPollTick)
	faster := tick < p.tick
	p.tick = min(p.tick, tick)
	p.mu.Unlock()
	if faster || len(p.relays) == 1 {
		p.poke()
	}
}

// remove forgets r once it has ended: an event still in flight for one of
// its sockets finds no side.
func (p *poller) remove(r *relay) {
	p.mu.Lock()
	delete(p.relays, r)
	delete(p.sides, r.up.token)
	delete(p.sides, r.down.token)
	p.mu.Unlock()
}

// arm waits (once) for s's socket to be readable, then calls s's relay's
// wake. The socket is named through its raw conn, so the descriptor
// cannot be closed and reused meanwhile; once it is closed, the kernel
// drops it from the epoll set by itself.
func (p *poller) arm(s *side) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd: int32(uint32(s.token)), Pad: int32(uint32(s.token >> 32))}
	var cerr error
	err := s.waitFD.Control(func(fd uintptr) {
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
		stopped, tick, idle := p.stopped, p.tick, len(p.relays) == 0
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
			s := p.sides[token]
			p.mu.Unlock()
			if s != nil {
				s.relay.wake(s)
			}
		}
		if !idle && time.Since(lastSweep) >= tick {
			lastSweep = time.Now()
			p.sweep(lastSweep)
		}
	}
}

// sweep ends the relays on which nothing has moved for their idle timeout.
func (p *poller) sweep(now time.Time) {
	var idle []*relay
	p.mu.Lock()
	for r := range p.relays {
		if now.UnixNano()-r.last.Load() >= int64(r.idleTimeout()) {
			idle = append(idle, r)
		}
	}
	p.mu.Unlock()
	for _, r := range idle {
		r.kill()
	}
}
