package turn

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
)

// NAT behaviour discovery (RFC 5780 §3, RFC 3489 §9) needs four UDP
// sockets: the primary address and turn.alternate_address, each on
// turn.listen's port and the port after it (coturn's convention). Binding
// requests are answered on all four, from the socket CHANGE-REQUEST names;
// TURN is served on the primary socket only, so datagrams of any other
// kind on the other three are dropped. The blacklist and the request rate
// limit cover all four: one client's budget, whichever socket it uses.

// altBuffer holds the largest datagram a discovery socket accepts: a
// request padded to the MTU (RFC 5780 §6.1) and some.
const altBuffer = 2048

// listenSockets opens turn.listen (UDP and TCP) and, with an alternate
// address, the three other discovery sockets, in socket order. Port 0
// picks a port free for all of them, which tests rely on.
//
// shards are the n-1 further sockets on the primary address (listenShared).
func listenSockets(listen string, alternate netip.Addr, n int) (socks, shards []net.PacketConn, _ net.Listener, _ error) {
	if !alternate.IsValid() {
		udp, tcp, err := listenPair(listen, n)
		if err != nil {
			return nil, nil, nil, err
		}
		return udp[:1], udp[1:], tcp, nil
	}
	host, port, _ := net.SplitHostPort(listen)
	for range 20 {
		udp, tcp, err := listenPair(listen, n)
		if err != nil {
			return nil, nil, nil, err
		}
		p := tcp.Addr().(*net.TCPAddr).Port
		socks := udp[:1:1]
		if p < 65535 {
			for _, hp := range []string{
				net.JoinHostPort(host, strconv.Itoa(p+1)),             // altPort
				net.JoinHostPort(alternate.String(), strconv.Itoa(p)), // altIP
				net.JoinHostPort(alternate.String(), strconv.Itoa(p+1)),
			} {
				var pc net.PacketConn
				if pc, err = net.ListenPacket("udp", hp); err != nil {
					err = fmt.Errorf("alternate socket %s: %w", hp, err)
					break
				}
				socks = append(socks, pc)
			}
		} else {
			err = errors.New("the alternate port would be 65536")
		}
		if err == nil {
			return socks, udp[1:], tcp, nil
		}
		tcp.Close()
		for _, pc := range append(socks, udp[1:]...) {
			pc.Close()
		}
		if port != "0" {
			return nil, nil, nil, err
		}
	}
	return nil, nil, nil, errors.New("no port free for the four discovery sockets")
}

// serveAlternate answers Binding requests on one of the three alternate
// sockets until it is closed.
func (s *Server) serveAlternate(at socket) {
	defer s.wg.Done()
	pc := s.sockets[at]
	buf := make([]byte, altBuffer)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("turn: discovery socket stopped", "socket", pc.LocalAddr(), "service", "stun", "error", err)
			}
			return
		}
		if n >= len(buf) {
			s.stats.malformed.Add(1)
			s.logs.Log(slog.LevelDebug, "turn: oversized datagram dropped", "client", addr, "service", "stun")
			continue
		}
		if !isBindingRequest(buf[:n]) {
			if !s.isBlocked(addrOf(addr)) {
				s.stats.rejected.Add(1)
				s.logs.Log(slog.LevelDebug, "turn: not a Binding request on a discovery socket, dropped",
					"client", addr, "service", "stun", "socket", pc.LocalAddr())
			}
			continue
		}
		s.serveBinding(at, pc, addr, buf[:n])
	}
}

// serveBinding answers a Binding request that arrived over UDP on socket
// at, the PacketConn on: the blacklist and the request rate limit first,
// then the reply is sent from the socket answerBinding chose (on itself
// when that is at, which for the primary address may be any of its
// shards).
func (s *Server) serveBinding(at socket, on net.PacketConn, addr net.Addr, frame []byte) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return
	}
	src := ua.AddrPort()
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	if s.isBlocked(src.Addr()) {
		return
	}
	if !s.limiter.allow(s.clientKey(src.Addr())) {
		s.stats.throttled.Add(1)
		s.logs.Log(slog.LevelWarn, "turn: requests over the rate limit dropped", "client", src.Addr(), "service", "stun")
		return
	}
	req, err := parseBinding(frame)
	if err != nil {
		s.stats.malformed.Add(1)
		s.logs.Log(slog.LevelDebug, "turn: malformed Binding request dropped", "client", src, "service", "stun", "error", err)
		return
	}
	r, err := answerBinding(req, at, src, s.addrs, false)
	if err != nil {
		s.logs.Log(slog.LevelWarn, "turn: Binding response not built", "client", src, "service", "stun", "error", err)
		return
	}
	s.count(req, r)
	if r.from != at {
		s.stats.changedBindings.Add(1)
	}
	out := s.sockets[r.from]
	if r.from == at {
		out = on
	}
	if _, err := out.WriteTo(r.msg, udpAddr(r.to)); err != nil {
		s.logs.Log(slog.LevelDebug, "turn: Binding response not sent", "client", src, "service", "stun", "error", err)
	}
}

// streamBinding answers a Binding request that came on a TCP or TLS
// connection; nil drops it.
func (s *Server) streamBinding(st *streamConn, frame []byte) []byte {
	src, _ := netip.ParseAddrPort(st.raw.RemoteAddr().String())
	local, _ := netip.ParseAddrPort(st.raw.LocalAddr().String())
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	req, err := parseBinding(frame)
	if err == nil && req.classic {
		err = errors.New("RFC 3489 requests are UDP only")
	}
	if err != nil {
		s.stats.malformed.Add(1)
		s.logs.Log(slog.LevelDebug, "turn: malformed Binding request dropped", "client", src, "service", "stun", "error", err)
		return nil
	}
	r, err := answerBinding(req, primary, src, []netip.AddrPort{local}, true)
	if err != nil {
		return nil
	}
	s.count(req, r)
	return r.msg
}

// count records a Binding reply in the stats.
func (s *Server) count(req bindingRequest, r bindingReply) {
	switch {
	case r.err != 0:
		s.stats.rejected.Add(1)
		s.logs.Log(slog.LevelDebug, "turn: Binding request refused", "client", r.to.Addr(), "service", "stun", "code", int(r.err))
	case req.classic:
		s.stats.classicBindings.Add(1)
		fallthrough
	default:
		s.stats.bindings.Add(1)
	}
}
