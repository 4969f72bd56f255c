package turn

import (
	"net"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/proxy/proxytest"
)

// BenchmarkRelayRoundTrip is one 160-byte datagram (20ms of G.711) from a
// client through its relay to an echo peer and back: two relayed datagrams
// and the admit check on each client-side one. bench/turn.sh compares
// throughput with coturn.
func BenchmarkRelayRoundTrip(b *testing.B) {
	s := startServer(b, baseConfig(), Options{Guard: &proxytest.Guard{}})
	peer := echoPeer(b)
	relay, err := dialClient(b, s, "udp", "127.0.0.1", "phones", "pw").Allocate()
	if err != nil {
		b.Fatal(err)
	}
	defer relay.Close()
	roundTrips(b, relay, peer, 1) // permission and channel binding

	payload, buf := make([]byte, 160), make([]byte, 1500)
	relay.SetReadDeadline(time.Now().Add(time.Minute))
	b.ResetTimer()
	for range b.N {
		if _, err := relay.WriteTo(payload, peer); err != nil {
			b.Fatal(err)
		}
		if _, _, err := relay.ReadFrom(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(2*float64(b.N)/b.Elapsed().Seconds(), "relayed/s")
}

// BenchmarkClientDatagram is one client datagram (160 bytes of ChannelData)
// read through packetConn: the admit check pion's read loop sees before
// every datagram. Run with -benchmem: 0 allocs/op.
func BenchmarkClientDatagram(b *testing.B) {
	s := startServer(b, baseConfig(), Options{Guard: &proxytest.Guard{}})
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	from, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer from.Close()
	c := newPacketConn(s, pc)
	s.wg.Add(1) // what New does for each socket pion reads
	defer c.done()
	frame := append([]byte{0x40, 0x00, 0x00, 160}, make([]byte, 160)...)
	buf := make([]byte, 1600)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := from.WriteTo(frame, pc.LocalAddr()); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.ReadFrom(buf); err != nil {
			b.Fatal(err)
		}
	}
}
