package webui

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

func TestHealthzIsOpenAndSaysNothing(t *testing.T) {
	a := newAppliance(t, "")
	code, body, _ := do(t, a.client("127.0.0.1"), "GET", a.base+"/healthz", "", nil)
	if code != 200 || body != "ok\n" {
		t.Fatalf("healthz: %d %q", code, body)
	}
}

func TestSelfSignedCertificateIsKeptAcrossStarts(t *testing.T) {
	a := newAppliance(t, "")
	file := filepath.Join(a.dir, "state", selfCertFile)
	first := certOf(t, file)
	if fi, err := os.Stat(filepath.Join(a.dir, "state", selfKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	// A second start with the same state directory reuses it.
	cfg := a.admin.Config()
	pair, made, err := selfSigned(cfg.Admin.StateDir, cfg.Admin.Listen, time.Now())
	if err != nil || made || Fingerprint(pair.Leaf) != Fingerprint(first) {
		t.Fatalf("second start: made=%v err=%v", made, err)
	}
	var st Status
	code, body := a.basic("GET", "/api/status", "", nil)
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Admin.Fingerprint != Fingerprint(first) {
		t.Fatalf("status does not show the certificate's fingerprint: %d %s", code, body)
	}
}

func TestNoUsersRefusesToStart(t *testing.T) {
	cfg := &configs.Config{Admin: configs.Admin{Listen: "127.0.0.1:1"}}
	if _, err := New(cfg, Options{}); !errors.Is(err, ErrNoUsers) {
		t.Fatalf("got %v, want ErrNoUsers", err)
	}
}

// TestAPIRequiresAuthentication: every endpoint but /healthz answers 401
// without credentials, and with wrong ones (which are reported as suspicious).
func TestAPIRequiresAuthentication(t *testing.T) {
	a := newAppliance(t, "")
	c := a.client("127.0.0.1")
	for _, ep := range []struct{ method, path, ctype, body string }{
		{"GET", "/api/status", "", ""},
		{"GET", "/api/connections", "", ""},
		{"DELETE", "/api/connections/1", "", ""},
		{"GET", "/api/agents", "", ""},
		{"DELETE", "/api/agents/1", "", ""},
		{"GET", "/api/blacklist", "", ""},
		{"POST", "/api/blacklist", "application/json", `{"ip":"192.0.2.1"}`},
		{"DELETE", "/api/blacklist?ip=192.0.2.1", "", ""},
		{"POST", "/api/blacklist/promote", "application/json", `{"ip":"192.0.2.1"}`},
		{"GET", "/api/whitelist", "", ""},
		{"POST", "/api/whitelist", "application/json", `{"ip":"192.0.2.1"}`},
		{"DELETE", "/api/whitelist?ip=192.0.2.1", "", ""},
		{"GET", "/api/refusals", "", ""},
		{"GET", "/api/config", "", ""},
		{"POST", "/api/config", "application/yaml", "listen: {}\n"},
		{"GET", "/metrics", "", ""},
	} {
		code, body, hdr := do(t, c, ep.method, a.base+ep.path, ep.ctype, strings.NewReader(ep.body))
		if code != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s %s without credentials: %d %s", ep.method, ep.path, code, body)
		}
	}
	if len(a.bl.Whitelist()) != 0 || len(a.bl.Entries(blacklistAll)) != 0 {
		t.Fatal("an unauthenticated request changed the lists")
	}

	req, _ := http.NewRequest("GET", a.base+"/api/status", nil)
	req.SetBasicAuth(testUser, "wrong")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
	if evs := a.events.Recent("admin credentials rejected", 0); len(evs) != 1 || evs[0].Type != "admin" ||
		evs[0].Client != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("wrong Basic credentials not reported: %+v", evs)
	}
}

func TestAPIBlacklistAndWhitelist(t *testing.T) {
	a := newAppliance(t, "")
	code, body := a.basic("POST", "/api/blacklist", "application/json", strings.NewReader(`{"ip":"203.0.113.66","note":"scanner"}`))
	if code != http.StatusCreated {
		t.Fatalf("add: %d %s", code, body)
	}
	if !a.bl.Blocked(netip.MustParseAddr("203.0.113.66")) {
		t.Fatal("added address not blocked")
	}
	code, body = a.basic("POST", "/api/blacklist", "application/json", strings.NewReader(`{"ip":"203.0.113.66"}`))
	if code != http.StatusConflict {
		t.Fatalf("add twice: %d %s", code, body)
	}
	code, body = a.basic("GET", "/api/blacklist", "", nil)
	if code != 200 || !strings.Contains(body, `"prefix": "203.0.113.66/32"`) || !strings.Contains(body, "scanner") {
		t.Fatalf("list: %d %s", code, body)
	}
	for _, bad := range []string{`{"ip":"300.1.1.1"}`, `{"ip":""}`, `{"address":"192.0.2.1"}`, `not json`} {
		if code, body = a.basic("POST", "/api/blacklist", "application/json", strings.NewReader(bad)); code != http.StatusBadRequest {
			t.Errorf("POST %s: %d %s", bad, code, body)
		}
	}
	code, body = a.basic("DELETE", "/api/blacklist?ip=203.0.113.66", "", nil)
	if code != 200 || a.bl.Blocked(netip.MustParseAddr("203.0.113.66")) {
		t.Fatalf("remove: %d %s", code, body)
	}
	if code, body = a.basic("DELETE", "/api/blacklist?ip=203.0.113.66", "", nil); code != http.StatusNotFound {
		t.Fatalf("remove twice: %d %s", code, body)
	}
	if code, body = a.basic("DELETE", "/api/blacklist?ip=nonsense", "", nil); code != http.StatusBadRequest {
		t.Fatalf("remove nonsense: %d %s", code, body)
	}

	code, body = a.basic("POST", "/api/whitelist", "application/json", strings.NewReader(`{"ip":"198.51.100.0/28","note":"office"}`))
	if code != http.StatusCreated {
		t.Fatalf("whitelist add: %d %s", code, body)
	}
	code, body = a.basic("GET", "/api/whitelist", "", nil)
	if code != 200 || !strings.Contains(body, "198.51.100.0/28") {
		t.Fatalf("whitelist list: %d %s", code, body)
	}
	code, body = a.basic("DELETE", "/api/whitelist?ip=198.51.100.0/28", "", nil)
	if code != 200 || len(a.bl.Whitelist()) != 0 {
		t.Fatalf("whitelist remove: %d %s", code, body)
	}
}

func TestAPIBodyLimitsAndContentTypes(t *testing.T) {
	a := newAppliance(t, "")
	big := `{"ip":"192.0.2.1","note":"` + strings.Repeat("x", maxJSONBody) + `"}`
	for _, tc := range []struct {
		method, path, ctype, body string
		want                      int
	}{
		{"POST", "/api/blacklist", "text/plain", `{"ip":"192.0.2.1"}`, http.StatusUnsupportedMediaType},
		{"POST", "/api/blacklist", "", `{"ip":"192.0.2.1"}`, http.StatusUnsupportedMediaType},
		{"POST", "/api/whitelist", "application/x-www-form-urlencoded", `ip=192.0.2.1`, http.StatusUnsupportedMediaType},
		{"POST", "/api/blacklist", "application/json", big, http.StatusRequestEntityTooLarge},
		{"POST", "/api/config", "text/plain", "listen: {}\n", http.StatusUnsupportedMediaType},
		{"POST", "/api/config", "application/json", "{}", http.StatusUnsupportedMediaType},
		{"POST", "/api/config", "application/yaml", "# " + strings.Repeat("x", maxConfigBody) + "\n", http.StatusRequestEntityTooLarge},
	} {
		code, body := a.basic(tc.method, tc.path, tc.ctype, strings.NewReader(tc.body))
		if code != tc.want || !strings.Contains(body, `"error"`) {
			t.Errorf("%s %s (%s, %d bytes): %d %.200s, want %d", tc.method, tc.path, tc.ctype, len(tc.body), code, body, tc.want)
		}
	}
	if len(a.bl.Entries(blacklistAll)) != 0 || len(a.bl.Whitelist()) != 0 {
		t.Fatal("a refused request changed the lists")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.applied != 0 {
		t.Fatal("a refused request applied a configuration")
	}
}

// TestAPIConfig: a bad configuration is refused with its problems and
// changes nothing; a good one is applied without dropping an established
// connection and saved with the previous version as a backup.
func TestAPIConfig(t *testing.T) {
	a := newAppliance(t, "")
	original, _ := os.ReadFile(a.file)
	code, body := a.basic("GET", "/api/config", "", nil)
	if code != 200 || body != string(original) {
		t.Fatalf("GET /api/config: %d %s", code, body)
	}

	// An established, kept-alive client connection to the proxy.
	conn, err := net.Dial("tcp", a.srv.Addr("http").String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	get := func(path string) int {
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: hq.example.com\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request on the established connection: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := get("/PBX0/MY"); st != 200 {
		t.Fatalf("before: %d", st)
	}

	bad := strings.Replace(string(original), "threshold: 3", "treshold: 3", 1) + "limits: {dial_timeout: soon}\n"
	code, body = a.basic("POST", "/api/config", "application/yaml", strings.NewReader(bad))
	var problems []ConfigError
	if code != http.StatusUnprocessableEntity || json.Unmarshal([]byte(body), &problems) != nil || len(problems) != 2 {
		t.Fatalf("bad config: %d %s", code, body)
	}
	if p := problems[0]; p.Line != 10 || p.Key != "blacklist.treshold" || !strings.Contains(p.Message, "unknown key") {
		t.Errorf("first problem %+v", p)
	}
	if p := problems[1]; p.Line == 0 || p.Key != "limits.dial_timeout" {
		t.Errorf("second problem %+v", p)
	}
	code, body = a.basic("POST", "/api/config", "application/yaml", strings.NewReader("listen: [\n"))
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, `"line"`) {
		t.Fatalf("broken YAML: %d %s", code, body)
	}
	if now, _ := os.ReadFile(a.file); string(now) != string(original) {
		t.Fatal("a refused configuration changed the file")
	}
	if _, err := os.Stat(a.file + ".1"); err == nil {
		t.Fatal("a refused configuration made a backup")
	}

	// Now a good one: the URL list changes from /PBX0/ to /CDR0/.
	good := strings.Replace(string(original), "urls: [/PBX0/]", "urls: [/CDR0/]", 1)
	code, body = a.basic("POST", "/api/config", "application/yaml", strings.NewReader(good))
	if code != 200 {
		t.Fatalf("good config: %d %s", code, body)
	}
	if now, _ := os.ReadFile(a.file); string(now) != good {
		t.Fatal("the applied configuration was not saved")
	}
	if backup, _ := os.ReadFile(a.file + ".1"); string(backup) != string(original) {
		t.Fatal("the previous configuration was not kept as FILE.1")
	}
	if fi, _ := os.Stat(a.file); fi.Mode().Perm() != 0o640 {
		t.Errorf("the saved file's mode is %v, want the original 0640", fi.Mode().Perm())
	}
	// The established connection keeps the configuration it was accepted
	// under; a new one gets the new rules.
	if st := get("/PBX0/MY"); st != 200 {
		t.Fatalf("established connection after apply: %d", st)
	}
	if st := a.httpGet("127.0.0.1", "/PBX0/MY"); st != http.StatusForbidden {
		t.Fatalf("new connection, old URL: %d", st)
	}
	if st := a.httpGet("127.0.0.1", "/CDR0/x"); st != 200 {
		t.Fatalf("new connection, new URL: %d", st)
	}

	// A second apply rotates the backups.
	third := strings.Replace(good, "threshold: 3", "threshold: 4", 1)
	if code, body = a.basic("POST", "/api/config", "application/yaml", strings.NewReader(third)); code != 200 {
		t.Fatalf("third config: %d %s", code, body)
	}
	b1, _ := os.ReadFile(a.file + ".1")
	b2, _ := os.ReadFile(a.file + ".2")
	if string(b1) != good || string(b2) != string(original) {
		t.Fatal("backups not rotated")
	}
}

// TestAPIConfigThatCannotBeAppliedChangesNothing: a valid configuration
// whose listener cannot be opened is refused, and file and proxy stay.
func TestAPIConfigThatCannotBeAppliedChangesNothing(t *testing.T) {
	a := newAppliance(t, "")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	original, _ := os.ReadFile(a.file)
	text := strings.Replace(string(original), a.srv.Addr("http").String(), busy.Addr().String(), 1)
	code, body := a.basic("POST", "/api/config", "application/yaml", strings.NewReader(text))
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "address already in use") {
		t.Fatalf("got %d %s", code, body)
	}
	if now, _ := os.ReadFile(a.file); string(now) != string(original) {
		t.Fatal("file changed")
	}
	if st := a.httpGet("127.0.0.1", "/PBX0/MY"); st != 200 {
		t.Fatalf("proxy no longer serves: %d", st)
	}
}

func TestAPIStatusAndConnections(t *testing.T) {
	a := newAppliance(t, "")
	if st := a.httpGet("127.0.0.1", "/PBX0/MY"); st != 200 {
		t.Fatalf("proxy: %d", st)
	}
	a.httpGet("127.0.0.1", "/etc/passwd") // refused: url not allowed

	conn, err := net.Dial("tcp", a.srv.Addr("http").String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	for range 2 { // two requests on one kept-alive connection
		fmt.Fprint(conn, "GET /PBX0/MY HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	// The first two requests' connections were closed by the client; the
	// server may not have seen their end yet: wait for it.
	var st Status
	var code int
	var body string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st = Status{}
		code, body = a.basic("GET", "/api/status", "", nil)
		if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("status: %d %s", code, body)
		}
		if len(st.Services) != 1 || st.Services[0].Active <= 1 || time.Now().After(deadline) {
			break
		}
	}
	// Three requests went on to the service, each request of the kept-alive
	// connection counted; the refused one counts as refused only.
	if len(st.Services) != 1 || st.Services[0].Forwarded != 3 || st.Services[0].Refused != 1 || st.Services[0].Active != 1 {
		t.Errorf("service counters %+v", st.Services)
	}
	if st.Refusals[proxy.ReasonURL] != 1 || len(st.Listeners) != 1 || st.Listeners[0].Type != "http" {
		t.Errorf("status %s", body)
	}

	var page ConnPage
	code, body = a.basic("GET", "/api/connections", "", nil)
	conns := page.Connections
	if code == 200 && json.Unmarshal([]byte(body), &page) == nil {
		conns = page.Connections
	}
	if code != 200 || len(conns) != 1 || page.Open != 1 || page.Matching != 1 ||
		conns[0].Service != "hq.example.com" || conns[0].Client != conn.LocalAddr().String() ||
		conns[0].Identity != "hq.example.com" || conns[0].TLSVersion != "" || conns[0].TargetTLS ||
		len(page.ByService) != 1 || page.ByService[0] != (ServiceCount{Service: "hq.example.com", Type: "http", Open: 1}) {
		t.Fatalf("connections: %d %s", code, body)
	}
	if code, body = a.basic("DELETE", fmt.Sprintf("/api/connections/%d", conns[0].ID), "", nil); code != 200 {
		t.Fatalf("drop: %d %s", code, body)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("dropped connection still open")
	}
	if code, body = a.basic("DELETE", fmt.Sprintf("/api/connections/%d", conns[0].ID), "", nil); code != http.StatusNotFound {
		t.Fatalf("drop twice: %d %s", code, body)
	}
	if code, body = a.basic("DELETE", "/api/connections/abc", "", nil); code != http.StatusBadRequest {
		t.Fatalf("drop abc: %d %s", code, body)
	}

	code, body = a.basic("GET", "/api/refusals?q=url", "", nil)
	if code != 200 || !strings.Contains(body, `"reason": "url not allowed"`) {
		t.Fatalf("refusals: %d %s", code, body)
	}
}

func TestMetrics(t *testing.T) {
	a := newAppliance(t, "")
	a.httpGet("127.0.0.1", "/PBX0/MY")
	a.httpGet("127.0.0.1", "/nope")
	code, body := a.basic("GET", "/metrics", "", nil)
	if code != 200 {
		t.Fatalf("metrics: %d %s", code, body)
	}
	for _, want := range []string{
		`gatehouse_requests_forwarded_total{service="hq.example.com",type="http"} 1`, // the refused one is not forwarded
		`gatehouse_requests_refused_total{service="hq.example.com",type="http"} 1`,
		`gatehouse_refusals_total{reason="url not allowed"} 1`,
		`gatehouse_connections_accepted_total{type="http"} 2`,
		`gatehouse_blacklist_entries 0`,
		`gatehouse_blacklist_blocks_total 0`,
		`gatehouse_admin_sessions 0`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestMetricsPublic(t *testing.T) {
	a := newAppliance(t, "  metrics_public: true\n")
	code, body, _ := do(t, a.client("127.0.0.1"), "GET", a.base+"/metrics", "", nil)
	if code != 200 || !strings.Contains(body, "gatehouse_blacklist_entries") {
		t.Fatalf("public metrics: %d %.300s", code, body)
	}
	if code, _, _ = do(t, a.client("127.0.0.1"), "GET", a.base+"/api/status", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("metrics_public opened the API: %d", code)
	}
}
