package blacklist

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// TestFoldKeepsBlockIndexed: folding a range that holds a blocked client
// never leaves the accept path's index without an entry that refuses it.
// Blocked reads the index without List.mu; when the fold removed the
// client's entry before it set the range's, a connection of the blocked
// client in between was let in (bench/cluster.sh: 3 of 10,000 addresses
// served by the node that had just blocked them, the next new address of
// their /24 having folded it at max_tracked). The test holds the range's
// shard of the index, so the fold stops at its write of the range's entry,
// and looks at the client's entry then.
func TestFoldKeepsBlockIndexed(t *testing.T) {
	h := newHarness(t, configs.Blacklist{Threshold: 1, Expiration: time.Hour, MaxTracked: 2})
	h.report("192.0.2.1", 2)    // blocked
	h.report("198.51.100.1", 1) // the list is full
	client, rng := prefix("192.0.2.1/32"), prefix("192.0.2.0/24")
	cs, rs := h.index.shard(client), h.index.shard(rng)
	if cs == rs {
		t.Fatal("the client's and the range's entries share a shard: pick other addresses")
	}
	rs.mu.Lock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.report("192.0.2.2", 1) // full, its range has a record: folds 192.0.2.0/24
	}()
	waitForStack(t, "blacklist.(*blockIndex).set(")
	cs.mu.RLock()
	_, indexed := cs.m[client]
	cs.mu.RUnlock()
	rs.mu.Unlock()
	<-done
	if !indexed {
		t.Error("while the range was folded, the blocked client was in the index under neither its key nor its range's")
	}
	if !h.Blocked(addr("192.0.2.1")) || !h.Blocked(addr("192.0.2.2")) {
		t.Error("the folded range is not blocked")
	}
	if e := h.entry(t, "192.0.2.0/24"); !e.Blocked || !e.Aggregated {
		t.Errorf("the range after the fold: %+v", e)
	}
}

// waitForStack waits until a goroutine's stack holds frame: one that is
// blocked there, as nothing else would stay.
func waitForStack(t *testing.T, frame string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if strings.Contains(string(buf[:runtime.Stack(buf, true)]), frame) {
			return
		}
	}
	t.Fatalf("no goroutine reached %s", frame)
}
