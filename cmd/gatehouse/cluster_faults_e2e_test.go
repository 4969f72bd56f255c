package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestClusterFaults breaks a running cluster of three gatehouse processes
// the ways a DMZ does: each node in turn is killed with SIGKILL while the
// other two go on taking blocks, and comes back (one of them with an empty
// state directory: a replaced disk); then a node is paused with SIGSTOP for
// ten seconds while blocks are made elsewhere. After every step every entry
// made so far must be refused on every running node; an entry that is not
// is counted as lost, and the run must lose none. A whitelist entry made
// at run time wins over a block on every node.
func TestClusterFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three gatehouse processes and kills them")
	}
	gc := newCluster(t, clusterOptions{})
	gc.startAll()
	a, b, c := gc.nodes[0], gc.nodes[1], gc.nodes[2]

	next := 100
	fresh := func() string {
		next++
		return fmt.Sprintf("127.0.0.%d", next)
	}
	var entries []string // every client blocked so far
	lost := 0
	// check waits until every entry is refused on every node in ns.
	check := func(when string, ns ...*gnode) {
		t.Helper()
		for _, ip := range entries {
			if d, ok := gc.waitRefused(clusterWait, ip, ns...); !ok {
				lost++
				t.Errorf("%s: %s lost: still served after %v", when, ip, d)
			}
		}
	}
	// propagate blocks a new client on from, automatically or by a manual
	// entry, and reports how long until every node of to refuses it.
	propagate := func(what string, manual bool, from *gnode, to ...*gnode) {
		t.Helper()
		ip := fresh()
		if manual {
			gc.adminPost(from, "/api/blacklist", ip)
		} else {
			gc.bruteForce(ip, from)
		}
		entries = append(entries, ip)
		start := time.Now()
		if d, ok := gc.waitRefused(clusterWait, ip, to...); !ok {
			lost++
			t.Errorf("%s: %s made on %s still served after %v", what, ip, from.name, d)
			return
		}
		t.Logf("%s: %s made on %s refused on %d other node(s) after %v", what, ip, from.name, len(to), time.Since(start))
	}

	// Healthy: a block on one node refuses the client on the others.
	propagate("healthy", false, a, b, c)
	propagate("healthy", true, b, a, c)
	propagate("healthy", false, c, a, b)

	for i, victim := range gc.nodes {
		var rest []*gnode
		for _, n := range gc.nodes {
			if n != victim {
				rest = append(rest, n)
			}
		}
		gc.kill(victim)
		// The other two go on, though the killed node may have led the
		// buckets' streams: the first block waits for a new leader.
		propagate(victim.name+" killed", true, rest[0], rest[1])
		propagate(victim.name+" killed", false, rest[1], rest[0])
		check(victim.name+" killed", rest...)
		if i == 1 {
			// A replaced disk: nothing of the cluster's state left.
			for _, d := range []string{victim.storeDir, victim.adminDir} {
				if err := os.RemoveAll(d); err != nil {
					t.Fatal(err)
				}
			}
		}
		gc.start(victim)
		gc.joined(victim)
		check(victim.name+" restarted", victim)
		// Before the next node goes: the copies of this one are current,
		// or a stream could be left with one current replica.
		gc.caughtUp(victim)
		propagate(victim.name+" back", false, victim, rest...)
	}

	// A paused node: b stops for ten seconds. What it blocked before stays
	// refused the moment it runs again (its own copy), and what the others
	// blocked meanwhile reaches it.
	before := fresh()
	gc.bruteForce(before, b)
	entries = append(entries, before)
	gc.refused("blocked on b before the pause", before, b)
	b.in.signal(t, syscall.SIGSTOP)
	paused := time.Now()
	propagate("b paused", true, a, c)
	propagate("b paused", false, c, a)
	time.Sleep(time.Until(paused.Add(10 * time.Second)))
	b.in.signal(t, syscall.SIGCONT)
	if code := gc.get(b, before, "/PBX0/MY"); code != "000" {
		lost++
		t.Errorf("b after SIGCONT serves %s, which it had blocked before the pause (%s)", before, code)
	}
	check("b after SIGCONT", b)

	// The whitelist wins everywhere: a blocked client whitelisted at run
	// time on c is served by all, and the configured whitelisted address
	// misbehaving on every node stays served.
	white := entries[0]
	entries = entries[1:]
	gc.adminPost(c, "/api/whitelist", white)
	for _, n := range gc.nodes {
		deadline := time.Now().Add(clusterWait)
		for gc.get(n, white, "/PBX0/MY") != "200" {
			if time.Now().After(deadline) {
				t.Fatalf("%s still refuses %s, whitelisted on c", n.name, white)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for range 2 {
		for _, n := range gc.nodes {
			gc.get(n, "127.0.0.7", "/PBX0/ADMIN.xml")
		}
	}
	gc.served("configured whitelist", "127.0.0.7")

	// A node cut off from the others (both of them killed): /healthz says
	// so, it goes on enforcing everything it knew and blocks what it sees
	// itself; when the others are back, what it blocked alone reaches them.
	gc.kill(b)
	gc.kill(c)
	health := ""
	for deadline := time.Now().Add(clusterWait); !strings.Contains(health, "no quorum") && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		health = gc.adminGet(a, "/healthz")
	}
	if !strings.Contains(health, "no quorum") {
		t.Errorf("/healthz of a alone: %q", health)
	}
	check("a alone", a)
	alone := fresh()
	gc.bruteForce(alone, a)
	entries = append(entries, alone)
	gc.refused("blocked on a alone", alone, a)
	gc.start(b)
	gc.start(c)
	gc.joined(b)
	gc.joined(c)
	gc.caughtUp(b)
	gc.caughtUp(c)
	if d, ok := gc.waitRefused(clusterWait, alone, b, c); !ok {
		lost++
		t.Errorf("%s, blocked on a while it was alone, still served by b or c after %v", alone, d)
	} else {
		t.Logf("blocked on a while alone: refused by b and c %v after their start", d)
	}
	for deadline := time.Now().Add(clusterWait); health != "ok\n" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		health = gc.adminGet(a, "/healthz")
	}
	if health != "ok\n" {
		t.Errorf("/healthz of a with the others back: %q", health)
	}

	check("end of the run", gc.nodes...)
	t.Logf("%d entries, %d lost", len(entries), lost)
	if lost != 0 {
		t.Fatalf("%d of %d entries lost over the run", lost, len(entries))
	}
}
