package proxy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// BenchmarkConns20000 is the admin UI's snapshot of 20,000 live
// connections (each one's Status under its own lock, sorted by ID).
func BenchmarkConns20000(b *testing.B) {
	s := &Server{conns: map[*Conn]struct{}{}}
	typ, _ := configs.LookupType("sips")
	for i := range 20000 {
		c := &Conn{Info: ConnInfo{Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 5061), Type: typ},
			id: uint64(i + 1), started: time.Now(), service: "example.com", target: "172.16.0.10:5061", identity: "sip:alice@example.com"}
		s.conns[c] = struct{}{}
	}
	for b.Loop() {
		if len(s.Conns()) != 20000 {
			b.Fatal("lost connections")
		}
	}
}
