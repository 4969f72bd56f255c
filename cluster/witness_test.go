package cluster

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
)

// A change a node told the others but never wrote to the bucket (it died
// with the change in its queue) is written by the nodes that heard it, so
// that a node starting afterwards learns it; a change told and undone
// again before it was written is not brought back.
func TestWitnessWritesWhatItsNodeDidNot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three NATS servers")
	}
	ms := testCluster(t, 3)
	for _, m := range ms {
		m.start(t)
		defer m.stop()
	}
	a, b := ms[0], ms[1]
	eventually(t, "every node joined", func() bool {
		for _, m := range ms {
			if s := m.node.Status(); !s.Ready || len(s.Nodes) != 3 || s.Routes < 2 {
				return false
			}
		}
		return true
	})
	// Told, never queued: as if a died before its writer ran.
	blocked := netip.MustParsePrefix("192.0.2.77/32")
	val, _ := json.Marshal(blacklist.Block{Until: time.Now().Add(time.Hour), Count: 6, Reason: "test", Node: a.name})
	a.node.tell(op{kind: opBlock, bucket: BucketBlocks, key: encode(blocked), val: val})
	manual := netip.MustParsePrefix("203.0.113.9/32")
	lval, _ := json.Marshal(blacklist.Listing{Note: "told", Added: time.Now(), Node: a.name})
	a.node.tell(op{kind: opPut, bucket: BucketManual, key: encode(manual), val: lval})
	a.node.tell(op{kind: opDelete, bucket: BucketManual, key: encode(manual)})

	eventually(t, "b enforces the told block", func() bool { return b.list.Blocked(blocked.Addr()) })
	took := eventually(t, "the block in the bucket, written by a witness", func() bool {
		_, err := b.node.kvGet(BucketBlocks, encode(blocked))
		return err == nil
	})
	t.Logf("written %v after b enforced it", took)
	time.Sleep(2 * witnessGrace)
	if _, err := b.node.kvGet(BucketManual, encode(manual)); err == nil {
		t.Error("a manual entry added and removed again was brought back into the bucket")
	}
	if b.list.Blocked(manual.Addr()) {
		t.Error("b enforces the removed manual entry")
	}
}
