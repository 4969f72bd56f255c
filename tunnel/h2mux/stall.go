package h2mux

import (
	"errors"
	"time"

	"golang.org/x/net/http2"
)

// HTTP/2 returns the connection's window only as its streams' readers take
// bytes, so readers that stop (clients that start a download through a
// tunnel and then read nothing) can spend the whole connection window
// between them, and every other stream of the connection then waits for
// them. Config.StallTimeout ends that: while a quarter or less of the
// connection's receive window is left, a check runs every StallTimeout/4,
// and a stream that holds unread bytes and whose reader has taken none for
// StallTimeout is reset; its bytes are dropped and their window returned.
// Readers that keep taking bytes, however slowly, are never reset, nor is
// anything while the connection's window is not short.

// ErrStalled is what a stream reset for its stalled reader reads and writes.
var ErrStalled = errors.New("h2mux: stream reset: its reader took nothing while the connection's window ran short")

// shortWindow says whether the peer may send a quarter of the connection's
// window or less; c.mu is held.
func (c *Conn) shortWindow() bool { return c.recvWin <= int64(c.cfg.ConnWindow)/4 }

// armStallCheck starts the checks when the window has become short; c.mu
// is held.
func (c *Conn) armStallCheck() {
	if c.cfg.StallTimeout <= 0 || c.stallArmed || c.err != nil || !c.shortWindow() {
		return
	}
	c.stallArmed = true
	c.stallTimer = time.AfterFunc(c.cfg.StallTimeout/4, c.checkStalls)
}

// checkStalls resets the streams whose readers stalled, and runs again
// while the window stays short.
func (c *Conn) checkStalls() {
	now := time.Now()
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	short := c.shortWindow()
	streams := make([]*Stream, 0, len(c.streams))
	for _, s := range c.streams {
		streams = append(streams, s)
	}
	c.mu.Unlock()
	var stalled []*Stream
	for _, s := range streams {
		s.mu.Lock()
		switch {
		case !short || s.unread == 0 || s.reads != s.stallReads:
			s.stallFrom = time.Time{}
		case s.stallFrom.IsZero():
			s.stallFrom = now
		case now.Sub(s.stallFrom) >= c.cfg.StallTimeout:
			stalled = append(stalled, s)
		}
		s.stallReads = s.reads
		s.mu.Unlock()
	}
	for _, s := range stalled {
		s.stall()
	}
	c.mu.Lock()
	c.stallArmed = false
	if short {
		c.armStallCheck() // the resets' window returns in the credit's own time
	}
	c.mu.Unlock()
}

// stall resets s for its stalled reader: RST_STREAM(CANCEL) to the peer,
// ErrStalled here, its unread bytes dropped and their window returned.
func (s *Stream) stall() {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return
	}
	dropped := s.drop()
	s.stalled = true
	s.mu.Unlock()
	s.reset(ErrStalled, http2.ErrCodeCancel)
	if dropped > 0 {
		s.c.credit(nil, dropped)
	}
}

// Stalled says whether s was reset for its stalled reader (an OnAbort
// callback asks, to say so in its log).
func (s *Stream) Stalled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stalled
}
