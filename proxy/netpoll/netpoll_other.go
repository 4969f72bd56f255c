//go:build !linux

package netpoll

import (
	"errors"
	"syscall"
	"time"
)

// Poller is Linux's epoll (netpoll_linux.go); elsewhere New fails, and
// callers wait on a goroutine of their own.
type Poller struct{}

type Waiter interface {
	SetToken(uint64)
	PollReady()
}

type Swept interface {
	IdleAt(now int64) bool
	Kill()
}

func New() (*Poller, error) { return nil, errors.New("netpoll: no poller on this system") }

func (p *Poller) Stop()                                        {}
func (p *Poller) Add(x Swept, idle time.Duration, w ...Waiter) {}
func (p *Poller) Remove(x Swept, tokens ...uint64)             {}
func (p *Poller) Arm(sock syscall.RawConn, token uint64) error { return syscall.ENOSYS }
