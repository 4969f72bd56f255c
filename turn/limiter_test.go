package turn

import (
	"net/netip"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestLimiter(t *testing.T) {
	clock := &fakeClock{time.Unix(1_700_000_000, 0)}
	l := newLimiter(10, 5, 3, clock.now)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")

	for i := range 5 {
		if !l.allow(a) {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	if l.allow(a) {
		t.Fatal("request over the burst allowed")
	}
	if !l.allow(b) {
		t.Fatal("another address is limited by the first one's burst")
	}
	// Full (a, b, c tracked): a new source waits until one has refilled.
	if !l.allow(netip.MustParseAddr("192.0.2.3")) {
		t.Fatal("third address refused below the cap")
	}
	d := netip.MustParseAddr("192.0.2.4")
	if l.allow(d) {
		t.Fatal("new address allowed while the limiter is full of limited ones")
	}
	clock.advance(time.Second) // everyone refilled: pruning makes room
	if !l.allow(d) {
		t.Fatal("new address refused after the others refilled")
	}
	if len(l.buckets) != 1 {
		t.Errorf("tracking %d addresses after pruning, want 1", len(l.buckets))
	}

	// Refill: one token per 100ms at 10/s, up to the burst.
	for range 5 {
		l.allow(a)
	}
	clock.advance(100 * time.Millisecond)
	if !l.allow(a) || l.allow(a) {
		t.Fatal("refill is not one token per 100ms")
	}
}
