package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// Stream returns the Handler for a stream protocol: it reads the first
// message until sniffer can name its service, routes it, dials the target,
// replays the bytes read so far and relays both ways for the life of the
// connection (message by message when the Decision has a Watcher).
func Stream(sniffer Sniffer) Handler { return &streamHandler{sniffer: sniffer} }

type streamHandler struct{ sniffer Sniffer }

// initialPeek is the first read buffer: a SIP REGISTER, an LDAP bind or an
// H.323 RRQ fit, so most connections never grow it towards first_packet_max.
const initialPeek = 4096

func (h *streamHandler) ServeConn(c *Conn) {
	first, d, err := h.sniff(c)
	if err != nil {
		return // reported by sniff
	}
	c.SetIdentity(d.Who)
	r, err := c.Route(d.Service, d.Identity)
	if err != nil {
		h.refuse(c, first, AsRefusal(err)) // reported by Route
		return
	}
	var upgrade func(net.Conn) error
	if u, ok := h.sniffer.(TargetUpgrader); ok {
		upgrade = u.StartTLS
	}
	target, err := c.Dial(context.Background(), r, upgrade)
	if errors.Is(err, ErrNoTunnel) {
		h.refuse(c, first, AsRefusal(err))
		return
	}
	if err != nil {
		h.refuse(c, first, AsRefusal(err)) // reported by Dial
		return
	}
	defer func() {
		if !c.detached.Load() { // else the relay closes it when it ends
			target.Close()
		}
	}()
	c.Forwarded(r)
	c.Conn.SetDeadline(time.Time{})
	rl := &relay{conn: c, target: target, watcher: d.Watcher, service: r.Service.Name}
	rl.run(first)
}

// refuse answers the first message when the protocol knows how.
func (h *streamHandler) refuse(c *Conn, first []byte, r *Refusal) {
	if rf, ok := h.sniffer.(Refuser); ok {
		if reply := rf.RefusalReply(first, r); reply != nil {
			c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			c.Conn.Write(reply)
		}
	}
}

// firstReadFailure names a read error that ended a first message after n
// bytes of it: the deadline, a close before anything, a close half-way,
// or another error.
func firstReadFailure(err error, n int) Reason {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ReasonTimeout
	case errors.Is(err, io.EOF) && n == 0:
		return ReasonClosed
	case errors.Is(err, io.EOF):
		return ReasonIncomplete
	}
	return ReasonReadError
}

// sniff reads until the sniffer decides, under the deadline the listener
// set and the first_packet_max cap. Every failure is reported.
func (h *streamHandler) sniff(c *Conn) ([]byte, *Decision, error) {
	limit := int(c.Table.Config.Limits.FirstPacketMax)
	buf := make([]byte, 0, min(limit, initialPeek))
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= limit {
				ref := Refuse(ReasonTooLarge, "first packet", nil)
				c.Report("", ref)
				h.refuse(c, buf, ref)
				return nil, nil, ref
			}
			grown := make([]byte, len(buf), min(limit, 2*cap(buf)))
			copy(grown, buf)
			buf = grown
		}
		n, rerr := c.Conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n > 0 {
			d, err := h.sniffer.Sniff(buf, &c.Info)
			switch {
			case err == nil:
				if d.Reply != nil {
					if _, err := c.Conn.Write(d.Reply); err != nil {
						return nil, nil, err
					}
				}
				if !d.UpgradeTLS {
					return buf, d, nil
				}
				if c.Info.TLS != nil {
					ref := Refuse(ReasonSequence, "tls upgrade inside tls", errNestedTLS)
					c.Report("", ref)
					return nil, nil, ref
				}
				if err := c.startTLS(); err != nil {
					c.reportHandshake(err)
					return nil, nil, err
				}
				buf = buf[:0]
				continue
			case !errors.Is(err, ErrNeedMore):
				ref := AsRefusal(err)
				c.Report("", ref)
				h.refuse(c, buf, ref)
				return nil, nil, ref
			}
		}
		if rerr != nil {
			if c.srv != nil && c.srv.shuttingDown() {
				return nil, nil, rerr // closed by Shutdown, not the client's doing
			}
			c.Report("", Refuse(firstReadFailure(rerr, len(buf)), "", rerr))
			return nil, nil, rerr
		}
	}
}
