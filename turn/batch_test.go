//go:build linux

package turn

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/pion/stun/v3"
	"golang.org/x/sys/unix"
)

func udpSocket(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}

// waitQueued waits (at most 5 s) until conn holds n datagrams of size
// bytes in its receive queue, so that a read finds them together however
// late the kernel delivers. The kernel counts queued bytes by the buffer
// each datagram takes, the same for datagrams of one size: measured first
// on a socket of its own.
func waitQueued(t *testing.T, conn *net.UDPConn, n, size int) {
	t.Helper()
	network := "udp4"
	if conn.LocalAddr().(*net.UDPAddr).IP.To4() == nil {
		network = "udp6"
	}
	addr := conn.LocalAddr().(*net.UDPAddr)
	one := udpSocket(t, network, net.JoinHostPort(addr.IP.String(), "0"))
	if _, err := one.WriteTo(make([]byte, size), one.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	each := 0
	for deadline := time.Now().Add(5 * time.Second); each == 0 && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		each = queuedBytes(t, one)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if each > 0 && queuedBytes(t, conn) >= n*each {
			return
		}
	}
	t.Fatalf("fewer than %d datagrams queued after 5 s", n)
}

// queuedBytes is the socket's receive memory in use (SO_MEMINFO).
func queuedBytes(t *testing.T, conn *net.UDPConn) int {
	t.Helper()
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info [unix.SK_MEMINFO_VARS]uint32
	var serr error
	raw.Control(func(fd uintptr) {
		size := uint32(unsafe.Sizeof(info))
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
		if errno != 0 {
			serr = errno
		}
	})
	if serr != nil {
		t.Fatal(serr)
	}
	return int(info[unix.SK_MEMINFO_RMEM_ALLOC])
}

// Datagrams queued from two sources come out of the batch reader in the
// order sent, each with its own source, batchSize per receive at most.
func TestBatchReaderOrderAndSources(t *testing.T) {
	for _, tc := range []struct{ name, network, dst, a, b string }{
		{"ipv4", "udp4", "127.0.0.1:0", "127.0.0.2:0", "127.0.0.3:0"},
		{"ipv6", "udp6", "[::1]:0", "[::1]:0", "[::1]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.network == "udp6" && !hasIPv6Loopback() {
				t.Skip("no ::1 on this machine")
			}
			dst := udpSocket(t, tc.network, tc.dst)
			senders := []*net.UDPConn{udpSocket(t, tc.network, tc.a), udpSocket(t, tc.network, tc.b)}
			receives := 0
			r := newBatchReader(dst, func() { receives++ })
			if r == nil {
				t.Fatal("no batch reader for a UDP socket")
			}
			const total = 3*batchSize + 5
			for i := range total {
				if _, err := senders[i%2].WriteTo([]byte{byte(i), 'd'}, dst.LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
			waitQueued(t, dst, total, 2)
			p := make([]byte, 1600)
			for i := range total {
				n, from, trunc, err := r.next(p)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if trunc || n != 2 || p[0] != byte(i) || p[1] != 'd' {
					t.Fatalf("datagram %d: %x (truncated %v), want %02x64", i, p[:n], trunc, i)
				}
				want := senders[i%2].LocalAddr().(*net.UDPAddr).AddrPort()
				if from != netip.AddrPortFrom(want.Addr().Unmap(), want.Port()) {
					t.Errorf("datagram %d from %v, want %v", i, from, want)
				}
			}
			if want := (total + batchSize - 1) / batchSize; receives != want {
				t.Errorf("%d receives for %d datagrams, want %d (batches of %d)", receives, total, want, batchSize)
			}
		})
	}
}

// A datagram longer than the reader's buffer, or than a batch slot, is
// reported truncated; the ones around it are whole.
func TestBatchReaderTruncates(t *testing.T) {
	dst := udpSocket(t, "udp4", "127.0.0.1:0")
	src := udpSocket(t, "udp4", "127.0.0.2:0")
	r := newBatchReader(dst, nil)
	sizes := []int{10, 1700, 1599, 3000, 1600, 11}
	for i, n := range sizes {
		if _, err := src.WriteTo(bytes.Repeat([]byte{byte(i)}, n), dst.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	p := make([]byte, 1600)
	for i, size := range sizes {
		n, _, trunc, err := r.next(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := size > len(p); trunc != want {
			t.Errorf("%d-byte datagram: truncated %v, want %v", size, trunc, want)
		}
		if n != min(size, len(p)) || (n > 0 && p[n-1] != byte(i)) {
			t.Errorf("%d-byte datagram: got %d bytes ending %x", size, n, p[max(n-1, 0)])
		}
	}
}

// Through the client socket's wrapper an oversized datagram is dropped and
// counted, and the next one is served; the same on a relay socket.
func TestBatchedOversizedDropped(t *testing.T) {
	s := startServer(t, baseConfig(), Options{})
	dst := udpSocket(t, "udp4", "127.0.0.1:0")
	src := udpSocket(t, "udp4", "127.0.0.2:0")
	c := newPacketConn(s, dst)
	relay := &relayConn{PacketConn: dst, s: s, in: newBatchReader(dst, nil)}
	frame := append([]byte{0x40, 0x00, 0x00, 160}, make([]byte, 160)...)
	for name, read := range map[string]func([]byte) (int, net.Addr, error){"client": c.ReadFrom, "relay": relay.ReadFrom} {
		before := s.Stats().Malformed
		for _, p := range [][]byte{make([]byte, 1700), frame} {
			if _, err := src.WriteTo(p, dst.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
		n, from, err := read(make([]byte, 1600))
		if err != nil || n != len(frame) || from.String() != src.LocalAddr().String() {
			t.Errorf("%s: read %d bytes from %v, %v; want the %d-byte frame from %v", name, n, from, err, len(frame), src.LocalAddr())
		}
		if got := s.Stats().Malformed - before; got != 1 {
			t.Errorf("%s: %d malformed counted, want 1", name, got)
		}
	}
}

// Closing the socket ends a reader blocked waiting for datagrams.
func TestBatchReaderCloseWhileBlocked(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := newBatchReader(pc, nil)
	done := make(chan error)
	go func() {
		_, _, _, err := r.next(make([]byte, 1600))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // most likely parked by now; either way it must end
	pc.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked read ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocked read did not end on Close")
	}
}

// The outbox sends what was queued, in order, to each destination; a
// datagram the kernel refuses (port 0) is dropped and reported, the ones
// after it still go.
func TestOutbox(t *testing.T) {
	for _, tc := range []struct{ name, network, src, a, b string }{
		{"ipv4", "udp4", "127.0.0.1:0", "127.0.0.2:0", "127.0.0.3:0"},
		{"ipv6", "udp6", "[::1]:0", "[::1]:0", "[::1]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.network == "udp6" && !hasIPv6Loopback() {
				t.Skip("no ::1 on this machine")
			}
			src := udpSocket(t, tc.network, tc.src)
			var failed []int
			o := newOutbox(src, func(n int) { failed = append(failed, n) })
			if o == nil {
				t.Fatal("no outbox for a UDP socket")
			}
			dsts := []*net.UDPConn{udpSocket(t, tc.network, tc.a), udpSocket(t, tc.network, tc.b)}
			const total = batchSize + 7 // a full batch and some
			for i := range total {
				if i == 3 {
					bad := netip.AddrPortFrom(dsts[0].LocalAddr().(*net.UDPAddr).AddrPort().Addr(), 0)
					if !o.add([]byte("refused"), bad) {
						t.Fatal("datagram to port 0 not queued")
					}
				}
				// The 32nd fills the batch, which add sends.
				if !o.add([]byte{byte(i), 'o'}, dsts[i%2].LocalAddr().(*net.UDPAddr).AddrPort()) {
					t.Fatalf("datagram %d not queued", i)
				}
			}
			if err := o.flush(); err != nil {
				t.Errorf("flush: %v", err)
			}
			if len(failed) != 1 || failed[0] != len("refused") {
				t.Errorf("refused datagrams reported: %v, want [%d]", failed, len("refused"))
			}
			p := make([]byte, 64)
			for i := range total {
				d := dsts[i%2]
				d.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, from, err := d.ReadFrom(p)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if n != 2 || p[0] != byte(i) || from.String() != src.LocalAddr().String() {
					t.Fatalf("datagram %d: %x from %v, want %02x6f from %v", i, p[:n], from, i, src.LocalAddr())
				}
			}
		})
	}
}

// An IPv4 socket sends to IPv4-mapped destinations (how a 16-byte net.IP
// converts) and refuses to queue IPv6 ones, which then take the plain path
// and fail there as they would have.
func TestOutboxFamilies(t *testing.T) {
	src := udpSocket(t, "udp4", "127.0.0.1:0")
	dst := udpSocket(t, "udp4", "127.0.0.2:0")
	o := newOutbox(src, func(int) {})
	mapped := &net.UDPAddr{IP: net.ParseIP("127.0.0.2"), Port: dst.LocalAddr().(*net.UDPAddr).Port}
	if n, err := queueOrWrite(o, src, []byte("v4"), mapped); n != 2 || err != nil {
		t.Fatalf("queueing to %v: %d, %v", mapped, n, err)
	}
	if n, err := queueOrWrite(o, src, []byte("v6"), &net.UDPAddr{IP: net.IPv6loopback, Port: 9}); err == nil {
		t.Errorf("writing to ::1 from an IPv4 socket: %d bytes, no error", n)
	}
	dst.SetReadDeadline(time.Now().Add(5 * time.Second))
	p := make([]byte, 64)
	if n, _, err := dst.ReadFrom(p); err != nil || string(p[:n]) != "v4" {
		t.Errorf("got %q, %v; want the queued datagram, flushed before the plain write", p[:n], err)
	}
}

func hasIPv6Loopback() bool {
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		return false
	}
	pc.Close()
	return true
}

// Runs of datagrams to one destination leave as one message each (UDP
// GSO) and arrive as the same datagrams, in order; a run the kernel
// refuses is retried one datagram at a time, and only its own datagrams
// are lost.
func TestOutboxRuns(t *testing.T) {
	src := udpSocket(t, "udp4", "127.0.0.1:0")
	a, b := udpSocket(t, "udp4", "127.0.0.2:0"), udpSocket(t, "udp4", "127.0.0.3:0")
	var failed []int
	o := newOutbox(src, func(n int) { failed = append(failed, n) })
	addrA, addrB := a.LocalAddr().(*net.UDPAddr).AddrPort(), b.LocalAddr().(*net.UDPAddr).AddrPort()
	refused := netip.AddrPortFrom(addrA.Addr(), 0)
	type dgram struct {
		to   netip.AddrPort
		size int
	}
	var queued []dgram
	add := func(to netip.AddrPort, size, n int) {
		for range n {
			queued = append(queued, dgram{to, size})
		}
	}
	add(addrA, 100, 10) // a run, ended by the shorter one
	add(addrA, 50, 1)
	add(addrA, 100, 1) // alone: the next goes elsewhere
	add(addrB, 100, 3)
	add(refused, 40, 4)
	add(addrA, 1300, 2) // too long for a run
	add(addrA, 100, 1)
	for i, d := range queued {
		if !o.add(bytes.Repeat([]byte{byte(i)}, d.size), d.to) {
			t.Fatalf("datagram %d not queued", i)
		}
	}
	if err := o.flush(); err == nil {
		t.Error("flush with a refused run returned no error")
	}
	if len(failed) != 4 || failed[0] != 40 {
		t.Errorf("refused datagrams reported: %v, want four of 40 bytes", failed)
	}
	t.Logf("UDP GSO: %v", o.gso)
	// The three runs sent as one message each, then one per datagram from
	// the refused run on; without GSO one per datagram.
	want := uint64(len(queued) - 4)
	if o.gso {
		want = 6
	}
	if o.sent != want {
		t.Errorf("%d messages sent, want %d", o.sent, want)
	}
	p := make([]byte, 2048)
	for i, d := range queued {
		var conn *net.UDPConn
		switch d.to {
		case addrA:
			conn = a
		case addrB:
			conn = b
		default:
			continue
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := conn.ReadFrom(p)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if n != d.size || p[0] != byte(i) || p[n-1] != byte(i) || from.String() != src.LocalAddr().String() {
			t.Fatalf("datagram %d: %d bytes of %02x from %v, want %d of %02x from %v", i, n, p[0], from, d.size, i, src.LocalAddr())
		}
	}
}

// Writers on several goroutines share an outbox (the relays of one client
// socket write to it): every datagram leaves once, whoever fills or
// flushes the batch: the batch fills while others wait to add. Run with
// -race.
func TestOutboxConcurrentWriters(t *testing.T) {
	src := udpSocket(t, "udp4", "127.0.0.1:0")
	dst := udpSocket(t, "udp4", "127.0.0.2:0")
	o := newOutbox(src, func(int) { t.Error("a datagram was refused") })
	to := dst.LocalAddr().(*net.UDPAddr).AddrPort()
	// add never leaves a full batch for another writer to overrun.
	for i := range batchSize {
		o.add([]byte{0xff, byte(i)}, to)
		if o.b != nil && o.b.n >= batchSize {
			t.Fatalf("after add %d the batch holds %d datagrams, unsent", i+1, o.b.n)
		}
	}
	const writers, each = 4, 500
	received := make(chan int)
	go func() {
		n := 0
		p := make([]byte, 64)
		for {
			dst.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, _, err := dst.ReadFrom(p); err != nil {
				received <- n
				return
			}
			n++
		}
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if !o.add([]byte{byte(w), byte(i)}, to) {
					t.Error("datagram not queued")
					return
				}
			}
			o.flush()
		})
	}
	wg.Wait()
	got := <-received
	var info [unix.SK_MEMINFO_VARS]uint32
	drops := 0
	if raw, err := dst.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) {
			size := uint32(unsafe.Sizeof(info))
			unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
				uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
			drops = int(info[unix.SK_MEMINFO_DROPS])
		})
	}
	// The receiver's queue may overflow on a busy machine; the kernel
	// counts what it dropped.
	if got+drops != batchSize+writers*each {
		t.Errorf("%d datagrams received and %d dropped by the receiver, want %d sent", got, drops, batchSize+writers*each)
	}
}

// Several allocations on one client socket with bursts in flight: their
// relays' readers write to the socket's outbox at once, and the socket's
// reader writes to their outboxes. Bursts may overflow the sockets'
// buffers on the way (nothing paces them), so what is checked is that
// echoes come back and every allocation still relays afterwards. Run with
// -race.
func TestRelayBursts(t *testing.T) {
	s := startServer(t, baseConfig(), Options{UDPSockets: 1})
	peer := echoPeer(t)
	var relays []net.PacketConn
	for range 4 {
		relay, err := dialClient(t, s, "udp", "127.0.0.2", "phones", "pw").Allocate()
		if err != nil {
			t.Fatal(err)
		}
		defer relay.Close()
		roundTrips(t, relay, peer, 1) // permission and channel
		relays = append(relays, relay)
	}
	var wg sync.WaitGroup
	var echoed atomic.Int64
	for _, relay := range relays {
		wg.Go(func() {
			done := make(chan struct{})
			go func() {
				defer close(done)
				p := make([]byte, 1500)
				for {
					relay.SetReadDeadline(time.Now().Add(time.Second))
					if _, _, err := relay.ReadFrom(p); err != nil {
						return
					}
					echoed.Add(1)
				}
			}()
			payload := make([]byte, 160)
			for range 2 * batchSize {
				if _, err := relay.WriteTo(payload, peer); err != nil {
					t.Error(err)
					break
				}
			}
			<-done
		})
	}
	wg.Wait()
	if echoed.Load() == 0 {
		t.Errorf("no echo of the bursts came back: %+v", s.Stats())
	}
	for _, relay := range relays {
		roundTrips(t, relay, peer, 2)
	}
}

// A client on ::1: pion's answer to its Allocate (a 401 asking for
// credentials) goes through the outbox of an IPv6 listen socket, which
// encodes sockaddr_in6 for it. (pion's client resolves IPv4 only, so no
// allocation from ::1 here.)
func TestIPv6ClientAnswered(t *testing.T) {
	if !hasIPv6Loopback() {
		t.Skip("no ::1 on this machine")
	}
	cfg := baseConfig()
	cfg.Listen = "[::1]:0"
	s := startServer(t, cfg, Options{})
	conn := udpSocket(t, "udp6", "[::1]:0")
	for i := range 3 {
		req := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
			stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}, stun.Fingerprint)
		if _, err := conn.WriteTo(req.Raw, net.UDPAddrFromAddrPort(s.Addr())); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		p := make([]byte, 1500)
		n, from, err := conn.ReadFrom(p)
		if err != nil {
			t.Fatalf("Allocate %d from ::1 not answered: %v", i, err)
		}
		resp := &stun.Message{Raw: p[:n]}
		var code stun.ErrorCodeAttribute
		if err := resp.Decode(); err != nil || resp.TransactionID != req.TransactionID || code.GetFrom(resp) != nil || code.Code != stun.CodeUnauthorized {
			t.Fatalf("Allocate %d: answer %v (%v), want a 401 for its transaction", i, resp, err)
		}
		if from.String() != net.UDPAddrFromAddrPort(s.Addr()).String() {
			t.Errorf("answer from %v, want %v", from, s.Addr())
		}
	}
}
