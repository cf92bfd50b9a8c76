package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browserPage follows one call with the browser's own EventSource and
// keeps, for the test to read, every event_id received, the instance of
// each connection (from its welcome) and each subscribed event.
const browserPage = `<!doctype html>
<meta charset="utf-8">
<title>callgate stream</title>
<script>
window.got = [];
window.instances = [];
window.subscribed = [];
window.closes = [];
const es = new EventSource("/sse/calls/CALL?since=0&token=TOKEN");
es.addEventListener("welcome", (e) => instances.push(JSON.parse(e.data).instance_id));
es.addEventListener("subscribed", (e) => {
  subscribed.push({ recovered: JSON.parse(e.data).recovered, id: e.lastEventId });
});
for (const name of ["status", "transcript"]) {
  es.addEventListener(name, (e) => got.push(Number(JSON.parse(e.data).event_id)));
}
es.addEventListener("close", (e) => closes.push(JSON.parse(e.data).code));
</script>
`

// TestBrowserEventSourceSurvivesKill9: headless Chromium follows a call
// through nginx in front of three instances with EventSource alone, no
// client code of ours; the instance that serves the stream is killed with
// SIGKILL while webhooks keep coming. EventSource reconnects by itself
// with Last-Event-ID, nginx sends it to a live instance, and the page ends
// with every event once, in order.
func TestBrowserEventSourceSurvivesKill9(t *testing.T) {
	chromium := requireBins(t, "chromium")[0]
	const sid = "EL_browser"
	dir := t.TempDir()
	token := e2eToken(t)
	page := strings.NewReplacer("CALL", sid, "TOKEN", token).Replace(browserPage)
	if err := os.WriteFile(filepath.Join(dir, "page.html"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	// The page comes from nginx too: the stream is same-origin.
	c := startE2EClusterWith(t, fmt.Sprintf("location = /test/page.html {\n    alias %s;\n    default_type text/html;\n}\n", filepath.Join(dir, "page.html")))
	c.registerCall(sid) // event 1: its status

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	wait := func(expr string) {
		t.Helper()
		if _, err := chromedp.Run(bctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
			state, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`JSON.stringify({got, instances, subscribed, closes})`))
			t.Fatalf("waiting for %s: %v; page state %s", expr, err, state)
		}
	}
	if _, err := chromedp.Run(bctx, chromedp.Navigate(c.url+"/test/page.html")); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	wait(`subscribed.length === 1 && got.length === 1`)
	holder, err := chromedp.Run(bctx, chromedp.Evaluate[string](`instances[0]`))
	if err != nil || c.instances[holder] == nil {
		t.Fatalf("serving instance %q (%v)", holder, err)
	}

	const n = 40
	for i := 1; i <= n; i++ {
		if i == 11 {
			if err := c.instances[holder].cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.webhook("/webhooks/transcription", liveWebhook(sid, i), nil); err != nil {
			t.Fatalf("webhook %d: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond) // spread over the reconnect
	}
	wait(fmt.Sprintf(`got.length >= %d`, n+1))

	got, err := chromedp.Run(bctx, chromedp.Evaluate[[]int](`got`))
	if err != nil {
		t.Fatal(err)
	}
	instances, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`instances`))
	if err != nil {
		t.Fatal(err)
	}
	recovered, err := chromedp.Run(bctx, chromedp.Evaluate[[]bool](`subscribed.map((s) => s.recovered === true)`))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int, n+1)
	for i := range want {
		want[i] = i + 1
	}
	if !slices.Equal(got, want) {
		t.Fatalf("event_ids received by the page: %v, want 1..%d once each, in order", got, n+1)
	}
	if len(instances) < 2 || slices.Contains(instances[1:], holder) {
		t.Fatalf("connections went to %v; %s was killed first", instances, holder)
	}
	if !slices.Equal(recovered, slices.Repeat([]bool{true}, len(recovered))) {
		t.Fatalf("recovered on each connection: %v, want true", recovered)
	}
	t.Logf("Chromium's EventSource: %d events once each, in order, over connections to %v", len(got), instances)
}
