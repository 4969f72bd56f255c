package blacklist

import (
	"container/heap"
	"net/netip"
	"time"
)

// Shared carries a List's changes to the other nodes of a cluster (package
// cluster implements it on NATS JetStream). The List calls it after its lock
// is released, from the goroutine that made the change, often the accept
// path: the methods must queue and return, never wait on the network.
//
// The other direction is the Apply methods: a node feeds what the others
// changed into its List, which never calls Shared back for it.
type Shared interface {
	// Counted gives this node's suspicious requests of client key within
	// the Window (at most threshold+1), after each new one.
	Counted(key netip.Prefix, hits []time.Time)
	// Blocked tells of an automatic block this node made.
	Blocked(key netip.Prefix, b Block)
	// Released tells that an administrator removed the automatic block
	// and counts of key on this node. Expiry is not told: every node
	// expires a block at its Until.
	Released(key netip.Prefix)
	// Listed tells of a run-time manual (white false) or whitelist entry
	// added (e non-nil) or removed (e nil) on this node.
	Listed(white bool, p netip.Prefix, e *Listing)
}

// Block is an automatic block as shared between nodes.
type Block struct {
	Until  time.Time `json:"until"`
	Count  int       `json:"count,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Node   string    `json:"node,omitempty"` // the node that made it
}

// Listing is a run-time manual or whitelist entry as shared between nodes.
type Listing struct {
	Note  string    `json:"note,omitempty"`
	Added time.Time `json:"added"`
	Node  string    `json:"node,omitempty"` // the node it was made on
}

// Share makes l tell s of its changes, as node. Call it once, before the
// List is used by other nodes' Apply calls.
func (l *List) Share(s Shared, node string) {
	l.mu.Lock()
	defer l.unlock()
	l.shared, l.node = s, node
}

// shareLocked queues f to be called with l's Shared after the lock is released.
func (l *List) shareLocked(f func(Shared)) {
	if s := l.shared; s != nil {
		l.pending = append(l.pending, func() { f(s) })
	}
}

// shareCountLocked tells the other nodes rec's local requests in the Window.
func (l *List) shareCountLocked(rec *record, now instant) {
	if l.shared == nil {
		return
	}
	var hits []time.Time
	for _, t := range rec.hits.ts {
		if t > int64(now)-int64(Window) {
			hits = append(hits, l.wall(instant(t)))
		}
	}
	key := rec.key
	l.shareLocked(func(s Shared) { s.Counted(key, hits) })
}

// countLocked is rec's requests in the Window before now, on this node and
// on the others.
func (l *List) countLocked(rec *record, now instant) int {
	n := rec.hits.count(now)
	for _, ts := range rec.peers {
		for _, t := range ts {
			if t > now-instant(Window) {
				n++
			}
		}
	}
	return n
}

// lookupLocked is the record key is counted on: its own or its range's.
func (l *List) lookupLocked(key netip.Prefix) *record {
	if rec := l.records[key]; rec != nil {
		return rec
	}
	if a, ok := aggregateKey(key); ok {
		return l.records[a]
	}
	return nil
}

// lockApply begins applying another node's change to the client or network
// p: it normalises p and, when p is valid, locks the list for the caller,
// whose deferred l.unlock releases it.
func (l *List) lockApply(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() {
		return p, false
	}
	p = normalize(p)
	l.mu.Lock()
	return p, true
}

// ApplyCounts records node's requests of client key within the Window (as
// told by its Counted), and blocks the client when the requests of every
// node together pass the threshold.
func (l *List) ApplyCounts(node string, key netip.Prefix, hits []time.Time) {
	key, ok := l.lockApply(key)
	if !ok {
		return
	}
	defer l.unlock()
	now := l.now()
	l.expireLocked(now)
	var ts []instant
	for _, h := range hits {
		if t := l.instant(h); t > now-instant(Window) && t <= now+instant(Window) {
			ts = append(ts, t)
		}
	}
	if len(ts) > l.cfg.Threshold+1 {
		ts = ts[len(ts)-l.cfg.Threshold-1:]
	}
	rec := l.lookupLocked(key)
	if rec == nil {
		if len(ts) == 0 {
			return
		}
		if rec = l.trackLocked(key, now); rec == nil {
			l.untracked++
			return
		}
	}
	if len(ts) == 0 {
		delete(rec.peers, node)
	} else {
		if rec.peers == nil {
			rec.peers = make(map[string][]instant)
		}
		rec.peers[node] = ts
	}
	if rec.blocked() {
		return
	}
	rec.touched = max(rec.touched, now)
	l.counters.moveToFront(rec)
	r := l.rules.Load()
	if n := l.countLocked(rec, now); n > l.cfg.Threshold && !r.white.contains(key.Addr()) && !r.manual.contains(key.Addr()) {
		l.blockLocked(rec, now, n)
	}
}

// ApplyBlock enforces an automatic block another node made. A block that
// ended, or that a whitelist entry covers, is ignored; of two blocks of one
// client the later end wins.
func (l *List) ApplyBlock(key netip.Prefix, b Block) {
	key, ok := l.lockApply(key)
	if !ok {
		return
	}
	defer l.unlock()
	now := l.now()
	l.expireLocked(now)
	until := l.instant(b.Until)
	if until <= now || l.rules.Load().white.contains(key.Addr()) {
		return
	}
	rec := l.lookupLocked(key)
	if rec == nil {
		if rec = l.trackLocked(key, now); rec == nil {
			l.untracked++
			return
		}
	}
	if rec.blocked() {
		if until > rec.expires {
			rec.expires = until
			heap.Fix(&l.blocks, rec.heapIdx)
			l.index.set(rec.key, rec)
		}
		return
	}
	l.counters.remove(rec)
	rec.expires, rec.by = until, cut(b.Node, maxText)
	rec.since = now
	rec.attempts.Store(0)
	heap.Push(&l.blocks, rec)
	l.index.set(rec.key, rec)
	// A range's block (another node's list was full and aggregated it)
	// holds here for every client of the range, though this list may
	// never have aggregated: Blocked looks at ranges only once set.
	if _, client := aggregateKey(rec.key); rec.agg || !client {
		l.aggregated.Store(true)
	}
	client, why, by, wall := display(rec.key), cut(b.Reason, maxText), rec.by, l.wall(until)
	l.pending = append(l.pending, func() {
		l.log.Info("client blocked", "client", client, "count", b.Count, "reason", why, "until", wall, "node", by)
	})
	l.notifyLocked(rec.key)
}

// ApplyRelease ends the automatic block of key and forgets its counts, as
// an administrator did on another node.
func (l *List) ApplyRelease(key netip.Prefix, node string) {
	key, ok := l.lockApply(key)
	if !ok {
		return
	}
	defer l.unlock()
	if rec := l.records[key]; rec != nil {
		if rec.blocked() {
			l.releaseLocked(rec, l.now(), "removed by an administrator on node "+node)
		}
		l.dropLocked(rec)
	}
}

// ApplyListing adds (e non-nil) or removes (e nil) a run-time manual or
// whitelist entry made on another node.
func (l *List) ApplyListing(white bool, p netip.Prefix, e *Listing) {
	p, ok := l.lockApply(p)
	if !ok {
		return
	}
	defer l.unlock()
	now := l.now()
	cfg, rt := l.cfgManual, l.rtManual
	if white {
		cfg, rt = l.cfgWhite, l.rtWhite
	}
	if _, ok := cfg[p]; ok {
		return // the configuration's entry wins
	}
	old, had := rt[p]
	switch {
	case e == nil && !had:
		return
	case e == nil && white:
		delete(rt, p)
		l.gen++
		l.rebuildLocked(now)
		l.notifyLocked(p)
		client := display(p)
		l.pending = append(l.pending, func() { l.log.Info("whitelist entry removed on another node", "client", client) })
	case e == nil:
		l.removeManualLocked(p, "manual entry removed on another node")
	case had:
		old.note = cut(e.Note, maxNote) // the same entry again, or a newer note
		rt[p] = old
	default:
		note := cut(e.Note, maxNote)
		rt[p] = newListed(note, l.instant(e.Added), 0)
		l.gen++
		l.rebuildLocked(now)
		client, node := display(p), cut(e.Node, maxText)
		if white {
			l.pending = append(l.pending, func() { l.log.Info("whitelist entry added", "client", client, "note", note, "node", node) })
			return
		}
		l.pending = append(l.pending, func() {
			l.log.Info("client blocked", "client", client, "reason", "manual entry: "+note, "until", "removed", "node", node)
		})
		l.notifyLocked(p)
	}
}
