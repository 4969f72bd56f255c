//go:build !linux

package proxy

import (
	"errors"
	"syscall"
)

// poller is Linux's epoll (poll_linux.go); elsewhere framed relays keep a
// goroutine per direction and read deadlines for the idle rule.
type poller struct{}

func newPoller() (*poller, error) { return nil, errors.New("proxy: no poller on this system") }

func (p *poller) stop()             {}
func (p *poller) add(r *relay)      {}
func (p *poller) remove(r *relay)   {}
func (p *poller) arm(s *side) error { return syscall.ENOSYS }
