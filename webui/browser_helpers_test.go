package webui

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browserOn starts headless Chromium for a's admin UI and returns run,
// which does steps with a minute's timeout and fails the test with what
// when they fail. Chromium trusts the appliance's self-signed certificate
// by its key, as an administrator does by its fingerprint (with
// certificate errors merely ignored, Chromium does not keep the Secure
// cookies). The browser stops at the test's end.
func browserOn(t *testing.T, a *appliance, extra ...chromedp.ExecAllocatorOption) (run func(what string, steps ...chromedp.Action[chromedp.Void])) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // root in a container has no user namespace for the sandbox
		chromedp.Flag("ignore-certificate-errors-spki-list", spki(t, filepath.Join(a.dir, "state", selfCertFile))),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(opts, extra...)...)
	t.Cleanup(cancelAlloc)
	bctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(cancelCtx)
	// The first call starts the browser and must not have a timeout (it
	// would stop the browser); the steps after it get generous ones, for a
	// slow two-core CI machine under -race.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, time.Minute)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// press clicks a button the way a user's click would, through the DOM:
// synthetic mouse events that start a navigation can wait forever for
// their acknowledgement in headless Chromium.
func press(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.WaitVisible(sel),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool]("document.querySelector("+strconv.Quote(sel)+").click(), true")(ctx, tg)
			return err
		}),
	)
}
