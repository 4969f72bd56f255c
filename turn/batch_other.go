//go:build !linux

package turn

import (
	"net"
	"net/netip"
)

// Elsewhere than Linux datagrams move one per system call: no batchReader
// or outbox is made, and their users take the plain path.

type batchReader struct{}

func newBatchReader(net.PacketConn, func()) *batchReader { return nil }

func (*batchReader) next([]byte) (int, netip.AddrPort, bool, error) {
	return 0, netip.AddrPort{}, false, net.ErrClosed
}

type outbox struct{}

func newOutbox(net.PacketConn, func(int)) *outbox { return nil }

func (*outbox) add([]byte, netip.AddrPort) bool { return false }

func (*outbox) flush() error { return nil }
