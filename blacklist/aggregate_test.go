package blacklist

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// TestEvictionFloodNeverReleasesABlock: 5,000 addresses over 20 ranges
// (IPv4 /24s and IPv6 /48s) against max_tracked 50 never free the blocked
// client, memory stays at the cap, and every range that flooded ends blocked.
func TestEvictionFloodNeverReleasesABlock(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 5, Expiration: time.Hour, MaxTracked: 50})
	h.report("192.0.2.1", 6)
	for i := range 5000 {
		r := i % 20
		ip := fmt.Sprintf("10.%d.0.%d", r, i/20%256)
		if r >= 10 {
			ip = fmt.Sprintf("2001:db8:%x:%x::1", r, i/20)
		}
		h.report(ip, 1)
		if !h.Blocked(addr("192.0.2.1")) {
			t.Fatalf("block released after %d flooding requests", i+1)
		}
		if st := h.Stats(); st.Tracked > 50 {
			t.Fatalf("%d records tracked, max_tracked 50", st.Tracked)
		}
	}
	for r := range 20 {
		ip := fmt.Sprintf("10.%d.0.99", r)
		if r >= 10 {
			ip = fmt.Sprintf("2001:db8:%x:ffff::7", r)
		}
		if !h.Blocked(addr(ip)) {
			t.Errorf("the flooding range of %s is not blocked", ip)
		}
	}
	if h.Blocked(addr("192.0.2.2")) || h.Blocked(addr("2001:db8:99::1")) {
		t.Error("a range that did not flood is blocked")
	}
}

// TestOnBlockHearsEveryNewBlock: automatic, aggregated and manual blocks,
// and a removed whitelist entry, are announced; a release is not.
func TestOnBlockHearsEveryNewBlock(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 1, Expiration: time.Hour, MaxTracked: 2})
	var got []string
	h.OnBlock(func(p netip.Prefix) { got = append(got, p.String()) })
	h.report("192.0.2.1", 2)
	h.report("2001:db8::1", 2)
	must(t, h.AddManual(netip.MustParsePrefix("198.51.100.0/24"), "x"))
	must(t, h.AddWhitelist(netip.MustParsePrefix("203.0.113.0/24"), "y"))
	must(t, h.RemoveWhitelist(netip.MustParsePrefix("203.0.113.0/24")))
	h.report("192.0.2.2", 1) // full: folds 192.0.2.1 into its /24, blocked already
	must(t, h.Remove(addr("192.0.2.1")))
	want := []string{"192.0.2.1/32", "2001:db8::/64", "198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24"}
	if !slices.Equal(got, want) {
		t.Fatalf("OnBlock heard %q, want %q", got, want)
	}
	if h.Key(addr("2001:db8::5")) != netip.MustParsePrefix("2001:db8::/64") || h.Key(addr("::ffff:192.0.2.9")) != netip.MustParsePrefix("192.0.2.9/32") {
		t.Fatal("Key")
	}
}

// TestAggregateKeptAcrossRestart: an aggregated block is written to the
// state file as such and loaded back as a block of the range.
func TestAggregateKeptAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	cfg := configs.Blacklist{Threshold: 1, Expiration: time.Hour, MaxTracked: 2, State: path}
	h := newHarness(t, cfg)
	h.report("192.0.2.1", 2)
	h.report("198.51.100.1", 1)
	h.report("192.0.2.2", 1)
	must(t, h.Close())
	h2 := newHarness(t, cfg)
	if e := h2.entry(t, "192.0.2.0/24"); !e.Aggregated || !e.Blocked {
		t.Fatalf("after a restart: %+v", e)
	}
	if !h2.Blocked(addr("192.0.2.200")) {
		t.Fatal("the range is not blocked after a restart")
	}
}

// TestRange: the network a client folds into, which the gate also shares
// connections by; never narrower than the client key.
func TestRange(t *testing.T) {
	for _, tc := range []struct {
		bits     int
		ip, want string
	}{
		{64, "192.0.2.77", "192.0.2.0/24"},
		{64, "::ffff:192.0.2.77", "192.0.2.0/24"},
		{64, "2001:db8:1:2::3", "2001:db8:1::/48"},
		{56, "2001:db8:1:2::3", "2001:db8:1::/48"},
		{48, "2001:db8:1:2::3", "2001:db8:1::/48"},
		{32, "2001:db8:1:2::3", "2001:db8::/32"},
	} {
		h := newHarness(t, configs.Blacklist{Threshold: 5, IPv6Prefix: tc.bits})
		if got := h.Range(addr(tc.ip)); got != netip.MustParsePrefix(tc.want) {
			t.Errorf("ipv6_prefix %d: Range(%s) = %v, want %s", tc.bits, tc.ip, got, tc.want)
		}
	}
}
