package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// limitsFixture is the binary under a lowered descriptor limit (prlimit)
// with every listener type: http, https, TURN over TCP and TLS, admin.
type limitsFixture struct {
	in                    *instance
	ca                    *testpki.CA
	http, https, turn     string
	turns, admin          string
	target                *httptest.Server
	hits                  atomic.Int64 // guesses (requests with credentials) the target saw
	resolveHTTP, resolveS string
}

const adminPassword = "correct horse"

func newLimitsFixture(t *testing.T, nofile, maxTracked int) *limitsFixture {
	t.Helper()
	return newLimitsFixtureWith(t, limitsOpts{nofile: nofile, maxTracked: maxTracked, threshold: 3,
		limits: "  first_packet_timeout: 2s\n  max_conns_per_ip: 8\n"})
}

// limitsOpts are what tests vary in the limits fixture.
type limitsOpts struct {
	nofile, maxTracked, threshold int
	limits                        string // the lines of the limits: section
}

func newLimitsFixtureWith(t *testing.T, o limitsOpts) *limitsFixture {
	t.Helper()
	need(t, "curl", "prlimit")
	f := &limitsFixture{ca: testpki.NewCA(t, "limits")}
	f.target = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Only guesses count: gatehouse's own health checks GET the
		// target too, without credentials, every health.interval.
		if r.Header.Get("Authorization") != "" {
			f.hits.Add(1)
			http.Error(w, "wrong password", http.StatusUnauthorized) // a guess, answered by the PBX
			return
		}
		fmt.Fprint(w, "pbx")
	}))
	t.Cleanup(f.target.Close)
	_, tport, _ := net.SplitHostPort(f.target.Listener.Addr().String())
	cert := f.ca.Server("hq.example.com")
	f.http, f.https, f.turns, f.admin = freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	f.turn = freeAddr(t) // TCP; UDP on the same port is almost always free too
	_, hp, _ := net.SplitHostPort(f.http)
	_, sp, _ := net.SplitHostPort(f.https)
	f.resolveHTTP, f.resolveS = "hq.example.com:"+hp+":127.0.0.1", "hq.example.com:"+sp+":127.0.0.1"
	hash, err := bcrypt.GenerateFromPassword([]byte(adminPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`listen:
  http: %q
  https: %q
tls:
  certificates:
    - {cert: %s, key: %s}
services:
  - name: hq.example.com
    target: 127.0.0.1
    ports: {http: %s}
turn:
  listen: %q
  tls_listen: %q
  allocate_timeout: 2s
admin:
  listen: %q
  cert: %s
  key: %s
  users:
    - {name: admin, password_hash: %q}
blacklist:
  threshold: %d
  expiration: 10m
  whitelist: [127.0.0.1]
  max_tracked: %d
limits:
%s`, f.http, f.https, cert.CertFile, cert.KeyFile, tport, f.turn, f.turns, f.admin, cert.CertFile, cert.KeyFile, hash, o.threshold, o.maxTracked, o.limits)
	f.in = startLimited(t, config, f.http, o.nofile)
	return f
}

// startLimited is start with RLIMIT_NOFILE lowered to n on the child.
func startLimited(t *testing.T, config, addr string, n int) *instance {
	t.Helper()
	in := launch(t, "gatehouse.yaml", config, []string{"prlimit", fmt.Sprintf("--nofile=%d:%d", n, n)}, "run")
	in.waitListening(t, addr)
	return in
}

// good is a well-behaved client at 127.0.0.2: n requests, each on a new
// connection, returning how many were answered 200.
func (f *limitsFixture) good(t *testing.T, n int) int {
	ok := 0
	for range n {
		if code, _ := curl(t, "127.0.0.2", "--max-time", "3", "--resolve", f.resolveHTTP, "http://hq.example.com:"+portOf(f.http)+"/"); code == "200" {
			ok++
		}
	}
	return ok
}

// adminHealthy reports whether /healthz answers 200 to a fresh connection
// from 127.0.0.3.
func (f *limitsFixture) adminHealthy(t *testing.T) bool {
	code, _ := curl(t, "127.0.0.3", "--max-time", "3", "-k", "https://"+f.admin+"/healthz")
	return code == "200"
}

func portOf(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// flood opens n connections to addr from src as fast as it can and holds
// them (TLS listeners get a handshake attempt), until stop is closed.
func flood(src, addr string, n int, useTLS bool, stop <-chan struct{}, wg *sync.WaitGroup) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := d.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			if useTLS {
				tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
				tc.SetDeadline(time.Now().Add(2 * time.Second))
				tc.Handshake()
			}
			<-stop
		}()
	}
}

// TestFloodFromOneClientOnEveryListener: at ulimit -n 256, one client per
// listener type opens 150 connections and holds them. The per-client cap
// (counted across listeners) refuses the rest at accept and reports them;
// the client is blocked and what it holds is closed. A good client keeps
// its success rate and the admin UI answers throughout.
func TestFloodFromOneClientOnEveryListener(t *testing.T) {
	f := newLimitsFixture(t, 256, 1000)
	base := f.good(t, 10)
	if base != 10 || !f.adminHealthy(t) {
		t.Fatalf("unloaded: %d of 10, admin healthy %v", base, f.adminHealthy(t))
	}
	for i, l := range []struct {
		name, addr string
		tls        bool
	}{{"http", f.http, false}, {"https", f.https, true}, {"turn", f.turn, false}, {"turns", f.turns, true}, {"admin", f.admin, true}} {
		t.Run(l.name, func(t *testing.T) {
			src := fmt.Sprintf("127.0.1.%d", 10+i)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			flood(src, l.addr, 150, l.tls, stop, &wg)
			ok := f.good(t, 20)
			healthy := f.adminHealthy(t)
			close(stop)
			wg.Wait()
			if ok < 19 || !healthy {
				t.Errorf("during the flood on %s: good client %d of 20 (unloaded 10 of 10), admin healthy %v", l.name, ok, healthy)
			}
			f.in.waitLog(t, "client blocked\" client="+src)
		})
	}
}

// TestKeepAliveBruteForceStopsAtBlock: curl guesses passwords over one
// kept-alive connection (HTTP/1.1 and HTTP/2) and, on the admin port,
// basic-auth logins. After the block no guess reaches the target: the
// connection is closed at once and the new ones are refused at accept.
func TestKeepAliveBruteForceStopsAtBlock(t *testing.T) {
	f := newLimitsFixture(t, 1024, 1000)
	guesses := func(n int, url string) []string {
		var urls []string
		for i := range n {
			urls = append(urls, fmt.Sprintf("%s?guess=%d", url, i))
		}
		return urls
	}
	for _, tc := range []struct {
		name, src string
		args      []string
	}{
		{"http", "127.0.2.1", append([]string{"--resolve", f.resolveHTTP, "-u", "alice:guess"}, guesses(30, "http://hq.example.com:"+portOf(f.http)+"/")...)},
		{"http2", "127.0.2.2", append([]string{"--http2", "--cacert", f.ca.File, "--resolve", f.resolveS, "-u", "alice:guess"}, guesses(30, "https://hq.example.com:"+portOf(f.https)+"/")...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.hits.Load()
			out, _ := exec.Command("curl", append([]string{"-sS", "--max-time", "20", "--interface", tc.src, "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n"}, tc.args...)...).CombinedOutput()
			got := f.hits.Load() - before
			// threshold 3: the fourth 401 blocks; nothing after it reaches the target.
			if got != 4 {
				t.Errorf("the target saw %d guesses, want 4 (threshold+1)\n%s", got, out)
			}
			// The fourth guess blocks the client, whose connection is closed
			// at once: its answer may be cut with it.
			if n := strings.Count(string(out), "401 "); n < 3 || n > 4 {
				t.Errorf("curl got %d answers 401, want 3 or 4\n%s", n, out)
			}
			// The guesses went over one connection.
			if !strings.Contains(codes(out), "401 1,401 0,401 0,") {
				t.Errorf("the guesses did not share a connection:\n%s", out)
			}
			f.in.waitLog(t, "blocked client's connections closed\" client="+tc.src)
		})
	}
	t.Run("admin", func(t *testing.T) {
		var urls []string
		for range 30 {
			urls = append(urls, "https://"+f.admin+"/api/status")
		}
		out, _ := exec.Command("curl", append([]string{"-sS", "-k", "--max-time", "20", "--interface", "127.0.2.3", "-u", "admin:guess",
			"-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n"}, urls...)...).CombinedOutput()
		if n := strings.Count(string(out), "401 "); n < 3 || n > 4 {
			t.Errorf("admin answered %d guesses, want 3 or 4\n%s", n, out)
		}
		f.in.waitLog(t, "client blocked\" client=127.0.2.3")
	})
}

// unknownHost sends one request for a name no service has (suspicious)
// from src and tells whether gatehouse answered at all.
func unknownHost(src, addr string) bool {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: nobody.example.net\r\nConnection: close\r\n\r\n")
	n, _ := c.Read(make([]byte, 64))
	return n > 0
}

// TestEvictionFloodNeverReleasesABlock: with blacklist.max_tracked at 50,
// suspicious requests from 2,000 addresses (127.3.x.y) fold their ranges
// into aggregates and block them; the client blocked first stays blocked,
// and a client outside the flooding ranges is still served.
func TestEvictionFloodNeverReleasesABlock(t *testing.T) {
	f := newLimitsFixture(t, 1024, 50)
	for range 4 {
		unknownHost("127.0.2.9", f.http)
	}
	f.in.waitLog(t, "client blocked\" client=127.0.2.9")
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range 2000 {
		src := fmt.Sprintf("127.3.%d.%d", i/250, i%250+1)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			unknownHost(src, f.http)
		})
	}
	wg.Wait()
	if unknownHost("127.0.2.9", f.http) {
		t.Fatal("the blocked client was served again after the eviction flood")
	}
	f.in.waitLog(t, "blacklist full: clients aggregated into their range")
	if unknownHost("127.3.0.77", f.http) {
		t.Error("a flooding range is not blocked")
	}
	if f.good(t, 5) != 5 {
		t.Error("a client outside the flood is not served")
	}
}

// codes keeps the "%{http_code} %{num_connects}" lines of curl's output.
func codes(out []byte) string {
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if len(l) >= 5 && l[3] == ' ' && strings.Trim(l[:3], "0123456789") == "" {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, ",") + ","
}

// TestBlockedClientReconnects: a client blocked for unknown hosts comes back
// seven times, each connection closed at accept. /api/blacklist reports when
// its block began and the seven attempts; /api/refusals lists them once,
// as a refusal at accept with a count of seven, beside its requests.
func TestBlockedClientReconnects(t *testing.T) {
	f := newLimitsFixture(t, 1024, 1000)
	const src, again = "127.0.4.1", 7
	for range 4 { // threshold 3: the fourth blocks
		unknownHost(src, f.http)
	}
	f.in.waitLog(t, "client blocked\" client="+src)
	for range again {
		if unknownHost(src, f.http) {
			t.Fatal("the blocked client was served")
		}
	}
	api := func(path string, v any) {
		t.Helper()
		code, body := curl(t, "127.0.0.1", "-k", "-u", "admin:"+adminPassword, "https://"+f.admin+path)
		if code != "200" || json.Unmarshal([]byte(body), v) != nil {
			t.Fatalf("GET %s: %s %s", path, code, body)
		}
	}
	var entries []struct {
		Prefix       string    `json:"prefix"`
		Blocked      bool      `json:"blocked"`
		BlockedSince time.Time `json:"blocked_since"`
		Attempts     uint64    `json:"attempts_while_blocked"`
	}
	api("/api/blacklist?address="+src, &entries)
	if len(entries) != 1 || !entries[0].Blocked || entries[0].Attempts != again ||
		entries[0].BlockedSince.IsZero() || time.Since(entries[0].BlockedSince) > time.Minute {
		t.Fatalf("blacklist: %+v, want blocked within the last minute with %d attempts", entries, again)
	}
	var refusals []struct {
		Client, Type, Reason string
		Count                int  `json:"count"`
		AtAccept             bool `json:"at_accept"`
	}
	api("/api/refusals?q="+src, &refusals)
	var atAccept, requests int
	for _, r := range refusals {
		switch {
		case r.AtAccept:
			atAccept++
			if r.Reason != "blocked" || r.Type != "http" || r.Count != again {
				t.Errorf("refusal at accept %+v, want blocked on http, %d times", r, again)
			}
		case r.Reason == "unknown service":
			requests += r.Count
		}
	}
	if atAccept != 1 || requests != 4 {
		t.Fatalf("refusals: %d at accept (want one line), %d requests (want 4): %+v", atAccept, requests, refusals)
	}
}
