package blacklist

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	cfg := configs.Blacklist{Threshold: 1, Expiration: 10 * time.Minute, State: path, Blacklist: prefixes("203.0.113.66")}
	h := newHarness(t, cfg)
	h.Report(Event{Client: addr("192.0.2.1"), Type: "sips", Service: "example.com", Reason: "bad certificate"})
	h.clock.Advance(time.Second)
	h.Report(Event{Client: addr("192.0.2.1"), Type: "sip", Service: "", Reason: "unknown service"})
	h.report("2001:db8:1:2::7", 2)
	h.report("192.0.2.2", 1) // a counter: not kept
	must(t, h.AddManual(prefix("198.51.100.0/24"), "scanner, ticket #42"))
	must(t, h.AddWhitelist(prefix("192.0.2.128/25"), "branch office"))
	for range 3 {
		h.Blocked(addr("192.0.2.1")) // attempts while blocked: kept
	}
	h.Blocked(addr("198.51.100.9"))
	h.clock.Advance(time.Second)
	must(t, h.Close())

	h2 := newHarnessAt(t, cfg, h.clock.Now())
	want := h.Entries(Filter{Blocked: true})
	got := h2.Entries(Filter{Blocked: true})
	if len(want) != 4 { // two automatic blocks, a run-time and a configuration manual entry
		t.Fatalf("setup: %d blocked entries", len(want))
	}
	if want[0].Prefix != prefix("192.0.2.1/32") || want[0].AttemptsWhileBlocked != 3 || want[2].AttemptsWhileBlocked != 1 {
		t.Fatalf("setup: attempts while blocked %+v", want)
	}
	for i := range want {
		// Count is the window, which starts empty after a restart.
		want[i].Count = 0
		// A configuration entry is not in the state file: it is in force
		// since the configuration was loaded, by the new process.
		if want[i].FromConfig {
			want[i].BlockedSince = h.clock.Now()
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after restart:\n got %+v\nwant %+v", got, want)
	}
	if !reflect.DeepEqual(h2.Whitelist(), h.Whitelist()) {
		t.Fatalf("whitelist after restart: %+v, want %+v", h2.Whitelist(), h.Whitelist())
	}
	if h2.hasEntry("192.0.2.2/32") {
		t.Fatal("a counter was persisted")
	}
	if got := h2.logs.lines("blacklist state loaded", "entries=4", "skipped=0"); len(got) != 1 {
		t.Fatalf("load log = %q", h2.logs.String())
	}
	files, _ := os.ReadDir(filepath.Dir(path))
	if len(files) != 1 {
		t.Fatalf("state directory holds %v, want only the state file", files)
	}
	must(t, h2.Close())

	// Restarted after the blocks ended: only the manual entries come back.
	h3 := newHarnessAt(t, cfg, t0.Add(time.Hour))
	if h3.Blocked(addr("192.0.2.1")) || !h3.Blocked(addr("198.51.100.1")) {
		t.Fatal("expired blocks restored or manual entry lost")
	}
	if got := h3.logs.lines("blacklist state loaded", "entries=2", "expired=2"); len(got) != 1 {
		t.Fatalf("load log = %q", h3.logs.String())
	}
}

func TestStateWrittenInBackground(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	l, err := New(configs.Blacklist{State: path}, Options{Logger: slog.New(slog.DiscardHandler)})
	must(t, err)
	l.Start()
	defer l.Close()
	must(t, l.AddManual(prefix("198.51.100.0/24"), "scanner"))
	// A liveness check, not a timing goal: the goroutine writes within a
	// second; the deadline only keeps a broken build from hanging.
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, _ := os.ReadFile(path)
		if strings.Contains(string(data), `"198.51.100.0/24"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state not written; file holds %q", data)
		}
		time.Sleep(50 * time.Millisecond)
	}
	must(t, l.Close())
	if err := l.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestCorruptStateSetAside(t *testing.T) {
	for _, tt := range []struct {
		name, data, why string
	}{
		{"not JSON", "{\n\"version\": 1,\n\"entries\": [ {\"prefix\": \n", "unexpected EOF"},
		{"syntax error", "{\n\"version\": 1,\n\"entries\": [ }\n", "line 3"},
		{"empty", "", "EOF"},
		{"not an object", `[1, 2]`, "not a JSON object"},
		{"entries not an array", `{"version": 1, "entries": {}}`, "entries is not an array"},
		{"other version", `{"version": 2, "entries": []}`, "version 2"},
		{"no version", `{"entries": []}`, "version 0"},
		{"trailing data", `{"version": 1} {}`, "data after"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			must(t, os.WriteFile(path, []byte(tt.data), 0o600))
			h := newHarness(t, configs.Blacklist{State: path})
			if got := h.Entries(Filter{}); len(got) != 0 {
				t.Fatalf("entries from a corrupt file: %+v", got)
			}
			aside := path + ".corrupt-20260301T120000Z"
			if data, err := os.ReadFile(aside); err != nil || string(data) != tt.data {
				t.Fatalf("set-aside file: %q, %v", data, err)
			}
			if got := h.logs.lines("level=ERROR", "corrupt", "state.json", tt.why); len(got) != 1 {
				t.Fatalf("log = %q", h.logs.String())
			}
			// The next save starts a fresh file.
			must(t, h.AddManual(prefix("192.0.2.0/24"), ""))
			must(t, h.Close())
			if _, err := os.Stat(path); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestMalformedStateEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	// One entry per line, so each line number below is the entry's.
	data := strings.Join([]string{
		`{"version": 1, "saved": "2026-03-01T11:59:00Z",`, // 1
		`"whitelist": [`, // 2
		`  {"prefix": "192.0.2.128/25", "note": "ok"},`,    // 3
		`  {"prefix": "192.0.2.300"},`,                     // 4
		`  {"prefix": "10.0.0.0/8", "added": "yesterday"}`, // 5
		`],`,           // 6
		`"entries": [`, // 7
		`  {"prefix": "203.0.113.9", "expires": "2026-03-01T12:10:00Z", "total": 21, "first_seen": "2026-03-01T11:59:30Z", "last_seen": "2026-03-01T11:59:59Z"},`, // 8
		`  {"prefix": "300.1.2.3", "expires": "2026-03-01T12:10:00Z"},`,                                                                                           // 9
		`  {"prefix": "203.0.113.0/33", "manual": true},`,                                                                                                         // 10
		`  {"prefix": "203.0.113.10", "expires": "tomorrow"},`,                                                                                                    // 11
		`  {"prefix": 42, "manual": true},`,                                                                                                                       // 12
		`  {"prefix": "203.0.113.0/24", "expires": "2026-03-01T12:10:00Z"},`,                                                                                      // 13
		`  {"prefix": "203.0.113.11"},`,                                                                                                                           // 14
		`  {"prefix": "198.51.100.0/24", "manual": true, "note": "scanner"},`,                                                                                     // 15
		`  {"prefix": "2001:db8:1:2::5", "expires": "2026-03-01T12:10:00Z", "reasons": [{"time": "noon", "type": "sip", "reason": "x"}]},`,                        // 16
		`  {"prefix": "2001:db8:1:2::5", "expires": "2026-03-01T12:05:00Z", "reasons": [{"time": "2026-03-01T11:59:00Z", "type": "turn", "reason": "bad credentials"}]},`, // 17
		`  {"prefix": "192.0.2.200", "expires": "2026-03-01T12:10:00Z"}`, // 18 whitelisted
		`]}`, // 19
	}, "\n")
	must(t, os.WriteFile(path, []byte(data), 0o600))
	h := newHarness(t, configs.Blacklist{State: path})

	for _, want := range []string{
		`state.json:4: whitelist[1]: prefix: \"192.0.2.300\" is not an IP address or CIDR network`,
		`state.json:5: whitelist[2]: added: \"yesterday\" is not an RFC 3339 time`,
		`state.json:9: entries[1]: prefix: \"300.1.2.3\"`,
		`state.json:10: entries[2]: prefix: \"203.0.113.0/33\"`,
		`state.json:11: entries[3]: expires: \"tomorrow\" is not an RFC 3339 time`,
		`state.json:12: entries[4]: json: cannot unmarshal number`,
		`state.json:13: entries[5]: prefix 203.0.113.0/24: an automatic block is one IPv4 address`,
		`state.json:14: entries[6]: expires is missing`,
		`state.json:16: entries[8]: reasons[0].time: \"noon\"`,
	} {
		if got := h.logs.lines("level=WARN", "blacklist state entry skipped", want); len(got) != 1 {
			t.Errorf("no warning %s in\n%s", want, h.logs.String())
		}
	}
	if got := h.logs.lines("blacklist state loaded", "entries=4", "whitelisted=1", "skipped=9"); len(got) != 1 {
		t.Fatalf("load summary = %q", h.logs.String())
	}
	for ip, blocked := range map[string]bool{
		"203.0.113.9": true, "198.51.100.1": true, "2001:db8:1:2::1": true,
		"203.0.113.10": false, "192.0.2.200": false, "10.1.1.1": false,
	} {
		if h.Blocked(addr(ip)) != blocked {
			t.Errorf("Blocked(%s) = %v, want %v", ip, !blocked, blocked)
		}
	}
	e := h.entry(t, "203.0.113.9/32")
	if e.Total != 21 || !e.FirstSeen.Equal(t0.Add(-30*time.Second)) || !e.Expires.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("restored entry = %+v", e)
	}
	if e := h.entry(t, "2001:db8:1:2::/64"); len(e.Reasons) != 1 || e.Reasons[0].Type != "turn" {
		t.Fatalf("IPv6 entry = %+v, want the /128 folded into its /64", e)
	}
	if wl := h.Whitelist(); len(wl) != 1 || wl[0].Note != "ok" {
		t.Fatalf("whitelist = %+v", wl)
	}
}

func TestUnreadableStateIsAnError(t *testing.T) {
	dir := t.TempDir() // a directory cannot be read as a file
	_, err := New(configs.Blacklist{State: dir}, Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("New with an unreadable state = %v", err)
	}
}

func TestStaleTempFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	stale := filepath.Join(dir, ".state.json.tmp-123")
	must(t, os.WriteFile(stale, []byte(`{"version": 1, "entr`), 0o600))
	newHarness(t, configs.Blacklist{State: path})
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale temporary file kept: %v", err)
	}
}

func TestSaveFailureLoggedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing-dir", "state.json")
	h := newHarness(t, configs.Blacklist{State: path})
	must(t, h.AddManual(prefix("192.0.2.0/24"), ""))
	h.tick()
	h.clock.Advance(59 * time.Second)
	h.tick()
	if got := h.logs.lines("level=ERROR", "blacklist state not saved", "missing-dir"); len(got) != 1 {
		t.Fatalf("save errors logged: %q", got)
	}
	h.clock.Advance(time.Second)
	h.tick()
	if got := h.logs.lines("level=ERROR", "blacklist state not saved"); len(got) != 2 {
		t.Fatalf("a save failing for a minute is not logged again: %q", got)
	}
	must(t, os.Mkdir(filepath.Dir(path), 0o700))
	h.tick()
	if got := h.logs.lines("blacklist state saved again"); len(got) != 1 {
		t.Fatalf("recovery not logged: %q", h.logs.String())
	}
	var st stateFile
	data, err := os.ReadFile(path)
	must(t, err)
	must(t, json.Unmarshal(data, &st))
	if st.Version != stateVersion || len(st.Entries) != 1 || st.Entries[0].Prefix != "192.0.2.0/24" || !st.Entries[0].Manual {
		t.Fatalf("state = %+v", st)
	}
}

func TestReconfigureKeepsRunTimeState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	h := newHarness(t, configs.Blacklist{Threshold: 1, State: path})
	h.report("192.0.2.1", 2)
	must(t, h.AddManual(prefix("198.51.100.0/24"), ""))
	must(t, h.AddWhitelist(prefix("10.0.0.0/8"), ""))
	moved := filepath.Join(filepath.Dir(path), "moved.json")
	h.Reconfigure(configs.Blacklist{Threshold: 5, State: moved, Blacklist: prefixes("203.0.113.66")})
	if !h.Blocked(addr("192.0.2.1")) || !h.Blocked(addr("198.51.100.1")) || !h.Blocked(addr("203.0.113.66")) {
		t.Fatal("run-time state lost on reload")
	}
	if len(h.Whitelist()) != 1 {
		t.Fatal("run-time whitelist lost on reload")
	}
	h.tick()
	data, err := os.ReadFile(moved)
	must(t, err)
	if !strings.Contains(string(data), "192.0.2.1/32") || strings.Contains(string(data), "203.0.113.66") {
		t.Fatalf("state written to the new path = %s", data)
	}
}

// FuzzLoadState feeds arbitrary bytes to the state loader: it must never
// panic, and whatever it accepts must leave the List consistent.
func FuzzLoadState(f *testing.F) {
	// A file as gatehouse writes it: a whitelist entry, a manual entry and an automatic block.
	f.Add([]byte(`{"version":1,"saved":"2026-03-01T12:00:00Z","whitelist":[{"prefix":"10.0.0.0/8","note":"lan","added":"2026-03-01T11:00:00Z"}],` +
		`"entries":[{"prefix":"198.51.100.0/24","manual":true,"note":"scanner","added":"2026-03-01T11:00:00Z"},` +
		`{"prefix":"203.0.113.9/32","expires":"2026-03-01T12:10:00Z","first_seen":"2026-03-01T11:59:00Z","last_seen":"2026-03-01T11:59:59Z","total":21,` +
		`"reasons":[{"time":"2026-03-01T11:59:59Z","type":"sip","service":"example.com","reason":"unknown service"}]}]}`))
	// An IPv6 /128 block, folded into its /64, and a duplicate of it.
	f.Add([]byte(`{"version":1,"entries":[{"prefix":"2001:db8::1","expires":"2026-03-01T12:10:00Z"},{"prefix":"2001:db8::2/128","expires":"2026-03-01T13:00:00Z"}]}`))
	// Wrong types everywhere: every entry skipped.
	f.Add([]byte(`{"version":1,"whitelist":[1,"x",null],"entries":[{"prefix":[]},{"manual":"yes"},{"total":-1}]}`))
	// Null arrays and unknown keys of a later version.
	f.Add([]byte(`{"version":1,"whitelist":null,"entries":null,"future":{"a":[1,2]}}`))
	// Truncated in the middle of an entry: corrupt as a whole.
	f.Add([]byte(`{"version":1,"entries":[{"prefix":"203.0.113.9","expi`))
	// A whitelist that covers a restored block, and a block already expired.
	f.Add([]byte(`{"version":1,"whitelist":[{"prefix":"203.0.113.0/24"}],"entries":[{"prefix":"203.0.113.9","expires":"2030-01-01T00:00:00Z"},{"prefix":"192.0.2.1","expires":"2000-01-01T00:00:00Z"}]}`))
	// Never created, so setting a corrupt file aside fails harmlessly.
	path := filepath.Join(f.TempDir(), "missing", "state.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		clock := newClock()
		l, err := New(configs.Blacklist{Threshold: 2, MaxTracked: 4}, Options{Clock: clock.Now, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		l.mu.Lock()
		l.loadBytesLocked(path, data)
		l.unlock()
		if err := invariants(l); err != nil {
			t.Fatal(err)
		}
		l.Report(Event{Client: addr("203.0.113.9"), Type: "sip", Reason: "x"})
		l.Entries(Filter{})
		if err := invariants(l); err != nil {
			t.Fatal(err)
		}
	})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
