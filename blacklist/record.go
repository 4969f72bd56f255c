package blacklist

import (
	"cmp"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
	"unique"
)

// Window is the span suspicious requests are counted over.
const Window = time.Minute

// maxReasons is how many of a client's latest requests are kept for display.
const maxReasons = 4

// maxText caps each string kept from an Event: the service name may come
// straight from a client's packet.
const maxText = 64

// instant is a point in time as nanoseconds since the List's epoch. Taken
// with time.Time.Sub it follows the monotonic clock, so a wall clock step
// neither releases every block nor makes them last for hours.
type instant int64

// record is what the List knows about one client key. It is either a counter
// (expires == 0, in List.counters) or an automatic block (expires != 0, in
// List.blocks and List.index); never both.
type record struct {
	key         netip.Prefix
	first, last instant // first and last suspicious request
	touched     instant // last request or release: orders List.counters
	total       uint64
	hits        window
	reasons     []reason // the latest maxReasons, oldest first
	expires     instant  // end of the automatic block; 0 when not blocked
	since       instant  // start of the automatic block
	// attempts counts, while blocked, the connections and packets Blocked
	// refused and the requests reported after the block began. Blocked adds
	// to it without List.mu (through List.index); it is reset when a block
	// starts and ends.
	attempts atomic.Uint64
	// peers are the requests other nodes of a cluster counted, by node
	// (shared.go); by is the node that made the block.
	peers map[string][]instant
	by    string

	heapIdx    int     // position in List.blocks, -1 when not blocked
	prev, next *record // links in List.counters
	// agg: the record of a whole range (aggregate.go), not of one client.
	agg  bool
	gidx int // position in its range's List.groups entry; -1 for none
}

func (r *record) blocked() bool { return r.expires != 0 }

// reason is an Event as kept for display. The strings are interned: the few
// service types and reasons are shared by every record, and a kept service
// name never pins the buffer of the packet it was read from.
type reason struct {
	at                  instant
	typ, service, cause unique.Handle[string]
}

// note records the request ev: counted at now, dated at (the event's own time)
// for display.
func (r *record) note(ev Event, at, now instant) {
	if r.total == 0 || now < r.first {
		r.first = now
	}
	r.last = max(r.last, now)
	r.touched = max(r.touched, now)
	r.total++
	rs := reason{
		at:      at,
		typ:     unique.Make(cut(ev.Type, maxText)),
		service: unique.Make(cut(ev.Service, maxText)),
		cause:   unique.Make(cut(ev.Reason, maxText)),
	}
	if len(r.reasons) < maxReasons {
		r.reasons = append(r.reasons, rs)
		return
	}
	copy(r.reasons, r.reasons[1:])
	r.reasons[len(r.reasons)-1] = rs
}

// absorb merges what src knows into r, for two records that became one
// client (the IPv6 prefix length got shorter). The caller merges the blocks
// (expires, since).
func (r *record) absorb(src *record) {
	if src.total > 0 && (r.total == 0 || src.first < r.first) {
		r.first = src.first
	}
	r.last = max(r.last, src.last)
	r.touched = max(r.touched, src.touched)
	r.total += src.total
	r.attempts.Add(src.attempts.Load())
	all := append(slices.Clone(r.reasons), src.reasons...)
	slices.SortStableFunc(all, func(a, b reason) int { return cmp.Compare(a.at, b.at) })
	r.reasons = all[max(0, len(all)-maxReasons):]
}

// cut shortens s to at most n bytes at a UTF-8 boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 { // a continuation byte
		n--
	}
	return s[:n]
}

// window holds the times of a client's latest suspicious requests, at most
// threshold+1 of them, as a ring.
//
// Timestamps rather than per-second buckets: "more than threshold in the last
// 60 s" only asks whether the (threshold+1)-th latest request is younger than
// 60 s, which threshold+1 timestamps answer exactly, to the nanosecond, with
// no bucket edges. The ring grows on demand, so the one-off scanners that make
// up most records hold a single timestamp, where buckets would cost 60
// counters for every record. The price: Count saturates at threshold+1.
type window struct {
	ts   []int64 // instants; chronological from index 0 until the ring is full
	next int     // once full: the slot of the oldest time, overwritten next
}

func (w *window) add(t instant, size int) {
	if len(w.ts) < size {
		if len(w.ts) == cap(w.ts) {
			grown := make([]int64, len(w.ts), min(max(2*cap(w.ts), 2), size))
			copy(grown, w.ts)
			w.ts = grown
		}
		w.ts = append(w.ts, int64(t))
		return
	}
	w.ts[w.next] = int64(t)
	w.next = (w.next + 1) % len(w.ts)
}

// count returns how many of the kept requests fall in the Window before now:
// a request at t counts until t+Window, exclusive.
func (w *window) count(now instant) int {
	n := 0
	for _, t := range w.ts {
		if t > int64(now)-int64(Window) {
			n++
		}
	}
	return n
}

// resize keeps the latest size times, for a new threshold.
func (w *window) resize(size int) {
	ordered := append(append([]int64(nil), w.ts[w.next:]...), w.ts[:w.next]...)
	if len(ordered) > size {
		ordered = ordered[len(ordered)-size:]
	}
	w.ts, w.next = ordered, 0
}

// blockHeap orders automatic blocks by expiry, for the expiry sweep and for
// evicting the block that ends soonest.
type blockHeap []*record

func (h blockHeap) Len() int           { return len(h) }
func (h blockHeap) Less(i, j int) bool { return h[i].expires < h[j].expires }
func (h blockHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *blockHeap) Push(x any) {
	r := x.(*record)
	r.heapIdx = len(*h)
	*h = append(*h, r)
}
func (h *blockHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	r.heapIdx = -1
	return r
}

// counterList holds the counters, most recently active first; eviction and
// the idle sweep take from the back.
type counterList struct {
	front, back *record
	n           int
}

func (q *counterList) pushFront(r *record) {
	r.prev, r.next = nil, q.front
	if q.front != nil {
		q.front.prev = r
	} else {
		q.back = r
	}
	q.front = r
	q.n++
}

func (q *counterList) remove(r *record) {
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		q.front = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	} else {
		q.back = r.prev
	}
	r.prev, r.next = nil, nil
	q.n--
}

func (q *counterList) moveToFront(r *record) {
	if q.front != r {
		q.remove(r)
		q.pushFront(r)
	}
}
