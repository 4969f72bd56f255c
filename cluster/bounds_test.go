package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
)

// The buckets clients feed hold at most blacklist.max_tracked entries
// (counts: per node), however many clients are blocked and counted: the
// oldest go first.
func TestBucketsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS server")
	}
	l, err := blacklist.New(configs.Blacklist{Threshold: 5}, blacklist.Options{Logger: testLogger(t, "solo")})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const maxTracked = 50
	n, err := Start(configs.Cluster{Enabled: true, Node: "solo", Replicas: 1, StoreDir: filepath.Join(t.TempDir(), "nats")},
		l, Options{Logger: testLogger(t, "solo"), MaxTracked: maxTracked})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	eventually(t, "joined", func() bool { return n.Status().Ready })
	until := time.Now().Add(time.Hour)
	for i := range 4 * maxTracked {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32)
		n.Blocked(p, blacklist.Block{Until: until, Count: 6, Reason: "bench", Node: "solo"})
		n.Counted(p, []time.Time{time.Now()})
	}
	// The writer takes the queue before it writes it: wait for the last
	// block in its bucket and for every count to be written (counts go in
	// any order).
	last := netip.MustParsePrefix(fmt.Sprintf("10.1.0.%d/32", 4*maxTracked-1))
	eventually(t, "all written", func() bool {
		_, err := n.kvGet(BucketBlocks, encode(last))
		s, serr := n.js.Stream(context.Background(), "KV_"+BucketCounts)
		return err == nil && serr == nil && s.CachedInfo().State.LastSeq >= 4*maxTracked
	})
	for _, b := range []string{BucketBlocks, BucketCounts} {
		s, err := n.js.Stream(context.Background(), "KV_"+b)
		if err != nil {
			t.Fatal(err)
		}
		st := s.CachedInfo().State
		t.Logf("%s: %d entries after %d written", b, st.Msgs, 4*maxTracked)
		if st.Msgs > maxTracked || st.Msgs == 0 {
			t.Errorf("%s holds %d entries, max_tracked is %d", b, st.Msgs, maxTracked)
		}
	}
	// The oldest went.
	if _, err := n.kvGet(BucketBlocks, encode(netip.MustParsePrefix("10.1.0.0/32"))); err == nil {
		t.Error("oldest block still in the bucket")
	}
}

// kvGet reads one entry of a bucket (tests).
func (n *Node) kvGet(bucket, key string) ([]byte, error) {
	kv, err := n.js.KeyValue(context.Background(), bucket)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(context.Background(), key)
	if err != nil {
		return nil, err
	}
	return e.Value(), nil
}
