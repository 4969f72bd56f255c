package blacklist

import (
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// relay is a Shared that hands every change straight to the other Lists'
// Apply methods, as the cluster package's bucket watchers do, without NATS
// in between: it tests what the List does with the seam.
type relay struct {
	node string
	to   []*List
}

func (r *relay) Counted(key netip.Prefix, hits []time.Time) {
	for _, l := range r.to {
		l.ApplyCounts(r.node, key, hits)
	}
}

func (r *relay) Blocked(key netip.Prefix, b Block) {
	for _, l := range r.to {
		l.ApplyBlock(key, b)
	}
}

func (r *relay) Released(key netip.Prefix) {
	for _, l := range r.to {
		l.ApplyRelease(key, r.node)
	}
}

func (r *relay) Listed(white bool, p netip.Prefix, e *Listing) {
	for _, l := range r.to {
		l.ApplyListing(white, p, e)
	}
}

// pair makes two Lists on one clock that share through relays.
func pair(t *testing.T, cfg configs.Blacklist) (a, b *harness) {
	a, b = newHarness(t, cfg), newHarness(t, cfg)
	b.clock = a.clock
	b.List.clock = a.clock.Now
	b.List.epoch = a.List.epoch
	a.Share(&relay{node: "a", to: []*List{b.List}}, "a")
	b.Share(&relay{node: "b", to: []*List{a.List}}, "b")
	return a, b
}

func TestSharedCountsAddUp(t *testing.T) {
	cfg := configs.Blacklist{Threshold: 5}
	a, b := pair(t, cfg)
	var mu sync.Mutex
	var closed []netip.Prefix
	b.OnBlock(func(p netip.Prefix) { mu.Lock(); closed = append(closed, p); mu.Unlock() })

	a.report("192.0.2.1", 3)
	b.report("192.0.2.1", 2)
	if a.Blocked(addr("192.0.2.1")) || b.Blocked(addr("192.0.2.1")) {
		t.Fatal("blocked at 5 requests with a threshold of 5")
	}
	if got := a.entry(t, "192.0.2.1/32").Count; got != 5 {
		t.Errorf("node a counts %d, want 5 (3 of its own, 2 of b's)", got)
	}
	a.report("192.0.2.1", 1) // the 6th, on a
	if !a.Blocked(addr("192.0.2.1")) || !b.Blocked(addr("192.0.2.1")) {
		t.Fatal("6 requests over two nodes, threshold 5: not blocked on both")
	}
	if e := b.entry(t, "192.0.2.1/32"); e.Node != "a" || e.Expires.IsZero() {
		t.Errorf("b's entry: node %q, expires %v; want the block a made", e.Node, e.Expires)
	}
	mu.Lock()
	if !slices.Equal(closed, []netip.Prefix{prefix("192.0.2.1/32")}) {
		t.Errorf("OnBlock on b heard %v", closed)
	}
	mu.Unlock()

	// Alone (no Share), the same requests block nobody.
	c, d := newHarness(t, cfg), newHarness(t, cfg)
	c.report("192.0.2.1", 3)
	d.report("192.0.2.1", 3)
	if c.Blocked(addr("192.0.2.1")) || d.Blocked(addr("192.0.2.1")) {
		t.Fatal("unshared lists blocked at 3 requests each")
	}

	// Counts older than the Window do not add up.
	a.report("192.0.2.9", 5)
	a.clock.Advance(Window)
	b.report("192.0.2.9", 1)
	if b.Blocked(addr("192.0.2.9")) {
		t.Error("a's requests of a minute ago counted")
	}

	// The block expires on both nodes at its end.
	a.clock.Advance(DefaultExpiration)
	if a.Blocked(addr("192.0.2.1")) || b.Blocked(addr("192.0.2.1")) {
		t.Error("block outlived its expiry")
	}
}

func TestSharedManualAndWhitelist(t *testing.T) {
	a, b := pair(t, configs.Blacklist{Threshold: 5, Whitelist: prefixes("198.51.100.0/24")})
	if err := a.AddManual(prefix("203.0.113.0/24"), "scanner"); err != nil {
		t.Fatal(err)
	}
	if !b.Blocked(addr("203.0.113.7")) {
		t.Fatal("a's manual entry does not hold on b")
	}
	if e := b.entry(t, "203.0.113.0/24"); !e.Manual || e.Note != "scanner" || e.FromConfig {
		t.Errorf("b's copy: %+v", e)
	}
	if err := b.RemoveManual(prefix("203.0.113.0/24")); err != nil {
		t.Fatal(err)
	}
	if a.Blocked(addr("203.0.113.7")) {
		t.Fatal("removed on b, still blocked on a")
	}

	// A configured whitelist entry wins over a block another node made.
	b.ApplyBlock(prefix("198.51.100.5/32"), Block{Until: a.clock.Now().Add(time.Minute), Node: "x"})
	if b.Blocked(addr("198.51.100.5")) {
		t.Error("a shared block overrode the whitelist")
	}

	// A run-time whitelist entry on b releases a's block.
	a.report("192.0.2.1", 6)
	if !b.Blocked(addr("192.0.2.1")) {
		t.Fatal("not blocked on b")
	}
	if err := b.AddWhitelist(prefix("192.0.2.0/24"), "office"); err != nil {
		t.Fatal(err)
	}
	if a.Blocked(addr("192.0.2.1")) || b.Blocked(addr("192.0.2.1")) {
		t.Error("whitelisted on b, still blocked")
	}
	if err := a.RemoveWhitelist(prefix("192.0.2.0/24")); err != nil {
		t.Fatal(err)
	}
	if len(b.Whitelist()) != 1 {
		t.Errorf("b's whitelist after a removed the entry: %v", b.Whitelist())
	}

	// An administrator's Remove on one node releases everywhere.
	a.report("192.0.2.2", 6)
	if err := b.Remove(addr("192.0.2.2")); err != nil {
		t.Fatal(err)
	}
	if a.Blocked(addr("192.0.2.2")) || a.hasEntry("192.0.2.2/32") {
		t.Error("removed on b, still known on a")
	}
}

func TestApplyIgnoresBadAndOld(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 5})
	h.ApplyBlock(netip.Prefix{}, Block{Until: h.clock.Now().Add(time.Hour)})
	h.ApplyBlock(prefix("192.0.2.1/32"), Block{Until: h.clock.Now().Add(-time.Second)})
	h.ApplyCounts("x", prefix("192.0.2.2/32"), []time.Time{h.clock.Now().Add(-2 * Window)})
	h.ApplyListing(false, netip.Prefix{}, &Listing{})
	h.ApplyRelease(prefix("192.0.2.3/32"), "x")
	if n := len(h.Entries(Filter{})); n != 0 {
		t.Errorf("%d entries from ended, stale or invalid shared state", n)
	}
	// Far more hits than the threshold from one node are kept to threshold+1.
	var many []time.Time
	for range 100 {
		many = append(many, h.clock.Now())
	}
	h.ApplyCounts("x", prefix("192.0.2.4/32"), many)
	if !h.Blocked(addr("192.0.2.4")) {
		t.Error("100 requests from another node did not block")
	}
}

// A block of a whole range, made by a node whose list was full and
// aggregated, is enforced for every client of the range by a node that
// never aggregated itself.
func TestApplyRangeBlock(t *testing.T) {
	_, b := pair(t, configs.Blacklist{Threshold: 3})
	b.ApplyBlock(netip.MustParsePrefix("203.0.113.0/24"), Block{Until: b.clock.Now().Add(time.Hour), Count: 4, Node: "a"})
	for _, ip := range []string{"203.0.113.1", "203.0.113.200"} {
		if !b.Blocked(netip.MustParseAddr(ip)) {
			t.Errorf("%s not blocked by the range block from node a", ip)
		}
	}
	if b.Blocked(netip.MustParseAddr("203.0.114.1")) {
		t.Error("an address outside the range is blocked")
	}
}

// TestApplyRangeBlockAtCapFoldsIntoOneRecord: a range's block or count from
// another node, on a full list whose room is made by folding that very
// range, lands on the fold's record. trackLocked used to put a second
// record under the range's key over the fold's, which stayed in the
// counters or blocks unreachable: when it ended it took the index entry of
// the range's block with it.
func TestApplyRangeBlockAtCapFoldsIntoOneRecord(t *testing.T) {
	for _, apply := range []string{"block", "counts"} {
		t.Run(apply, func(t *testing.T) {
			_, b := pair(t, configs.Blacklist{Threshold: 3, Expiration: time.Hour, MaxTracked: 3})
			b.report("203.0.113.1", 3) // one short of a block
			b.report("203.0.113.2", 1)
			b.report("198.51.100.1", 1) // full; 203.0.113.1 is the oldest counter, its range holds two
			rng := netip.MustParsePrefix("203.0.113.0/24")
			now := b.clock.Now()
			if apply == "block" {
				b.ApplyBlock(rng, Block{Until: now.Add(2 * time.Hour), Count: 4, Node: "a"})
			} else {
				b.ApplyCounts("a", rng, []time.Time{now})
			}
			if err := invariants(b.List); err != nil {
				t.Fatal(err)
			}
			if st := b.Stats(); st.Tracked != 2 {
				t.Errorf("%d records, want the range and 198.51.100.1", st.Tracked)
			}
			if !b.Blocked(netip.MustParseAddr("203.0.113.77")) {
				t.Error("the range is not blocked")
			}
		})
	}
}

// TestFoldBlockIsShared: a full node that folds a range around a block
// blocks the range, and so do the others. The client whose request made
// the fold is counted on the blocked range from then on, never blocked by
// itself: before the range's block was shared, the other node let it in
// (and counted it from zero).
func TestFoldBlockIsShared(t *testing.T) {
	a, b := pair(t, configs.Blacklist{Threshold: 3, Expiration: time.Hour, MaxTracked: 3})
	a.report("203.0.113.1", 4) // blocked on a and b
	a.report("203.0.113.2", 1)
	a.report("198.51.100.1", 1) // both lists full
	a.report("203.0.113.9", 4)  // a folds 203.0.113.0/24 at the first
	if e := a.entry(t, "203.0.113.0/24"); !e.Blocked || !e.Aggregated || e.Node != "a" {
		t.Fatalf("on a: %+v", e)
	}
	if !b.Blocked(netip.MustParseAddr("203.0.113.9")) {
		t.Fatal("the range a folded and blocked is not blocked on b")
	}
	if e := b.entry(t, "203.0.113.0/24"); !e.Blocked { // b, full too, may have folded it as well
		t.Errorf("on b: %+v", e)
	}
}
