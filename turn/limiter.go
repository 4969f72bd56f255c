package turn

import (
	"net/netip"
	"sync"
	"time"
)

// Request rate per source address. A phone sends a few requests a minute
// (allocate, refresh, permissions, keep-alive bindings); the burst leaves
// room for a NAT with many phones behind one address starting at once.
const (
	requestRate  = 50  // per second
	requestBurst = 200 // requests
	// maxTracked bounds the limiter's memory under a flood of spoofed sources.
	maxTracked = 1 << 16
)

// limiter is a token bucket per source address. It answers floods of
// requests (each of which would cost a response, and a 401 challenge is
// bigger than the request) without any log line per request.
type limiter struct {
	rate, burst float64
	max         int
	now         func() time.Time

	mu        sync.Mutex // guards the fields below
	buckets   map[netip.Addr]*bucket
	lastPrune time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate, burst float64, max int, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: burst, max: max, now: now, buckets: make(map[netip.Addr]*bucket)}
}

// allow takes one token from ip's bucket, reporting whether there was one.
func (l *limiter) allow(ip netip.Addr) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[ip]
	if b == nil {
		if len(l.buckets) >= l.max && now.Sub(l.lastPrune) >= time.Second {
			l.prune(now)
		}
		if len(l.buckets) >= l.max {
			return false // full of sources still being limited: new ones wait
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[ip] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// prune forgets sources whose bucket has refilled: they are no different
// from sources never seen.
func (l *limiter) prune(now time.Time) {
	l.lastPrune = now
	for ip, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, ip)
		}
	}
}
