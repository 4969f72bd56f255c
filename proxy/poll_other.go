//go:build !linux

package proxy

import (
	"errors"
	"syscall"
	"time"
)

// poller is Linux's epoll (poll_linux.go); elsewhere framed relays keep a
// goroutine per direction and read deadlines for the idle rule, and
// Conn.Park reports false.
type poller struct{}

type pollWaiter interface {
	setToken(uint64)
	pollReady()
}

type pollSwept interface {
	idleAt(now int64) bool
	kill()
}

func newPoller() (*poller, error) { return nil, errors.New("proxy: no poller on this system") }

func (p *poller) stop()                                                {}
func (p *poller) add(x pollSwept, idle time.Duration, w ...pollWaiter) {}
func (p *poller) remove(x pollSwept, tokens ...uint64)                 {}
func (p *poller) arm(sock syscall.RawConn, token uint64) error         { return syscall.ENOSYS }
