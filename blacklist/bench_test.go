package blacklist

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// tracked100k returns a List tracking 100,000 clients, a quarter of them
// blocked, with a whitelist and manual entries of a few prefix lengths as a
// real configuration has, and the addresses it tracks.
func tracked100k(tb testing.TB) (*List, []netip.Addr) {
	tb.Helper()
	clock := newClock()
	l, err := New(configs.Blacklist{
		Threshold:  1,
		Expiration: time.Hour,
		MaxTracked: 200000,
		Whitelist:  prefixes("198.51.100.7", "198.51.100.0/28", "2001:db8:ffff::/48"),
		Blacklist:  prefixes("203.0.113.66", "203.0.113.128/25", "2001:db8:bad::/48"),
	}, Options{Clock: clock.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	ips := make([]netip.Addr, 0, 100000)
	for i := range 100000 {
		var ip netip.Addr
		if i%5 == 0 {
			ip = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 4: byte(i >> 16), 5: byte(i >> 8), 6: byte(i), 15: 1})
		} else {
			ip = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		}
		ips = append(ips, ip)
		n := 1
		if i%4 == 0 {
			n = 2 // over the threshold
		}
		for range n {
			l.Report(Event{Client: ip, Type: "sip", Service: "example.com", Reason: "unknown service"})
		}
	}
	if st := l.Stats(); st.Tracked != 100000 || st.Blocks != 25000 {
		tb.Fatalf("setup: %+v", st)
	}
	return l, ips
}

// BenchmarkBlockedTracked100k is the accept-path check with 100k tracked
// clients: blocked, counted-only and whitelisted, IPv4 and IPv6.
func BenchmarkBlockedTracked100k(b *testing.B) {
	l, ips := tracked100k(b)
	ips = append(ips, netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("192.0.2.1"))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Blocked(ips[i%len(ips)])
		i += 7919 // a prime stride: no cache-friendly sequential walk
	}
}

// BenchmarkBlockedParallel is the accept path from every core at once.
func BenchmarkBlockedParallel(b *testing.B) {
	l, ips := tracked100k(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Blocked(ips[i%len(ips)])
			i += 7919
		}
	})
}

// BenchmarkReport is one suspicious request from a client among 100k
// tracked ones.
func BenchmarkReport(b *testing.B) {
	l, ips := tracked100k(b)
	ev := Event{Type: "https", Service: "hq.example.com", Reason: "url not allowed"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ev.Client = ips[i%len(ips)]
		l.Report(ev)
		i += 7919
	}
}

// BenchmarkReportFlood is a flood of spoofed addresses, each new, at the
// max_tracked cap: every report evicts a counter.
func BenchmarkReportFlood(b *testing.B) {
	l, err := New(configs.Blacklist{MaxTracked: 100000}, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ev := Event{Type: "sip", Reason: "unknown service"}
	b.ReportAllocs()
	var n uint32
	for b.Loop() {
		n++
		ev.Client = netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
		l.Report(ev)
	}
}

func TestBlockedDoesNotAllocate(t *testing.T) {
	l, _ := tracked100k(t)
	for _, ip := range []string{
		"10.0.0.4",           // blocked
		"10.0.0.1",           // counted only
		"192.0.2.1",          // unknown
		"203.0.113.200",      // manual /25
		"198.51.100.7",       // whitelisted
		"2001:db8:0:0:4::1",  // IPv6 blocked? whichever: the path is the same
		"2001:db8:bad:1::1",  // IPv6 manual
		"2001:db8:ffff:1::1", // IPv6 whitelisted
		"::ffff:10.0.0.4",    // IPv4-mapped
		"fe80::1%eth0",       // with a zone
	} {
		ip := netip.MustParseAddr(ip)
		if n := testing.AllocsPerRun(1000, func() { l.Blocked(ip) }); n != 0 {
			t.Errorf("Blocked(%s): %v allocations", ip, n)
		}
	}
	if !l.Blocked(netip.MustParseAddr("10.0.0.4")) || l.Blocked(netip.MustParseAddr("10.0.0.1")) {
		t.Fatal("setup: wrong blocks")
	}
}
