package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/callgate/callgate/calls"
)

// requireChromium returns the path of a Chromium to drive, as requireTools
// does for nginx: skipped without one, a failure with CALLGATE_TEST_NGINX=1.
// CALLGATE_TEST_CHROMIUM names another binary.
func requireChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CALLGATE_TEST_CHROMIUM"); p != "" {
		if !isExecutable(p) {
			t.Fatalf("CALLGATE_TEST_CHROMIUM=%s is not an executable", p)
		}
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const msg = "no chromium on PATH (Debian: apt-get install chromium)"
	if v := os.Getenv("CALLGATE_TEST_NGINX"); v != "" && v != "0" {
		t.Fatalf("CALLGATE_TEST_NGINX is set but %s", msg)
	}
	t.Skipf("%s; set CALLGATE_TEST_NGINX=1 to make this a failure", msg)
	return ""
}

// startBrowser starts a headless Chromium for the test, with a fresh user
// data directory (chromedp makes one per browser and removes it), and
// collects what its pages write to the console.
func startBrowser(t *testing.T, bin string) (context.Context, *browserConsole) {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox, // root in CI
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// Nothing but the page's own traffic: this machine's network is
		// closed, and a test must not depend on one.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	console := &browserConsole{}
	messages := chromedp.Console(bctx) // starts the browser
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			console.add(m)
		}
	}()
	ctx, cancel := context.WithTimeout(bctx, 3*time.Minute)
	t.Cleanup(cancel)
	return ctx, console
}

// browserConsole is what the page wrote to the console, and the browser
// about the page (Content-Security-Policy violations among them).
type browserConsole struct {
	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
}

func (c *browserConsole) add(m chromedp.ConsoleMessage) {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
}

// check fails the test on exceptions and on anything the browser refused;
// it logs the rest.
func (c *browserConsole) check(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.msgs {
		refused := m.Source == "security" || strings.Contains(m.Text, "Content Security Policy") ||
			strings.Contains(m.Text, "Refused to") || strings.Contains(m.Text, "TrustedHTML")
		if m.IsException() || refused {
			t.Errorf("browser console: %s (%s:%d)", m, m.URL, m.Line)
		} else {
			t.Logf("browser console: %s", m)
		}
	}
}

// viewerDOM is what the test reads off the page.
type viewerDOM struct {
	Conn     string `json:"conn"`
	Instance string `json:"instance"`
	Sub      string `json:"sub"`
	SubState string `json:"subState"`
	CallSid  string `json:"callSid"`
	Status   string `json:"status"`
	Events   []struct {
		ID    string `json:"id"`
		Epoch string `json:"epoch"`
		Event string `json:"event"`
		Text  string `json:"text"`
	} `json:"events"`
	Turns []struct {
		Class    string   `json:"cls"`
		Role     string   `json:"role"`
		Text     string   `json:"text"`
		Original string   `json:"original"`
		Notes    []string `json:"notes"`
	} `json:"turns"`
	Activity []activityLine `json:"activity"`
	Alerts   []string       `json:"alerts"`
}

// activityLine is a line of the page's activity list.
type activityLine struct {
	Kind string `json:"kind"`
	Text string `json:"text"`
}

const readViewerDOM = `(() => {
  const $ = (s) => document.querySelector(s);
  const all = (s) => [...document.querySelectorAll(s)];
  return {
    conn: $("#conn").dataset.state,
    instance: $("#instance").textContent,
    sub: $("#sub").textContent,
    subState: $("#sub").dataset.state,
    callSid: $("#call-sid").textContent,
    status: $("#call-status").textContent,
    events: all("#events li").map((li) => ({ id: li.dataset.eventId, epoch: li.dataset.epoch, event: li.dataset.event, text: li.textContent })),
    turns: all("#transcript > li").map((li) => ({
      cls: li.className,
      role: li.dataset.role ?? "",
      text: (li.querySelector(".text") ?? li).textContent,
      original: li.querySelector(".original")?.textContent ?? "",
      notes: [...li.querySelectorAll(".note")].map((n) => n.dataset.note),
    })),
    activity: all("#activity li").map((li) => ({ kind: li.dataset.kind, text: li.textContent })),
    alerts: all("#alerts li").map((li) => li.textContent),
  };
})()`

// TestViewerThroughNginx opens the live viewer in headless Chromium
// through nginx in front of three instances, follows a call by its
// conversation_id with a token typed into the page, and posts signed live
// events. Then it kills (-9) the instance that serves the page's socket, as
// the page shows it, and posts more. The page must reconnect through
// nginx to another instance, resume, and end with every event once, in
// order, and the transcript they make: tentative text replaced by the
// final, the corrected agent turn, the interruption, the call completed.
func TestViewerThroughNginx(t *testing.T) {
	chromium := requireChromium(t)
	c := startE2ECluster(t, "CALLGATE_VIEWER=1")
	const sid, conv = "EL_viewer", "conv_viewer"

	// The page is served through nginx, with its policy.
	resp, err := c.http.Get(c.url + "/viewer/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("GET /viewer/ through nginx: %d, Content-Security-Policy %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}

	body, _ := json.Marshal(map[string]string{"call_sid": sid, "conversation_id": conv, "status": "in-progress"})
	if status, _, out := c.do(http.MethodPost, "/api/calls", body,
		http.Header{"Authorization": {"Bearer " + e2eAPIKey}}); status != http.StatusCreated {
		t.Fatalf("POST /api/calls: %d %v", status, out)
	}
	// want[n-1] is what event n must show in the page's event list; event
	// 1 is the status the call was registered with.
	want := []string{"status in-progress"}
	post := func(path string, body []byte) {
		t.Helper()
		id, err := c.webhook(path, body, nil)
		if err != nil {
			t.Fatal(err)
		}
		if id != strconv.Itoa(len(want)+1) {
			t.Fatalf("%s: event_id %s, want %d", body, id, len(want)+1)
		}
	}
	live := func(typ, field, text string, sourceID int, extra map[string]any) {
		t.Helper()
		ev := map[string]any{"event_id": sourceID}
		if field != "" {
			ev[field] = text
		}
		for k, v := range extra {
			ev[k] = v
		}
		payload := map[string]string{
			"agent_response": "agent_response_event", "user_transcript": "user_transcription_event",
			"tentative_user_transcript": "tentative_user_transcription_event",
			"agent_response_correction": "agent_response_correction_event", "interruption": "interruption_event",
		}[typ]
		b, _ := json.Marshal(map[string]any{"call_sid": sid, "event": map[string]any{"type": typ, payload: ev}})
		post("/webhooks/transcription", b)
	}
	agent := func(text string, n int) {
		live("agent_response", "agent_response", text, n, nil)
		want = append(want, "transcript agent: "+text)
	}
	user := func(text string, n int, final bool) {
		if final {
			live("user_transcript", "user_transcript", text, n, nil)
			want = append(want, "transcript user: "+text)
		} else {
			live("tentative_user_transcript", "user_transcript", text, n, nil)
			want = append(want, "transcript user (tentative): "+text)
		}
	}

	ctx, console := startBrowser(t, chromium)
	// poll waits until the JavaScript condition holds in the page.
	poll := func(what, cond string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(60*time.Second))); err != nil {
			dom, _ := chromedp.Run(ctx, chromedp.Evaluate[viewerDOM](readViewerDOM))
			t.Fatalf("waiting for %s: %v\npage: %+v", what, err, dom)
		}
	}
	read := func() viewerDOM {
		t.Helper()
		dom, err := chromedp.Run(ctx, chromedp.Evaluate[viewerDOM](readViewerDOM))
		if err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		return dom
	}
	// follow types the call and the token into the page and presses
	// Follow.
	follow := func(call, token string) {
		t.Helper()
		cleared, err := chromedp.Run(ctx, chromedp.Evaluate[bool](
			`document.querySelector("#name").value = document.querySelector("#token").value = ""; true`))
		if err != nil || !cleared {
			t.Fatalf("emptying the fields: %v", err)
		}
		steps := []chromedp.Action[chromedp.Void]{chromedp.SendKeys(chromedp.ID("name"), call)}
		if token != "" {
			steps = append(steps, chromedp.SendKeys(chromedp.ID("token"), token))
		}
		if err := chromedp.Do(ctx, append(steps, chromedp.Click(chromedp.ID("go")))...); err != nil {
			t.Fatalf("following %s: %v", call, err)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(c.url+"/viewer/"), chromedp.WaitVisible(chromedp.ID("name"))); err != nil {
		t.Fatalf("opening the viewer: %v", err)
	}

	// Without a token this gateway refuses the socket (4001), and the
	// page says so instead of trying again and again.
	follow(conv, "")
	poll("the refusal of a socket without a token", `document.querySelector("#conn").dataset.state === "closed"`)
	if dom := read(); len(dom.Alerts) != 1 || !strings.Contains(dom.Alerts[0], "4001") || !strings.Contains(dom.Alerts[0], "token") ||
		slices.ContainsFunc(dom.Activity, func(a activityLine) bool {
			return a.Kind == "open" || a.Kind == "connecting" && strings.Contains(a.Text, "attempt 2")
		}) {
		t.Fatalf("no token: alerts %q, activity %q; want one alert about 4001 and the token, one attempt and no connection", dom.Alerts, dom.Activity)
	}

	// A call whose stored events are gone: following it from the start
	// gets recovered:false, which the page must show as such.
	const lostSid = "EL_viewer_lost"
	lostBody, _ := json.Marshal(map[string]string{"call_sid": lostSid, "status": "in-progress"})
	if status, _, out := c.do(http.MethodPost, "/api/calls", lostBody, http.Header{"Authorization": {"Bearer " + e2eAPIKey}}); status != http.StatusCreated {
		t.Fatalf("POST /api/calls: %d %v", status, out)
	}
	if _, err := c.webhook("/webhooks/transcription", liveWebhook(lostSid, 1), nil); err != nil {
		t.Fatal(err)
	}
	if n := redisCommand(t, c.redisPort, "DEL", calls.Keys{Prefix: "callgate"}.History(lostSid)); n != ":1" {
		t.Fatalf("DEL the call's history: %s, want :1", n)
	}
	token := e2eToken(t)
	follow(lostSid, token)
	poll("recovered:false", `document.querySelector('#alerts li[data-kind="lost"]') !== null`)
	if dom := read(); !strings.Contains(dom.Alerts[0], "recovered:false") || !strings.Contains(dom.Sub, "incomplete") || len(dom.Events) != 0 {
		t.Fatalf("history lost: alerts %q, subscription %q, %d events; want recovered:false shown, history incomplete, no event", dom.Alerts, dom.Sub, len(dom.Events))
	}

	// The call of this test, by its conversation_id.
	follow(conv, token)
	poll("the subscription", `document.querySelector("#sub").dataset.state === "active" && document.querySelector("#call-sid").textContent === "`+sid+`"`)

	// The conversation as docs/PROTOCOL.md tells it, then more turns.
	long := "I am calling to confirm your cleaning on Tuesday at 3 pm and to tell you about our history."
	short := "I am calling to confirm your cleaning on Tuesday at 3 pm."
	agent("Hi, this is Ava from Northwind Dental. Am I speaking with Maria?", 1)
	user("Yes, spea", 2, false)
	user("Yes, speaking.", 2, true)
	agent(long, 3)
	live("interruption", "", "", 4, nil)
	want = append(want, "interruption source event 4")
	live("agent_response_correction", "corrected_agent_response", short, 3, map[string]any{"original_agent_response": long})
	want = append(want, "transcript_correction agent: "+short)
	for n := 5; n <= 8; n++ {
		agent(fmt.Sprintf("before the kill, turn %d.", n), n)
	}
	before := len(want)
	poll(fmt.Sprintf("%d events", before), fmt.Sprintf(`document.querySelectorAll("#events li").length >= %d`, before))

	// Kill the instance the page says serves its socket.
	dom := read()
	holder := dom.Instance
	victim := c.instances[holder]
	if victim == nil || dom.Conn != "open" {
		t.Fatalf("the page shows instance %q, connection %q: want one of %v, open", holder, dom.Conn, c.addrs)
	}
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if !victim.waitExit(10 * time.Second) {
		t.Fatalf("%s still running after kill -9", holder)
	}

	// More events while the page reconnects, through the instances left.
	user("That works, th", 9, false)
	user("That works, thanks.", 9, true)
	for n := 10; n <= 14; n++ {
		agent(fmt.Sprintf("after the kill, turn %d.", n), n)
	}
	completed, _ := json.Marshal(map[string]any{
		"type": "post_call_transcription", "event_timestamp": time.Now().Unix(),
		"data": map[string]any{
			"agent_id": "agent_viewer", "conversation_id": conv, "status": "done",
			"transcript": []map[string]any{{"role": "agent", "message": "Hi", "time_in_call_secs": 0}},
			"metadata":   map[string]any{"call_duration_secs": 38, "termination_reason": "end_call tool was called."},
			"analysis":   map[string]any{"call_successful": "success"},
		},
	})
	post("/webhooks/elevenlabs", completed)
	want = append(want, "completed end_call tool was called.")

	poll(fmt.Sprintf("%d events", len(want)), fmt.Sprintf(`document.querySelectorAll("#events li").length >= %d`, len(want)))
	poll("the resumed subscription", `document.querySelector("#sub").dataset.state === "active" && document.querySelector("#conn").dataset.state === "open"`)
	poll("the call's status", `document.querySelector("#call-status").textContent === "done"`)

	dom = read()

	// Every event once, in order, in one epoch.
	if len(dom.Events) != len(want) {
		t.Errorf("the page lists %d events, want %d", len(dom.Events), len(want))
	}
	for i, ev := range dom.Events {
		if ev.ID != strconv.Itoa(i+1) {
			t.Errorf("event %d in the page is #%s (%s)", i+1, ev.ID, ev.Text)
			continue
		}
		if i < len(want) && !strings.HasSuffix(ev.Text, want[i]) {
			t.Errorf("event #%s: %q, want it to end with %q", ev.ID, ev.Text, want[i])
		}
		if ev.Epoch == "" || ev.Epoch != dom.Events[0].Epoch {
			t.Errorf("event #%s: epoch %q, want %q (one epoch, and always there)", ev.ID, ev.Epoch, dom.Events[0].Epoch)
		}
	}

	// The transcript, turn by turn.
	type turn struct{ class, text, original, notes string }
	var got []turn
	for _, tn := range dom.Turns {
		got = append(got, turn{tn.Class, tn.Text, tn.Original, strings.Join(tn.Notes, ",")})
	}
	wantTurns := []turn{
		{"turn agent", "Hi, this is Ava from Northwind Dental. Am I speaking with Maria?", "", ""},
		{"turn user", "Yes, speaking.", "", ""},
		{"turn agent interrupted corrected", short, "originally: " + long, "corrected,interrupted"},
		{"marker", "The caller interrupted", "", ""},
	}
	for n := 5; n <= 8; n++ {
		wantTurns = append(wantTurns, turn{"turn agent", fmt.Sprintf("before the kill, turn %d.", n), "", ""})
	}
	wantTurns = append(wantTurns, turn{"turn user", "That works, thanks.", "", ""})
	for n := 10; n <= 14; n++ {
		wantTurns = append(wantTurns, turn{"turn agent", fmt.Sprintf("after the kill, turn %d.", n), "", ""})
	}
	wantTurns = append(wantTurns, turn{"marker", "Call completed: 38 s, end_call tool was called.", "", ""})
	if !slices.Equal(got, wantTurns) {
		t.Errorf("transcript:\n got %q\nwant %q", got, wantTurns)
	}

	// The reconnect, shown: the socket closed while the page was served by
	// the killed instance, the page said when it would retry, connected to
	// another instance and resumed with nothing missed.
	var kinds []string
	for _, a := range dom.Activity {
		kinds = append(kinds, a.Kind)
	}
	kind := func(k string) func(activityLine) bool { return func(a activityLine) bool { return a.Kind == k } }
	closed := slices.IndexFunc(dom.Activity, kind("closed"))
	if closed < 0 || !strings.Contains(dom.Activity[closed].Text, holder) || !strings.Contains(dom.Activity[closed].Text, "reconnecting in") {
		t.Errorf("activity %q: want a close of the socket on %s with its retry delay", kinds, holder)
	} else {
		rest := dom.Activity[closed+1:]
		opened := slices.IndexFunc(rest, kind("open"))
		resumed := slices.IndexFunc(rest, kind("resumed"))
		if opened < 0 || resumed < opened || strings.Contains(rest[opened].Text, holder) || !strings.Contains(rest[resumed].Text, "nothing missed") {
			t.Errorf("activity after the close %q: want a connection to another instance, then resumed with nothing missed", rest)
		}
	}
	if c.instances[dom.Instance] == nil || dom.Instance == holder {
		t.Errorf("the page shows instance %q at the end: want a live one, not %s", dom.Instance, holder)
	}
	if dom.Conn != "open" || !strings.Contains(dom.Sub, "nothing missed") || dom.CallSid != sid || len(dom.Alerts) != 0 {
		t.Errorf("page at the end: connection %q, subscription %q, call_sid %q, alerts %q; want open, resumed with nothing missed, %s, none",
			dom.Conn, dom.Sub, dom.CallSid, dom.Alerts, sid)
	}

	// The token went in the socket's first frame, never in an address.
	if href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`)); err != nil || strings.Contains(href, token) {
		t.Errorf("the page's address %q holds the token (or cannot be read: %v)", href, err)
	}
	if log, err := os.ReadFile(c.accessLog); err != nil || bytes.Contains(log, []byte(token)) {
		t.Errorf("nginx's access log holds the token (or cannot be read: %v)", err)
	}

	saveScreenshot(t, ctx)

	// A state topic: the current state at once, then each change.
	put := func(state string) {
		t.Helper()
		if status, _, out := c.do(http.MethodPut, "/api/topics/workflows", []byte(state),
			http.Header{"Authorization": {"Bearer " + e2eAPIKey}, "Content-Type": {"application/json"}}); status != http.StatusOK {
			t.Fatalf("PUT /api/topics/workflows: %d %v", status, out)
		}
	}
	put(`{"workflows":[{"id":"wf1","state":"running"}]}`)
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.ID("kind"), "topic")); err != nil {
		t.Fatal(err)
	}
	follow("workflows", token)
	poll("the topic's state", `document.querySelector("#topic-version").dataset.version === "1"`)
	put(`{"workflows":[{"id":"wf1","state":"done"}]}`)
	poll("the topic's next state", `document.querySelector("#topic-version").dataset.version === "2"`)
	state, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#topic-state").textContent`))
	var shown any
	if err != nil || json.Unmarshal([]byte(state), &shown) != nil || !strings.Contains(state, `"state": "done"`) {
		t.Errorf("topic state shown: %q (%v), want the second state as JSON", state, err)
	}
	if hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("#call-view").hidden`)); err != nil || !hidden {
		t.Errorf("the call's view is still shown while following a topic (%v)", err)
	}

	console.check(t)
}

// saveScreenshot saves the whole page as a PNG in the test's directory, and
// to CALLGATE_VIEWER_SCREENSHOT if set, and checks that it is an image of
// the page: a PNG of a sensible size that is not one colour.
func saveScreenshot(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#events-box summary"))); err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	paths := []string{filepath.Join(t.TempDir(), "viewer.png")}
	if p := os.Getenv("CALLGATE_VIEWER_SCREENSHOT"); p != "" {
		paths = append(paths, p)
	}
	for _, p := range paths {
		if err := os.WriteFile(p, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", p, len(shot))
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	b := img.Bounds()
	if b.Dx() < 800 || b.Dy() < 600 || b.Dx() > 4000 || b.Dy() > 20000 {
		t.Fatalf("screenshot of %dx%d: want at least 800x600, the window's width", b.Dx(), b.Dy())
	}
	colours := map[[4]uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y && len(colours) < 16; y += 7 {
		for x := b.Min.X; x < b.Max.X; x += 7 {
			r, g, bl, a := img.At(x, y).RGBA()
			colours[[4]uint32{r, g, bl, a}] = true
		}
	}
	if len(colours) < 16 {
		t.Fatalf("the screenshot has %d colours: a blank page?", len(colours))
	}
}

// redisCommand sends one command to the Redis on port and returns the
// first line of its answer, like ":1".
func redisCommand(t *testing.T, port int, args ...string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := fmt.Sprintf("*%d\r\n", len(args))
	for _, a := range args {
		req += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimRight(line, "\r\n")
}
