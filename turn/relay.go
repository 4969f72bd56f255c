package turn

import (
	"net"
	"sync"

	"github.com/pion/turn/v4"
)

// relays hands pion its relay sockets. It is where the total allocation cap
// is exact (a socket is the resource), where relayed traffic is counted,
// and where Close finds every socket to wait for.
type relays struct {
	s   *Server
	gen *turn.RelayAddressGeneratorPortRange // nil in STUN-only mode
}

var _ turn.RelayAddressGenerator = (*relays)(nil)

func (r *relays) Validate() error {
	if r.gen == nil {
		return nil
	}
	return r.gen.Validate()
}

func (r *relays) AllocatePacketConn(network string, port int) (net.PacketConn, net.Addr, error) {
	if r.gen == nil {
		return nil, nil, errSTUNOnly
	}
	if err := r.s.reserveRelay(); err != nil {
		return nil, nil, err
	}
	conn, addr, err := r.gen.AllocatePacketConn(network, port)
	if err != nil {
		r.s.releaseRelay(nil)
		return nil, nil, err
	}
	rc := &relayConn{PacketConn: conn, s: r.s}
	rc.fast, _ = conn.(udpReader)
	if err := r.s.trackRelay(rc); err != nil {
		return nil, nil, err // closed meanwhile; trackRelay closed rc
	}
	return rc, addr, nil
}

// AllocateConn would be a TCP relay (RFC 6062), which pion's server does not offer.
func (r *relays) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, errSTUNOnly
}

// relayConn is one allocation's relay socket.
type relayConn struct {
	net.PacketConn
	s     *Server
	once  sync.Once
	fast  udpReader // PacketConn when it reads without allocating
	addrs addrCache // pion's one reader of the socket uses it
}

// ReadFrom returns datagrams from peers, dropping those from blocked addresses.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := readFrom(c.PacketConn, c.fast, &c.addrs, p)
		if err != nil {
			return n, addr, err
		}
		if c.s.isBlocked(addrOf(addr)) {
			continue
		}
		c.s.stats.relayedPackets.Add(1)
		c.s.stats.relayedBytes.Add(uint64(n))
		return n, addr, nil
	}
}

// WriteTo sends a client's datagram to a peer. It counts first: the peer's
// answer may be back through ReadFrom before this goroutine runs again.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.s.stats.relayedPackets.Add(1)
	c.s.stats.relayedBytes.Add(uint64(len(p)))
	n, err := c.PacketConn.WriteTo(p, addr)
	if err != nil {
		c.s.stats.relayedPackets.Add(^uint64(0))
		c.s.stats.relayedBytes.Add(^uint64(len(p) - 1))
	}
	return n, err
}

func (c *relayConn) Close() error {
	err := c.PacketConn.Close()
	c.once.Do(func() { c.s.releaseRelay(c) })
	return err
}
