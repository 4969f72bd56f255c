package gate

import (
	"net/netip"
	"slices"
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
//
// Connections refused at accept (AcceptRefused) are coalesced: one entry
// per client, listener type and reason for every coalesceFor, with a count
// and the first and latest time, so that a blocked client reconnecting in
// a loop costs one line a minute, not the log. The accept path holds the
// mutex for a map lookup and a few stores, no allocation once the entry
// exists; readers copy the ring under it and search outside.
type EventLog struct {
	next Guard
	now  func() time.Time

	mu     sync.Mutex // guards the fields below
	ring   []Entry
	seq    []uint64 // the sequence number of each slot's entry
	head   int      // where the next entry goes
	full   bool
	total  uint64 // suspicious events, as passed on
	nseq   uint64
	accept map[acceptKey]acceptSlot // the coalescing entries still in the ring
}

// Entry is one line of the refusal log.
type Entry struct {
	blacklist.Event // Time is the latest refusal the entry stands for
	// Count is how many refusals the entry stands for: 1 for a request; for
	// connections refused at accept, the repeats within coalesceFor.
	Count int `json:"count"`
	// First is the first of them (Time for a request).
	First time.Time `json:"first"`
	// AtAccept: the connection was refused at accept, before a byte was
	// read (the client is blocked, or over a limits.max_conns* cap).
	AtAccept bool `json:"at_accept"`
}

// acceptKey is what coalesces refusals at accept.
type acceptKey struct {
	client      netip.Addr
	typ, reason string
}

// acceptSlot is where an entry lives in the ring, and its sequence number
// (the slot may since hold another entry).
type acceptSlot struct {
	slot int
	seq  uint64
}

// coalesceFor is how long repeats of one refusal at accept go into one
// entry: a reconnect loop makes one line a minute.
const coalesceFor = time.Minute

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
	return &EventLog{next: next, now: time.Now, ring: make([]Entry, size), seq: make([]uint64, size),
		accept: make(map[acceptKey]acceptSlot)}
}

// Blocked asks the blacklist.
func (l *EventLog) Blocked(ip netip.Addr) bool { return l.next.Blocked(ip) }

// Refuses asks the blacklist without counting an attempt, when it can tell.
func (l *EventLog) Refuses(ip netip.Addr) bool {
	if r, ok := l.next.(refuser); ok {
		return r.Refuses(ip)
	}
	return l.next.Blocked(ip)
}

// Report records ev and passes it on.
func (l *EventLog) Report(ev blacklist.Event) {
	rec := l.clean(ev)
	l.mu.Lock()
	l.addLocked(Entry{Event: rec, Count: 1, First: rec.Time})
	l.total++
	l.mu.Unlock()
	l.next.Report(ev)
}

// AcceptRefused records a connection refused at accept, coalesced with the
// repeats of the same client, type and reason; a suspicious one (over a cap)
// is passed on to the blacklist, a blocked client's is not (it is counted
// there as an attempt while blocked). The gate's accept path calls it.
func (l *EventLog) AcceptRefused(ev blacklist.Event, suspicious bool) {
	rec := l.clean(ev)
	k := acceptKey{client: rec.Client, typ: rec.Type, reason: rec.Reason}
	l.mu.Lock()
	if at, ok := l.accept[k]; ok && l.seq[at.slot] == at.seq && rec.Time.Sub(l.ring[at.slot].First) < coalesceFor {
		e := &l.ring[at.slot]
		e.Count++
		if rec.Time.After(e.Time) {
			e.Time = rec.Time
		}
	} else {
		slot := l.addLocked(Entry{Event: rec, Count: 1, First: rec.Time, AtAccept: true})
		l.accept[k] = acceptSlot{slot: slot, seq: l.seq[slot]}
	}
	if suspicious {
		l.total++
	}
	l.mu.Unlock()
	if suspicious {
		l.next.Report(ev)
	}
}

// clean dates ev and caps its text.
func (l *EventLog) clean(ev blacklist.Event) blacklist.Event {
	if ev.Time.IsZero() {
		ev.Time = l.now()
	}
	ev.Service = cutText(ev.Service)
	ev.Reason = cutText(ev.Reason)
	ev.Subject = cutText(ev.Subject)
	return ev
}

// addLocked puts e in the next slot and returns the slot.
func (l *EventLog) addLocked(e Entry) int {
	slot := l.head
	if old := &l.ring[slot]; old.AtAccept {
		k := acceptKey{client: old.Client, typ: old.Type, reason: old.Reason}
		if at, ok := l.accept[k]; ok && at.slot == slot {
			delete(l.accept, k)
		}
	}
	l.nseq++
	l.ring[slot], l.seq[slot] = e, l.nseq
	l.head = (l.head + 1) % len(l.ring)
	l.full = l.full || l.head == 0
	return slot
}

func cutText(s string) string {
	if len(s) <= maxEventText {
		return s
	}
	return strings.ToValidUTF8(s[:maxEventText], "") + "…"
}

// Total is the number of suspicious events reported since start: the
// refusals passed on to the blacklist, each repeat of a coalesced one
// included (a blocked client's connections are not among them).
func (l *EventLog) Total() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Recent returns up to limit entries, the latest first (by their latest
// refusal), that contain every word of query (case-insensitive) in their
// client, type, service, reason or subject; a word that is a network
// matches the clients inside it.
// limit <= 0 means all that are kept.
func (l *EventLog) Recent(query string, limit int) []Entry {
	words := strings.Fields(strings.ToLower(query))
	l.mu.Lock()
	n := l.head
	if l.full {
		n = len(l.ring)
	}
	all := make([]Entry, 0, n)
	for i := 1; i <= n; i++ {
		all = append(all, l.ring[(l.head-i+len(l.ring))%len(l.ring)])
	}
	l.mu.Unlock()
	// Newest first by insertion already; a coalesced entry moves up to
	// where its latest repeat belongs.
	slices.SortStableFunc(all, func(a, b Entry) int { return b.Time.Compare(a.Time) })
	out := all[:0]
	for _, e := range all {
		if matches(e.Event, words) {
			out = append(out, e)
			if limit > 0 && len(out) == limit {
				break
			}
		}
	}
	return out
}

// refuser is a Guard that can check without counting an attempt
// (*blacklist.List).
type refuser interface {
	Refuses(ip netip.Addr) bool
}

// AcceptLog hears the connections the gate refuses at accept. It is called
// on the accept path: it must not block or do I/O. *EventLog implements it.
type AcceptLog interface {
	AcceptRefused(ev blacklist.Event, suspicious bool)
}

var (
	_ Guard     = (*EventLog)(nil)
	_ AcceptLog = (*EventLog)(nil)
	_ refuser   = (*EventLog)(nil)
)

// matches reports whether ev holds every word; a word that is a network
// (203.0.113.0/24, 2001:db8::/48, what the blacklist page links to for a
// manual entry or an IPv6 client) matches the clients inside it.
func matches(ev blacklist.Event, words []string) bool {
	if len(words) == 0 {
		return true
	}
	text := strings.ToLower(ev.Client.String() + " " + ev.Type + " " + ev.Service + " " + ev.Reason + " " + ev.Subject)
	for _, w := range words {
		if strings.Contains(text, w) {
			continue
		}
		if p, err := netip.ParsePrefix(w); err == nil && p.Contains(ev.Client.Unmap()) {
			continue
		}
		return false
	}
	return true
}
