package cluster

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Bounds on the buckets fed by clients (issue 14, part 6): an attacker
// with many addresses must not grow them beyond what blacklist.max_tracked
// allows each node to hold.
//
//	gatehouse_blocks  at most max_tracked blocks: no node enforces more
//	                  (the List aggregates beyond it);
//	gatehouse_counts  at most max_tracked per node, besides the 2-minute
//	                  age limit: counts are only about the last Window.
//
// A full bucket drops its oldest entries (DiscardOld), never a new block:
// the oldest block is the nearest to its end, and a count dropped early
// only makes that client's count on the other nodes smaller. The local
// copies keep what they applied. Key-value buckets are made with no
// message limit and DiscardNew, so the limits are set on their streams
// after each CreateOrUpdateKeyValue.

// bound sets the message limit of kv's stream to max (0: none).
func (n *Node) bound(ctx context.Context, kv jetstream.KeyValue, max int64) error {
	if max <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	s, err := n.js.Stream(ctx, "KV_"+kv.Bucket())
	if err != nil {
		return fmt.Errorf("bucket %s: %w", kv.Bucket(), err)
	}
	cfg := s.CachedInfo().Config
	if cfg.MaxMsgs == max && cfg.Discard == jetstream.DiscardOld {
		return nil
	}
	cfg.MaxMsgs, cfg.Discard = max, jetstream.DiscardOld
	if _, err := n.js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("bucket %s: limit of %d entries: %w", kv.Bucket(), max, err)
	}
	return nil
}

// nodesBound is how many nodes the counts bucket is sized for: the
// embedded cluster's, or with an external NATS (whose gatehouse nodes
// this node cannot count) the replicas, at least three.
func (n *Node) nodesBound() int64 {
	if n.ns != nil {
		return int64(len(n.cfg.Peers) + 1)
	}
	return int64(max(n.cfg.Replicas, 3))
}

// measure records how many entries each bucket holds, for Status.
func (n *Node) measure(kv *buckets) {
	sizes := make(map[string]uint64)
	for _, b := range []jetstream.KeyValue{kv.counts, kv.blocks, kv.manual, kv.white, kv.nodes} {
		ctx, cancel := context.WithTimeout(n.ctx, opTimeout)
		st, err := b.Status(ctx)
		cancel()
		if err != nil {
			return // the cluster is away: keep the last figures
		}
		sizes[b.Bucket()] = st.Values()
	}
	n.mu.Lock()
	n.sizes = sizes
	n.mu.Unlock()
}
