package blacklist

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"
	"unique"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// stateVersion is written into every state file; a file with another version
// is set aside rather than misread.
const stateVersion = 1

// stateFile is the JSON form of blacklist.state. Times are RFC 3339 strings
// parsed by hand, so that a bad date is reported with the field it is in.
type stateFile struct {
	Version   int          `json:"version"`
	Saved     string       `json:"saved"`
	Whitelist []stateWhite `json:"whitelist"`
	Entries   []stateEntry `json:"entries"`
}

// stateEntry is an automatic block still in force or a run-time manual entry.
type stateEntry struct {
	Prefix string `json:"prefix"`
	Manual bool   `json:"manual,omitempty"`
	// Aggregated: a range folded at max_tracked (a /24 or /48), not one client.
	Aggregated bool          `json:"aggregated,omitempty"`
	Note       string        `json:"note,omitempty"`
	Added      string        `json:"added,omitempty"`   // manual entries
	Expires    string        `json:"expires,omitempty"` // automatic blocks
	FirstSeen  string        `json:"first_seen,omitempty"`
	LastSeen   string        `json:"last_seen,omitempty"`
	Total      uint64        `json:"total,omitempty"`
	Reasons    []stateReason `json:"reasons,omitempty"`
	// BlockedSince (automatic blocks; a manual entry's is Added) and
	// Attempts: what the blacklist page shows of the block.
	BlockedSince string `json:"blocked_since,omitempty"`
	Attempts     uint64 `json:"attempts,omitempty"`
}

type stateReason struct {
	Time    string `json:"time"`
	Type    string `json:"type"`
	Service string `json:"service,omitempty"`
	Reason  string `json:"reason"`
}

// stateWhite is a run-time whitelist entry.
type stateWhite struct {
	Prefix string `json:"prefix"`
	Note   string `json:"note,omitempty"`
	Added  string `json:"added,omitempty"`
}

// attemptsSaveEvery is how often a change of attempts while blocked alone
// is written: Blocked counts without List.mu and without bumping List.gen,
// and a flood must not rewrite the file every second. Close writes them.
const attemptsSaveEvery = time.Minute

// save writes the state file if anything it holds changed since the last
// write; a change of attempts alone waits for attemptsSaveEvery unless
// final.
func (l *List) save(final bool) error {
	l.saveMu.Lock()
	defer l.saveMu.Unlock()
	l.mu.Lock()
	path, gen, rejected, now := l.cfg.State, l.gen, l.rejected.Load(), l.now()
	if path == "" || (gen == l.savedGen && (rejected == l.savedRejected || (!final && now < l.attemptsSaveAt))) {
		l.unlock()
		return nil
	}
	st := l.snapshotLocked()
	l.unlock()
	data, err := json.MarshalIndent(st, "", "\t")
	if err != nil {
		return fmt.Errorf("blacklist: encoding state: %w", err)
	}
	if err := writeAtomic(path, append(data, '\n')); err != nil {
		return fmt.Errorf("blacklist: saving state: %w", err)
	}
	l.savedGen, l.savedRejected, l.attemptsSaveAt = gen, rejected, now+instant(attemptsSaveEvery)
	return nil
}

func (l *List) snapshotLocked() stateFile {
	st := stateFile{
		Version:   stateVersion,
		Saved:     l.stamp(l.now()),
		Whitelist: []stateWhite{},
		Entries:   []stateEntry{},
	}
	for p, v := range l.rtWhite {
		st.Whitelist = append(st.Whitelist, stateWhite{Prefix: p.String(), Note: v.note, Added: l.stamp(v.added)})
	}
	for p, v := range l.rtManual {
		st.Entries = append(st.Entries, stateEntry{Prefix: p.String(), Manual: true, Note: v.note, Added: l.stamp(v.added), Attempts: v.attempts.Load()})
	}
	for _, rec := range l.blocks {
		e := stateEntry{Prefix: rec.key.String(), Aggregated: rec.agg, Expires: l.stamp(rec.expires), Total: rec.total,
			BlockedSince: l.stamp(rec.since), Attempts: rec.attempts.Load()}
		if rec.total > 0 {
			e.FirstSeen, e.LastSeen = l.stamp(rec.first), l.stamp(rec.last)
		}
		for _, r := range rec.reasons {
			x := r.export()
			e.Reasons = append(e.Reasons, stateReason{Time: l.stamp(r.at), Type: x.Type, Service: x.Service, Reason: x.Reason})
		}
		st.Entries = append(st.Entries, e)
	}
	slices.SortFunc(st.Whitelist, func(a, b stateWhite) int { return compareText(a.Prefix, b.Prefix) })
	slices.SortFunc(st.Entries, func(a, b stateEntry) int { return compareText(a.Prefix, b.Prefix) })
	return st
}

// compareText orders prefixes written by Prefix.String as netip does.
func compareText(a, b string) int {
	return netip.MustParsePrefix(a).Compare(netip.MustParsePrefix(b))
}

func (l *List) stamp(i instant) string { return l.wall(i).UTC().Format(time.RFC3339Nano) }

// writeAtomic replaces path with data so that a crash leaves either the old
// or the new file, never a mix: write a temporary file in the same
// directory, fsync it, rename it over path, fsync the directory.
func writeAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPattern(path))
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func tempPattern(path string) string { return "." + filepath.Base(path) + ".tmp-*" }

// loadLocked reads the state file at path. A missing file is an empty state;
// one that cannot be read is an error.
func (l *List) loadLocked(path string) error {
	// Temporary files left by a crash mid-write: the rename never happened,
	// so the state file is complete without them.
	if stale, _ := filepath.Glob(filepath.Join(filepath.Dir(path), tempPattern(path))); len(stale) > 0 {
		for _, f := range stale {
			os.Remove(f)
		}
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		l.log.Info("blacklist state file not found; starting empty", "file", path)
		return nil
	}
	if err != nil {
		return fmt.Errorf("blacklist: reading state: %w", err)
	}
	l.loadBytesLocked(path, data)
	return nil
}

// loadBytesLocked loads data, the contents of the state file at path. A file that cannot be
// parsed as a whole is renamed aside; a malformed entry is logged and skipped.
func (l *List) loadBytesLocked(path string, data []byte) {
	now := l.now()
	st, err := decodeState(data)
	if err != nil {
		err = fmt.Errorf("%s: %w", path, err)
		aside := path + ".corrupt-" + l.wall(now).UTC().Format("20060102T150405Z")
		if rerr := os.Rename(path, aside); rerr != nil {
			l.log.Error("blacklist state file is corrupt and could not be set aside; starting empty, it will be overwritten",
				"file", path, "err", err, "rename_err", rerr)
			return
		}
		l.log.Error("blacklist state file is corrupt; set aside, starting empty", "file", path, "moved_to", aside, "err", err)
		return
	}
	var loaded, expired, whitelisted, skipped int
	bad := func(section string, i int, it rawItem, err error) {
		skipped++
		l.log.Warn("blacklist state entry skipped",
			"err", &entryError{File: path, Line: it.line, Entry: fmt.Sprintf("%s[%d]", section, i), Err: err},
			"entry", cut(string(it.data), 200))
	}
	// The whitelist first: automatic blocks inside it are not restored.
	for i, it := range st.whitelist {
		p, w, err := l.parseWhite(it.data, now)
		if err != nil {
			bad("whitelist", i, it, err)
			continue
		}
		l.rtWhite[p] = w
		loaded++
	}
	var blocks []*record
	for i, it := range st.entries {
		p, m, rec, err := l.parseEntry(it.data)
		switch {
		case err != nil:
			bad("entries", i, it, err)
		case rec == nil:
			if m.added == 0 {
				m.added = now
			}
			l.rtManual[p] = m
			loaded++
		default:
			blocks = append(blocks, rec)
		}
	}
	l.rebuildLocked(now)
	r := l.rules.Load()
	for _, rec := range blocks {
		if rec.expires <= now {
			expired++
			continue
		}
		if _, ok := r.white.covers(rec.key); ok {
			whitelisted++
			continue
		}
		l.addBlockLocked(rec)
		loaded++
	}
	for len(l.records) > l.cfg.MaxTracked && l.makeRoomLocked(now) {
	}
	l.log.Info("blacklist state loaded", "file", path, "entries", loaded,
		"expired", expired, "whitelisted", whitelisted, "skipped", skipped)
}

// entryError is a state file entry that could not be loaded.
type entryError struct {
	File  string
	Line  int
	Entry string // e.g. entries[3]
	Err   error
}

func (e *entryError) Error() string {
	return fmt.Sprintf("%s:%d: %s: %v", e.File, e.Line, e.Entry, e.Err)
}
func (e *entryError) Unwrap() error { return e.Err }

// parseEntry parses one element of "entries": a run-time manual entry (rec
// is nil) or an automatic block.
func (l *List) parseEntry(data []byte) (netip.Prefix, listed, *record, error) {
	var e stateEntry
	if err := json.Unmarshal(data, &e); err != nil {
		return netip.Prefix{}, listed{}, nil, err
	}
	cp, err := configs.ParsePrefix(e.Prefix)
	if err != nil {
		return netip.Prefix{}, listed{}, nil, fmt.Errorf("prefix: %w", err)
	}
	p := cp.Prefix
	if e.Manual {
		added, err := l.parseTime("added", e.Added)
		return p, newListed(cut(e.Note, maxNote), added, e.Attempts), nil, err
	}
	bits := l.cfg.IPv6Prefix
	switch {
	case e.Aggregated:
		if a, ok := aggregateKey(netip.PrefixFrom(p.Addr(), p.Addr().BitLen())); !ok || a != p {
			return p, listed{}, nil, fmt.Errorf("prefix %s: an aggregated block is a /%d (IPv4) or /%d (IPv6)", p, aggregate4, aggregate6)
		}
	case p.Addr().Is4() && p.Bits() != 32:
		return p, listed{}, nil, fmt.Errorf("prefix %s: an automatic block is one IPv4 address (a manual entry says \"manual\": true)", p)
	case p.Addr().Is6() && p.Bits() < bits:
		return p, listed{}, nil, fmt.Errorf("prefix %s: wider than ipv6_prefix /%d, so not one client", p, bits)
	case p.Addr().Is6():
		p, _ = p.Addr().Prefix(bits)
	}
	if e.Expires == "" {
		return p, listed{}, nil, errors.New(`expires is missing: an automatic block needs it (a manual entry says "manual": true)`)
	}
	rec := &record{key: p, agg: e.Aggregated, total: e.Total, heapIdx: -1, gidx: -1}
	for _, f := range []struct {
		name, text string
		dst        *instant
	}{{"expires", e.Expires, &rec.expires}, {"first_seen", e.FirstSeen, &rec.first}, {"last_seen", e.LastSeen, &rec.last},
		{"blocked_since", e.BlockedSince, &rec.since}} {
		if *f.dst, err = l.parseTime(f.name, f.text); err != nil {
			return p, listed{}, nil, err
		}
	}
	if e.BlockedSince == "" { // written before blocked_since was kept: a block lasts the expiration
		rec.since = rec.expires - instant(l.cfg.Expiration)
	}
	rec.attempts.Store(e.Attempts)
	rec.touched = rec.last
	for i, r := range e.Reasons {
		at, err := l.parseTime(fmt.Sprintf("reasons[%d].time", i), r.Time)
		if err != nil {
			return p, listed{}, nil, err
		}
		rec.reasons = append(rec.reasons, reason{
			at:      at,
			typ:     unique.Make(cut(r.Type, maxText)),
			service: unique.Make(cut(r.Service, maxText)),
			cause:   unique.Make(cut(r.Reason, maxText)),
		})
	}
	slices.SortStableFunc(rec.reasons, func(a, b reason) int { return cmp.Compare(a.at, b.at) })
	rec.reasons = rec.reasons[max(0, len(rec.reasons)-maxReasons):]
	return p, listed{}, rec, nil
}

func (l *List) parseWhite(data []byte, now instant) (netip.Prefix, listed, error) {
	var w stateWhite
	if err := json.Unmarshal(data, &w); err != nil {
		return netip.Prefix{}, listed{}, err
	}
	p, err := configs.ParsePrefix(w.Prefix)
	if err != nil {
		return netip.Prefix{}, listed{}, fmt.Errorf("prefix: %w", err)
	}
	added, err := l.parseTime("added", w.Added)
	if added == 0 {
		added = now
	}
	return p.Prefix, listed{note: cut(w.Note, maxNote), added: added}, err
}

// parseTime parses an optional RFC 3339 time; "" is instant 0.
func (l *List) parseTime(field, s string) (instant, error) {
	if s == "" {
		return 0, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not an RFC 3339 time like 2006-01-02T15:04:05Z", field, s)
	}
	return l.instant(t), nil
}

// rawState is a state file split into its entries, each with the line it
// starts on, so that a bad entry can be skipped and reported by line.
type rawState struct {
	version            int
	whitelist, entries []rawItem
}

type rawItem struct {
	line int
	data json.RawMessage
}

// decodeState splits a state file into its entries. An error means the file
// as a whole is unusable: not JSON, not the expected shape, or another version.
func decodeState(data []byte) (rawState, error) {
	st, err := decodeRaw(data)
	if err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return st, fmt.Errorf("line %d: %w", 1+bytes.Count(data[:min(int(se.Offset), len(data))], []byte{'\n'}), err)
		}
		return st, err
	}
	if st.version != stateVersion {
		return st, fmt.Errorf("version %d, this gatehouse reads version %d", st.version, stateVersion)
	}
	return st, nil
}

func decodeRaw(data []byte) (rawState, error) {
	var st rawState
	dec := json.NewDecoder(bytes.NewReader(data))
	lines := lineCounter{data: data, line: 1}
	if err := expectDelim(dec, '{', "the state file is not a JSON object"); err != nil {
		return st, err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return st, err
		}
		switch key, _ := tok.(string); key {
		case "version":
			if err := dec.Decode(&st.version); err != nil {
				return st, fmt.Errorf("version: %w", err)
			}
		case "whitelist", "entries":
			items, err := decodeItems(dec, &lines, key)
			if err != nil {
				return st, err
			}
			if key == "whitelist" {
				st.whitelist = items
			} else {
				st.entries = items
			}
		default: // "saved", and keys of later versions
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return st, err
			}
		}
	}
	if err := expectDelim(dec, '}', "the state object is not closed"); err != nil {
		return st, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return st, errors.New("data after the state object")
	}
	return st, nil
}

// decodeItems reads the array value of key; null is an empty array.
func decodeItems(dec *json.Decoder, lines *lineCounter, key string) ([]rawItem, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, nil
	}
	if tok != json.Delim('[') {
		return nil, fmt.Errorf("%s is not an array", key)
	}
	var items []rawItem
	for dec.More() {
		off := dec.InputOffset()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		items = append(items, rawItem{line: lines.at(off), data: raw})
	}
	return items, expectDelim(dec, ']', key+" is not closed")
}

func expectDelim(dec *json.Decoder, want json.Delim, msg string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != want {
		return errors.New(msg)
	}
	return nil
}

// lineCounter turns increasing byte offsets into line numbers in one pass.
type lineCounter struct {
	data []byte
	off  int
	line int
}

// at returns the line of the first value at or after off: the decoder's
// offset is the end of the previous token, before the separating comma.
func (c *lineCounter) at(off int64) int {
	end := int(off)
	for end < len(c.data) && bytes.IndexByte([]byte(" \t\r\n,"), c.data[end]) >= 0 {
		end++
	}
	if end > c.off {
		c.line += bytes.Count(c.data[c.off:end], []byte{'\n'})
		c.off = end
	}
	return c.line
}
