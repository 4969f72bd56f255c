package turn

import (
	"net"
	"net/netip"
)

// maxCachedAddrs bounds an addrCache: a socket's recent sources. Past it the
// cache starts over, which costs one allocation per source again.
const maxCachedAddrs = 1024

// udpReader reads datagrams without allocating for the source address
// (*net.UDPConn; ReadFrom allocates a *net.UDPAddr per datagram).
type udpReader interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
}

// addrCache hands out one *net.UDPAddr per source address, so reading a
// datagram allocates nothing for the address pion wants as a net.Addr.
// pion only compares and stores them, never writes them. One goroutine
// (the socket's reader) uses a cache; it has no lock.
type addrCache map[netip.AddrPort]*net.UDPAddr

func (c *addrCache) get(ap netip.AddrPort) *net.UDPAddr {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if a, ok := (*c)[ap]; ok {
		return a
	}
	if *c == nil || len(*c) >= maxCachedAddrs {
		*c = make(addrCache)
	}
	a := net.UDPAddrFromAddrPort(ap)
	(*c)[ap] = a
	return a
}

// readFrom is pc.ReadFrom with the address from c when pc allows it.
func readFrom(pc net.PacketConn, fast udpReader, c *addrCache, p []byte) (int, net.Addr, error) {
	if fast == nil {
		return pc.ReadFrom(p)
	}
	n, ap, err := fast.ReadFromUDPAddrPort(p)
	if err != nil {
		if n == 0 && !ap.IsValid() {
			return n, nil, err
		}
		return n, c.get(ap), err
	}
	return n, c.get(ap), nil
}
