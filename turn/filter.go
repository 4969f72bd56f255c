package turn

import (
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"

	"github.com/pion/stun/v3"
)

// verdict is what becomes of one datagram or stream frame.
type verdict int

const (
	pass  verdict = iota // hand it to pion
	drop                 // discard it, keep the stream
	block                // discard it and, on a stream, close the connection
)

// admit decides what becomes of one frame from src before pion sees it,
// returning the frame pion is to handle (capLifetime may rewrite it). It
// parses only the STUN header, so ChannelData, the media path, costs one
// blacklist look-up.
func (s *Server) admit(src netip.Addr, frame []byte) ([]byte, verdict) {
	if s.isBlocked(src) {
		return nil, block
	}
	if !stun.IsMessage(frame) {
		return frame, pass
	}
	var t stun.MessageType
	t.ReadValue(binary.BigEndian.Uint16(frame))
	if t.Class != stun.ClassRequest {
		return frame, pass // indications carry media; responses pion ignores
	}
	if !s.limiter.allow(src) {
		s.stats.throttled.Add(1)
		s.logs.Log(slog.LevelWarn, "turn: requests over the rate limit dropped", "client", src, "service", "turn")
		return nil, drop
	}
	if s.creds != nil {
		frame = capLifetime(frame, s.lifetimeLimit, s.keyOf)
	}
	return frame, pass
}

// isBlocked asks the blacklist about ip, counting a yes.
func (s *Server) isBlocked(ip netip.Addr) bool {
	if s.guard == nil || !s.guard.Blocked(ip) {
		return false
	}
	s.stats.blocked.Add(1)
	return true
}

// keyOf is the long-term key capLifetime re-signs with; nil when there is none.
func (s *Server) keyOf(username, realm string) []byte {
	k, _ := s.creds.key(username, realm)
	return k
}

// addrOf returns the unmapped IP of a UDP or TCP address.
func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}
