package h2mux

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/net/http2"
)

// read is the connection's reader goroutine: it demultiplexes every frame
// until the connection ends. It never waits for the write lock.
func (c *Conn) read() {
	first := true
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			var ce http2.ConnectionError
			switch {
			case errors.As(err, &se):
				c.streamError(se.StreamID, se.Code, se.Error())
				continue
			case errors.As(err, &ce):
				detail := ""
				if d := c.fr.ErrorDetail(); d != nil {
					detail = d.Error()
				}
				c.protocolError(http2.ErrCode(ce), "malformed frame: %s", detail)
			case errors.Is(err, http2.ErrFrameTooLarge):
				c.protocolError(http2.ErrCodeFrameSize, "frame larger than %d bytes", c.cfg.MaxFrame)
			default:
				c.fail(err)
			}
			return
		}
		c.lastRead.Store(time.Now().UnixNano())
		if first {
			if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
				c.protocolError(http2.ErrCodeProtocol, "first frame is not SETTINGS")
				return
			}
			first = false
		}
		if err := c.handle(f); err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) {
				c.protocolError(pe.Code, "%s", pe.Reason)
			} else {
				c.fail(err)
			}
			return
		}
	}
}

func connErr(code http2.ErrCode, format string, args ...any) error {
	return &ProtocolError{Code: code, Reason: fmt.Sprintf(format, args...)}
}

var errFlood = connErr(http2.ErrCodeEnhanceYourCalm, "more than %d SETTINGS, PING, RST_STREAM or refused streams in a second", controlBudget)

// handle acts on one frame; an error ends the connection.
func (c *Conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.PingFrame:
		if f.IsAck() {
			c.mu.Lock()
			if ch, ok := c.pings[f.Data]; ok {
				close(ch)
				delete(c.pings, f.Data)
			}
			c.mu.Unlock()
			return nil
		}
		if !c.spend() {
			return errFlood
		}
		c.queue(control{typ: http2.FramePing, ack: true, data: f.Data})
	case *http2.RSTStreamFrame:
		if !c.spend() {
			return errFlood
		}
		c.mu.Lock()
		s, idle := c.streams[f.StreamID], c.idle(f.StreamID)
		c.mu.Unlock()
		switch {
		case idle:
			return connErr(http2.ErrCodeProtocol, "RST_STREAM on idle stream %d", f.StreamID)
		case s != nil:
			s.abort(fmt.Errorf("%w by the peer (%v)", ErrStreamReset, f.ErrCode))
			c.forget(s)
		}
	case *http2.GoAwayFrame:
		c.mu.Lock()
		c.goneAway = true
		var refused []*Stream
		if !c.server {
			for id, s := range c.streams {
				if id > f.LastStreamID {
					refused = append(refused, s)
				}
			}
		}
		c.mu.Unlock()
		for _, s := range refused {
			s.abort(ErrGoAway)
			c.forget(s)
		}
	case *http2.PushPromiseFrame:
		return connErr(http2.ErrCodeProtocol, "PUSH_PROMISE (push is disabled)")
	case *http2.HeadersFrame:
		return connErr(http2.ErrCodeProtocol, "HEADERS not decoded") // ReadMetaHeaders is set: not reached
	}
	// PRIORITY and unknown frame types are ignored (RFC 9113 5.5).
	return nil
}

// idle says whether id is a stream that was never opened; c.mu is held.
func (c *Conn) idle(id uint32) bool {
	if c.server {
		return id > c.lastID || id%2 == 0
	}
	return id >= c.nextID || id%2 == 0
}

func (c *Conn) onData(f *http2.DataFrame) error {
	n := int32(f.Length)
	data := f.Data()
	c.mu.Lock()
	if int64(n) > c.recvWin {
		c.mu.Unlock()
		return connErr(http2.ErrCodeFlowControl, "DATA beyond the connection's window")
	}
	c.recvWin -= int64(n)
	c.armStallCheck()
	s, idle := c.streams[f.StreamID], c.idle(f.StreamID)
	c.mu.Unlock()
	if s == nil {
		if idle {
			return connErr(http2.ErrCodeProtocol, "DATA on idle stream %d", f.StreamID)
		}
		// A stream that ended here (late DATA after a reset crosses it):
		// its bytes return to the connection's window.
		if !c.spend() {
			return errFlood
		}
		c.credit(nil, n)
		return nil
	}
	s.mu.Lock()
	var bad string
	code := http2.ErrCodeProtocol
	switch {
	case s.rEnded:
		bad, code = "DATA after END_STREAM", http2.ErrCodeStreamClosed
	case !c.server && !s.headers:
		bad = "DATA before the response's HEADERS"
	case n > s.recvWin:
		bad, code = "DATA beyond the stream's window", http2.ErrCodeFlowControl
	}
	if bad != "" {
		s.mu.Unlock()
		c.credit(nil, n)
		c.streamError(f.StreamID, code, bad)
		return nil
	}
	s.recvWin -= n
	drop := n - int32(len(data)) // padding
	if s.closed || s.rErr != nil {
		drop = n
	} else {
		s.push(data)
	}
	if f.StreamEnded() {
		s.rEnded = true
	}
	s.wakeUnlock()
	c.bytesIn.Add(int64(len(data)))
	if drop > 0 {
		c.credit(s, drop)
	}
	if f.StreamEnded() {
		s.maybeDone()
	}
	return nil
}

func (c *Conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	c.mu.Lock()
	s, idle := c.streams[id], c.idle(id)
	c.mu.Unlock()
	if f.Truncated {
		if s == nil && c.server && idle {
			c.mu.Lock()
			c.lastID = id
			c.mu.Unlock()
		}
		c.streamError(id, http2.ErrCodeProtocol, "header list too large")
		return nil
	}
	if s != nil {
		s.mu.Lock()
		trailers := s.headers || c.server
		s.mu.Unlock()
		if trailers {
			c.streamError(id, http2.ErrCodeProtocol, "trailers on a stream")
			return nil
		}
		return c.onResponse(s, f)
	}
	if !c.server || !idle {
		return connErr(http2.ErrCodeProtocol, "HEADERS on stream %d, which this side did not expect", id)
	}
	c.mu.Lock()
	c.lastID = id
	refuse := c.goneAway || len(c.streams) >= c.cfg.MaxStreams
	c.mu.Unlock()
	if refuse {
		if !c.spend() {
			return errFlood
		}
		if c.cfg.Misbehaved != nil && !c.goneAwayNow() {
			c.cfg.Misbehaved(&ProtocolError{Code: http2.ErrCodeRefusedStream, Stream: id,
				Reason: fmt.Sprintf("more than %d streams open", c.cfg.MaxStreams)})
		}
		c.queue(control{typ: http2.FrameRSTStream, stream: id, val: uint32(http2.ErrCodeRefusedStream)})
		return nil
	}
	method, path := f.PseudoValue("method"), f.PseudoValue("path")
	if method == "" || path == "" || f.PseudoValue("scheme") == "" || f.PseudoValue("status") != "" {
		c.streamError(id, http2.ErrCodeProtocol, "request without :method, :scheme or :path")
		return nil
	}
	c.mu.Lock()
	s = c.newStream(id)
	s.method, s.path, s.fields = method, path, f.RegularFields()
	s.rEnded = f.StreamEnded()
	c.streams[id] = s
	c.mu.Unlock()
	if c.cfg.Handler == nil {
		s.Reset(http2.ErrCodeRefusedStream)
		return nil
	}
	c.handlers.Go(func() { c.cfg.Handler(s) })
	return nil
}

func (c *Conn) goneAwayNow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.goneAway
}

// onResponse takes a response's HEADERS (client role).
func (c *Conn) onResponse(s *Stream, f *http2.MetaHeadersFrame) error {
	status, err := strconv.Atoi(f.PseudoValue("status"))
	if err != nil || status < 200 || status > 999 || f.PseudoValue("method") != "" {
		c.streamError(s.id, http2.ErrCodeProtocol, "response without a final :status")
		return nil
	}
	s.mu.Lock()
	s.status, s.fields, s.headers = status, f.RegularFields(), true
	if f.StreamEnded() {
		s.rEnded = true
	}
	s.wakeUnlock()
	if f.StreamEnded() {
		s.maybeDone()
	}
	return nil
}

func (c *Conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		c.mu.Lock()
		c.sendWin += inc
		over := c.sendWin > maxWindow
		ws := c.waitConn
		c.waitConn = nil
		c.mu.Unlock()
		if over {
			return connErr(http2.ErrCodeFlowControl, "connection window beyond 2^31-1")
		}
		wakeConn(ws)
		return nil
	}
	c.mu.Lock()
	s, idle := c.streams[f.StreamID], c.idle(f.StreamID)
	c.mu.Unlock()
	if s == nil {
		if idle {
			return connErr(http2.ErrCodeProtocol, "WINDOW_UPDATE on idle stream %d", f.StreamID)
		}
		return nil
	}
	s.mu.Lock()
	s.sendWin += inc
	over := s.sendWin > maxWindow
	s.cond.Broadcast()
	s.mu.Unlock()
	if over {
		c.streamError(f.StreamID, http2.ErrCodeFlowControl, "stream window beyond 2^31-1")
	}
	return nil
}

func (c *Conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	if !c.spend() {
		return errFlood
	}
	var woken []*Stream
	err := f.ForeachSetting(func(st http2.Setting) error {
		if err := st.Valid(); err != nil {
			return connErr(http2.ErrCodeProtocol, "%v", err)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		switch st.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(st.Val) - int64(c.peerWindow)
			c.peerWindow = int32(st.Val)
			for _, s := range c.streams {
				s.mu.Lock()
				s.sendWin += delta
				over := s.sendWin > maxWindow
				s.mu.Unlock()
				if over {
					return connErr(http2.ErrCodeFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream's window")
				}
				woken = append(woken, s)
			}
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = st.Val
		case http2.SettingMaxConcurrentStreams:
			if !c.server {
				c.peerMaxStream = int(min(st.Val, 1<<30))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, s := range woken {
		s.wake()
	}
	c.queue(control{typ: http2.FrameSettings, ack: true})
	return nil
}
