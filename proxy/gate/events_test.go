package gate_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
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
