package proxy

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// The traffic history's sizes: a second per slot over the last hour, a
// minute per slot over the last day. A series costs about 60 KB; there is
// one per service type and configured service that had traffic (unknown
// names share the service "" series), so the history's size is fixed by
// the configuration, never by what clients send.
const (
	SecondSlots = 3600
	MinuteSlots = 1440
)

// Counts are one slot of a series.
type Counts struct {
	Forwarded, Refused, Blocked uint32
}

// ring is a fixed number of slots of step seconds each, the newest at
// slot number last (unix time / step).
type ring struct {
	step  int64
	slots []Counts
	last  int64
}

func newRing(step int64, n int) ring { return ring{step: step, slots: make([]Counts, n)} }

// at returns the slot of unix time now, clearing the slots skipped since
// the last one. A time before the newest slot (the clock stepped back)
// counts in the newest.
func (r *ring) at(now int64) *Counts {
	n := now / r.step
	r.advance(n)
	if n < r.last {
		n = r.last
	}
	return &r.slots[n%int64(len(r.slots))]
}

func (r *ring) advance(n int64) {
	if r.last == 0 {
		r.last = n
		return
	}
	if n <= r.last {
		return
	}
	size := int64(len(r.slots))
	for i := r.last + 1; i <= min(n, r.last+size); i++ {
		r.slots[i%size] = Counts{}
	}
	r.last = n
}

// read appends the slots up to unix time now, oldest first, to out.
func (r *ring) read(now int64, out []Counts) []Counts {
	n := now / r.step
	size := int64(len(r.slots))
	for i := n - size + 1; i <= n; i++ {
		var c Counts
		if i <= r.last && i > r.last-size {
			c = r.slots[i%size]
		}
		out = append(out, c)
	}
	return out
}

// series is one service type and service's history.
type series struct{ sec, min ring }

func newSeries() *series {
	return &series{sec: newRing(1, SecondSlots), min: newRing(60, MinuteSlots)}
}

func (s *series) add(now int64, f func(*Counts)) {
	f(s.sec.at(now))
	f(s.min.at(now))
}

// blockedSeries counts a service type's connections closed at accept. It
// has a lock of its own: the accept path, which a blocked client may
// flood, shares no lock with the request counters.
type blockedSeries struct {
	mu sync.Mutex
	s  series
}

func newBlockedSeries() *blockedSeries { return &blockedSeries{s: *newSeries()} }

func (b *blockedSeries) add(now int64) {
	b.mu.Lock()
	b.s.add(now, func(c *Counts) { c.Blocked++ })
	b.mu.Unlock()
}

// Series is one service type and service's counts over time: Forwarded,
// Refused and Blocked (connections closed at accept; only under service
// "", as no service is known then) per slot, oldest first.
type Series struct {
	Type      string   `json:"type"`
	Service   string   `json:"service"`
	Forwarded []uint32 `json:"forwarded"`
	Refused   []uint32 `json:"refused"`
	Blocked   []uint32 `json:"blocked"`
}

// History is the traffic over a time range.
type History struct {
	Start  time.Time     `json:"start"` // the oldest slot's start
	Step   time.Duration `json:"-"`
	Series []Series      `json:"series"` // by service, then type
}

// History returns the traffic per second over the last hour (step
// time.Second) or per minute over the last day (time.Minute).
func (s *Server) History(step time.Duration) History {
	return s.stats.history(step, time.Now())
}

func (s *stats) history(step time.Duration, now time.Time) History {
	pick := func(sr *series) *ring {
		if step >= time.Minute {
			return &sr.min
		}
		return &sr.sec
	}
	unix := now.Unix()
	h := History{Step: time.Second, Start: time.Unix(unix-SecondSlots+1, 0), Series: []Series{}}
	if step >= time.Minute {
		h.Step, h.Start = time.Minute, time.Unix((unix/60-MinuteSlots+1)*60, 0)
	}
	var buf []Counts
	merged := map[serviceKey][]Counts{}
	s.mu.Lock()
	for k, sr := range s.hist {
		r := pick(sr)
		merged[k] = r.read(unix, nil)
	}
	s.mu.Unlock()
	for typ, a := range s.accepts {
		a.history.mu.Lock()
		r := pick(&a.history.s)
		if r.last == 0 {
			a.history.mu.Unlock()
			continue // none blocked yet
		}
		buf = r.read(unix, buf[:0])
		a.history.mu.Unlock()
		k := serviceKey{typ, ""}
		m := merged[k]
		if m == nil {
			m = make([]Counts, len(buf))
		}
		for i := range buf {
			m[i].Blocked += buf[i].Blocked
		}
		merged[k] = m
	}
	for k, cs := range merged {
		sr := Series{Type: k.typ, Service: k.service,
			Forwarded: make([]uint32, len(cs)), Refused: make([]uint32, len(cs)), Blocked: make([]uint32, len(cs))}
		for i, c := range cs {
			sr.Forwarded[i], sr.Refused[i], sr.Blocked[i] = c.Forwarded, c.Refused, c.Blocked
		}
		h.Series = append(h.Series, sr)
	}
	slices.SortFunc(h.Series, func(a, b Series) int {
		if c := strings.Compare(strings.ToLower(a.Service), strings.ToLower(b.Service)); c != 0 {
			return c
		}
		return strings.Compare(a.Type, b.Type)
	})
	return h
}
