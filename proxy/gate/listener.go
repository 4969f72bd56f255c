package gate

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Backoff after a failed accept, as net/http's Server.Serve: the usual cause
// is running out of file descriptors, which other connections ending cure,
// so the listener waits and retries instead of spinning or giving up.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// Listener is a net.Listener whose Accept returns only connections the gate
// admitted, as *Conn, with the client's address unmapped. Accept never
// returns a transient error: it backs off (5 ms doubling to 1 s) and logs
// one line when accepting starts failing, at most one every ten seconds
// while it goes on, and one when it works again. It returns an error only
// once the listener is closed, so servers that stop at the first accept
// error (pion/turn) outlive an exhaustion.
type Listener struct {
	net.Listener
	g     *Gate
	class Class
	typ   string // service type in logs and reports: "https", "turn", "admin"
	// OnAccept, when set, hears about every accepted connection and the
	// verdict, before a refused one is closed (for the caller's counters).
	OnAccept func(ip netip.Addr, v Verdict)

	closing   chan struct{}
	closeOnce sync.Once
	logs      rateLog
}

// Listen wraps ln.
func (g *Gate) Listen(ln net.Listener, c Class, typ string) *Listener {
	return &Listener{Listener: ln, g: g, class: c, typ: typ, closing: make(chan struct{})}
}

var _ net.Listener = (*Listener)(nil)

// Accept waits for the next admitted connection.
func (l *Listener) Accept() (net.Conn, error) {
	var backoff time.Duration
	failing := false
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.closed() {
				return nil, err
			}
			l.g.noteAcceptError(err)
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			if !failing {
				failing = true
				l.g.log.Error("accept failed; backing off", "service", l.typ, "addr", l.Addr().String(), "err", err)
			} else {
				l.logs.log(l.g.log, slog.LevelError, "accept still failing", "service", l.typ, "addr", l.Addr().String(), "err", err, "retry_in", backoff)
			}
			if !l.sleep(backoff) {
				return nil, net.ErrClosed
			}
			continue
		}
		if failing {
			failing = false
			l.g.log.Info("accepting again", "service", l.typ, "addr", l.Addr().String())
		}
		backoff = 0
		ip := remoteIP(raw.RemoteAddr())
		c, v := l.g.Admit(raw, ip, l.class, l.typ)
		if l.OnAccept != nil {
			l.OnAccept(ip, v)
		}
		if v != Admitted {
			// Closed before a byte is read or a TLS handshake is started.
			raw.Close()
			continue
		}
		return c, nil
	}
}

func (l *Listener) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.closing:
		return false
	}
}

func (l *Listener) closed() bool {
	select {
	case <-l.closing:
		return true
	default:
		return false
	}
}

// Close stops accepting; a backoff in progress ends at once.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.closing) })
	return l.Listener.Close()
}

// remoteIP returns the address of a peer, IPv4-mapped addresses unmapped.
func remoteIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap().WithZone("")
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap().WithZone("")
}
