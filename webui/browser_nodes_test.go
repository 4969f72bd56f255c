package webui

import (
	"context"
	"strconv"
	"testing"

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
	a, _ := clusterAppliance(t)
	run := browserOn(t, a)
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
