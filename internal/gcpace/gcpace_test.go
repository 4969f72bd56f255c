package gcpace

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestPercentFor(t *testing.T) {
	const mb = 1 << 20
	for _, c := range []struct {
		live, headroom uint64
		base, want     int
	}{
		{0, 16 * mb, 100, 400},        // the runtime's minimum, 4 MiB x 4: the goal is the headroom
		{2 * mb, 16 * mb, 100, 450},   // the minimum decides: 4 MiB x 4.5 = 18 MiB = live + headroom
		{8 * mb, 16 * mb, 100, 200},   // 8 x 3 = 24 MiB = live + headroom
		{16 * mb, 16 * mb, 100, 100},  // GOGC's own goal is as far
		{100 * mb, 16 * mb, 100, 100}, // large heaps: GOGC's goal, no more memory than without
		{100 * mb, 16 * mb, 200, 200}, // an operator's GOGC stays the floor
		{1 * mb, 1 * mb, 100, 100},    // a headroom below GOGC's changes nothing
	} {
		if got := percentFor(c.live, c.headroom, c.base); got != c.want {
			t.Errorf("percentFor(live %d MiB, headroom %d MiB, GOGC %d) = %d, want %d",
				c.live/mb, c.headroom/mb, c.base, got, c.want)
		}
	}
}

// garbage allocates n bytes that nothing keeps, and returns how many
// collections ran meanwhile.
func garbage(n int) uint32 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.NumGC
	for i := 0; i < n/4096; i++ {
		b := make([]byte, 4096)
		sink = b
	}
	sink = nil
	runtime.ReadMemStats(&ms)
	return ms.NumGC - before
}

var sink []byte

// With a small live heap (a test binary's), a 64 MiB headroom makes
// collections several times rarer than GOGC=100 for the same garbage.
func TestFewerCollections(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	runtime.GC()
	without := garbage(512 << 20)
	stop := Start(64 << 20)
	with := garbage(512 << 20)
	stop()
	t.Logf("collections for 512 MiB of garbage: %d with a 64 MiB headroom, %d without", with, without)
	if with == 0 || with*4 > without {
		t.Fatalf("%d collections for 512 MiB of garbage with a 64 MiB headroom, %d without: want fewer than a quarter", with, without)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC after stop: %d, want 100 back", got)
	}
}

// Once the live heap is larger than the headroom, the percentage is
// GOGC's again (memory per held connection as without pacing), and stop
// puts GOGC back for good.
func TestLargeHeapKeepsGOGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	p, stop := start(4 << 20)
	defer stop()
	if p == nil {
		t.Fatal("no pacer at GOGC=100")
	}
	live := make([][]byte, 0, 64)
	for range 64 {
		live = append(live, make([]byte, 1<<20))
	}
	// The finalizer of each cycle sets the next percentage; a few cycles
	// and a yield let it run (no clock involved).
	for i := 0; i < 100 && p.set() != 100; i++ {
		runtime.GC()
		runtime.Gosched()
	}
	if got := p.set(); got != 100 {
		t.Fatalf("percentage with 64 MiB live and a 4 MiB headroom: %d, want GOGC's 100", got)
	}
	runtime.KeepAlive(live)
	live = nil
	stop()
	for range 3 {
		runtime.GC()
		runtime.Gosched()
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC after stop: %d, want 100", got)
	}
}

// GOGC=off stays off: nothing is paced.
func TestOffStaysOff(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	p, stop := start(16 << 20)
	defer stop()
	if p != nil {
		t.Fatal("a pacer with GOGC off")
	}
	if got := debug.SetGCPercent(-1); got != -1 {
		t.Fatalf("GOGC: %d, want off (-1)", got)
	}
}
