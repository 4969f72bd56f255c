package cluster

import (
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// changesSubject carries every block, release and list entry a node
// writes, as plain NATS messages, besides the bucket write.
//
// A bucket write needs its stream's raft leader. When a node dies, the
// buckets it led take no writes until the others elect a new leader, which
// nats-server does 4 to 9 s after the dead leader's last heartbeat (not
// configurable); the blocks made meanwhile would reach the other nodes only
// then. Plain messages need no leader, only the routes between the nodes
// that are up, so the others apply a change within milliseconds whatever
// the buckets' state or the writer's queue. The bucket stays the store (a node that starts or
// rejoins reads it; a message missed while away is found there), and
// applying a change twice changes nothing. Counts are not carried: they
// change with every suspicious request and the bucket carries them.
const changesSubject = "gatehouse.changes"

// change is one message on changesSubject.
type change struct {
	Node   string `json:"node"`
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	Delete bool   `json:"delete,omitempty"`
	Value  []byte `json:"value,omitempty"`
	// At is when the node made the change (by its clock), for the
	// witness: a bucket entry as new as this has been written.
	At time.Time `json:"at"`
}

// maxTells bounds the changes waiting for the teller.
const maxTells = 4096

// teller publishes the changes queue hands it, as they are made: not from
// the writer, which may be waiting for a bucket without a leader.
// Publishing only buffers (the connection's own goroutine sends); a change
// that finds the teller behind is left to the bucket write.
func (n *Node) teller() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.flush:
			return
		case o := <-n.tells:
			n.tell(o)
		}
	}
}

// tell publishes o on changesSubject.
func (n *Node) tell(o op) {
	if o.bucket == BucketCounts {
		return
	}
	data, _ := json.Marshal(change{Node: n.cfg.Node, Bucket: o.bucket, Key: o.key, Delete: o.kind == opDelete, Value: o.val,
		At: time.Now()})
	if err := n.nc.Publish(changesSubject, data); err != nil {
		n.fail("cluster: change not told", err) // the bucket write still carries it
	}
}

// listen applies the changes other nodes tell until the subscription ends.
func (n *Node) listen() (*nats.Subscription, error) {
	return n.nc.Subscribe(changesSubject, func(m *nats.Msg) {
		var c change
		if json.Unmarshal(m.Data, &c) != nil || c.Node == n.cfg.Node {
			return
		}
		e := told{c}
		switch c.Bucket {
		case BucketBlocks:
			n.applyBlock(e)
		case BucketManual:
			n.applyListing(false, e)
		case BucketWhitelist:
			n.applyListing(true, e)
		default:
			return
		}
		select {
		case n.heard <- heard{c, time.Now()}:
		default: // the witness is behind: left to the change's node
		}
	})
}

// told is a change as a bucket entry, for the watchers' apply functions.
type told struct{ c change }

func (t told) Bucket() string     { return t.c.Bucket }
func (t told) Key() string        { return t.c.Key }
func (t told) Value() []byte      { return t.c.Value }
func (t told) Revision() uint64   { return 0 }
func (t told) Created() time.Time { return time.Time{} }
func (t told) Delta() uint64      { return 0 }
func (t told) Operation() jetstream.KeyValueOp {
	if t.c.Delete {
		return jetstream.KeyValueDelete
	}
	return jetstream.KeyValuePut
}
