package blacklist

import (
	"net/netip"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// TestSharedFloodEveryBlockHoldsEverywhere is bench/cluster.sh without
// the network: three Lists that share through relays, full (max_tracked
// 300) under a feed of distinct addresses, one suspicious request each,
// round-robin over the nodes; every 10th address instead crosses the
// threshold on its node. Each such block must hold on its own node and on
// the next one (unless its node had already blocked it as part of a range
// before its first request), and every List's bookkeeping must stay whole.
// It failed before a fold's block was shared: the client's first request
// folded its range on its node, blocked there around an earlier block,
// and the next node never heard of a block.
func TestSharedFloodEveryBlockHoldsEverywhere(t *testing.T) {
	cfg := configs.Blacklist{Threshold: 3, Expiration: time.Hour, MaxTracked: 300}
	nodes := []*harness{newHarness(t, cfg), newHarness(t, cfg), newHarness(t, cfg)}
	for _, h := range nodes[1:] {
		h.clock = nodes[0].clock
		h.List.clock = nodes[0].clock.Now
		h.List.epoch = nodes[0].List.epoch
	}
	names := []string{"a", "b", "c"}
	for i, h := range nodes {
		var to []*List
		for j, o := range nodes {
			if j != i {
				to = append(to, o.List)
			}
		}
		h.Share(&relay{node: names[i], to: to}, names[i])
	}
	clock := nodes[0].clock
	blocked, inRange := 0, 0
	for i := range 20000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		own, next := nodes[i%3], nodes[(i+1)%3]
		clock.Advance(time.Millisecond)
		if i%10 != 0 {
			own.Report(Event{Client: ip, Type: "http", Service: "hq", Reason: "url not allowed"})
			continue
		}
		if own.Blocked(ip) {
			inRange++
			continue
		}
		for range 4 {
			own.Report(Event{Client: ip, Type: "http", Service: "hq", Reason: "url not allowed"})
		}
		if !own.Blocked(ip) {
			t.Fatalf("%v: not blocked by its own node %s after 4 requests", ip, names[i%3])
		}
		if !next.Blocked(ip) {
			t.Fatalf("%v: blocked on %s, not on %s", ip, names[i%3], names[(i+1)%3])
		}
		blocked++
		if i%500 == 0 {
			for k, h := range nodes {
				if err := invariants(h.List); err != nil {
					t.Fatalf("node %s after %d addresses: %v", names[k], i+1, err)
				}
			}
		}
	}
	t.Logf("%d blocked and checked on two nodes, %d already in a range block of their node", blocked, inRange)
}
