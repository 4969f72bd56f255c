package blacklist

import (
	"container/heap"
	"net/netip"
	"slices"
	"time"
)

// Aggregation: the answer to an attacker who cycles source addresses to
// flush the list. At max_tracked, a new client inside a range that already
// has a record folds that range into one record for the covering prefix
// (aggregate4 bits for IPv4, aggregate6 for IPv6): counts, reasons and
// blocks move there, so the attacker's addresses add up to a block of its
// own range instead of pushing other records out. A range once folded
// counts as one client until its record is released and forgotten.
const (
	aggregate4 = 24
	aggregate6 = 48
)

// scanForFold bounds how many of the oldest counters makeRoomLocked looks
// at for a range to fold, so that a full list costs the same per report
// however large max_tracked is.
const scanForFold = 32

// aggregateKey returns the covering prefix records under key fold into; ok
// is false when key is already that wide (an IPv6 key length of 48 or less,
// or an aggregate itself).
func aggregateKey(key netip.Prefix) (netip.Prefix, bool) {
	bits := aggregate4
	if key.Addr().Is6() {
		bits = aggregate6
	}
	if key.Bits() <= bits {
		return netip.Prefix{}, false
	}
	p, _ := key.Addr().Prefix(bits)
	return p, true
}

// putLocked adds rec to l.records and, for a client record, to its range's group.
func (l *List) putLocked(rec *record) {
	l.records[rec.key] = rec
	rec.gidx = -1
	if rec.agg {
		return
	}
	if a, ok := aggregateKey(rec.key); ok {
		g := l.groups[a]
		rec.gidx = len(g)
		l.groups[a] = append(g, rec)
	}
}

// forgetLocked removes rec from l.records and its group.
func (l *List) forgetLocked(rec *record) {
	delete(l.records, rec.key)
	if rec.gidx < 0 {
		return
	}
	a, _ := aggregateKey(rec.key)
	g := l.groups[a]
	last := g[len(g)-1]
	g[rec.gidx], last.gidx = last, rec.gidx
	g[len(g)-1] = nil
	g = g[:len(g)-1]
	if len(g) == 0 {
		delete(l.groups, a)
	} else {
		l.groups[a] = g
	}
	rec.gidx = -1
}

// makeRoomLocked frees at least one record without ever dropping an active
// block: it folds the range of one of the oldest counters that shares its
// range with another record; failing that it forgets the least recently
// active counter (alone in its range, so no cycling attacker's); failing
// that (every record is a block) it folds the range of a block. It reports
// false when nothing could be freed: every record is a block alone in its
// range.
func (l *List) makeRoomLocked(now instant) bool {
	n := 0
	for rec := l.counters.back; rec != nil && n < scanForFold; rec, n = rec.prev, n+1 {
		if a, ok := aggregateKey(rec.key); ok && len(l.groups[a]) >= 2 {
			l.foldLocked(a, now)
			return true
		}
	}
	if rec := l.counters.back; rec != nil {
		l.nevicted++
		l.dropLocked(rec)
		return true
	}
	for i := 0; i < len(l.blocks) && i < scanForFold; i++ {
		if a, ok := aggregateKey(l.blocks[i].key); ok && len(l.groups[a]) >= 2 {
			l.foldLocked(a, now)
			return true
		}
	}
	return false
}

// foldLocked merges every record inside a, and a's own record if there is
// one, into one aggregate record for a, and returns it. The aggregate is
// blocked until the latest block among them ends.
func (l *List) foldLocked(a netip.Prefix, now instant) *record {
	parts := slices.Clone(l.groups[a])
	if old := l.records[a]; old != nil {
		parts = append(parts, old)
	}
	agg := &record{key: a, agg: true, heapIdx: -1, gidx: -1, touched: now}
	wasBlocked := false
	for _, p := range parts {
		if p.blocked() {
			wasBlocked = wasBlocked || p.key == a
			if !agg.blocked() || p.since < agg.since {
				agg.since = p.since
			}
			agg.expires = max(agg.expires, p.expires)
		}
	}
	// The range's block goes into the index before its clients' blocks
	// leave it: Blocked reads the index without l.mu, and a blocked
	// client found under neither key would be let in (bench/cluster.sh
	// saw a client served by the node that had just blocked it, folded
	// by the next new address of its range).
	if agg.expires != 0 {
		l.aggregated.Store(true)
		l.index.set(a, agg)
	}
	for _, p := range parts {
		agg.absorb(p)
		agg.hits.merge(&p.hits, l.cfg.Threshold+1)
		if p.key == a && p.blocked() {
			heap.Remove(&l.blocks, p.heapIdx) // its index entry is the aggregate's now
			l.forgetLocked(p)
			continue
		}
		l.dropLocked(p)
	}
	l.putLocked(agg)
	l.aggregated.Store(true)
	l.naggregated++
	if agg.expires != 0 {
		heap.Push(&l.blocks, agg)
		l.gen++
		if !wasBlocked {
			l.notifyLocked(a)
			// The range's block is a block this node made: the other
			// nodes enforce it too. Kept to itself, a client of the range
			// whose requests reached this node after the fold was refused
			// here, its requests counted as attempts on the range and not
			// as its own, and the others never heard of a block of it
			// (bench/cluster.sh: 2 of 2,129 blocks "not spread").
			agg.by = l.node
			b := Block{Until: l.wall(agg.expires), Reason: summary(agg.reasons), Node: l.node}
			l.shareLocked(func(s Shared) { s.Blocked(a, b) })
		}
	} else {
		l.counters.pushFront(agg)
	}
	if now >= l.aggWarnAt {
		l.aggWarnAt = now + instant(time.Minute)
		n, max, until := len(parts), l.cfg.MaxTracked, agg.expires
		blockedUntil := "not blocked"
		if until != 0 {
			blockedUntil = l.wall(until).Format(time.RFC3339)
		}
		l.pending = append(l.pending, func() {
			l.log.Warn("blacklist full: clients aggregated into their range (later ones are logged once a minute)",
				"range", a.String(), "clients", n, "max_tracked", max, "blocked", blockedUntil)
		})
	}
	return agg
}

// merge adds the times of o to w, keeping the latest size.
func (w *window) merge(o *window, size int) {
	if len(o.ts) == 0 {
		return
	}
	all := append(append([]int64(nil), w.ts...), o.ts...)
	slices.Sort(all)
	if len(all) > size {
		all = all[len(all)-size:]
	}
	w.ts, w.next = all, 0 // chronological: full or not, slot 0 holds the oldest
}

// OnBlock registers f to hear the network of every new block: an automatic
// block (a client key, or an aggregated range), a manual entry, and the
// networks a removed whitelist entry or a reloaded configuration may now
// block. The proxy's gate closes what the clients inside have open. f runs
// after the List's lock is released and must not block for long.
func (l *List) OnBlock(f func(netip.Prefix)) {
	l.mu.Lock()
	defer l.unlock()
	l.onBlock = append(l.onBlock, f)
}

// notifyLocked queues the OnBlock callbacks for p.
func (l *List) notifyLocked(p netip.Prefix) {
	for _, f := range l.onBlock {
		l.pending = append(l.pending, func() { f(p) })
	}
}

// Key returns the client ip belongs to: the address for IPv4, its network
// of blacklist.ipv6_prefix bits for IPv6. Every per-client count of
// gatehouse (the blacklist's, limits.max_conns_per_ip) uses it.
func (l *List) Key(ip netip.Addr) netip.Prefix {
	return l.rules.Load().key(ip.Unmap().WithZone(""))
}

// Whitelisted reports whether a whitelist entry covers ip.
func (l *List) Whitelisted(ip netip.Addr) bool {
	r := l.rules.Load()
	return r.white.contains(ip.Unmap())
}

// Range returns the network ip's record folds into when the list is full:
// the /24 of an IPv4 address, the /48 of an IPv6 one, or the client key
// itself where that is wider (blacklist.ipv6_prefix below 48). The proxy's
// gate shares connections fairly between these ranges.
func (l *List) Range(ip netip.Addr) netip.Prefix {
	key := l.Key(ip)
	if a, ok := aggregateKey(key); ok {
		return a
	}
	return key
}
