package webui

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// chromium finds Debian's headless Chromium. Missing, the test skips,
// except in CI (CI=true), where a missing browser is a broken setup.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (.ci/run installs it)")
	}
	t.Skip("chromium is not installed")
	return ""
}

// TestBrowser drives the admin UI in headless Chromium as an administrator
// would: log in, watch a client that sends bad requests appear on the
// blacklist page without reloading it, remove it, and see the client served
// again. It saves a screenshot of every page in testdata/screenshots.
func TestBrowser(t *testing.T) {
	a := newAppliance(t, "")
	shots := filepath.Join("testdata", "screenshots")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	run := browserOn(t, a, chromedp.WindowSize(1280, 900))

	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644)
		})
	}
	// Some traffic first, so the dashboard has numbers to show.
	for range 3 {
		if st := a.httpGet("127.0.0.1", "/PBX0/MY"); st != http.StatusOK {
			t.Fatalf("proxy: %d", st)
		}
	}

	run("log in",
		chromedp.Navigate(a.base+"/"),
		chromedp.WaitVisible("#login-form"),
		shot("login"),
		chromedp.SendKeys("#user", testUser),
		chromedp.SendKeys("#password", testPassword),
		press("#login"),
		chromedp.WaitVisible("#services"),
	)
	// The traffic chart draws the three requests (uPlot on a canvas).
	var zone string
	run("see the traffic chart",
		chromedp.WaitVisible(`#traffic-chart canvas`),
		chromedp.WaitVisible(`#traffic-chart[data-points="3600"][data-forwarded="3"]`),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			var err error
			zone, err = chromedp.Evaluate[string](`document.getElementById("traffic-zone").textContent`)(ctx, tg)
			return err
		}),
		shot("dashboard"),
	)
	if zone == "" || zone == "local" { // the chart's times name their zone, as every time on the pages does
		t.Errorf("the chart's zone shows %q", zone)
	}

	const bad = "127.0.0.5"
	run("open the blacklist page", chromedp.Navigate(a.base+"/blacklist"), chromedp.WaitVisible("#blacklist"))
	// Bad requests until the address is blocked (threshold 3).
	refusedAtAccept := 0 // connections closed unanswered: the client was blocked at accept
	waitFor(t, bad+" blocked by the proxy", func() bool {
		if a.httpGet(bad, "/etc/passwd") == 0 {
			refusedAtAccept++
		}
		return refusedAtAccept > 0
	})
	// Blocked, it comes back: closed at accept each time.
	for range 3 {
		if st := a.httpGet(bad, "/PBX0/MY"); st != 0 {
			t.Fatalf("blocked client answered: %d", st)
		}
		refusedAtAccept++
	}
	row := `tr[data-ip="` + bad + `/32"]`
	// The page was loaded before the block: the row comes by live update,
	// with when the block began and the attempts made since.
	run("see the blocked address appear", chromedp.WaitVisible(row), chromedp.WaitVisible(row+" .blocked-since"),
		chromedp.WaitVisible(row+` td.attempts:not([data-attempts="0"])`),
		chromedp.WaitVisible(row+" a.refusals-link"), shot("blacklist"))
	// Its refusals, grouped, with what it asked for, and its connections
	// refused at accept: one line with their count.
	run("its refusals, grouped",
		press(row+" a.refusals-link"),
		chromedp.WaitVisible(`#refusals.grouped`),
		chromedp.WaitVisible(`#refusals.grouped tr.at-accept`),
		chromedp.WaitVisible(`#export-csv`),
		shot("refusals-grouped"),
		chromedp.Navigate(a.base+"/blacklist"), chromedp.WaitVisible(row),
	)
	var acceptRows int
	var acceptCount string
	run("count its refusals at accept",
		chromedp.Navigate(a.base+"/refusals?q="+bad+"+blocked"), chromedp.WaitVisible(`#refusals tr.at-accept`),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			var err error
			if acceptRows, err = chromedp.Evaluate[int](`document.querySelectorAll("#refusals tr.at-accept").length`)(ctx, tg); err != nil {
				return err
			}
			acceptCount, err = chromedp.Evaluate[string](`(document.querySelector("#refusals tr.at-accept .repeats") || {}).textContent || ""`)(ctx, tg)
			return err
		}),
		chromedp.Navigate(a.base+"/blacklist"), chromedp.WaitVisible(row),
	)
	if want := fmt.Sprintf("%d times since", refusedAtAccept); acceptRows != 1 || !strings.HasPrefix(acceptCount, want) {
		t.Errorf("refusals at accept: %d lines, %q; want one line, %q", acceptRows, acceptCount, want)
	}

	run("remove it",
		press(row+` button.remove`),
		chromedp.WaitVisible("#flash"),
		chromedp.WaitNotPresent(row),
		shot("blacklist-removed"),
	)
	if st := a.httpGet(bad, "/PBX0/MY"); st != http.StatusOK {
		t.Fatalf("removed address not served again: %d", st)
	}

	// A kept-alive HTTP client: the connections page says who it is,
	// found by the filter, sorted by the server.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.6")}}
	kept, err := d.Dial("tcp", a.srv.Addr("http").String())
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	fmt.Fprint(kept, "GET /PBX0/MY HTTP/1.1\r\nHost: hq.example.com\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(kept), nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("kept-alive request: %v %v", resp, err)
	}
	var who string
	run("find a connection by its client",
		chromedp.Navigate(a.base+"/connections?sort=identity&order=desc"), chromedp.WaitVisible("#connections"),
		chromedp.SendKeys("#conn-q", "127.0.0.6"),
		press("#conn-search"),
		chromedp.WaitVisible(`#connections tr[data-conn] td.who`),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			var err error
			who, err = chromedp.Evaluate[string](`document.querySelector("#connections tr[data-conn] td.who").textContent`)(ctx, tg)
			return err
		}),
		chromedp.WaitVisible(`#conn-totals`),
		shot("connections"),
	)
	if who != "hq.example.com" {
		t.Errorf("the connection's identity shows %q, want the Host it asked for", who)
	}
	var gutter, selected string
	run("the other pages",
		chromedp.Navigate(a.base+"/whitelist"), chromedp.WaitVisible("#whitelist"), shot("whitelist"),
		chromedp.Navigate(a.base+"/refusals"), chromedp.WaitVisible("#refusals"), shot("refusals"),
		chromedp.Navigate(a.base+"/config"), chromedp.WaitVisible("#config"),
		chromedp.SetValue("#config", "listen:\n  htp: \":80\"\n"),
		press("#check"),
		chromedp.WaitVisible("#problems"),
		chromedp.WaitVisible("#diff table.diff tr.added"), // what applying would change
		chromedp.WaitVisible("#backups"),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			// The page is visible before app.js has run on it (numbered
			// the lines, bound the problem links): wait for the script.
			if _, err := chromedp.Poll[bool](`document.getElementById("config-lines").textContent !== ""`)(ctx, tg); err != nil {
				return err
			}
			var err error
			gutter, err = chromedp.Evaluate[string](`document.getElementById("config-lines").textContent`)(ctx, tg)
			if err != nil {
				return err
			}
			// The problem's "line 2" selects that line of the editor.
			selected, err = chromedp.Evaluate[string](`document.querySelector(".goto-line").click(),
				(function (e) { return e.value.substring(e.selectionStart, e.selectionEnd); })(document.getElementById("config"))`)(ctx, tg)
			return err
		}),
		shot("config-check"),
	)
	if gutter != "1\n2\n3\n" || selected != `  htp: ":80"` {
		t.Errorf("line numbers %q, selected line %q", gutter, selected)
	}
	// The PBX's web server stops: the dashboard, left open, turns its
	// health red by itself.
	target := `#targets tr[data-target="` + a.target.Listener.Addr().String() + `"]`
	run("see the target up", chromedp.Navigate(a.base+"/"), chromedp.WaitVisible(target+" .health.up"),
		// The refusals of the blocked client, by reason, and in the chart
		// (the last day, per minute).
		chromedp.WaitVisible(`#reasons tr td a[href="/refusals?q=url%20not%20allowed"]`),
		chromedp.SetValue("#traffic-range", "day"),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`document.getElementById("traffic-range").dispatchEvent(new Event("change")), true`)(ctx, tg)
			return err
		}),
		chromedp.WaitVisible(`#traffic-chart[data-points="1440"]:not([data-refused="0"])`),
		shot("dashboard-traffic-day"),
	)
	a.target.Close()
	run("see the target go down",
		chromedp.WaitVisible(target+" .health.down"),
		shot("dashboard-target-down"),
		press("#logout"),
		chromedp.WaitVisible("#login-form"),
	)
	if st := a.httpGet("127.0.0.1", "/PBX0/MY"); st != http.StatusServiceUnavailable {
		t.Errorf("request to a target that is down: %d, want 503", st)
	}
}

// spki is the base64 SHA-256 of a certificate's public key, the form
// Chromium's --ignore-certificate-errors-spki-list takes.
func spki(t *testing.T, certFile string) string {
	sum := sha256.Sum256(certOf(t, certFile).RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}
