package blacklist

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// rules is the immutable snapshot of everything an administrator decides:
// the whitelist, the manual entries and the client key length. It is replaced
// as a whole (under List.mu) and read without a lock on the accept path.
type rules struct {
	white  prefixSet
	manual prefixSet
	v6bits int // prefix length IPv6 clients are counted by
}

// key returns the client an address belongs to: the address itself for IPv4,
// its network of v6bits for IPv6.
func (r *rules) key(ip netip.Addr) netip.Prefix {
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(r.v6bits)
	return p
}

// prefixSet matches addresses against a set of networks with one map lookup
// per distinct prefix length in the set, longest first. Lists written by
// people use a handful of lengths, so this is a few lookups however many
// entries there are, and it does not allocate.
type prefixSet struct {
	// m holds each network's count of attempts while blocked (manual
	// entries; nil for whitelist entries). The counter belongs to the
	// entry's listed value, so it outlives a rebuild of the set.
	m            map[netip.Prefix]*atomic.Uint64
	lens4, lens6 []int // the distinct lengths in m, longest first
}

func newPrefixSet(sets ...map[netip.Prefix]listed) prefixSet {
	s := prefixSet{m: make(map[netip.Prefix]*atomic.Uint64)}
	for _, set := range sets {
		for p, v := range set {
			if _, dup := s.m[p]; dup {
				continue // the first set's entry is the one shown: the configuration's
			}
			s.m[p] = v.attempts
			lens := &s.lens6
			if p.Addr().Is4() {
				lens = &s.lens4
			}
			if !slices.Contains(*lens, p.Bits()) {
				*lens = append(*lens, p.Bits())
			}
		}
	}
	slices.SortFunc(s.lens4, func(a, b int) int { return b - a })
	slices.SortFunc(s.lens6, func(a, b int) int { return b - a })
	return s
}

// match returns the most specific network in the set that holds ip and is no
// longer than maxBits.
func (s *prefixSet) match(ip netip.Addr, maxBits int) (netip.Prefix, bool) {
	p, _, ok := s.lookup(ip, maxBits)
	return p, ok
}

// lookup is match with the network's counter of attempts.
func (s *prefixSet) lookup(ip netip.Addr, maxBits int) (netip.Prefix, *atomic.Uint64, bool) {
	lens := s.lens6
	if ip.Is4() {
		lens = s.lens4
	}
	for _, b := range lens {
		if b > maxBits {
			continue
		}
		p, _ := ip.Prefix(b)
		if hits, ok := s.m[p]; ok {
			return p, hits, true
		}
	}
	return netip.Prefix{}, nil, false
}

// contains reports whether a network in the set holds ip.
func (s *prefixSet) contains(ip netip.Addr) bool {
	_, ok := s.match(ip, 128)
	return ok
}

// covers returns the network in the set that holds all of p, if any.
func (s *prefixSet) covers(p netip.Prefix) (netip.Prefix, bool) {
	return s.match(p.Addr(), p.Bits())
}

// blockIndex maps the key of every automatically blocked client to the end of
// its block and its record's counter of attempts while blocked. It is the accept path's view of List.records: written under
// List.mu when a block starts or ends, read by Blocked under one shard's read
// lock, so a flood of reports and a flood of connections contend only when
// they hash to the same shard. A map rebuilt per change behind an atomic
// pointer would make each new block cost O(blocked clients), quadratic under
// the floods this exists for.
type blockIndex struct {
	shards [indexShards]indexShard
}

const indexShards = 64 // a power of two, comfortably more than the cores of an appliance

type indexShard struct {
	mu sync.RWMutex
	m  map[netip.Prefix]indexed
	_  [64 - 24 - 8]byte // keep shards on separate cache lines
}

// indexed is one blocked client in the index. hits points into its record,
// which outlives the entry: Blocked counts an attempt with one atomic add,
// no lock of the List's and no allocation.
type indexed struct {
	until instant
	hits  *atomic.Uint64
}

func (x *blockIndex) shard(p netip.Prefix) *indexShard {
	a := p.Addr().As16()
	h := binary.BigEndian.Uint64(a[:8]) ^ binary.BigEndian.Uint64(a[8:]) ^ uint64(p.Bits())
	h *= 0x9e3779b97f4a7c15 // Fibonacci hashing: the top bits mix every input bit
	return &x.shards[h>>(64-6)]
}

// until returns the end of p's automatic block, if it has one.
func (x *blockIndex) until(p netip.Prefix) (instant, bool) {
	e, ok := x.lookup(p)
	return e.until, ok
}

// lookup returns p's entry, if it is blocked.
func (x *blockIndex) lookup(p netip.Prefix) (indexed, bool) {
	s := x.shard(p)
	s.mu.RLock()
	e, ok := s.m[p]
	s.mu.RUnlock()
	return e, ok
}

// set indexes rec's block under p (its key).
func (x *blockIndex) set(p netip.Prefix, rec *record) {
	s := x.shard(p)
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[netip.Prefix]indexed)
	}
	s.m[p] = indexed{until: rec.expires, hits: &rec.attempts}
	s.mu.Unlock()
}

func (x *blockIndex) delete(p netip.Prefix) {
	s := x.shard(p)
	s.mu.Lock()
	delete(s.m, p)
	s.mu.Unlock()
}

func (x *blockIndex) len() int {
	n := 0
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
