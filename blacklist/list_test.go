package blacklist

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

func TestThresholdReachedVersusExceeded(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 3, Expiration: 10 * time.Minute})
	h.report("203.0.113.9", 3)
	if h.Blocked(addr("203.0.113.9")) {
		t.Fatal("blocked at exactly the threshold (3 of 3)")
	}
	if got := h.logs.lines("client blocked"); len(got) != 0 {
		t.Fatalf("block logged at the threshold: %q", got)
	}
	h.report("203.0.113.9", 1)
	if !h.Blocked(addr("203.0.113.9")) {
		t.Fatal("not blocked at threshold+1")
	}
	if h.Blocked(addr("203.0.113.10")) {
		t.Fatal("a neighbour is blocked")
	}
	e := h.entry(t, "203.0.113.9/32")
	if !e.Blocked || e.Manual || e.Count != 4 || e.Total != 4 || !e.Expires.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("entry = %+v", e)
	}
	got := h.logs.lines("client blocked")
	if len(got) != 1 || !strings.Contains(got[0], "client=203.0.113.9 ") ||
		!strings.Contains(got[0], `reason="sip example.com: unknown service"`) ||
		!strings.Contains(got[0], "until=2026-03-01T12:10:00") {
		t.Fatalf("block log = %q", got)
	}
	st := h.Stats()
	if st.Blocks != 1 || st.ActiveBlocked != 1 || st.Tracked != 1 || st.RejectedAtAccept != 1 {
		t.Fatalf("stats = %+v (one Blocked call answered true)", st)
	}
}

func TestWindowEdges(t *testing.T) {
	// Threshold 2: the third request within 60 s blocks. Requests are sent
	// at the given offsets from t0; the window ends exclusive at t+60s.
	tests := []struct {
		name    string
		offsets []time.Duration
		blocked bool
	}{
		{"three at once", []time.Duration{0, 0, 0}, true},
		{"third 1ns before the first leaves", []time.Duration{0, 30 * time.Second, 60*time.Second - 1}, true},
		{"third as the first leaves", []time.Duration{0, 30 * time.Second, 60 * time.Second}, false},
		{"sliding, not calendar minutes", []time.Duration{50 * time.Second, 70 * time.Second, 100 * time.Second}, true},
		{"spread over two windows", []time.Duration{0, 59 * time.Second, 119 * time.Second}, false},
		{"fourth after the first left", []time.Duration{0, 30 * time.Second, 60 * time.Second, 61 * time.Second}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, configs.Blacklist{Threshold: 2})
			for _, off := range tt.offsets {
				h.clock.Set(t0.Add(off))
				h.report("192.0.2.1", 1)
			}
			if got := h.Blocked(addr("192.0.2.1")); got != tt.blocked {
				t.Fatalf("Blocked = %v, want %v", got, tt.blocked)
			}
		})
	}
}

func TestExpiryAndRelease(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 2, Expiration: 30 * time.Second})
	h.report("192.0.2.1", 3)
	h.clock.Advance(30*time.Second - 1)
	if !h.Blocked(addr("192.0.2.1")) {
		t.Fatal("released 1ns early")
	}
	h.clock.Advance(1)
	if h.Blocked(addr("192.0.2.1")) {
		t.Fatal("still blocked at expiry")
	}
	h.tick()
	if got := h.logs.lines("client released", "client=192.0.2.1 ", "reason=expired"); len(got) != 1 {
		t.Fatalf("release log = %q", h.logs.String())
	}
	// The three requests are still within 60 s, but a released phone gets its
	// full threshold back: two more do not block it, the third does.
	h.report("192.0.2.1", 2)
	if h.Blocked(addr("192.0.2.1")) {
		t.Fatal("blocked again by requests made before the block ended")
	}
	h.report("192.0.2.1", 1)
	if !h.Blocked(addr("192.0.2.1")) {
		t.Fatal("not blocked again after threshold+1 new requests")
	}
	if e := h.entry(t, "192.0.2.1/32"); e.Total != 6 || !e.FirstSeen.Equal(t0) {
		t.Fatalf("entry = %+v, want the history kept across the block", e)
	}
}

func TestBlockNotExtendedByAttempts(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 1, Expiration: 10 * time.Minute})
	h.report("192.0.2.1", 2)
	for range 9 {
		h.clock.Advance(time.Minute)
		h.report("192.0.2.1", 5)
	}
	e := h.entry(t, "192.0.2.1/32")
	if !e.Expires.Equal(t0.Add(10*time.Minute)) || e.Total != 47 || !e.LastSeen.Equal(t0.Add(9*time.Minute)) {
		t.Fatalf("entry = %+v", e)
	}
	h.clock.Set(t0.Add(10 * time.Minute))
	if h.Blocked(addr("192.0.2.1")) {
		t.Fatal("the block was extended")
	}
	if st := h.Stats(); st.Blocks != 1 {
		t.Fatalf("Blocks = %d, want 1", st.Blocks)
	}
}

func TestWhitelistNeverBlocks(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 3, Whitelist: prefixes("198.51.100.7", "198.51.100.0/28", "2001:db8:aa::/48")})
	h.report("198.51.100.9", 100)
	h.report("2001:db8:aa:1::5", 100)
	for _, ip := range []string{"198.51.100.9", "2001:db8:aa:1::5"} {
		if h.Blocked(addr(ip)) {
			t.Errorf("whitelisted %s is blocked", ip)
		}
	}
	e := h.entry(t, "198.51.100.9/32")
	if e.Blocked || !e.Whitelisted || e.Total != 100 || e.Count != 4 {
		t.Fatalf("entry = %+v, want counted for display (Count saturating at threshold+1)", e)
	}
	if st := h.Stats(); st.Blocks != 0 || st.Whitelisted != 3 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestWhitelistOverridesExistingBlocks(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 1})
	h.report("203.0.113.9", 2)
	if err := h.AddManual(prefix("203.0.113.50/32"), "by hand"); err != nil {
		t.Fatal(err)
	}
	if !h.Blocked(addr("203.0.113.9")) || !h.Blocked(addr("203.0.113.50")) {
		t.Fatal("setup: not blocked")
	}
	if err := h.AddWhitelist(prefix("203.0.113.0/24"), "branch office"); err != nil {
		t.Fatal(err)
	}
	for _, ip := range []string{"203.0.113.9", "203.0.113.50"} {
		if h.Blocked(addr(ip)) {
			t.Errorf("%s still blocked under a whitelist entry", ip)
		}
	}
	if got := h.logs.lines("client released", "client=203.0.113.9 ", "whitelisted by 203.0.113.0/24"); len(got) != 1 {
		t.Fatalf("release log = %q", h.logs.String())
	}
	if e := h.entry(t, "203.0.113.50/32"); !e.Manual || !e.Whitelisted || e.Blocked {
		t.Fatalf("manual entry under the whitelist = %+v", e)
	}
	if e := h.entry(t, "203.0.113.9/32"); e.Blocked || !e.Expires.IsZero() {
		t.Fatalf("released entry = %+v", e)
	}
	// Removing the whitelist entry brings the manual entry back, not the
	// released automatic block.
	if err := h.RemoveWhitelist(prefix("203.0.113.0/24")); err != nil {
		t.Fatal(err)
	}
	if !h.Blocked(addr("203.0.113.50")) || h.Blocked(addr("203.0.113.9")) {
		t.Fatal("after RemoveWhitelist: want only the manual entry blocked")
	}
}

func TestReconfigureWhitelistReleasesBlock(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 1})
	h.report("203.0.113.9", 2)
	h.Reconfigure(configs.Blacklist{Threshold: 1, Whitelist: prefixes("203.0.113.9")})
	if h.Blocked(addr("203.0.113.9")) {
		t.Fatal("blocked after the configuration whitelisted it")
	}
	if err := h.RemoveWhitelist(prefix("203.0.113.9/32")); !errors.Is(err, ErrFromConfig) {
		t.Fatalf("RemoveWhitelist(config entry) = %v, want ErrFromConfig", err)
	}
	wl := h.Whitelist()
	if len(wl) != 1 || !wl[0].FromConfig || wl[0].Prefix != prefix("203.0.113.9/32") {
		t.Fatalf("Whitelist = %+v", wl)
	}
}

func TestIPv6CountedPerPrefix(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 2})
	h.report("2001:db8:1:2::1", 1)
	h.report("2001:db8:1:2::2", 1)
	h.report("2001:db8:1:2:ffff::3", 1)
	if !h.Blocked(addr("2001:db8:1:2::abcd")) {
		t.Fatal("the /64 is not blocked")
	}
	if h.Blocked(addr("2001:db8:1:3::1")) {
		t.Fatal("a neighbouring /64 is blocked")
	}
	if !h.Blocked(addr("2001:db8:1:2::1%eth0")) {
		t.Fatal("an address with a zone escapes its /64")
	}
	h.entry(t, "2001:db8:1:2::/64")

	// IPv4-mapped addresses are the IPv4 client.
	h.report("::ffff:192.0.2.1", 3)
	if !h.Blocked(addr("192.0.2.1")) || !h.Blocked(addr("::ffff:192.0.2.1")) {
		t.Fatal("IPv4-mapped reports not counted for the IPv4 address")
	}

	h2 := newHarness(t, configs.Blacklist{Threshold: 2, IPv6Prefix: 128})
	h2.report("2001:db8:1:2::1", 2)
	h2.report("2001:db8:1:2::2", 2)
	if h2.Blocked(addr("2001:db8:1:2::1")) {
		t.Fatal("ipv6_prefix 128 still counts per /64")
	}
}

func TestManualEntries(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 1, Blacklist: prefixes("203.0.113.66", "2001:db8:bad::/48")})
	if !h.Blocked(addr("203.0.113.66")) || !h.Blocked(addr("2001:db8:bad:1::1")) {
		t.Fatal("configuration entries not blocked")
	}
	if err := h.AddManual(prefix("192.0.2.0/24"), "scanner"); err != nil {
		t.Fatal(err)
	}
	if !h.Blocked(addr("192.0.2.77")) || h.Blocked(addr("192.0.3.1")) {
		t.Fatal("manual /24 not applied exactly")
	}
	h.clock.Advance(365 * 24 * time.Hour)
	h.tick()
	if !h.Blocked(addr("192.0.2.77")) {
		t.Fatal("manual entry expired")
	}
	// Requests from a manually blocked client are recorded but make no
	// automatic block of their own.
	h.report("192.0.2.77", 5)
	if st := h.Stats(); st.Blocks != 0 || st.ActiveBlocked != 3 {
		t.Fatalf("stats = %+v", st)
	}

	for _, tt := range []struct {
		name string
		err  error
		want error
	}{
		{"add twice", h.AddManual(prefix("192.0.2.0/24"), ""), ErrExists},
		{"add a config entry", h.AddManual(prefix("203.0.113.66/32"), ""), ErrExists},
		{"add invalid", h.AddManual(netip.Prefix{}, ""), ErrInvalid},
		{"remove a config entry", h.RemoveManual(prefix("203.0.113.66/32")), ErrFromConfig},
		{"remove unknown", h.RemoveManual(prefix("198.51.100.0/24")), ErrNotFound},
		{"unblock under a config entry", h.Remove(addr("2001:db8:bad:1::1")), ErrFromConfig},
	} {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, tt.err, tt.want)
		}
	}

	got := h.Entries(Filter{Manual: true})
	want := map[netip.Prefix]bool{ // prefix: from config
		prefix("192.0.2.0/24"): false, prefix("203.0.113.66/32"): true, prefix("2001:db8:bad::/48"): true,
	}
	if len(got) != len(want) {
		t.Fatalf("manual entries = %+v", got)
	}
	for _, e := range got {
		if fromCfg, ok := want[e.Prefix]; !ok || e.FromConfig != fromCfg || !e.Blocked || !e.Expires.IsZero() {
			t.Errorf("entry %+v", e)
		}
	}
	if err := h.RemoveManual(prefix("192.0.2.0/24")); err != nil {
		t.Fatal(err)
	}
	if h.Blocked(addr("192.0.2.77")) {
		t.Fatal("still blocked after RemoveManual")
	}
	if got := h.logs.lines("client released", "client=192.0.2.0/24"); len(got) != 1 {
		t.Fatalf("release log = %q", h.logs.String())
	}
}

func TestRemove(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 1})
	h.report("192.0.2.1", 2)
	if err := h.Remove(addr("192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	if h.Blocked(addr("192.0.2.1")) || h.hasEntry("192.0.2.1/32") {
		t.Fatal("still blocked or listed after Remove")
	}
	if got := h.logs.lines("client released", "removed by an administrator"); len(got) != 1 {
		t.Fatalf("release log = %q", h.logs.String())
	}
	if err := h.Remove(addr("192.0.2.1")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove = %v, want ErrNotFound", err)
	}

	// A manual entry for exactly the address goes; a wider one stays and is named.
	for _, p := range []string{"198.51.100.5/32", "203.0.113.0/24"} {
		if err := h.AddManual(prefix(p), ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Remove(addr("198.51.100.5")); err != nil || h.Blocked(addr("198.51.100.5")) {
		t.Fatalf("Remove(exact manual) = %v", err)
	}
	err := h.Remove(addr("203.0.113.7"))
	if !errors.Is(err, ErrCovered) || !strings.Contains(err.Error(), "203.0.113.0/24") {
		t.Fatalf("Remove under a wider entry = %v", err)
	}
	if err := h.Remove(netip.Addr{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Remove(zero) = %v", err)
	}
}

func TestPromote(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 1})
	h.report("192.0.2.1", 2)
	h.report("2001:db8:1:2::1", 2)
	for _, ip := range []string{"192.0.2.1", "2001:db8:1:2::1"} {
		if err := h.Promote(addr(ip)); err != nil {
			t.Fatal(err)
		}
	}
	h.report("192.0.2.1", 10)
	h.report("2001:db8:1:2::99", 10)
	if h.Blocked(addr("192.0.2.1")) || h.Blocked(addr("2001:db8:1:2::99")) {
		t.Fatal("blocked after Promote")
	}
	wl := h.Whitelist()
	if len(wl) != 2 || wl[0].Prefix != prefix("192.0.2.1/32") || wl[1].Prefix != prefix("2001:db8:1:2::/64") ||
		wl[0].FromConfig || !wl[0].Added.Equal(t0) || wl[0].Note == "" {
		t.Fatalf("Whitelist = %+v", wl)
	}
	if e := h.entry(t, "192.0.2.1/32"); !e.Whitelisted || e.Blocked || e.Total != 12 {
		t.Fatalf("entry after Promote = %+v", e)
	}
	if err := h.Promote(addr("198.51.100.1")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Promote(unknown) = %v", err)
	}
	if err := h.AddWhitelist(prefix("192.0.2.1/32"), ""); !errors.Is(err, ErrExists) {
		t.Fatalf("AddWhitelist(promoted) = %v", err)
	}
	if err := h.RemoveWhitelist(prefix("10.0.0.0/8")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("RemoveWhitelist(unknown) = %v", err)
	}
}

func TestEntriesFilterAndOrder(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 1})
	h.report("192.0.2.1", 2) // blocked, oldest
	h.clock.Advance(time.Second)
	h.Report(Event{Client: addr("192.0.2.2"), Type: "https", Service: "hq.example.com", Reason: "url not allowed"})
	h.clock.Advance(time.Second)
	h.report("192.0.2.3", 1)
	if err := h.AddManual(prefix("198.51.100.0/24"), "scanner"); err != nil {
		t.Fatal(err)
	}
	order := func(es []Entry) string {
		var s []string
		for _, e := range es {
			s = append(s, display(e.Prefix))
		}
		return strings.Join(s, " ")
	}
	for _, tt := range []struct {
		f    Filter
		want string
	}{
		{Filter{}, "192.0.2.1 198.51.100.0/24 192.0.2.3 192.0.2.2"},
		{Filter{Blocked: true}, "192.0.2.1 198.51.100.0/24"},
		{Filter{Manual: true}, "198.51.100.0/24"},
		{Filter{Address: "192.0.2."}, "192.0.2.1 192.0.2.3 192.0.2.2"},
		{Filter{Service: "HQ.example"}, "192.0.2.2"},
		{Filter{Limit: 2}, "192.0.2.1 198.51.100.0/24"},
		{Filter{Address: "2001:"}, ""},
	} {
		if got := order(h.Entries(tt.f)); got != tt.want {
			t.Errorf("Entries(%+v) = %q, want %q", tt.f, got, tt.want)
		}
	}
	e := h.entry(t, "192.0.2.2/32")
	want := Reason{Time: t0.Add(time.Second), Type: "https", Service: "hq.example.com", Reason: "url not allowed"}
	if len(e.Reasons) != 1 || e.Reasons[0] != want || e.Reasons[0].String() != "https hq.example.com: url not allowed" {
		t.Fatalf("reasons = %+v", e.Reasons)
	}
}

func TestReasonsKeptAndCapped(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 100})
	long := "x" + strings.Repeat("é", 40) // byte 64 is inside a rune
	for i := range 6 {
		h.Report(Event{Client: addr("192.0.2.1"), Type: "ldap", Service: long, Reason: fmt.Sprintf("r%d", i), Time: t0.Add(-time.Duration(i) * time.Second)})
	}
	e := h.entry(t, "192.0.2.1/32")
	if len(e.Reasons) != maxReasons || e.Reasons[0].Reason != "r2" || e.Reasons[3].Reason != "r5" {
		t.Fatalf("reasons = %+v, want the latest four, oldest first", e.Reasons)
	}
	if s := e.Reasons[0].Service; len(s) > maxText || !utf8.ValidString(s) || !strings.HasPrefix(long, s) {
		t.Fatalf("service kept as %q", s)
	}
	if !e.Reasons[3].Time.Equal(t0.Add(-5 * time.Second)) {
		t.Fatalf("reason time = %v, want the event's own time", e.Reasons[3].Time)
	}
	if (Reason{Reason: "tls handshake"}).String() != "tls handshake" || (Reason{Type: "turn"}).String() != "turn" {
		t.Fatal("Reason.String with empty parts")
	}
}

// TestFullListAggregatesAndKeepsBlocks: at max_tracked nothing blocked is
// ever dropped. A new client whose range (/24) already has a record folds
// the range into one aggregate that inherits counts and blocks; a lone idle
// counter is the only thing forgotten; a list of lone blocks stops counting
// rather than release one.
func TestFullListAggregatesAndKeepsBlocks(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 3, Expiration: time.Hour, MaxTracked: 3})
	h.report("192.0.2.1", 4) // a block
	h.clock.Advance(time.Second)
	h.report("198.51.100.1", 1) // alone in its range, and the least recently active
	h.clock.Advance(time.Second)
	h.report("203.0.113.1", 1)
	h.clock.Advance(time.Second)

	// Full: a new client of a range nobody shares forgets the idle lone counter.
	h.report("100.64.0.1", 1)
	if h.hasEntry("198.51.100.1/32") || !h.hasEntry("100.64.0.1/32") {
		t.Fatalf("forgot the wrong record: %+v", h.Entries(Filter{}))
	}
	// Full again: a newcomer in 192.0.2.0/24 folds the range. The block of
	// 192.0.2.1 now covers the /24.
	h.report("192.0.2.77", 1)
	e := h.entry(t, "192.0.2.0/24")
	if !e.Aggregated || !e.Blocked || e.Total != 5 || h.hasEntry("192.0.2.1/32") {
		t.Fatalf("aggregate = %+v, entries %+v", e, h.Entries(Filter{}))
	}
	for _, ip := range []string{"192.0.2.1", "192.0.2.77", "192.0.2.9"} {
		if !h.Blocked(addr(ip)) {
			t.Errorf("%s not blocked by the aggregate", ip)
		}
	}
	if got := h.logs.lines("level=WARN", "blacklist full", "range=192.0.2.0/24", "clients=1"); len(got) != 1 {
		t.Fatalf("aggregation log = %q", h.logs.String())
	}

	// An attacker cycling addresses in one /24 adds up on the aggregate of
	// its own range, and blocks it.
	for i := range 4 {
		h.report(fmt.Sprintf("203.0.113.%d", 10+i), 1)
	}
	if e := h.entry(t, "203.0.113.0/24"); !e.Aggregated || !e.Blocked {
		t.Fatalf("cycling attacker's range: %+v", e)
	}
	if !h.Blocked(addr("203.0.113.250")) || h.Blocked(addr("198.51.100.1")) {
		t.Fatal("the range block is wrong")
	}

	// Only lone blocks: a newcomer is not counted, nothing is released.
	h.report("100.64.0.1", 3)
	h.report("10.0.0.1", 1)
	if h.hasEntry("10.0.0.1/32") || !h.Blocked(addr("100.64.0.1")) || !h.Blocked(addr("192.0.2.1")) {
		t.Fatalf("entries %+v", h.Entries(Filter{}))
	}
	if h.logs.lines("client released") != nil {
		t.Fatalf("a block was released: %q", h.logs.String())
	}
	if st := h.Stats(); st.Tracked != 3 || st.Aggregated != 2 || st.Untracked != 1 || st.Evicted != 1 {
		t.Fatalf("stats = %+v", st)
	}
	if err := invariants(h.List); err != nil {
		t.Fatal(err)
	}
}

func TestSweepForgetsIdleCounters(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 5, Expiration: 2 * time.Minute})
	h.report("192.0.2.1", 1)
	h.clock.Advance(time.Minute)
	h.report("192.0.2.2", 1)
	h.clock.Advance(time.Minute)
	h.tick()
	if h.hasEntry("192.0.2.1/32") || !h.hasEntry("192.0.2.2/32") {
		t.Fatalf("after 2m idle: %+v", h.Entries(Filter{}))
	}
}

func TestReconfigure(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 5, Expiration: time.Minute})
	h.report("192.0.2.1", 6)       // blocked until t0+1m
	h.report("192.0.2.2", 5)       // at the threshold
	h.report("2001:db8:0:1::1", 6) // a /64 block
	h.report("2001:db8:0:2::1", 6) // another /64 in the same /56
	h.report("2001:db8:0:3::1", 1) // an IPv6 counter
	if err := h.AddManual(prefix("198.51.100.0/24"), "kept"); err != nil {
		t.Fatal(err)
	}
	h.Reconfigure(configs.Blacklist{Threshold: 2, Expiration: time.Hour, IPv6Prefix: 56})
	if e := h.entry(t, "192.0.2.1/32"); !e.Expires.Equal(t0.Add(time.Minute)) {
		t.Fatalf("existing block got a new expiry: %+v", e)
	}
	if !h.Blocked(addr("198.51.100.1")) {
		t.Fatal("run-time manual entry lost")
	}
	h.report("192.0.2.2", 1)
	if !h.Blocked(addr("192.0.2.2")) {
		t.Fatal("the lower threshold does not apply")
	}
	if e := h.entry(t, "192.0.2.2/32"); !e.Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("new block = %+v, want the new expiration", e)
	}
	if !h.Blocked(addr("2001:db8:0:ff::1")) {
		t.Fatal("IPv6 blocks not merged into the /56")
	}
	if e := h.entry(t, "2001:db8::/56"); e.Total != 12 {
		t.Fatalf("merged entry = %+v", e)
	}
	if h.hasEntry("2001:db8:0:3::/64") {
		t.Fatal("IPv6 counter kept under the old prefix length")
	}
	// Narrowing releases the wider blocks rather than guess.
	h.Reconfigure(configs.Blacklist{Threshold: 2, Expiration: time.Hour, IPv6Prefix: 64})
	if h.Blocked(addr("2001:db8:0:1::1")) {
		t.Fatal("a /56 block survived narrowing to /64")
	}
	if got := h.logs.lines("client released", "client=2001:db8::/56", "ipv6_prefix is now /64"); len(got) != 1 {
		t.Fatalf("release log = %q", h.logs.String())
	}

	h.Reconfigure(configs.Blacklist{Threshold: -1})
	if got := h.logs.lines("level=ERROR", "threshold -1"); len(got) != 1 {
		t.Fatalf("invalid configuration not logged: %q", h.logs.String())
	}
	h.report("192.0.2.3", 3)
	if !h.Blocked(addr("192.0.2.3")) {
		t.Fatal("invalid configuration was applied")
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	for _, cfg := range []configs.Blacklist{
		{Threshold: -1},
		{Expiration: -time.Second},
		{IPv6Prefix: 129},
		{MaxTracked: -5},
		{Whitelist: []configs.Prefix{{}}},
		{Blacklist: []configs.Prefix{{}}},
	} {
		if _, err := New(cfg, Options{}); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	l, err := New(configs.Blacklist{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if l.cfg.Threshold != DefaultThreshold || l.cfg.Expiration != DefaultExpiration ||
		l.cfg.IPv6Prefix != DefaultIPv6Prefix || l.cfg.MaxTracked != DefaultMaxTracked {
		t.Fatalf("defaults not applied: %+v", l.cfg)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestReportIgnoresInvalidClient(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 1})
	h.Report(Event{Type: "sip", Reason: "unknown service"})
	if h.Blocked(netip.Addr{}) || h.Stats().Tracked != 0 {
		t.Fatal("the zero address was tracked")
	}
}
