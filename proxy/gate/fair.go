package gate

import "net/netip"

// Fairness between ranges. The per-client cap alone lets a flood spread
// over many addresses, each under it, fill limits.max_conns, after which
// every new client is refused: the flood wins by locking everyone else
// out. Two rules count the connections of each range (the blacklist's
// aggregation prefix: an IPv4 /24, an IPv6 /48, or the client key where
// that is wider) and refuse the ranges that hold the most, instead of
// whoever comes next:
//
//   - one range holds at most limits.max_conns_per_range (a share of
//     limits.max_conns), so that one network cannot take it all;
//   - once the appliance holds all but the last eighth of limits.max_conns
//     (the nearly-full band), a range gets another connection only while
//     it holds less than the average of the ranges holding connections and
//     less than a sixteenth of the band. The ranges a flood came from stop
//     at the band; a client of any other range still gets in, and a flood
//     needs sixteen fresh ranges besides to fill the band. Under ordinary
//     load the band is never reached and nobody notices the rule.
//
// Whitelisted clients and the admin port are counted in no range. What the
// rules cannot do is tell a flood from many more ranges, each holding a
// connection or two, from as many real clients: that flood still fills
// limits.max_conns, its sources are reported for every refused connection
// until the blacklist blocks them (aggregating their ranges when it is
// full), and whitelisted clients keep their reserve.

// Covering prefixes, as the blacklist folds records into (blacklist.List.Range).
const (
	range4 = 24
	range6 = 48
)

// bandDivisor: the nearly-full band is the last 1/bandDivisor of
// limits.max_conns. An eighth leaves room for the clients that arrive
// while a flood holds the rest, and is far from what ordinary load uses
// when max_conns is sized as the defaults do.
const bandDivisor = 8

// bandRanges: in the band one range holds at most 1/bandRanges of it
// (at least one connection), so that it takes that many fresh ranges to
// fill it.
const bandRanges = 16

// Range returns the range ip is counted in.
func (g *Gate) Range(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap().WithZone("")
	if g.opts.Range != nil {
		return g.opts.Range(ip)
	}
	bits := range4
	if ip.Is6() {
		bits = range6
	}
	key := g.Key(ip)
	if key.Bits() <= bits {
		return key
	}
	p, _ := ip.Prefix(bits)
	return p
}

// rangeCap is how many capped connections one range may hold.
func rangeCap(l *Limits) int {
	return max(1, l.Total*l.RangePercent/100)
}

// band is the size of the nearly-full band of total.
func band(total int) int { return max(1, total/bandDivisor) }

// fairLocked reports whether a new capped connection from rng may be
// admitted under the range rules; l.Total is not 0 and not reached.
func (g *Gate) fairLocked(rng netip.Prefix, l *Limits) bool {
	held := g.ranges[rng]
	if held >= rangeCap(l) {
		return false
	}
	b := band(l.Total)
	if held == 0 || g.capped < l.Total-b {
		return true
	}
	// In the band: below the average of the ranges holding connections,
	// and below the band's share of one range.
	return held*len(g.ranges) < g.capped && held < max(1, b/bandRanges)
}
