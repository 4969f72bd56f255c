package gate

import (
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
)

// EventLog keeps the latest suspicious requests for the admin UI's "recent
// refusals" page. It stands between every producer (the proxy, the gate,
// turn, the admin UI's logins) and the blacklist: it is the Guard they all
// report to, records each event and passes it on. It is a ring: memory
// stays fixed however many arrive.
type EventLog struct {
	next Guard
	now  func() time.Time

	mu    sync.Mutex // guards the fields below
	ring  []blacklist.Event
	head  int // where the next event goes
	full  bool
	total uint64
}

// DefaultEventLogSize is how many events the command keeps: a few minutes
// of a scan, many hours of normal life.
const DefaultEventLogSize = 2000

// maxEventText caps the text fields of a recorded event: service names
// come from clients.
const maxEventText = 200

// NewEventLog keeps the last size events and passes every call on to next.
func NewEventLog(next Guard, size int) *EventLog {
	if size < 1 {
		size = 1
	}
	return &EventLog{next: next, now: time.Now, ring: make([]blacklist.Event, size)}
}

// Blocked asks the blacklist.
func (l *EventLog) Blocked(ip netip.Addr) bool { return l.next.Blocked(ip) }

// Report records ev and passes it on.
func (l *EventLog) Report(ev blacklist.Event) {
	rec := ev
	if rec.Time.IsZero() {
		rec.Time = l.now()
	}
	rec.Service = cutText(rec.Service)
	rec.Reason = cutText(rec.Reason)
	rec.Subject = cutText(rec.Subject)
	l.mu.Lock()
	l.ring[l.head] = rec
	l.head = (l.head + 1) % len(l.ring)
	l.full = l.full || l.head == 0
	l.total++
	l.mu.Unlock()
	l.next.Report(ev)
}

func cutText(s string) string {
	if len(s) <= maxEventText {
		return s
	}
	return strings.ToValidUTF8(s[:maxEventText], "") + "…"
}

// Total is the number of events reported since start.
func (l *EventLog) Total() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Recent returns up to limit events, newest first, that contain every word
// of query (case-insensitive) in their client, type, service, reason or
// subject.
// limit <= 0 means all that are kept.
func (l *EventLog) Recent(query string, limit int) []blacklist.Event {
	words := strings.Fields(strings.ToLower(query))
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.head
	if l.full {
		n = len(l.ring)
	}
	var out []blacklist.Event
	for i := 1; i <= n; i++ {
		ev := l.ring[(l.head-i+len(l.ring))%len(l.ring)]
		if matches(ev, words) {
			out = append(out, ev)
			if limit > 0 && len(out) == limit {
				break
			}
		}
	}
	return out
}

func matches(ev blacklist.Event, words []string) bool {
	if len(words) == 0 {
		return true
	}
	text := strings.ToLower(ev.Client.String() + " " + ev.Type + " " + ev.Service + " " + ev.Reason + " " + ev.Subject)
	for _, w := range words {
		if !strings.Contains(text, w) {
			return false
		}
	}
	return true
}

var _ Guard = (*EventLog)(nil)
