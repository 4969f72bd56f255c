package proxy

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// A client that gives up on a TLS handshake it started (Chromium after a
// CertificateRequest it cannot answer, a phone falling back to another
// version) connects again at once. Its abort is one suspicious event, not
// one per attempt: aborts from a client within abortWindow of the one that
// was reported are logged at debug level only. Handshakes that fail on the
// bytes the client sent (not TLS, no common version or suite, a bad
// Finished) are reported every time.
const abortWindow = 10 * time.Second

// maxAbortClients bounds the memory of reported aborts; when it is full,
// aborts are reported as they come (never suppressed by guesswork).
const maxAbortClients = 4096

// aborts remembers, per client address, when its last aborted handshake was
// reported. The zero value is ready to use.
type aborts struct {
	mu   sync.Mutex // guards last
	last map[netip.Addr]time.Time
}

// first reports whether an abort by client at now is the first one within
// abortWindow, and remembers it if so.
func (a *aborts) first(client netip.Addr, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t, ok := a.last[client]; ok && now.Sub(t) < abortWindow {
		return false
	}
	if a.last == nil {
		a.last = make(map[netip.Addr]time.Time)
	}
	if len(a.last) >= maxAbortClients {
		for ip, t := range a.last {
			if now.Sub(t) >= abortWindow {
				delete(a.last, ip)
			}
		}
		if len(a.last) >= maxAbortClients {
			return true
		}
	}
	a.last[client] = now
	return true
}

// clientAborted reports whether a handshake error means the client closed
// or reset the connection, or sent an alert, rather than sending bytes
// gatehouse could not accept.
func clientAborted(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" { // crypto/tls: an alert from the client
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// reportHandshake reports a failed TLS handshake with the client, an abort
// once per abortWindow (see aborts).
func (c *Conn) reportHandshake(err error) {
	ref := Refuse(ReasonTLS, "", err)
	if clientAborted(err) {
		ref = Refuse(ReasonTLS, "aborted by client", err)
		if !c.srv.aborts.first(c.Info.Client.Addr(), time.Now()) {
			c.srv.log.Debug("tls handshake aborted again", "client", c.Info.Client.Addr(), "type", c.Info.Type.Name, "err", err)
			return
		}
	}
	c.Report("", ref)
}
