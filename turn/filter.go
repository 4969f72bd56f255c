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
	reply                // send the returned frame back instead (unsupported.go)
)

// admit decides what becomes of one frame from src before pion sees it,
// returning the frame pion is to handle (capLifetime may rewrite it). It
// parses only the STUN header, so ChannelData, the media path, costs one
// blacklist look-up.
//
// st is the stream the frame came on, nil for UDP.
func (s *Server) admit(src netip.Addr, frame []byte, st *streamConn) ([]byte, verdict) {
	if s.isBlocked(src) {
		return nil, block
	}
	if !stun.IsMessage(frame) {
		return frame, pass
	}
	var t stun.MessageType
	t.ReadValue(binary.BigEndian.Uint16(frame))
	limited := t.Class == stun.ClassRequest // responses pion ignores
	if st != nil && t.Class == stun.ClassIndication {
		// On UDP indications carry media and cost nothing to hold. On a
		// stream each is a read that could keep an idle connection busy:
		// they count, except Send indications carrying an allocation's media.
		limited = t.Method != stun.MethodSend || st.allocs.Load() == 0
	}
	if !limited {
		return frame, pass
	}
	if !s.limiter.allow(s.clientKey(src)) {
		s.stats.throttled.Add(1)
		s.logs.Log(slog.LevelWarn, "turn: requests over the rate limit dropped", "client", src, "service", "turn")
		return nil, drop
	}
	if st != nil && t.Class == stun.ClassRequest && t.Method == stun.MethodBinding {
		// Over UDP the packetConn answers them before admit (discovery.go).
		if resp := s.streamBinding(st, frame); resp != nil {
			return resp, reply
		}
		return nil, drop
	}
	if s.creds != nil {
		if resp := unsupportedAllocation(frame, s.keyOf); resp != nil {
			s.stats.rejected.Add(1)
			s.logs.Log(slog.LevelDebug, "turn: unsupported allocation refused", "client", src, "service", "turn")
			return resp, reply
		}
		frame = capLifetime(frame, s.lifetimeLimit, s.keyOf)
	}
	return frame, pass
}

// clientKey is the address the rate limiter counts src by: the
// blacklist's client (an IPv6 /64 by default), so that hopping addresses
// inside one network does not multiply the rate.
func (s *Server) clientKey(src netip.Addr) netip.Addr {
	return s.gate.Key(src).Addr()
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
