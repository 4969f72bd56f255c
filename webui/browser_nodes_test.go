package webui

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserNodes logs in with Chromium on an appliance that is a cluster
// node and opens the Nodes page from the menu: the node's row shows its
// address, version, quorum and current copy, and the blacklist page says
// which node made a block.
func TestBrowserNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Chromium and an embedded NATS server")
	}
	exe := chromium(t)
	a, _ := clusterAppliance(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.Flag("ignore-certificate-errors-spki-list", spki(t, filepath.Join(a.dir, "state", selfCertFile))),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	defer cancelCtx()
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	press := func(sel string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.WaitVisible(sel),
			chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := chromedp.Evaluate[bool]("document.querySelector("+strconv.Quote(sel)+").click(), true")(ctx, tg)
				return err
			}),
		)
	}
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, time.Minute)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	for range 4 {
		a.httpGet("127.0.0.9", "/admin")
	}

	run("log in",
		chromedp.Navigate(a.base+"/"),
		chromedp.WaitVisible("#login-form"),
		chromedp.SendKeys("#user", testUser),
		chromedp.SendKeys("#password", testPassword),
		press("#login"),
		chromedp.WaitVisible("#services"),
	)
	row := `#nodes tr[data-node="dmz-a"]`
	run("open the Nodes page from the menu",
		press("#nav-nodes"),
		chromedp.WaitVisible(row),
		chromedp.WaitVisible(`#cluster-state.ok`),
	)
	for sel, want := range map[string]string{
		row + " td:nth-child(2)": "192.0.2.1:6222",
		row + " td:nth-child(4)": "test",
		row + " td.quorum":       "yes",
		row + " td.current":      "current",
	} {
		var got string
		run("read "+sel, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			var err error
			got, err = chromedp.Evaluate[string]("document.querySelector("+strconv.Quote(sel)+").textContent.trim()")(ctx, tg)
			return err
		}))
		if got != want {
			t.Errorf("%s: %q, want %q", sel, got, want)
		}
	}
	run("see which node blocked 127.0.0.9",
		chromedp.Navigate(a.base+"/blacklist"),
		chromedp.WaitVisible(`#blacklist tr[data-ip="127.0.0.9/32"] .origin`),
	)
}
