package gate_test

import (
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy/gate"
)

// passGuard counts what the event log passes on.
type passGuard struct{ reports int }

func (g *passGuard) Blocked(netip.Addr) bool   { return false }
func (g *passGuard) Report(ev blacklist.Event) { g.reports++ }

func TestEventLogRing(t *testing.T) {
	next := &passGuard{}
	l := gate.NewEventLog(next, 3)
	for i, r := range []string{"unknown service", "url not allowed", "tls handshake failed", "unreadable request (no From header)"} {
		l.Report(blacklist.Event{Client: netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + i)}), Type: "sip", Reason: r})
	}
	if next.reports != 4 || l.Total() != 4 {
		t.Fatalf("passed on %d, total %d; want 4 and 4", next.reports, l.Total())
	}
	got := l.Recent("", 0)
	if len(got) != 3 || got[0].Reason != "unreadable request (no From header)" || got[2].Reason != "url not allowed" {
		t.Fatalf("recent %+v: want the last three, newest first", got)
	}
	if got := l.Recent("127.0.0.5 FROM header", 0); len(got) != 1 || got[0].Client != netip.MustParseAddr("127.0.0.5") {
		t.Fatalf("search: %+v", got)
	}
	if got := l.Recent("127.0.0.4/31 sip", 0); len(got) != 2 || got[0].Client != netip.MustParseAddr("127.0.0.5") {
		t.Fatalf("search by network: %+v", got)
	}
	if got := l.Recent("", 1); len(got) != 1 {
		t.Fatalf("limit 1: %d events", len(got))
	}
	if got[0].Time.IsZero() {
		t.Fatal("an event without a time got none")
	}
}

func TestEventLogCutsClientText(t *testing.T) {
	l := gate.NewEventLog(&passGuard{}, 1)
	long := strings.Repeat("é", 300) // service names come from clients
	l.Report(blacklist.Event{Service: long, Reason: "unknown service"})
	ev := l.Recent("", 0)[0]
	if len(ev.Service) > 210 || !strings.HasSuffix(ev.Service, "…") || !strings.HasPrefix(long, strings.TrimSuffix(ev.Service, "…")) {
		t.Fatalf("service kept as %d bytes: %q", len(ev.Service), ev.Service)
	}
}

// TestEventLogCoalescesAcceptRefusals: a client refused at accept in a loop
// is one entry a minute with its count and first and latest time; it does
// not push earlier requests out of the ring; a blocked client's refusals
// are not passed on to the blacklist, a cap's are.
func TestEventLogCoalescesAcceptRefusals(t *testing.T) {
	next := &passGuard{}
	l := gate.NewEventLog(next, 4)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ip := netip.MustParseAddr("127.0.0.7")
	l.Report(blacklist.Event{Client: netip.MustParseAddr("127.0.0.2"), Type: "http", Reason: "url not allowed", Subject: "/etc/passwd", Time: t0})
	for i := range 10000 {
		l.AcceptRefused(blacklist.Event{Client: ip, Type: "https", Reason: gate.ReasonBlocked, Time: t0.Add(time.Duration(i) * time.Millisecond)}, false)
	}
	l.AcceptRefused(blacklist.Event{Client: ip, Type: "https", Reason: gate.ReasonClientCap, Time: t0.Add(time.Second)}, true)
	l.AcceptRefused(blacklist.Event{Client: ip, Type: "sip", Reason: gate.ReasonBlocked, Time: t0.Add(time.Second)}, false)
	got := l.Recent("", 0)
	if len(got) != 4 {
		t.Fatalf("%d entries, want 4: %+v", len(got), got)
	}
	var blocked gate.Entry
	for _, e := range got {
		if e.Type == "https" && e.Reason == gate.ReasonBlocked {
			blocked = e
		}
	}
	if !blocked.AtAccept || blocked.Count != 10000 || !blocked.First.Equal(t0) || !blocked.Time.Equal(t0.Add(9999*time.Millisecond)) {
		t.Fatalf("coalesced entry %+v", blocked)
	}
	if got[0] != blocked || got[3].Subject != "/etc/passwd" || got[3].Count != 1 || got[3].AtAccept {
		t.Fatalf("order (the latest first) or the request: %+v", got)
	}
	if next.reports != 2 || l.Total() != 2 { // the request and the cap
		t.Fatalf("passed on %d, total %d; want 2 and 2", next.reports, l.Total())
	}
	// A minute after the first, the next repeat starts a new entry.
	l.AcceptRefused(blacklist.Event{Client: ip, Type: "https", Reason: gate.ReasonBlocked, Time: t0.Add(time.Minute)}, false)
	if got := l.Recent("https blocked", 0); len(got) != 2 || got[0].Count != 1 || got[1].Count != 10000 {
		t.Fatalf("after a minute: %+v", got)
	}
}

// TestEventLogCoalescingAfterOverwrite: once the ring has overwritten a
// coalescing entry, the next repeat makes a new one instead of adding to
// whatever took its slot.
func TestEventLogCoalescingAfterOverwrite(t *testing.T) {
	l := gate.NewEventLog(&passGuard{}, 2)
	ip := netip.MustParseAddr("127.0.0.7")
	l.AcceptRefused(blacklist.Event{Client: ip, Type: "https", Reason: gate.ReasonBlocked}, false)
	l.Report(blacklist.Event{Client: netip.MustParseAddr("127.0.0.2"), Type: "http", Reason: "url not allowed"})
	l.Report(blacklist.Event{Client: netip.MustParseAddr("127.0.0.3"), Type: "http", Reason: "url not allowed"})
	l.AcceptRefused(blacklist.Event{Client: ip, Type: "https", Reason: gate.ReasonBlocked}, false)
	got := l.Recent("", 0)
	if len(got) != 2 || got[0].Client != ip || got[0].Count != 1 || got[1].Count != 1 || got[1].Client != netip.MustParseAddr("127.0.0.3") {
		t.Fatalf("after overwrite: %+v", got)
	}
}

// TestEventLogConcurrentAcceptRefusals: accept paths and readers at once
// (meant for -race): no refusal is lost from the counts.
func TestEventLogConcurrentAcceptRefusals(t *testing.T) {
	l := gate.NewEventLog(&passGuard{}, 64)
	const workers, rounds = 4, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				ip := netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + (w+i)%3)})
				l.AcceptRefused(blacklist.Event{Client: ip, Type: "https", Reason: gate.ReasonBlocked}, false)
			}
		})
	}
	wg.Go(func() {
		for range 200 {
			l.Recent("127.0.0", 10)
		}
	})
	wg.Wait()
	sum := 0
	for _, e := range l.Recent("", 0) {
		sum += e.Count
	}
	if sum != workers*rounds {
		t.Fatalf("counts sum to %d, want %d", sum, workers*rounds)
	}
}

// TestGateRecordsAcceptRefusals: with an EventLog as its Guard, the gate
// lists a blocked client's connections and those over a cap in the refusal
// log; the blacklist counts the blocked ones as attempts, not as new
// suspicious requests.
func TestGateRecordsAcceptRefusals(t *testing.T) {
	bl, err := blacklist.New(configs.Blacklist{Threshold: 1, Expiration: time.Hour, Blacklist: prefixes("192.0.2.0/24")},
		blacklist.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	events := gate.NewEventLog(bl, 100)
	g := gate.New(gate.Options{Guard: events, Key: bl.Key, Logger: slog.New(slog.DiscardHandler)})
	g.SetLimits(gate.Limits{PerClient: 1})
	for range 5 {
		if _, v := g.Admit(pipe(t), netip.MustParseAddr("192.0.2.9"), gate.Service, "sips"); v != gate.Blocked {
			t.Fatal(v)
		}
	}
	admit(t, g, "198.51.100.1", gate.Service)
	admit(t, g, "198.51.100.1", gate.Service)
	got := events.Recent("", 0)
	if len(got) != 2 || got[1].Reason != gate.ReasonBlocked || got[1].Count != 5 || got[1].Type != "sips" ||
		got[1].Client != netip.MustParseAddr("192.0.2.9") || !got[1].AtAccept || got[0].Reason != gate.ReasonClientCap {
		t.Fatalf("refusal log %+v", got)
	}
	es := bl.Entries(blacklist.Filter{Address: "192.0.2."})
	if len(es) != 1 || es[0].AttemptsWhileBlocked != 5 || es[0].Total != 0 {
		t.Fatalf("blacklist %+v", es)
	}
	if es := bl.Entries(blacklist.Filter{Address: "198.51.100.1"}); len(es) != 1 || es[0].Total != 1 {
		t.Fatalf("the cap was not reported: %+v", es)
	}
}

func prefixes(ss ...string) []configs.Prefix {
	out := make([]configs.Prefix, len(ss))
	for i, s := range ss {
		p, err := configs.ParsePrefix(s)
		if err != nil {
			panic(err)
		}
		out[i] = p
	}
	return out
}

// TestAcceptRefusedRepeatDoesNotAllocate: a blocked client's reconnect
// loop costs the accept path a map lookup and a few stores, nothing for
// the garbage collector.
func TestAcceptRefusedRepeatDoesNotAllocate(t *testing.T) {
	l := gate.NewEventLog(&passGuard{}, 16)
	ev := blacklist.Event{Client: netip.MustParseAddr("127.0.0.7"), Type: "https", Reason: gate.ReasonBlocked}
	l.AcceptRefused(ev, false)
	if n := testing.AllocsPerRun(100, func() { l.AcceptRefused(ev, false) }); n != 0 {
		t.Fatalf("%v allocations per repeat", n)
	}
	if got := l.Recent("", 0); len(got) != 1 || got[0].Count != 102 {
		t.Fatalf("%+v", got)
	}
}
