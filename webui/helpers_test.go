package webui

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/health"
	"github.com/gatehouse-pbx/gatehouse/protocols"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/proxy/gate"
)

const (
	testUser     = "admin"
	testPassword = "correct horse battery staple"
)

// testHash is a cheap bcrypt hash of testPassword: the cost does not
// matter for what the tests check, and MinCost keeps them fast under -race.
var testHash = func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
}()

// clock is a settable time source shared by the admin UI under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// appliance is a real gatehouse in miniature: the proxy with the real
// protocol handlers in front of a net/http target, the blacklist, the
// event log, and the admin UI, with the same reload path the command has.
type appliance struct {
	t       *testing.T
	dir     string
	file    string
	target  *httptest.Server
	srv     *proxy.Server
	health  *health.Checker
	bl      *blacklist.List
	events  *gate.EventLog
	admin   *Server
	clock   *clock
	mu      sync.Mutex
	applied int
	base    string // https://127.0.0.1:port of the admin UI
	pool    *x509.CertPool
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// configText is a configuration with an HTTP service in front of target;
// extra is appended (it may hold more admin keys, indented).
func configText(httpAddr, adminAddr, stateDir, targetPort, adminExtra string) string {
	return fmt.Sprintf(`listen:
  http: %q
services:
  - name: hq.example.com
    target: 127.0.0.1
    ports: {http: %s}
    allow:
      urls: [/PBX0/]
blacklist:
  threshold: 3
  expiration: 10m
health: {interval: 200ms, timeout: 200ms, fall: 1, rise: 1}
admin:
  listen: %q
  state_dir: %q
  users:
    - {name: %s, password_hash: %q}
%s`, httpAddr, targetPort, adminAddr, stateDir, testUser, testHash, adminExtra)
}

func newAppliance(t *testing.T, adminExtra string) *appliance {
	t.Helper()
	return newApplianceWith(t, adminExtra, nil)
}

// newApplianceWith is newAppliance with the admin UI's options changed by
// opts (nil: none).
func newApplianceWith(t *testing.T, adminExtra string, opts func(*Options)) *appliance {
	t.Helper()
	a := &appliance{t: t, dir: t.TempDir(), clock: &clock{t: time.Now()}}
	a.target = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "pbx says hello")
	}))
	t.Cleanup(a.target.Close)
	_, tport, _ := net.SplitHostPort(a.target.Listener.Addr().String())
	a.file = filepath.Join(a.dir, "gatehouse.yaml")
	text := configText(freeAddr(t), freeAddr(t), filepath.Join(a.dir, "state"), tport, adminExtra)
	if err := os.WriteFile(a.file, []byte(text), 0o640); err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Load(a.file)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a.bl, err = blacklist.New(cfg.Blacklist, blacklist.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	a.bl.Start()
	t.Cleanup(func() { a.bl.Close() })
	a.events = gate.NewEventLog(a.bl, 100)
	a.health = health.New(cfg, health.Options{Logger: log})
	t.Cleanup(a.health.Close)
	a.srv, err = proxy.NewServer(cfg, proxy.Options{Handlers: protocols.Handlers(log), Guard: a.events, Logger: log, Health: a.health})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.srv.Close() })
	o := Options{
		Proxy: a.srv, Blacklist: a.bl, Guard: a.events, Events: a.events, Logger: log,
		Clock: a.clock.now, Version: "test", Apply: a.apply, Health: a.health,
	}
	if opts != nil {
		opts(&o)
	}
	a.admin, err = New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.admin.Shutdown(ctx)
	})
	a.base = "https://" + a.admin.Addr().String()
	a.pool = x509.NewCertPool()
	pemData, err := os.ReadFile(filepath.Join(a.dir, "state", selfCertFile))
	if err != nil {
		t.Fatalf("self-signed certificate not kept in the state directory: %v", err)
	}
	if !a.pool.AppendCertsFromPEM(pemData) {
		t.Fatal("self-signed certificate is not PEM")
	}
	return a
}

// apply is the reload path, as the command wires it: proxy, blacklist,
// admin UI.
func (a *appliance) apply(next *configs.Config) error {
	if err := a.srv.Reload(next); err != nil {
		return err
	}
	a.bl.Reconfigure(next.Blacklist)
	a.health.Reload(next)
	a.mu.Lock()
	a.applied++
	a.mu.Unlock()
	return a.admin.Reconfigure(next)
}

// client returns an HTTPS client for the admin UI, from source address src
// (127.0.0.x), that trusts the self-signed certificate, keeps cookies and
// does not follow redirects.
func (a *appliance) client(src string) *http.Client {
	jar, _ := cookiejar.New(nil)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	return &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext:       d.DialContext,
			TLSClientConfig:   &tls.Config{RootCAs: a.pool},
			DisableKeepAlives: true, // each request is a new connection, as a blocked client's would be
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// do sends a request and returns the status and body.
func do(t *testing.T, c *http.Client, method, url, ctype string, body io.Reader, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data), resp.Header
}

// basic sends a request with the admin's Basic credentials.
func (a *appliance) basic(method, path, ctype string, body io.Reader) (int, string) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, body)
	if err != nil {
		a.t.Fatal(err)
	}
	req.SetBasicAuth(testUser, testPassword)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := a.client("127.0.0.1").Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// login logs in through the form and returns the client holding the
// session cookie and the session's CSRF token.
func (a *appliance) login(src string) (*http.Client, string) {
	a.t.Helper()
	c := a.client(src)
	code, body, _ := do(a.t, c, "GET", a.base+"/login", "", nil)
	m := csrfRE.FindStringSubmatch(body)
	if code != 200 || m == nil {
		a.t.Fatalf("login form: %d %s", code, body)
	}
	form := url.Values{"csrf": {m[1]}, "user": {testUser}, "password": {testPassword}}
	code, body, hdr := do(a.t, c, "POST", a.base+"/login", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if code != http.StatusSeeOther || hdr.Get("Location") != "/" {
		a.t.Fatalf("login: %d %s", code, body)
	}
	code, body, _ = do(a.t, c, "GET", a.base+"/", "", nil)
	m = csrfRE.FindStringSubmatch(body)
	if code != 200 || m == nil {
		a.t.Fatalf("dashboard after login: %d %s", code, body)
	}
	return c, m[1]
}

// httpGet asks the proxy's HTTP port for path as hq.example.com, from src,
// and returns the status, or 0 when the connection was closed unanswered
// (a blocked client).
func (a *appliance) httpGet(src, path string) int {
	a.t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	req, _ := http.NewRequest("GET", "http://"+a.srv.Addr("http").String()+path, nil)
	req.Host = "hq.example.com"
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// certOf returns the certificate the admin listener offers.
func certOf(t *testing.T, pemFile string) *x509.Certificate {
	data, err := os.ReadFile(pemFile)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// blacklistAll selects every entry.
var blacklistAll = blacklist.Filter{}
