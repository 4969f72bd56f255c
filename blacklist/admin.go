package blacklist

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// maxNote caps an administrator's note.
const maxNote = 200

// Entry is what the List knows about one client or manual entry: what an
// operator needs to decide whether to unblock or whitelist it.
type Entry struct {
	// Prefix is the client (an IPv4 address as a /32, an IPv6 network of
	// blacklist.ipv6_prefix bits) or the network of a manual entry.
	Prefix netip.Prefix `json:"prefix"`
	// Manual entries are blocked until removed; FromConfig ones come from
	// blacklist.blacklist and can only be removed there.
	Manual bool `json:"manual"`
	// Aggregated: Prefix is a range (an IPv4 /24, an IPv6 /48) whose
	// clients were folded into one record because blacklist.max_tracked was
	// reached; it is counted and blocked as one client.
	Aggregated bool      `json:"aggregated"`
	FromConfig bool      `json:"from_config"`
	Note       string    `json:"note,omitempty"`
	Added      time.Time `json:"added,omitzero"` // when a run-time manual entry was added
	// Blocked: connections from the client are refused now.
	Blocked bool `json:"blocked"`
	// Whitelisted: a whitelist entry covers the client, which wins over any block.
	Whitelisted bool `json:"whitelisted"`
	// FirstSeen and LastSeen are the first and latest suspicious request
	// (zero when none was reported since the entry was made or loaded).
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	// Count is the number of suspicious requests within the last Window,
	// saturating at threshold+1; Total counts them since FirstSeen.
	Count int    `json:"count"`
	Total uint64 `json:"total"`
	// Reasons are the latest few requests, oldest first.
	Reasons []Reason `json:"reasons,omitempty"`
	// Expires ends an automatic block; zero for manual entries and for
	// clients that are only counted.
	Expires time.Time `json:"expires,omitzero"`
	// BlockedSince is when the block began: the automatic block, or the
	// manual entry (added at run time, or loaded from the configuration).
	// Zero when not blocked.
	BlockedSince time.Time `json:"blocked_since,omitzero"`
	// AttemptsWhileBlocked counts what the client tried since BlockedSince:
	// connections and packets refused at accept, and requests refused after
	// the block began (ones in flight, on connections being closed).
	AttemptsWhileBlocked uint64 `json:"attempts_while_blocked"`
	// Node is the cluster node that made the automatic block ("" alone).
	Node string `json:"node,omitempty"`
}

// Reason is one suspicious request, as shown to an operator.
type Reason struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`              // service type: "https", "sips", "turn", ...
	Service string    `json:"service,omitempty"` // service name, "" when none was found
	Reason  string    `json:"reason"`
}

// String summarizes r as "sips example.com: unknown service".
func (r Reason) String() string {
	s := strings.TrimSpace(r.Type + " " + r.Service)
	if r.Reason != "" && s != "" {
		return s + ": " + r.Reason
	}
	return s + r.Reason
}

func (r reason) export() Reason {
	return Reason{Type: r.typ.Value(), Service: r.service.Value(), Reason: r.cause.Value()}
}

// Filter selects entries; its zero value selects all.
type Filter struct {
	Blocked bool   // only entries refused now
	Manual  bool   // only manual entries
	Address string // only entries whose address or network contains this text
	Service string // only entries with a reason whose service name contains this text (case-insensitive)
	Limit   int    // at most this many entries; 0 is no limit
}

// Entries lists the clients and manual entries that f selects: blocked ones
// first, then the most recently seen first.
func (l *List) Entries(f Filter) []Entry {
	l.mu.Lock()
	defer l.unlock()
	now := l.now()
	l.expireLocked(now)
	r := l.rules.Load()

	byKey := make(map[netip.Prefix]*Entry, len(l.records)+len(l.cfgManual)+len(l.rtManual))
	for key, rec := range l.records {
		e := &Entry{
			Prefix:     key,
			Aggregated: rec.agg,
			Blocked:    rec.blocked(),
			FirstSeen:  l.wall(rec.first),
			LastSeen:   l.wall(rec.last),
			Count:      min(l.countLocked(rec, now), l.cfg.Threshold+1),
			Total:      rec.total,
			Node:       rec.by,
		}
		if rec.total == 0 { // restored from the state file with no requests recorded
			e.FirstSeen, e.LastSeen = time.Time{}, time.Time{}
		}
		if rec.blocked() {
			e.Expires, e.BlockedSince = l.wall(rec.expires), l.wall(rec.since)
			e.AttemptsWhileBlocked = rec.attempts.Load()
		}
		for _, rs := range rec.reasons {
			x := rs.export()
			x.Time = l.wall(rs.at)
			e.Reasons = append(e.Reasons, x)
		}
		byKey[key] = e
	}
	addManual := func(m map[netip.Prefix]listed, fromConfig bool) {
		for p, v := range m {
			e := byKey[p]
			if e == nil {
				e = &Entry{Prefix: p}
				byKey[p] = e
			} else if e.Manual {
				continue // in the configuration and added at run time: the configuration's wins
			}
			e.Manual, e.FromConfig, e.Note, e.Expires = true, fromConfig, v.note, time.Time{}
			if !fromConfig {
				e.Added = l.wall(v.added)
			}
			e.BlockedSince = l.wall(v.added)
			if v.attempts != nil {
				e.AttemptsWhileBlocked = v.attempts.Load()
			}
		}
	}
	addManual(l.cfgManual, true)
	addManual(l.rtManual, false)

	out := make([]Entry, 0, len(byKey))
	for _, e := range byKey {
		_, e.Whitelisted = r.white.covers(e.Prefix)
		if _, ok := r.manual.covers(e.Prefix); ok {
			e.Blocked = true
		}
		e.Blocked = e.Blocked && !e.Whitelisted
		if !e.Blocked {
			e.BlockedSince, e.AttemptsWhileBlocked = time.Time{}, 0
		}
		if f.match(e) {
			out = append(out, *e)
		}
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if a.Blocked != b.Blocked {
			if a.Blocked {
				return -1
			}
			return 1
		}
		if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
			return c
		}
		return a.Prefix.Compare(b.Prefix)
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out
}

func (f *Filter) match(e *Entry) bool {
	if (f.Blocked && !e.Blocked) || (f.Manual && !e.Manual) {
		return false
	}
	if f.Address != "" {
		want := strings.ToLower(f.Address)
		if !strings.Contains(e.Prefix.String(), want) {
			return false
		}
	}
	if f.Service != "" {
		want := strings.ToLower(f.Service)
		return slices.ContainsFunc(e.Reasons, func(r Reason) bool {
			return strings.Contains(strings.ToLower(r.Service), want)
		})
	}
	return true
}

// AddManual blocks the network p until it is removed. A whitelist entry
// covering p still wins.
func (l *List) AddManual(p netip.Prefix, note string) error {
	p, err := checkPrefix(p)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.unlock()
	if err := canAdd(p, l.cfgManual, l.rtManual); err != nil {
		return err
	}
	now := l.now()
	note = cut(note, maxNote)
	l.rtManual[p] = newListed(note, now, 0)
	l.changedLocked(now, p, "client blocked", "reason", "manual entry: "+note, "until", "removed")
	l.shareLocked(func(s Shared) { s.Listed(false, p, &Listing{Note: note, Added: l.wall(now), Node: l.node}) })
	l.notifyLocked(p)
	return nil
}

// RemoveManual removes the run-time manual entry p.
func (l *List) RemoveManual(p netip.Prefix) error {
	p, err := checkPrefix(p)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.unlock()
	if err := canRemove(p, l.cfgManual, l.rtManual); err != nil {
		return err
	}
	l.removeManualLocked(p, "manual entry removed")
	l.shareLocked(func(s Shared) { s.Listed(false, p, nil) })
	return nil
}

func (l *List) removeManualLocked(p netip.Prefix, why string) {
	delete(l.rtManual, p)
	l.changedLocked(l.now(), p, "client released", "reason", why)
}

// Remove unblocks ip: it forgets the automatic entry of ip's client and
// removes the run-time manual entries for exactly ip or its client network.
// When ip stays blocked by a wider manual entry, Remove says which (wrapping
// ErrCovered, or ErrFromConfig for one from the configuration).
func (l *List) Remove(ip netip.Addr) error {
	ip, err := checkAddr(ip)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.unlock()
	now := l.now()
	key := l.rules.Load().key(ip)
	removed := false
	keys := []netip.Prefix{key}
	if a, ok := aggregateKey(key); ok {
		keys = append(keys, a) // the range ip's client was folded into
	}
	for _, k := range keys {
		if rec := l.records[k]; rec != nil {
			if rec.blocked() {
				l.releaseLocked(rec, now, "removed by an administrator")
			}
			l.dropLocked(rec)
			l.shareLocked(func(s Shared) { s.Released(k) })
			removed = true
		}
	}
	for _, p := range []netip.Prefix{key, netip.PrefixFrom(ip, ip.BitLen())} {
		if _, ok := l.rtManual[p]; ok {
			l.removeManualLocked(p, "removed by an administrator")
			l.shareLocked(func(s Shared) { s.Listed(false, p, nil) })
			removed = true
		}
	}
	r := l.rules.Load()
	if p, ok := r.manual.match(ip, 128); ok && !r.white.contains(ip) {
		if _, cfg := l.cfgManual[p]; cfg {
			return fmt.Errorf("%w: %s is inside %s", ErrFromConfig, ip, p)
		}
		return fmt.Errorf("%w: %s is inside %s", ErrCovered, ip, p)
	}
	if !removed {
		return fmt.Errorf("%w: %s", ErrNotFound, ip)
	}
	return nil
}

// WhitelistEntry is a network that is never blocked.
type WhitelistEntry struct {
	Prefix     netip.Prefix `json:"prefix"`
	Note       string       `json:"note,omitempty"`
	FromConfig bool         `json:"from_config"` // from blacklist.whitelist: can only be removed there
	Added      time.Time    `json:"added,omitzero"`
}

// Whitelist lists the whitelist, from the configuration and run time, by network.
func (l *List) Whitelist() []WhitelistEntry {
	l.mu.Lock()
	defer l.unlock()
	out := make([]WhitelistEntry, 0, len(l.cfgWhite)+len(l.rtWhite))
	for p, v := range l.cfgWhite {
		out = append(out, WhitelistEntry{Prefix: p, Note: v.note, FromConfig: true})
	}
	for p, v := range l.rtWhite {
		if _, dup := l.cfgWhite[p]; !dup {
			out = append(out, WhitelistEntry{Prefix: p, Note: v.note, Added: l.wall(v.added)})
		}
	}
	slices.SortFunc(out, func(a, b WhitelistEntry) int { return a.Prefix.Compare(b.Prefix) })
	return out
}

// AddWhitelist makes the network p never blocked, releasing the automatic
// blocks inside it. Manual entries inside it stay, overridden.
func (l *List) AddWhitelist(p netip.Prefix, note string) error {
	p, err := checkPrefix(p)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.unlock()
	if err := canAdd(p, l.cfgWhite, l.rtWhite); err != nil {
		return err
	}
	l.addWhiteLocked(p, cut(note, maxNote))
	return nil
}

func (l *List) addWhiteLocked(p netip.Prefix, note string) {
	now := l.now()
	l.rtWhite[p] = listed{note: note, added: now}
	l.changedLocked(now, p, "whitelist entry added", "note", note)
	l.shareLocked(func(s Shared) { s.Listed(true, p, &Listing{Note: note, Added: l.wall(now), Node: l.node}) })
}

// RemoveWhitelist removes the run-time whitelist entry p.
func (l *List) RemoveWhitelist(p netip.Prefix) error {
	p, err := checkPrefix(p)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.unlock()
	if err := canRemove(p, l.cfgWhite, l.rtWhite); err != nil {
		return err
	}
	delete(l.rtWhite, p)
	l.changedLocked(l.now(), p, "whitelist entry removed")
	l.notifyLocked(p) // what the entry covered may be blocked now
	l.shareLocked(func(s Shared) { s.Listed(true, p, nil) })
	return nil
}

// Promote moves ip's client from the blacklist to the whitelist: it
// whitelists the client (the address for IPv4, its network of
// blacklist.ipv6_prefix bits for IPv6), which releases its automatic block,
// and removes the run-time manual entries for exactly ip or that network.
// The client's record stays, for display. It fails with ErrNotFound when
// nothing is known about ip.
func (l *List) Promote(ip netip.Addr) error {
	ip, err := checkAddr(ip)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.unlock()
	r := l.rules.Load()
	key := r.key(ip)
	_, manual := r.manual.match(ip, 128)
	if l.records[key] == nil && !manual {
		return fmt.Errorf("%w: %s", ErrNotFound, ip)
	}
	for _, p := range []netip.Prefix{key, netip.PrefixFrom(ip, ip.BitLen())} {
		if _, ok := l.rtManual[p]; ok {
			l.removeManualLocked(p, "promoted to the whitelist")
			l.shareLocked(func(s Shared) { s.Listed(false, p, nil) })
		}
	}
	_, inCfg := l.cfgWhite[key]
	if _, inRT := l.rtWhite[key]; !inCfg && !inRT {
		l.addWhiteLocked(key, "promoted from the blacklist")
	}
	return nil
}

func checkPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return p, fmt.Errorf("%w: %s", ErrInvalid, p)
	}
	return normalize(p), nil
}

func checkAddr(ip netip.Addr) (netip.Addr, error) {
	if !ip.IsValid() {
		return ip, fmt.Errorf("%w: %s", ErrInvalid, ip)
	}
	return ip.Unmap().WithZone(""), nil
}

// canAdd tells whether p may join a run-time list: not already there, nor
// in its configuration counterpart.
func canAdd(p netip.Prefix, fromConfig, runTime map[netip.Prefix]listed) error {
	if _, ok := fromConfig[p]; ok {
		return fmt.Errorf("%w: %s is in the configuration", ErrExists, p)
	}
	if _, ok := runTime[p]; ok {
		return fmt.Errorf("%w: %s", ErrExists, p)
	}
	return nil
}

// canRemove tells whether p may leave a run-time list: entries from the
// configuration file are changed there only.
func canRemove(p netip.Prefix, fromConfig, runTime map[netip.Prefix]listed) error {
	if _, ok := fromConfig[p]; ok {
		return fmt.Errorf("%w: %s", ErrFromConfig, p)
	}
	if _, ok := runTime[p]; !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, p)
	}
	return nil
}

// changedLocked follows a change of the run-time entry p: a new generation
// of the rules, rebuilt at now, and msg logged with p's client and args
// once the lock is released.
func (l *List) changedLocked(now instant, p netip.Prefix, msg string, args ...any) {
	l.gen++
	l.rebuildLocked(now)
	args = append([]any{"client", display(p)}, args...)
	l.pending = append(l.pending, func() { l.log.Info(msg, args...) })
}
