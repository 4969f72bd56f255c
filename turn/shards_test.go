package turn

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/gatehouse-pbx/gatehouse/proxy/proxytest"
)

// With several UDP sockets on turn.listen (SO_REUSEPORT) the kernel picks
// one per client address: every one of them must answer Bindings from
// turn.listen's address, relay, and drop a blocked client. Many client
// sockets make each server socket's share of them all but certain.
func TestUDPShards(t *testing.T) {
	guard := &proxytest.Guard{}
	guard.Block(netip.MustParseAddr("127.0.0.3"))
	s := startServer(t, baseConfig(), Options{Guard: guard, UDPSockets: 4})
	if got := 1 + len(s.shards); got != 4 {
		t.Fatalf("%d UDP sockets on the listen address, want 4", got)
	}

	// answered counts the Binding responses to clients sockets on local,
	// checking that each comes from turn.listen and maps the client.
	answered := func(local string, clients int) int {
		var mu sync.Mutex
		var wg sync.WaitGroup
		n := 0
		for range clients {
			conn, err := net.ListenPacket("udp4", local+":0")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			wg.Go(func() {
				req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
				if _, err := conn.WriteTo(req.Raw, net.UDPAddrFromAddrPort(s.Addr())); err != nil {
					t.Error(err)
					return
				}
				conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				buf := make([]byte, 1500)
				got, from, err := conn.ReadFrom(buf)
				if err != nil {
					return
				}
				resp := &stun.Message{Raw: buf[:got]}
				var mapped stun.XORMappedAddress
				if err := resp.Decode(); err != nil || mapped.GetFrom(resp) != nil {
					t.Errorf("bad Binding response %x: %v", buf[:got], err)
					return
				}
				if addrOf(from) != s.Addr().Addr() || from.(*net.UDPAddr).Port != int(s.Addr().Port()) {
					t.Errorf("Binding response from %v, want %v", from, s.Addr())
				}
				if mapped.String() != conn.LocalAddr().String() {
					t.Errorf("mapped %v, want %v", mapped, conn.LocalAddr())
				}
				mu.Lock()
				n++
				mu.Unlock()
			})
		}
		wg.Wait()
		return n
	}
	if n := answered("127.0.0.2", 64); n != 64 {
		t.Errorf("%d of 64 Binding requests answered", n)
	}
	if n := answered("127.0.0.3", 64); n != 0 {
		t.Errorf("%d Binding requests of a blocked client answered", n)
	}

	peer := echoPeer(t)
	for i := range 16 {
		relay, err := dialClient(t, s, "udp", "127.0.0.4", "phones", "pw").Allocate()
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		defer relay.Close()
		roundTrips(t, relay, peer, 3)
	}
	if got := s.Stats().Allocations; got != 16 {
		t.Errorf("%d allocations, want 16", got)
	}
}

// The datagram path through gatehouse's wrappers allocates nothing: a
// client's datagram read through packetConn and a peer's through relayConn,
// one at a time and in batches (recvmmsg), and a client's datagram written
// to a relay and flushed (sendmmsg).
func TestDatagramPathAllocs(t *testing.T) {
	s := startServer(t, baseConfig(), Options{Guard: &proxytest.Guard{}})
	for name, wrap := range map[string]func(net.PacketConn) net.PacketConn{
		"client socket": func(pc net.PacketConn) net.PacketConn {
			return &packetConn{PacketConn: pc, s: s, done: func() {}, fast: pc.(udpReader)}
		},
		"relay socket": func(pc net.PacketConn) net.PacketConn { return &relayConn{PacketConn: pc, s: s, fast: pc.(udpReader)} },
		"client socket, batched": func(pc net.PacketConn) net.PacketConn {
			c := newPacketConn(s, pc)
			c.done = func() {}
			if c.in == nil {
				t.Skip("no batched reads here")
			}
			return c
		},
		"relay socket, batched": func(pc net.PacketConn) net.PacketConn {
			owner := newPacketConn(s, pc)
			c := &relayConn{PacketConn: pc, s: s, fast: pc.(udpReader), owner: owner, in: newBatchReader(pc, owner.flush)}
			if c.in == nil {
				t.Skip("no batched reads here")
			}
			return c
		},
	} {
		t.Run(name, func(t *testing.T) {
			pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			from, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer from.Close()
			c := wrap(pc)
			// ChannelData 0x4000 carrying 160 bytes, what media looks like.
			frame := append([]byte{0x40, 0x00, 0x00, 160}, make([]byte, 160)...)
			buf := make([]byte, 1600)
			to := pc.LocalAddr()
			allocs := testing.AllocsPerRun(100, func() {
				if _, err := from.WriteTo(frame, to); err != nil {
					t.Fatal(err)
				}
				if n, _, err := c.ReadFrom(buf); err != nil || n != len(frame) {
					t.Fatalf("read %d bytes, %v", n, err)
				}
			})
			if allocs != 0 {
				t.Errorf("%.1f allocations per datagram, want 0", allocs)
			}
		})
	}
	t.Run("relay write, batched", func(t *testing.T) {
		client, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		sock, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer sock.Close()
		peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		owner := newPacketConn(s, client)
		relay := &relayConn{PacketConn: sock, s: s, owner: owner, out: newOutbox(sock, func(int) {})}
		if owner.out == nil || relay.out == nil {
			t.Skip("no batched writes here")
		}
		payload, buf := make([]byte, 160), make([]byte, 1600)
		to := peer.LocalAddr()
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := relay.WriteTo(payload, to); err != nil {
				t.Fatal(err)
			}
			owner.flush() // what pion's reader of the client socket does before it waits
			if n, _, err := peer.(*net.UDPConn).ReadFromUDPAddrPort(buf); err != nil || n != len(payload) {
				t.Fatalf("peer read %d bytes, %v", n, err)
			}
		})
		if allocs != 0 {
			t.Errorf("%.1f allocations per datagram, want 0", allocs)
		}
	})
}
