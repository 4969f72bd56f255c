package blacklist

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// t0 is where every fake clock starts.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is the injected clock: time moves only when a test says so.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// logBuffer collects log output from any goroutine.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// lines returns the logged lines that contain every one of parts.
func (b *logBuffer) lines(parts ...string) []string {
	var out []string
	for _, line := range strings.Split(b.String(), "\n") {
		ok := line != ""
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

type harness struct {
	*List
	clock *fakeClock
	logs  *logBuffer
}

// newHarness makes a List with an injected clock and a captured log.
func newHarness(t testing.TB, cfg configs.Blacklist) *harness {
	t.Helper()
	return newHarnessAt(t, cfg, t0)
}

// newHarnessAt is newHarness with the clock starting at start.
func newHarnessAt(t testing.TB, cfg configs.Blacklist, start time.Time) *harness {
	t.Helper()
	h := &harness{clock: &fakeClock{now: start}, logs: &logBuffer{}}
	l, err := New(cfg, Options{
		Clock:  h.clock.Now,
		Logger: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.List = l
	t.Cleanup(func() { checkInvariants(t, l) })
	return h
}

// report sends n suspicious requests from ip.
func (h *harness) report(ip string, n int) {
	for range n {
		h.Report(Event{Client: netip.MustParseAddr(ip), Type: "sip", Service: "example.com", Reason: "unknown service"})
	}
}

// entry returns the entry for p, failing the test when there is none.
func (h *harness) entry(t testing.TB, p string) Entry {
	t.Helper()
	want := netip.MustParsePrefix(p)
	for _, e := range h.Entries(Filter{}) {
		if e.Prefix == want {
			return e
		}
	}
	t.Fatalf("no entry for %s in %v", p, h.Entries(Filter{}))
	return Entry{}
}

func (h *harness) hasEntry(p string) bool {
	want := netip.MustParsePrefix(p)
	for _, e := range h.Entries(Filter{}) {
		if e.Prefix == want {
			return true
		}
	}
	return false
}

func addr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func prefixes(ss ...string) []configs.Prefix {
	var out []configs.Prefix
	for _, s := range ss {
		p, err := configs.ParsePrefix(s)
		if err != nil {
			panic(err)
		}
		out = append(out, p)
	}
	return out
}

// checkInvariants verifies the List's internal bookkeeping: every record is
// exactly one of a counter or a block, the heap is ordered, the accept
// index mirrors the blocks, and the cap holds.
func checkInvariants(t testing.TB, l *List) {
	t.Helper()
	if err := invariants(l); err != nil {
		t.Error(err)
	}
}

func invariants(l *List) error {
	l.mu.Lock()
	defer l.unlock()
	if len(l.records) > l.cfg.MaxTracked {
		return fmt.Errorf("%d records, max_tracked %d", len(l.records), l.cfg.MaxTracked)
	}
	n := 0
	var prev *record
	for r := l.counters.front; r != nil; prev, r = r, r.next {
		n++
		if r.prev != prev {
			return fmt.Errorf("counter %s: broken back link", r.key)
		}
		if r.blocked() || r.heapIdx != -1 {
			return fmt.Errorf("counter %s is blocked", r.key)
		}
		if l.records[r.key] != r {
			return fmt.Errorf("counter %s is not in records", r.key)
		}
		if prev != nil && prev.touched < r.touched {
			return fmt.Errorf("counters out of order at %s", r.key)
		}
	}
	if prev != l.counters.back || n != l.counters.n {
		return fmt.Errorf("counter list: back or length wrong (%d walked, %d kept)", n, l.counters.n)
	}
	for i, r := range l.blocks {
		if r.heapIdx != i || !r.blocked() || l.records[r.key] != r {
			return fmt.Errorf("block %s at %d: heapIdx %d, expires %d", r.key, i, r.heapIdx, r.expires)
		}
		if i > 0 && l.blocks[(i-1)/2].expires > r.expires {
			return fmt.Errorf("block heap out of order at %d", i)
		}
		if until, ok := l.index.until(r.key); !ok || until != r.expires {
			return fmt.Errorf("index has %v/%v for block %s until %v", until, ok, r.key, r.expires)
		}
		if _, ok := l.rules.Load().white.covers(r.key); ok {
			return fmt.Errorf("block %s is whitelisted", r.key)
		}
	}
	if got := l.index.len(); got != len(l.blocks) {
		return fmt.Errorf("index holds %d blocks, heap %d", got, len(l.blocks))
	}
	grouped := 0
	for a, g := range l.groups {
		for i, r := range g {
			grouped++
			if r.gidx != i || r.agg || l.records[r.key] != r {
				return fmt.Errorf("group %s: %s at %d has gidx %d", a, r.key, i, r.gidx)
			}
			if ra, _ := aggregateKey(r.key); ra != a {
				return fmt.Errorf("group %s holds %s", a, r.key)
			}
		}
	}
	for _, r := range l.records {
		if _, ok := aggregateKey(r.key); ok && !r.agg && r.gidx < 0 {
			return fmt.Errorf("record %s is in no group", r.key)
		}
		if r.agg {
			grouped++ // not grouped, counted so that the sum below holds
		} else if _, ok := aggregateKey(r.key); !ok {
			grouped++
		}
	}
	if grouped != len(l.records) {
		return fmt.Errorf("groups hold %d records of %d", grouped, len(l.records))
	}
	if n+len(l.blocks) != len(l.records) {
		return fmt.Errorf("%d counters + %d blocks != %d records", n, len(l.blocks), len(l.records))
	}
	for _, r := range l.records {
		if len(r.hits.ts) > l.cfg.Threshold+1 {
			return fmt.Errorf("%s keeps %d hits, threshold %d", r.key, len(r.hits.ts), l.cfg.Threshold)
		}
		if len(r.reasons) > maxReasons {
			return fmt.Errorf("%s keeps %d reasons", r.key, len(r.reasons))
		}
	}
	return nil
}
