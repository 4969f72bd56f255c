package gate_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy/gate"
)

// TestRangeCap: the clients of one range (IPv4 /24, IPv6 /48) share
// limits.max_conns_per_range of limits.max_conns; other ranges, the admin
// port and whitelisted clients are not held back by it, and a refusal is
// reported as suspicious.
func TestRangeCap(t *testing.T) {
	g, bl := newGate(t, configs.Blacklist{Threshold: 100, IPv6Prefix: 64,
		Whitelist: []configs.Prefix{{Prefix: netip.MustParsePrefix("192.0.2.200/32")}}})
	g.SetLimits(gate.Limits{PerClient: 10, Total: 8, RangePercent: 25}) // 2 per range
	for _, tc := range []struct {
		ip   string
		c    gate.Class
		want gate.Verdict
	}{
		{"192.0.2.1", gate.Service, gate.Admitted},
		{"192.0.2.2", gate.Service, gate.Admitted},
		{"192.0.2.3", gate.Service, gate.RangeCap}, // a third address of 192.0.2.0/24
		{"192.0.2.1", gate.Service, gate.RangeCap},
		{"192.0.2.3", gate.Admin, gate.Admitted},     // the admin port uses the reserve
		{"192.0.2.200", gate.Service, gate.Admitted}, // whitelisted
		{"192.0.3.1", gate.Service, gate.Admitted},   // the next /24
		{"2001:db8:0:1::1", gate.Service, gate.Admitted},
		{"2001:db8:0:2::1", gate.Service, gate.Admitted}, // another /64, same /48
		{"2001:db8:0:3::1", gate.Service, gate.RangeCap},
		{"2001:db8:1::1", gate.Service, gate.Admitted}, // another /48
	} {
		if _, v := admit(t, g, tc.ip, tc.c); v != tc.want {
			t.Errorf("%s class %d: %v, want %v", tc.ip, tc.c, v, tc.want)
		}
	}
	st := g.Stats()
	if st.MaxPerRange != 2 || st.RefusedFair != 3 || st.Ranges != 4 || st.Capped != 6 {
		t.Errorf("stats %+v", st)
	}
	e := bl.Entries(blacklist.Filter{Address: "192.0.2.3"})
	if len(e) != 1 || e[0].Total != 1 || e[0].Reasons[0].Reason != gate.ReasonRangeCap {
		t.Errorf("refusal not reported: %+v", e)
	}
}

// TestRangeCapFollowsTheClientKey: with blacklist.ipv6_prefix wider than
// a /48 the range is the client itself.
func TestRangeCapFollowsTheClientKey(t *testing.T) {
	g, _ := newGate(t, configs.Blacklist{Threshold: 100, IPv6Prefix: 32})
	if r := g.Range(netip.MustParseAddr("2001:db8:5::1")); r != netip.MustParsePrefix("2001:db8::/32") {
		t.Errorf("range %v", r)
	}
	if r := g.Range(netip.MustParseAddr("::ffff:192.0.2.9")); r != netip.MustParsePrefix("192.0.2.0/24") {
		t.Errorf("range of a mapped address %v", r)
	}
}

// TestNearlyFullRefusesTheHeaviestRanges: in the last eighth of
// limits.max_conns a range holding at least the average, or its share of
// the band, gets nothing more; a range holding nothing still gets in,
// until max_conns itself.
func TestNearlyFullRefusesTheHeaviestRanges(t *testing.T) {
	g, _ := newGate(t, configs.Blacklist{Threshold: 1000})
	g.SetLimits(gate.Limits{Total: 16, RangePercent: 100}) // the band starts at 14
	for i := range 7 {
		for _, net := range []string{"10.1.1", "10.2.2"} {
			if _, v := admit(t, g, fmt.Sprintf("%s.%d", net, i+1), gate.Service); v != gate.Admitted {
				t.Fatalf("below the band: %v", v)
			}
		}
	}
	steps := []struct {
		ip   string
		want gate.Verdict
	}{
		{"10.1.1.50", gate.RangeCap}, // 7 held, the average is 7
		{"10.2.2.50", gate.RangeCap}, // likewise
		{"10.3.3.1", gate.Admitted},  // holds nothing: 15 in all
		{"10.3.3.2", gate.RangeCap},  // holds 1 of an average 5, but the band of 2 gives a range 1
		{"10.4.4.1", gate.Admitted},  // 16 in all
		{"10.5.5.1", gate.TotalCap},  // max_conns is the hard cap
		{"10.1.1.50", gate.TotalCap}, // over both: the hard cap is named
	}
	for _, s := range steps {
		if _, v := admit(t, g, s.ip, gate.Service); v != s.want {
			t.Errorf("%s: %v, want %v", s.ip, v, s.want)
		}
	}
}

// TestSpreadFloodLeavesRoomForOthers is the flood of issue 20: 2,000
// addresses in 16 /24s, each address under its per-client cap, open
// connections in turn until every one is refused. Without the range
// rules they fill limits.max_conns and every later client is refused;
// with them a client of another range gets in every time it tries.
func TestSpreadFloodLeavesRoomForOthers(t *testing.T) {
	g, _ := newGate(t, configs.Blacklist{Threshold: 1 << 30, MaxTracked: 100000})
	g.SetLimits(gate.Limits{PerClient: 8, Total: 200, RangePercent: 25})
	admitted := 0
	for round := range 8 {
		for i := range 2000 {
			ip := fmt.Sprintf("127.%d.%d.%d", 10+i%16, round%2, i/16+1)
			if _, v := admit(t, g, ip, gate.Service); v == gate.Admitted {
				admitted++
			}
		}
	}
	st := g.Stats()
	if st.Capped >= 200 || st.Capped < 170 {
		t.Fatalf("the flood holds %d of 200 connections; want it stopped in the band (from 175): %+v", st.Capped, st)
	}
	for i := range 100 {
		c, v := admit(t, g, "127.0.0.2", gate.Service)
		if v != gate.Admitted {
			t.Fatalf("good client refused at attempt %d: %v (%+v)", i, v, g.Stats())
		}
		c.Close()
		// The flood tries again between the good client's connections.
		for j := range 16 {
			admit(t, g, fmt.Sprintf("127.%d.1.%d", 10+j, i+1), gate.Service)
		}
	}
	// A few other light ranges still fit beside it.
	for i := range 5 {
		if _, v := admit(t, g, fmt.Sprintf("127.1.%d.1", i), gate.Service); v != gate.Admitted {
			t.Errorf("client of a new range %d refused: %v", i, v)
		}
	}
}
