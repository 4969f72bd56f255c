package proxy

import (
	"fmt"
	"testing"
	"time"
)

// TestRing follows a ring through counts, a gap, a wrap past its size and
// a clock that steps back.
func TestRing(t *testing.T) {
	r := newRing(1, 4)
	sum := func(cs []Counts) (out []uint32) {
		for _, c := range cs {
			out = append(out, c.Forwarded)
		}
		return out
	}
	r.at(100).Forwarded++
	r.at(100).Forwarded++
	r.at(101).Forwarded++
	if got := fmt.Sprint(sum(r.read(101, nil))); got != "[0 0 2 1]" {
		t.Errorf("after 100, 101: %s", got)
	}
	if got := fmt.Sprint(sum(r.read(103, nil))); got != "[2 1 0 0]" {
		t.Errorf("read later, nothing counted since: %s", got)
	}
	r.at(103).Forwarded++ // a gap of one slot, cleared
	if got := fmt.Sprint(sum(r.read(103, nil))); got != "[2 1 0 1]" {
		t.Errorf("after a gap: %s", got)
	}
	r.at(50).Forwarded++ // clock stepped back: counted in the newest slot
	if got := fmt.Sprint(sum(r.read(103, nil))); got != "[2 1 0 2]" {
		t.Errorf("after a step back: %s", got)
	}
	r.at(110).Forwarded++ // further than the ring: everything older is gone
	if got := fmt.Sprint(sum(r.read(110, nil))); got != "[0 0 0 1]" {
		t.Errorf("after a long gap: %s", got)
	}
	m := newRing(60, 3)
	m.at(120).Forwarded++
	m.at(179).Forwarded++
	m.at(180).Forwarded++
	if got := fmt.Sprint(sum(m.read(200, nil))); got != "[0 2 1]" {
		t.Errorf("minutes: %s", got)
	}
}

// TestHistoryOfStats: what the counters count goes into the series of its
// service type and service, the accept-time blocks into service "".
func TestHistoryOfStats(t *testing.T) {
	s := newStats()
	s.forward("sip", "pbx.example.com")
	s.forward("sip", "pbx.example.com")
	s.refuse("sip", "pbx.example.com", ReasonCredentials, true)
	s.refuse("sip", "scanner.example", ReasonUnknownService, false)
	s.accept("sip", true)
	for _, step := range []time.Duration{time.Second, time.Minute} {
		h := s.history(step, time.Now())
		if h.Step != step || len(h.Series) != 2 {
			t.Fatalf("step %s: %+v", step, h)
		}
		want := map[string][3]uint32{"sip/": {0, 1, 1}, "sip/pbx.example.com": {2, 1, 0}}
		for _, sr := range h.Series {
			var got [3]uint32
			for i := range sr.Forwarded {
				got[0] += sr.Forwarded[i]
				got[1] += sr.Refused[i]
				got[2] += sr.Blocked[i]
			}
			if got != want[sr.Type+"/"+sr.Service] {
				t.Errorf("step %s, %s/%s: %v, want %v", step, sr.Type, sr.Service, got, want[sr.Type+"/"+sr.Service])
			}
			if n := len(sr.Forwarded); (step == time.Second && n != SecondSlots) || (step == time.Minute && n != MinuteSlots) {
				t.Errorf("step %s: %d slots", step, n)
			}
		}
	}
	// Read two hours later, the per-second series are all zero, and start
	// an hour before.
	later := time.Now().Add(2 * time.Hour).Truncate(time.Second)
	h := s.history(time.Second, later)
	for _, sr := range h.Series {
		for i := range sr.Forwarded {
			if sr.Forwarded[i]+sr.Refused[i]+sr.Blocked[i] != 0 {
				t.Fatalf("%s/%s slot %d counted two hours later", sr.Type, sr.Service, i)
			}
		}
	}
	if want := later.Add(-(SecondSlots - 1) * time.Second); !h.Start.Equal(want) {
		t.Errorf("start %v, want %v", h.Start, want)
	}
}
