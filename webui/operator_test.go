package webui

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestTargetHealthInStatusAndMetrics: the PBX's web server is up, then
// stops; /api/status and /metrics say so, and requests to it get 503.
func TestTargetHealthInStatusAndMetrics(t *testing.T) {
	a := newAppliance(t, "")
	addr := a.target.Listener.Addr().String()
	state := func() string {
		code, body := a.basic("GET", "/api/status", "", nil)
		if code != http.StatusOK {
			t.Fatalf("status: %d %s", code, body)
		}
		var st struct {
			Targets []struct {
				Addr, State, Type string
				Services          []string
			}
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		for _, tg := range st.Targets {
			if tg.Addr == addr && tg.Type == "http" && strings.Join(tg.Services, ",") == "hq.example.com" {
				return tg.State
			}
		}
		t.Fatalf("no target %s in %s", addr, body)
		return ""
	}
	metric := `gatehouse_target_up{service="hq.example.com",target="` + addr + `",type="http"} `
	waitFor(t, "target up", func() bool { return state() == "up" })
	if _, body := a.basic("GET", "/metrics", "", nil); !strings.Contains(body, metric+"1") {
		t.Errorf("metrics lack %s1", metric)
	}
	a.target.Close()
	waitFor(t, "target down", func() bool { return state() == "down" })
	if _, body := a.basic("GET", "/metrics", "", nil); !strings.Contains(body, metric+"0") {
		t.Errorf("metrics lack %s0", metric)
	}
	if st := a.httpGet("127.0.0.1", "/PBX0/MY"); st != http.StatusServiceUnavailable {
		t.Errorf("request while the target is down: %d, want 503", st)
	}
}

// TestAPISnakeCase: every field name the API writes is snake_case, in
// every GET answer (only the refusals' map is keyed by reason text, which
// is data).
func TestAPISnakeCase(t *testing.T) {
	a := newAppliance(t, "")
	a.httpGet("127.0.0.9", "/etc/passwd") // a refusal, so the lists have entries
	a.basic("POST", "/api/blacklist", "application/json", strings.NewReader(`{"ip": "192.0.2.1", "note": "x"}`))
	a.basic("POST", "/api/whitelist", "application/json", strings.NewReader(`{"ip": "192.0.2.2"}`))
	waitFor(t, "the target checked", func() bool {
		_, b := a.basic("GET", "/api/status", "", nil)
		return strings.Contains(b, `"state": "up"`)
	})
	var check func(path, where string, v any)
	check = func(path, where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if where != ".refusals" && strings.Trim(k, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
					t.Errorf("%s: field %q at %s is not snake_case", path, k, where)
				}
				check(path, where+"."+k, e)
			}
		case []any:
			for _, e := range v {
				check(path, where+"[]", e)
			}
		}
	}
	// A blocked client's connection, refused at accept, for the refusal
	// log's entries at accept and the blacklist's attempts.
	waitFor(t, "127.0.0.8 blocked", func() bool { return a.httpGet("127.0.0.8", "/x") == 0 })
	mayBeEmpty := map[string]bool{"/api/agents": true, "/api/cluster": true, "/api/config/backups": true}
	for _, path := range []string{"/api/status", "/api/connections", "/api/blacklist", "/api/whitelist", "/api/refusals",
		"/api/refusals?group=1", "/api/traffic", "/api/agents", "/api/cluster", "/api/config/backups", "/api/refusals?since=never"} {
		code, body := a.basic("GET", path, "", nil)
		// Errors are JSON too: a bad query, no cluster configured.
		if code != http.StatusOK && !(code == http.StatusBadRequest && strings.HasSuffix(path, "never")) &&
			!(code == http.StatusNotFound && path == "/api/cluster") {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		var v any
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if l, ok := v.([]any); ok && len(l) == 0 && !mayBeEmpty[path] {
			t.Errorf("%s is empty: nothing checked", path)
		}
		check(path, "", v)
	}
}

// TestClockShowsZone: every time on the pages names its zone.
func TestClockShowsZone(t *testing.T) {
	at := time.Date(2026, 12, 1, 13, 30, 0, 0, time.UTC)
	got := funcs["clock"].(func(time.Time) string)(at)
	if zone := at.Local().Format("MST"); !strings.HasSuffix(got, " "+zone) || len(zone) == 0 {
		t.Errorf("clock = %q, want the zone %q at the end", got, zone)
	}
}

// TestTrafficAPI: the requests through the proxy are in the last hour's
// and the last day's series, filtered by service and type.
func TestTrafficAPI(t *testing.T) {
	a := newAppliance(t, "")
	for range 3 {
		if st := a.httpGet("127.0.0.1", "/PBX0/MY"); st != http.StatusOK {
			t.Fatalf("proxy: %d", st)
		}
	}
	a.httpGet("127.0.0.1", "/etc/passwd") // refused
	sum := func(xs []uint32) (n uint32) {
		for _, x := range xs {
			n += x
		}
		return n
	}
	for _, tc := range []struct {
		query        string
		slots        int
		fwd, refused uint32
	}{
		{"", 3600, 3, 1},
		{"?range=day", 1440, 3, 1},
		{"?range=hour&service=HQ.example.com&type=http", 3600, 3, 1},
		{"?type=sip", 3600, 0, 0},
		{"?service=other.example.com", 3600, 0, 0},
	} {
		code, body := a.basic("GET", "/api/traffic"+tc.query, "", nil)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.query, code, body)
		}
		var tr Traffic
		if err := json.Unmarshal([]byte(body), &tr); err != nil {
			t.Fatal(err)
		}
		if len(tr.Total.Forwarded) != tc.slots || sum(tr.Total.Forwarded) != tc.fwd || sum(tr.Total.Refused) != tc.refused {
			t.Errorf("%s: %d slots, %d forwarded, %d refused; want %d, %d, %d", tc.query,
				len(tr.Total.Forwarded), sum(tr.Total.Forwarded), sum(tr.Total.Refused), tc.slots, tc.fwd, tc.refused)
		}
		if want := time.Duration(tc.slots*tr.Step) * time.Second; time.Since(tr.Start) > want+5*time.Second || time.Since(tr.Start) < want-2*time.Minute {
			t.Errorf("%s: start %v is not %v ago", tc.query, tr.Start, want)
		}
	}
	for _, q := range []string{"?range=week", "?type=smtp"} {
		if code, body := a.basic("GET", "/api/traffic"+q, "", nil); code != http.StatusBadRequest {
			t.Errorf("%s: %d %s", q, code, body)
		}
	}
}

// TestConfigDiffAndBackups: checking shows what applying would change
// against the running file; applying keeps the old file as a backup,
// listed with its time; loading a backup shows its diff, and applying it
// restores it.
func TestConfigDiffAndBackups(t *testing.T) {
	a := newAppliance(t, "")
	c, token := a.login("127.0.0.1")
	orig, err := os.ReadFile(a.file)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(orig), "threshold: 3", "threshold: 4", 1)
	code, body, _ := do(t, c, "POST", a.base+"/config", formType, form("csrf", token, "action", "check", "config", changed))
	if code != 200 || !strings.Contains(body, `<tr class="removed">`) || !strings.Contains(body, "- "+"  threshold: 3") ||
		!strings.Contains(body, "+ "+"  threshold: 4") || !strings.Contains(body, "unchanged lines") {
		t.Fatalf("check: %d %s", code, body)
	}
	code, body, _ = do(t, c, "POST", a.base+"/config", formType, form("csrf", token, "action", "check", "config", string(orig)))
	if code != 200 || !strings.Contains(body, `id="no-change"`) {
		t.Fatalf("check of the running text: %d %s", code, body)
	}
	if code, body := a.basic("GET", "/api/config/backups", "", nil); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("backups before an apply: %d %s", code, body)
	}
	if code, _, _ := do(t, c, "POST", a.base+"/config", formType, form("csrf", token, "action", "apply", "config", changed)); code != http.StatusSeeOther {
		t.Fatalf("apply: %d", code)
	}
	code, body = a.basic("GET", "/api/config/backups", "", nil)
	var bs []Backup
	if code != 200 || json.Unmarshal([]byte(body), &bs) != nil || len(bs) != 1 || bs[0].Number != 1 || bs[0].Size != int64(len(orig)) {
		t.Fatalf("backups: %d %s", code, body)
	}
	if code, body := a.basic("GET", "/api/config?backup=1", "", nil); code != 200 || body != string(orig) {
		t.Fatalf("backup 1: %d %s", code, body)
	}
	if code, _ := a.basic("GET", "/api/config?backup=2", "", nil); code != http.StatusNotFound {
		t.Fatalf("backup 2: %d", code)
	}
	// The page lists it; loading it shows what restoring would change.
	code, body, _ = do(t, c, "GET", a.base+"/config?backup=1", "", nil)
	if code != 200 || !strings.Contains(body, `data-backup="1"`) || !strings.Contains(body, "Backup 1 is in the editor") ||
		!strings.Contains(body, "- "+"  threshold: 4") || !strings.Contains(body, "+ "+"  threshold: 3") {
		t.Fatalf("load backup: %d %s", code, body)
	}
	if code, _, _ := do(t, c, "POST", a.base+"/config", formType, form("csrf", token, "action", "apply", "config", string(orig))); code != http.StatusSeeOther {
		t.Fatalf("restore: %d", code)
	}
	if now, _ := os.ReadFile(a.file); string(now) != string(orig) || a.admin.cfg.Load().Blacklist.Threshold != 3 {
		t.Fatalf("restored file:\n%s", now)
	}
}

// TestRefusalsForOperators: each refusal carries what was refused (the
// path), repeats group, a time range selects, CSV and JSON export; the
// blacklist says when a block began and links to its refusals; the
// dashboard warns an administrator whose own address is being counted.
func TestRefusalsForOperators(t *testing.T) {
	a := newAppliance(t, "")
	for range 2 {
		if st := a.httpGet("127.0.0.9", "/etc/passwd"); st != http.StatusForbidden {
			t.Fatalf("refused request: %d", st)
		}
	}
	waitFor(t, "127.0.0.8 blocked", func() bool { return a.httpGet("127.0.0.8", "/x") == 0 })

	code, body := a.basic("GET", "/api/refusals?q=127.0.0.9", "", nil)
	var evs []struct{ Client, Reason, Subject string }
	if code != 200 || json.Unmarshal([]byte(body), &evs) != nil || len(evs) != 2 || evs[0].Subject != "/etc/passwd" || evs[0].Reason != "url not allowed" {
		t.Fatalf("refusals: %d %s", code, body)
	}
	code, body = a.basic("GET", "/api/refusals?q=127.0.0.9&group=1&since=1h", "", nil)
	var groups []RefusalGroup
	if code != 200 || json.Unmarshal([]byte(body), &groups) != nil || len(groups) != 1 || groups[0].Count != 2 ||
		groups[0].Subject != "/etc/passwd" || groups[0].First.After(groups[0].Last) {
		t.Fatalf("grouped: %d %s", code, body)
	}
	code, body = a.basic("GET", "/api/refusals?q=127.0.0.9&group=1&format=csv", "", nil)
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if code != 200 || len(lines) != 2 || lines[0] != "count,first,last,client,type,service,reason,subject,at_accept" ||
		!strings.HasPrefix(lines[1], "2,") || !strings.HasSuffix(lines[1], ",127.0.0.9,http,hq.example.com,url not allowed,/etc/passwd,false") {
		t.Fatalf("csv: %d %s", code, body)
	}
	for _, bad := range []string{"since=yesterday", "since=-1h", "format=xml"} {
		if code, body := a.basic("GET", "/api/refusals?"+bad, "", nil); code != http.StatusBadRequest {
			t.Errorf("%s: %d %s", bad, code, body)
		}
	}
	if csvCell("=HYPERLINK(1)") != "'=HYPERLINK(1)" || csvCell("/etc/passwd") != "/etc/passwd" {
		t.Error("csvCell lets a formula through")
	}

	c, _ := a.login("127.0.0.1")
	code, page, _ := do(t, c, "GET", a.base+"/refusals?q=127.0.0.9&group=1", "", nil)
	if code != 200 || !strings.Contains(page, "<code>/etc/passwd</code>") || !strings.Contains(page, `href="/api/refusals?format=csv&amp;group=1&amp;q=127.0.0.9"`) {
		t.Fatalf("refusals page: %d %s", code, page)
	}
	code, page, _ = do(t, c, "GET", a.base+"/blacklist", "", nil)
	if code != 200 || !strings.Contains(page, "blocked since") || !strings.Contains(page, `href="/refusals?q=127.0.0.8&amp;group=1"`) {
		t.Fatalf("blacklist page: %d %s", code, page)
	}
	// The administrator's own address, 127.0.0.1, gets two bad requests
	// (threshold 3): the dashboard warns before the third locks it out.
	if _, page, _ = do(t, c, "GET", a.base+"/", "", nil); strings.Contains(page, "Your address") {
		t.Fatal("warned with nothing counted")
	}
	for range 2 {
		a.httpGet("127.0.0.1", "/etc/shadow")
	}
	waitFor(t, "the warning", func() bool {
		_, page, _ = do(t, c, "GET", a.base+"/", "", nil)
		return strings.Contains(page, "Your address 127.0.0.1 has 2 suspicious requests")
	})
}
