// Package gcpace keeps the garbage collector's heap goal a fixed headroom
// above the live heap while the live heap is small.
//
// With GOGC=100 the collector starts a cycle when the heap has grown by
// as much as survived the last one. A proxy under load keeps little alive
// (a few MB: its connections' state) and allocates steadily (request
// heads, TLS records), so it collects several times a second; on one P
// every cycle takes its share of the only processor for a millisecond or
// two, and the requests caught in it are the slowest hundredth (the p99
// of bench/http.sh). A fixed headroom makes cycles rarer where they cost
// nothing in memory that matters, and changes nothing once the live heap
// is larger than the headroom (10,000 held connections): there the goal
// is GOGC's again, so memory per connection is as before.
//
// The pacing runs in the runtime's finalizer goroutine: a sentinel object
// whose finalizer, run after each cycle, sets the percentage for the next
// one from the live heap the cycle found (runtime/metrics) and arms a new
// sentinel. No goroutine of its own, no timer.
package gcpace

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// Headroom is gatehouse's: 16 MiB of garbage at most before a cycle, the
// size of a few hundred TLS connections' buffers.
const Headroom = 16 << 20

// pacer is the state Start shares with its finalizers.
type pacer struct {
	headroom uint64
	base     int // GOGC as it was: the percentage when the live heap is large
	mu       sync.Mutex
	stopped  bool
	sample   []metrics.Sample
	percent  int // last set, for tests
}

type sentinel struct{ _ *int } // a pointer, so that it is a heap object of its own

// Start paces the collector so that a cycle begins only when the heap has
// grown by at least headroom bytes, or by GOGC percent of the live heap if
// that is more. It does nothing when GOGC is off. The returned stop puts
// GOGC back as it was.
func Start(headroom uint64) (stop func()) {
	_, stop = start(headroom)
	return stop
}

// start is Start, with the pacer for tests (nil when it does nothing).
func start(headroom uint64) (*pacer, func()) {
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	if base < 0 || headroom == 0 {
		return nil, func() {}
	}
	p := &pacer{headroom: headroom, base: base, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	p.adjust()
	p.arm()
	return p, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.stopped {
			p.stopped = true
			debug.SetGCPercent(p.base)
		}
	}
}

// set is the percentage adjust set last.
func (p *pacer) set() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.percent
}

func (p *pacer) arm() {
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) {
		if p.adjust() {
			p.arm()
		}
	})
}

// adjust sets the percentage for the next cycle; false once stopped.
func (p *pacer) adjust() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return false
	}
	metrics.Read(p.sample)
	live := uint64(0)
	if p.sample[0].Value.Kind() == metrics.KindUint64 {
		live = p.sample[0].Value.Uint64()
	}
	p.percent = percentFor(live, p.headroom, p.base)
	debug.SetGCPercent(p.percent)
	return true
}

// heapMinimum is the runtime's least heap goal at GOGC=100 (its
// defaultHeapMinimum); it scales with GOGC, so a large percentage on a
// small heap would set a goal of its own far above live+headroom.
const heapMinimum = 4 << 20

// percentFor is the GOGC that puts the goal headroom above live, or base
// when that is more: the goal is the larger of live*(1+GOGC/100) and
// heapMinimum*GOGC/100, so the percentage is the smaller of the one that
// gives live+headroom through the first and through the second.
func percentFor(live, headroom uint64, base int) int {
	byLive := uint64(1<<31 - 1)
	if live > 0 {
		byLive = headroom * 100 / live
	}
	byMinimum := (live + headroom) * 100 / heapMinimum
	return max(int(min(byLive, byMinimum)), base)
}
