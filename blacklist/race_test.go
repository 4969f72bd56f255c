package blacklist

import (
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// TestConcurrentUse runs reporters, accept-path checks, admin edits, config
// reloads, the background goroutine and a moving clock at once (meant for
// -race), then checks the bookkeeping and that every true answer of Blocked
// was counted exactly once.
func TestConcurrentUse(t *testing.T) {
	clock := newClock()
	cfg := configs.Blacklist{Threshold: 3, Expiration: 5 * time.Second, MaxTracked: 64,
		State: filepath.Join(t.TempDir(), "state.json"), Whitelist: prefixes("192.0.2.0/30")}
	l, err := New(cfg, Options{Clock: clock.Now, Logger: slog.New(slog.DiscardHandler)})
	must(t, err)
	l.Start()

	const workers, rounds = 4, 2000
	client := func(r *rand.Rand) netip.Addr {
		if r.IntN(4) == 0 {
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 7: byte(r.IntN(8)), 15: byte(r.IntN(256))})
		}
		return netip.AddrFrom4([4]byte{192, 0, 2, byte(r.IntN(100))}) // 100 clients, cap 64: evictions
	}
	var trues atomic.Uint64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { // reporter
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range rounds {
				l.Report(Event{Client: client(r), Type: "sip", Service: "example.com", Reason: "unknown service"})
			}
		})
		wg.Go(func() { // accept path
			r := rand.New(rand.NewPCG(uint64(w), 2))
			for range rounds {
				if l.Blocked(client(r)) {
					trues.Add(1)
				}
			}
		})
	}
	wg.Go(func() { // administrator
		r := rand.New(rand.NewPCG(9, 3))
		for i := range rounds / 10 {
			ip := client(r)
			p := netip.PrefixFrom(ip, ip.BitLen())
			switch i % 8 {
			case 0:
				l.AddManual(p, "x")
			case 1:
				l.RemoveManual(p)
			case 2:
				l.AddWhitelist(p, "y")
			case 3:
				l.RemoveWhitelist(p)
			case 4:
				l.Promote(ip)
			case 5:
				l.Remove(ip)
			case 6:
				l.Entries(Filter{Blocked: true})
				l.Whitelist()
				l.Stats()
			case 7:
				c := cfg
				c.Threshold = 2 + i%3
				c.IPv6Prefix = []int{64, 56, 64}[i%3]
				l.Reconfigure(c)
			}
		}
	})
	var broken atomic.Value
	wg.Go(func() { // time passes; the bookkeeping holds at every step
		for range rounds / 10 {
			clock.Advance(100 * time.Millisecond)
			l.tick()
			if err := invariants(l); err != nil {
				broken.CompareAndSwap(nil, err)
			}
		}
	})
	wg.Wait()
	if err, _ := broken.Load().(error); err != nil {
		t.Fatal(err)
	}
	must(t, l.Close())
	if err := invariants(l); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.RejectedAtAccept != trues.Load() {
		t.Fatalf("RejectedAtAccept = %d, Blocked answered true %d times", st.RejectedAtAccept, trues.Load())
	}
	if st.Blocks == 0 || st.Evicted+st.Aggregated == 0 {
		t.Fatalf("stats = %+v: the test did not exercise blocking and eviction", st)
	}
	for _, e := range l.Entries(Filter{}) {
		if e.Blocked && e.Whitelisted {
			t.Fatalf("entry both blocked and whitelisted: %+v", e)
		}
	}
	t.Logf("stats: %+v", st)
}
