package proxy

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// Stats are the listener layer's counters since the Server started, for the
// admin UI and /metrics. Every map is a copy the caller owns.
type Stats struct {
	// Accepted counts connections accepted, by service type; Blocked the
	// part of them closed at once because the Guard blocked the client.
	Accepted map[string]uint64
	Blocked  map[string]uint64
	// Services counts requests per service type and service, sorted by
	// service then type. Service "" collects refusals that named no
	// configured service (unknown names are not kept, so that a scanner
	// cannot grow this list).
	Services []ServiceStats
	// Reasons counts refusals by reason; a Reason outside the fixed set
	// is counted as ReasonOther.
	Reasons map[Reason]uint64
	// DialErrors counts failed connections to a target, by service
	// (reported with ReasonUnreachable, by any handler), and requests
	// refused because the target is down (ReasonTargetDown).
	DialErrors map[string]uint64
	// DialLatency holds the time successful target connections took, TLS
	// included, by service. Only handlers that dial through Conn.Dial feed it.
	DialLatency map[string]Histogram
}

// ServiceStats counts one service type of one service.
type ServiceStats struct {
	Type, Service string
	// Forwarded counts requests that passed every rule and went on to the
	// service's target: each HTTP request, each stream connection.
	Forwarded uint64
	// Refused counts suspicious requests reported for the service.
	Refused uint64
}

// Histogram is a latency distribution in the shape Prometheus uses:
// Buckets[i] counts observations of at most DialBuckets[i] seconds
// (cumulative); Count and Sum (seconds) cover every observation.
type Histogram struct {
	Count   uint64
	Sum     float64
	Buckets []uint64
}

// DialBuckets are the upper bounds, in seconds, of DialLatency's buckets:
// targets are on the local network, so most dials take well under 10 ms and
// limits.dial_timeout (5s by default) ends the slowest.
var DialBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// stats is the live form of Stats. The accept counters are atomics, one
// pair per service type made at the start: the accept path, which a blocked
// client may flood, takes no lock shared with anything. Everything else is
// counted once per request under one mutex, never per byte.
type stats struct {
	accepts map[string]*acceptCounts // read-only after newStats

	mu       sync.Mutex
	services map[serviceKey]*ServiceStats
	reasons  map[Reason]uint64
	dialErrs map[string]uint64
	dialLat  map[string]*Histogram
	hist     map[serviceKey]*series // history.go
	// The counters forward used last (entries are never removed): a busy
	// service's requests hash no key.
	lastKey serviceKey
	lastSS  *ServiceStats
	lastSr  *series
}

type serviceKey struct{ typ, service string }

type acceptCounts struct {
	accepted, blocked atomic.Uint64
	history           *blockedSeries
}

func newStats() *stats {
	accepts := make(map[string]*acceptCounts, len(configs.ServiceTypes))
	for _, t := range configs.ServiceTypes {
		accepts[t.Name] = &acceptCounts{history: newBlockedSeries()}
	}
	return &stats{
		accepts:  accepts,
		services: map[serviceKey]*ServiceStats{},
		reasons:  map[Reason]uint64{},
		dialErrs: map[string]uint64{},
		dialLat:  map[string]*Histogram{},
		hist:     map[serviceKey]*series{},
	}
}

func (s *stats) accept(typ string, blocked bool) {
	c := s.accepts[typ]
	if c == nil {
		return // not a service type: listeners exist only for those
	}
	c.accepted.Add(1)
	if blocked {
		c.blocked.Add(1)
		c.history.add(time.Now().Unix())
	}
}

// service returns the counters of typ and service; s.mu is held.
func (s *stats) service(typ, service string) *ServiceStats {
	k := serviceKey{typ, service}
	ss := s.services[k]
	if ss == nil {
		ss = &ServiceStats{Type: typ, Service: service}
		s.services[k] = ss
	}
	return ss
}

func (s *stats) forward(typ, service string) {
	now := time.Now().Unix()
	s.mu.Lock()
	if k := (serviceKey{typ, service}); s.lastSS == nil || k != s.lastKey {
		s.lastKey, s.lastSS, s.lastSr = k, s.service(typ, service), s.series(typ, service)
	}
	s.lastSS.Forwarded++
	s.lastSr.add(now, func(c *Counts) { c.Forwarded++ })
	s.mu.Unlock()
}

// series returns the history of typ and service; s.mu is held.
func (s *stats) series(typ, service string) *series {
	k := serviceKey{typ, service}
	sr := s.hist[k]
	if sr == nil {
		sr = newSeries()
		s.hist[k] = sr
	}
	return sr
}

// refuse counts a suspicious request on service type typ; known says
// whether service is a configured service (else it is counted under "").
func (s *stats) refuse(typ, service string, reason Reason, known bool) {
	if !known {
		service = ""
	}
	counted := reason
	if !knownReasons[counted] {
		counted = ReasonOther
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reasons[counted]++
	s.service(typ, service).Refused++
	s.series(typ, service).add(time.Now().Unix(), func(c *Counts) { c.Refused++ })
	if reason == ReasonUnreachable || reason == ReasonTargetDown {
		s.dialErrs[service]++
	}
}

func (s *stats) dialed(service string, d time.Duration) {
	sec := d.Seconds()
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.dialLat[service]
	if h == nil {
		h = &Histogram{Buckets: make([]uint64, len(DialBuckets))}
		s.dialLat[service] = h
	}
	h.Count++
	h.Sum += sec
	for i, b := range DialBuckets {
		if sec <= b {
			h.Buckets[i]++
		}
	}
}

func (s *stats) snapshot() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Stats{
		Accepted:    map[string]uint64{},
		Blocked:     map[string]uint64{},
		Reasons:     cloneMap(s.reasons),
		DialErrors:  cloneMap(s.dialErrs),
		DialLatency: make(map[string]Histogram, len(s.dialLat)),
		Services:    make([]ServiceStats, 0, len(s.services)),
	}
	for typ, c := range s.accepts {
		if n := c.accepted.Load(); n > 0 {
			out.Accepted[typ] = n
			out.Blocked[typ] = c.blocked.Load()
		}
	}
	for svc, h := range s.dialLat {
		c := *h
		c.Buckets = slices.Clone(h.Buckets)
		out.DialLatency[svc] = c
	}
	for _, ss := range s.services {
		out.Services = append(out.Services, *ss)
	}
	slices.SortFunc(out.Services, func(a, b ServiceStats) int {
		if c := strings.Compare(strings.ToLower(a.Service), strings.ToLower(b.Service)); c != 0 {
			return c
		}
		return strings.Compare(a.Type, b.Type)
	})
	return out
}

func cloneMap[K comparable](m map[K]uint64) map[K]uint64 {
	c := make(map[K]uint64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats { return s.stats.snapshot() }
