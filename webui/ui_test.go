package webui

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

func form(kv ...string) *strings.Reader {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return strings.NewReader(v.Encode())
}

const formType = "application/x-www-form-urlencoded"

func TestSessionCookieIsLockedDown(t *testing.T) {
	a := newAppliance(t, "")
	c := a.client("127.0.0.1")
	_, body, _ := do(t, c, "GET", a.base+"/login", "", nil)
	token := csrfRE.FindStringSubmatch(body)[1]
	req, _ := http.NewRequest("POST", a.base+"/login", form("csrf", token, "user", testUser, "password", testPassword))
	req.Header.Set("Content-Type", formType)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var sess *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			sess = ck
		}
	}
	if sess == nil || !sess.Secure || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode ||
		sess.MaxAge != int((8*time.Hour)/time.Second) || sess.Expires.IsZero() {
		t.Fatalf("session cookie %+v", sess)
	}
}

func TestPagesNeedALogin(t *testing.T) {
	a := newAppliance(t, "")
	c := a.client("127.0.0.1")
	for _, p := range []string{"/", "/connections", "/blacklist", "/whitelist", "/refusals", "/certificates", "/config"} {
		code, _, hdr := do(t, c, "GET", a.base+p, "", nil)
		if code != http.StatusSeeOther || hdr.Get("Location") != "/login" {
			t.Errorf("GET %s: %d to %q", p, code, hdr.Get("Location"))
		}
	}
	code, _, _ := do(t, c, "POST", a.base+"/blacklist/add", formType, form("ip", "192.0.2.1"))
	if code != http.StatusUnauthorized || len(a.bl.Entries(blacklistAll)) != 0 {
		t.Fatalf("POST without a session: %d", code)
	}
}

func TestLoginFormNeedsItsToken(t *testing.T) {
	a := newAppliance(t, "")
	c := a.client("127.0.0.1")
	// A login posted from elsewhere has no login cookie and no token.
	code, _, hdr := do(t, c, "POST", a.base+"/login", formType, form("user", testUser, "password", testPassword))
	if code != http.StatusForbidden || hdr.Get("Set-Cookie") == "" || strings.Contains(hdr.Get("Set-Cookie"), sessionCookie) {
		t.Fatalf("login without token: %d %v", code, hdr)
	}
}

func TestCSRFIsRequired(t *testing.T) {
	a := newAppliance(t, "")
	c, token := a.login("127.0.0.1")

	// Pages: forms without the token, or with another, change nothing.
	for _, f := range []*strings.Reader{form("ip", "192.0.2.1"), form("ip", "192.0.2.1", "csrf", "forged"), form("ip", "192.0.2.1", "csrf", "")} {
		code, body, _ := do(t, c, "POST", a.base+"/blacklist/add", formType, f)
		if code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
			t.Errorf("form without a valid token: %d %s", code, body)
		}
	}
	// The API with the session cookie: the header is required.
	code, body, _ := do(t, c, "POST", a.base+"/api/blacklist", "application/json", strings.NewReader(`{"ip":"192.0.2.1"}`))
	if code != http.StatusForbidden {
		t.Errorf("API POST without the header: %d %s", code, body)
	}
	code, body, _ = do(t, c, "POST", a.base+"/api/blacklist", "application/json", strings.NewReader(`{"ip":"192.0.2.1"}`), csrfHeader, "forged")
	if code != http.StatusForbidden {
		t.Errorf("API POST with a forged header: %d %s", code, body)
	}
	code, body, _ = do(t, c, "DELETE", a.base+"/api/connections/1", "", nil)
	if code != http.StatusForbidden {
		t.Errorf("API DELETE without the header: %d %s", code, body)
	}
	if len(a.bl.Entries(blacklistAll)) != 0 {
		t.Fatal("a request without a valid CSRF token changed the blacklist")
	}
	// With the token both work.
	if code, body, _ = do(t, c, "POST", a.base+"/api/blacklist", "application/json", strings.NewReader(`{"ip":"192.0.2.1"}`), csrfHeader, token); code != http.StatusCreated {
		t.Fatalf("API POST with the header: %d %s", code, body)
	}
	code, _, hdr := do(t, c, "POST", a.base+"/blacklist/add", formType, form("ip", "192.0.2.0/24", "note", "test net", "csrf", token))
	if code != http.StatusSeeOther || hdr.Get("Location") != "/blacklist" {
		t.Fatalf("form with the token: %d", code)
	}
	_, body, _ = do(t, c, "GET", a.base+"/blacklist", "", nil)
	if !strings.Contains(body, "192.0.2.0/24 is blocked until removed.") || !strings.Contains(body, "test net") {
		t.Fatalf("blacklist page after adding: %s", body)
	}
	// The session also reads the API without a token.
	if code, _, _ = do(t, c, "GET", a.base+"/api/status", "", nil); code != 200 {
		t.Fatalf("API GET with the session: %d", code)
	}
	// Wrong content type and an oversized form are refused.
	if code, _, _ = do(t, c, "POST", a.base+"/blacklist/add", "text/plain", strings.NewReader("ip=192.0.2.9&csrf="+token)); code != http.StatusUnsupportedMediaType {
		t.Errorf("form as text/plain: %d", code)
	}
	if code, _, _ = do(t, c, "POST", a.base+"/blacklist/add", formType, form("ip", "192.0.2.9", "csrf", token, "note", strings.Repeat("x", maxFormBody))); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized form: %d", code)
	}
	if a.bl.Blocked(netip.MustParseAddr("192.0.2.9")) == false && len(a.bl.Entries(blacklistAll)) != 2 {
		t.Fatal("a refused form changed the blacklist")
	}
}

func TestExpiredSessionEnds(t *testing.T) {
	a := newAppliance(t, "  session_timeout: 1h\n")
	c, token := a.login("127.0.0.1")
	a.clock.advance(59 * time.Minute)
	if code, _, _ := do(t, c, "GET", a.base+"/api/status", "", nil); code != 200 {
		t.Fatalf("before expiry: %d", code)
	}
	a.clock.advance(2 * time.Minute)
	if code, _, _ := do(t, c, "GET", a.base+"/api/status", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("API after expiry: %d", code)
	}
	if code, _, hdr := do(t, c, "GET", a.base+"/", "", nil); code != http.StatusSeeOther || hdr.Get("Location") != "/login" {
		t.Fatalf("page after expiry: %d", code)
	}
	code, _, _ := do(t, c, "POST", a.base+"/blacklist/add", formType, form("ip", "192.0.2.1", "csrf", token))
	if code != http.StatusUnauthorized || len(a.bl.Entries(blacklistAll)) != 0 {
		t.Fatalf("form after expiry: %d", code)
	}
}

func TestLogout(t *testing.T) {
	a := newAppliance(t, "")
	c, token := a.login("127.0.0.1")
	if code, _, hdr := do(t, c, "POST", a.base+"/logout", formType, form("csrf", "forged")); code != http.StatusForbidden {
		t.Fatalf("logout with a forged token: %d %v", code, hdr)
	}
	if code, _, hdr := do(t, c, "POST", a.base+"/logout", formType, form("csrf", token)); code != http.StatusSeeOther || hdr.Get("Location") != "/login" {
		t.Fatalf("logout: %d", code)
	}
	if code, _, _ := do(t, c, "GET", a.base+"/api/status", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("API after logout: %d", code)
	}
}

// TestAdminBruteForceEndsOnTheBlacklist: failed logins are suspicious
// requests; past the threshold the client is closed at accept, on the
// admin listener too, while others keep working.
func TestAdminBruteForceEndsOnTheBlacklist(t *testing.T) {
	a := newAppliance(t, "")
	attacker := a.client("127.0.0.9")
	for i := 0; i < 4; i++ { // threshold 3: the fourth blocks
		_, body, _ := do(t, attacker, "GET", a.base+"/login", "", nil)
		token := csrfRE.FindStringSubmatch(body)[1]
		code, body, _ := do(t, attacker, "POST", a.base+"/login", formType, form("csrf", token, "user", testUser, "password", "guess"))
		if code != http.StatusUnauthorized || !strings.Contains(body, "Wrong user name or password") {
			t.Fatalf("failed login %d: %d", i, code)
		}
	}
	if !a.bl.Blocked(netip.MustParseAddr("127.0.0.9")) {
		t.Fatalf("brute force not blocked: %+v", a.bl.Entries(blacklistAll))
	}
	if _, err := attacker.Get(a.base + "/healthz"); err == nil {
		t.Fatal("blocked client still served by the admin listener")
	}
	if code, _, _ := do(t, a.client("127.0.0.1"), "GET", a.base+"/healthz", "", nil); code != 200 {
		t.Fatal("other clients no longer served")
	}
	if evs := a.events.Recent("127.0.0.9 admin login failed", 0); len(evs) != 4 {
		t.Fatalf("events %+v", evs)
	}
}

// TestPagesRender: every page renders for a logged-in user, with the data
// it is about.
func TestPagesRender(t *testing.T) {
	a := newAppliance(t, "")
	a.bl.AddWhitelist(netip.MustParsePrefix("198.51.100.0/28"), "office")
	a.httpGet("127.0.0.1", "/secret")
	c, token := a.login("127.0.0.1")
	for path, want := range map[string]string{
		"/":            "hq.example.com",
		"/connections": "No open connections",
		"/blacklist":   "127.0.0.1/32",
		"/whitelist":   "office",
		"/refusals":    "url not allowed",
		"/config":      "hq.example.com",
	} {
		code, body, hdr := do(t, c, "GET", a.base+path, "", nil)
		if code != 200 || !strings.Contains(body, want) || !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s: %d, want %q in\n%.500s", path, code, want, body)
		}
	}
	// Check shows problems by line; apply with a problem changes nothing.
	code, body, _ := do(t, c, "POST", a.base+"/config", formType, form("csrf", token, "action", "check", "config", "listen:\n  htp: \":80\"\n"))
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, `data-line="2">line 2</a>: <code>listen.htp</code>`) {
		t.Fatalf("check: %d %s", code, body)
	}
	code, body, _ = do(t, c, "POST", a.base+"/config", formType, form("csrf", token, "action", "apply", "config", "listen:\n  htp: \":80\"\n"))
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "nothing was changed") {
		t.Fatalf("apply: %d %s", code, body)
	}
}
