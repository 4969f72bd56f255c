package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
)

// The witness makes sure a change told by another node (fast.go) reaches
// the bucket even when that node does not write it: killed, or cut off,
// with the change still in its queue. The other nodes then hold the change
// in memory only, and a node that starts afterwards, reading the bucket,
// would never learn it: a lost entry. So every node that heard a change
// looks, witnessGrace later, at the last message of its key in the bucket;
// when none is as new as the change, it writes the change itself (a block
// only while it still enforces it, and only what it still holds). Of several witnesses the first writes
// and the others find its write. Clocks of nodes may differ by clockSlack.
const (
	witnessGrace = 3 * time.Second
	clockSlack   = time.Second
)

// heard is a change told by another node, and when it arrived.
type heard struct {
	c  change
	at time.Time
}

// witness settles the changes others told, in the order heard.
func (n *Node) witness() {
	for {
		var h heard
		select {
		case <-n.ctx.Done():
			return
		case <-n.flush:
			return
		case h = <-n.heard:
		}
		select {
		case <-n.ctx.Done():
			return
		case <-n.flush:
			return
		case <-time.After(time.Until(h.at.Add(witnessGrace))):
		}
		n.settle(h.c)
	}
}

// settle writes c when the bucket has nothing as new as c for its key.
func (n *Node) settle(c change) {
	ctx, cancel := context.WithTimeout(n.ctx, opTimeout)
	defer cancel()
	s, err := n.js.Stream(ctx, "KV_"+c.Bucket)
	if err != nil {
		return // cannot tell: left to the change's node
	}
	m, err := s.GetLastMsgForSubject(ctx, "$KV."+c.Bucket+"."+c.Key)
	switch {
	case err == nil && !m.Time.Before(c.At.Add(-clockSlack)):
		return // written, by its node or by a later change
	case err != nil && !errors.Is(err, jetstream.ErrMsgNotFound):
		return
	case err != nil && c.Delete:
		return // nothing to delete
	}
	// Write what this node holds now: a change undone meanwhile (a block
	// released, an entry added and removed again) is not brought back.
	p, err := decode(c.Key)
	if err != nil {
		return
	}
	in := n.list.Blocked(p.Addr())
	if c.Bucket == BucketWhitelist {
		in = n.list.Whitelisted(p.Addr())
	}
	if in == c.Delete {
		return
	}
	o := op{kind: opPut, bucket: c.Bucket, key: c.Key, val: c.Value}
	switch {
	case c.Delete:
		o.kind = opDelete
	case c.Bucket == BucketBlocks:
		var b blacklist.Block
		if json.Unmarshal(c.Value, &b) != nil {
			return
		}
		o.kind, o.until = opBlock, b.Until
	}
	n.log.Info("cluster: writing a change its node did not", "bucket", c.Bucket, "key", c.Key, "node", c.Node)
	n.enqueue(o)
}
