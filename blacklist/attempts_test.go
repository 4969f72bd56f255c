package blacklist

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// TestAttemptsWhileBlocked: what a blocked client tries is counted on the
// entry that blocks it, from when the block began; a whitelisted client, a
// check that is not an attempt (Refuses) and a client that is only counted
// add nothing; a new block starts from zero.
func TestAttemptsWhileBlocked(t *testing.T) {
	cfg := configs.Blacklist{Threshold: 2, Expiration: time.Minute,
		Blacklist: prefixes("203.0.113.0/24"), Whitelist: prefixes("203.0.113.7")}
	h := newHarness(t, cfg)
	h.report("192.0.2.1", 2) // counted, not blocked
	if h.Blocked(addr("192.0.2.1")) {
		t.Fatal("blocked below the threshold")
	}
	if e := h.entry(t, "192.0.2.1/32"); e.AttemptsWhileBlocked != 0 || !e.BlockedSince.IsZero() {
		t.Fatalf("a counted client: %+v", e)
	}
	h.clock.Advance(time.Second)
	blockedAt := h.clock.Now()
	h.report("192.0.2.1", 1) // the third: blocked
	h.clock.Advance(time.Second)
	for range 5 {
		if !h.Blocked(addr("192.0.2.1")) {
			t.Fatal("not blocked")
		}
	}
	if !h.Refuses(addr("192.0.2.1")) {
		t.Fatal("Refuses: not blocked")
	}
	h.report("192.0.2.1", 2) // requests refused after the block (in flight)
	e := h.entry(t, "192.0.2.1/32")
	if e.AttemptsWhileBlocked != 7 || !e.BlockedSince.Equal(blockedAt) {
		t.Fatalf("blocked client: attempts %d since %v, want 7 since %v", e.AttemptsWhileBlocked, e.BlockedSince, blockedAt)
	}

	// A manual entry counts for every address inside it; its whitelisted
	// address is not refused and not counted.
	h.Blocked(addr("203.0.113.1"))
	h.Blocked(addr("203.0.113.200"))
	h.Blocked(addr("203.0.113.7"))
	h.Refuses(addr("203.0.113.1"))
	if e := h.entry(t, "203.0.113.0/24"); e.AttemptsWhileBlocked != 2 || e.BlockedSince.IsZero() {
		t.Fatalf("manual entry: %+v", e)
	}
	if st := h.Stats(); st.RejectedAtAccept != 7 {
		t.Fatalf("RejectedAtAccept = %d, want 7 (5 + 2)", st.RejectedAtAccept)
	}

	// The block ends: nothing is shown; the next block starts from zero.
	h.clock.Advance(time.Minute)
	if h.Blocked(addr("192.0.2.1")) {
		t.Fatal("still blocked after the expiration")
	}
	if e := h.entry(t, "192.0.2.1/32"); e.AttemptsWhileBlocked != 0 || !e.BlockedSince.IsZero() {
		t.Fatalf("released client: %+v", e)
	}
	h.report("192.0.2.1", 3)
	if e := h.entry(t, "192.0.2.1/32"); !e.Blocked || e.AttemptsWhileBlocked != 0 || !e.BlockedSince.Equal(h.clock.Now()) {
		t.Fatalf("blocked again: %+v", e)
	}

	// A reload keeps a configuration entry's start and attempts.
	since := h.entry(t, "203.0.113.0/24").BlockedSince
	h.clock.Advance(time.Second)
	h.Reconfigure(cfg)
	if e := h.entry(t, "203.0.113.0/24"); e.AttemptsWhileBlocked != 2 || !e.BlockedSince.Equal(since) {
		t.Fatalf("after a reload: %+v, want 2 attempts since %v", e, since)
	}
}

// TestAttemptsConcurrent counts from many accept paths at once while the
// administrator reads the list (run with -race): every true answer of
// Blocked is one attempt of the entry blocking the client, none is lost.
func TestAttemptsConcurrent(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 1, Expiration: time.Hour, Blacklist: prefixes("198.51.100.0/24")})
	clients := []netip.Addr{addr("192.0.2.1"), addr("192.0.2.2"), addr("2001:db8::1")}
	for _, ip := range clients {
		h.Report(Event{Client: ip, Type: "sip", Reason: "unknown service"})
		h.Report(Event{Client: ip, Type: "sip", Reason: "unknown service"})
	}
	const workers, rounds = 4, 5000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				if !h.Blocked(clients[(w+i)%len(clients)]) || !h.Blocked(addr("198.51.100.3")) {
					t.Error("not blocked")
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 200 {
			h.Entries(Filter{Blocked: true})
			h.Report(Event{Client: addr("192.0.2.9"), Type: "sip", Reason: "unknown service"})
		}
	})
	wg.Wait()
	var sum uint64
	for _, e := range h.Entries(Filter{Blocked: true}) {
		if e.Prefix != prefix("192.0.2.9/32") {
			sum += e.AttemptsWhileBlocked
		}
	}
	if e := h.entry(t, "192.0.2.9/32"); e.AttemptsWhileBlocked != 198 { // reported after its block
		t.Fatalf("reporter: %d attempts, want 198", e.AttemptsWhileBlocked)
	}
	if want := uint64(2 * workers * rounds); sum != want || h.Stats().RejectedAtAccept != want {
		t.Fatalf("attempts %d, rejected %d; want %d", sum, h.Stats().RejectedAtAccept, want)
	}
	if e := h.entry(t, "198.51.100.0/24"); e.AttemptsWhileBlocked != workers*rounds {
		t.Fatalf("manual entry: %d attempts, want %d", e.AttemptsWhileBlocked, workers*rounds)
	}
}

// TestBlockedCountsWithoutAllocating: counting an attempt is one atomic add
// on the accept path, for an automatic block, an aggregated one and a manual
// entry.
func TestBlockedCountsWithoutAllocating(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 1, Expiration: time.Hour, Blacklist: prefixes("198.51.100.0/24")})
	h.report("192.0.2.1", 2)
	for _, ip := range []netip.Addr{addr("192.0.2.1"), addr("198.51.100.3"), addr("192.0.2.77")} {
		if n := testing.AllocsPerRun(100, func() { h.Blocked(ip) }); n != 0 {
			t.Errorf("Blocked(%s): %v allocations", ip, n)
		}
	}
	if e := h.entry(t, "192.0.2.1/32"); e.AttemptsWhileBlocked != 101 { // AllocsPerRun runs once more to warm up
		t.Fatalf("attempts %d, want 101", e.AttemptsWhileBlocked)
	}
}

// BenchmarkBlockedCounting is the accept path of a flood from blocked
// clients: each call counts an attempt on the entry; from every core at
// once, on one automatic block and one manual entry. It reports
// allocations: there are none.
func BenchmarkBlockedCounting(b *testing.B) {
	h := newHarness(b, configs.Blacklist{Threshold: 1, Expiration: time.Hour, Blacklist: prefixes("198.51.100.0/24")})
	h.report("192.0.2.1", 2)
	ips := []netip.Addr{addr("192.0.2.1"), addr("198.51.100.3")}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			h.Blocked(ips[i&1])
			i++
		}
	})
}
