package turn

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/pion/turn/v4"
)

// relays hands pion its relay sockets. It is where the total allocation cap
// is exact (a socket is the resource), where relayed traffic is counted,
// and where Close finds every socket to wait for.
type relays struct {
	s   *Server
	gen *turn.RelayAddressGeneratorPortRange // nil in STUN-only mode
	// owner is the client socket whose allocations these are (one
	// generator per UDP socket, as pion has one allocation manager per
	// socket); nil for the stream listeners.
	owner *packetConn
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
	rc := &relayConn{PacketConn: conn, s: r.s, owner: r.owner}
	rc.fast, _ = conn.(udpReader)
	var flush func()
	if r.owner != nil && r.owner.out != nil {
		// pion writes the peers' datagrams to the owner socket.
		flush = func() { r.owner.out.flush() }
		rc.out = newOutbox(conn, rc.unsent)
	}
	rc.in = newBatchReader(conn, flush)
	if err := r.s.trackRelay(rc); err != nil {
		return nil, nil, err // closed meanwhile; trackRelay closed rc
	}
	return rc, addr, nil
}

// AllocateConn would be a TCP relay (RFC 6062), which pion's server does not offer.
func (r *relays) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, errSTUNOnly
}

// relayConn is one allocation's relay socket. It reads in batches; what
// pion writes to it (a client's datagrams, from the owner socket's reader)
// waits for the owner's flush, and what pion writes to the owner socket
// while handling this relay's batch is flushed before its next receive.
type relayConn struct {
	net.PacketConn
	s     *Server
	once  sync.Once
	fast  udpReader // PacketConn when it reads without allocating
	addrs addrCache // pion's one reader of the socket uses it
	in    *batchReader
	out   *outbox     // nil: writes go straight out
	owner *packetConn // nil for stream allocations
	dirty bool        // in owner's dirty list; guarded by owner.mu
}

// ReadFrom returns datagrams from peers, dropping those from blocked
// addresses and those too long for p.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		var (
			n    int
			addr net.Addr
			err  error
		)
		if c.in != nil {
			var ap netip.AddrPort
			var trunc bool
			n, ap, trunc, err = c.in.next(p)
			if err == nil {
				addr = c.addrs.get(ap)
				if trunc {
					// Longer than pion's buffer: it would go on cut.
					c.s.stats.malformed.Add(1)
					c.s.logs.Log(slog.LevelDebug, "turn: oversized datagram from a peer dropped", "peer", addr, "relay", c.LocalAddr(), "service", "turn")
					continue
				}
			}
		} else {
			if c.owner != nil && c.owner.out != nil {
				c.owner.out.flush()
			}
			n, addr, err = readFrom(c.PacketConn, c.fast, &c.addrs, p)
		}
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
	if c.out != nil {
		c.owner.markDirty(c)
	}
	n, err := queueOrWrite(c.out, c.PacketConn, p, addr)
	if err != nil {
		c.unsent(len(p))
	}
	return n, err
}

// unsent takes back the count of a datagram that did not leave.
func (c *relayConn) unsent(size int) {
	c.s.stats.relayedPackets.Add(^uint64(0))
	c.s.stats.relayedBytes.Add(^uint64(size - 1))
}

func (c *relayConn) Close() error {
	err := c.PacketConn.Close()
	c.once.Do(func() { c.s.releaseRelay(c) })
	return err
}
