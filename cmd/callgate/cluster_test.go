package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/internal/redistest"
	"github.com/callgate/callgate/internal/wstest"
)

const (
	testSecret    = "whsec_test_secret"
	testAPIKey    = "test-api-key"
	testJWTSecret = "jwt-test-secret"
)

// instance is one gateway started by a test.
type instance struct {
	t   testing.TB
	app *app
	url string // http://127.0.0.1:port
}

// startInstance starts a gateway on a free loopback port against srv, with
// key prefix prefix, and stops it when the test ends.
func startInstance(t testing.TB, srv *redistest.Server, prefix, name string, mutate ...func(*config)) *instance {
	t.Helper()
	return startInstanceLogging(t, srv, prefix, name, nil, mutate...)
}

// startInstanceLogging is startInstance that also writes the instance's
// logs to logs, unless it is nil.
func startInstanceLogging(t testing.TB, srv *redistest.Server, prefix, name string, logs io.Writer, mutate ...func(*config)) *instance {
	t.Helper()
	cfg, err := parseConfig([]string{
		"--addr", "127.0.0.1:0",
		srv.Flag(), srv.URL(),
		"--redis-prefix", prefix,
		"--webhook-secret", testSecret,
		"--api-key", testAPIKey,
		// Tokens are verified when given; tests of the protocol connect
		// anonymously.
		"--jwt-secret", testJWTSecret,
		"--allow-anonymous",
		"--instance-id", name,
		"--log-level", "warn",
	}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mutate {
		m(&cfg)
	}
	tw := &testWriter{t: t}
	t.Cleanup(tw.stop) // runs after the shutdown below: late goroutines log nothing
	var w io.Writer = tw
	if logs != nil {
		w = io.MultiWriter(tw, logs)
	}
	a := serveApp(t, cfg, w)
	return &instance{t: t, app: a, url: "http://" + a.addr()}
}

// serveApp starts an instance with cfg, logging to w, serving until the
// test ends, when it is shut down and waited for.
func serveApp(t testing.TB, cfg config, w io.Writer) *app {
	t.Helper()
	a, err := newApp(context.Background(), cfg, newLogger(cfg, w))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- a.serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.shutdown(ctx)
		<-served
	})
	return a
}

// startCluster starts n instances sharing one new Redis.
func startCluster(t *testing.T, n int) (*redistest.Server, []*instance) {
	t.Helper()
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	ins := make([]*instance, n)
	for i := range ins {
		ins[i] = startInstance(t, srv, prefix, fmt.Sprintf("i%d", i))
	}
	return srv, ins
}

// testWriter sends logs to the test log until the test ends.
type testWriter struct {
	t       testing.TB
	mu      sync.Mutex
	stopped bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

func (in *instance) ws() *wstest.Client {
	in.t.Helper()
	c := wstest.Dial(in.t, in.url+"/ws/calls/transcriptions")
	c.Welcome()
	return c
}

// do sends a request and returns the status and decoded JSON body.
func (in *instance) do(method, path string, body []byte, header http.Header) (int, map[string]any) {
	in.t.Helper()
	req, err := http.NewRequest(method, in.url+path, bytes.NewReader(body))
	if err != nil {
		in.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 && json.Unmarshal(raw, &out) != nil {
		in.t.Fatalf("%s %s: non-JSON answer %d %q", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

func apiHeader() http.Header {
	return http.Header{"Authorization": {"Bearer " + testAPIKey}, "Content-Type": {"application/json"}}
}

// saveCall registers or updates a call through the API.
func (in *instance) saveCall(u calls.Update) map[string]any {
	in.t.Helper()
	b, _ := json.Marshal(u)
	status, out := in.do(http.MethodPost, "/api/calls", b, apiHeader())
	if status != http.StatusCreated && status != http.StatusOK {
		in.t.Fatalf("save call %+v: %d %v", u, status, out)
	}
	return out
}

// webhook posts a correctly signed webhook body to path.
func (in *instance) webhook(path string, body []byte) (int, map[string]any) {
	in.t.Helper()
	h := http.Header{calls.SignatureHeader: {calls.Sign([]byte(testSecret), time.Now(), body)}}
	return in.do(http.MethodPost, path, body, h)
}

// mustPublish posts a webhook and fails unless it was published; it
// returns the event id.
func (in *instance) mustPublish(path string, body []byte) string {
	in.t.Helper()
	status, out := in.webhook(path, body)
	if status != http.StatusOK || out["status"] != "published" {
		in.t.Fatalf("webhook %s %s: %d %v", path, body, status, out)
	}
	return out["event_id"].(string)
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "calls", "testdata", "elevenlabs", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// liveEvents returns the fixture's agent-socket events, one per line.
func liveEvents(t *testing.T) []json.RawMessage {
	t.Helper()
	var out []json.RawMessage
	sc := bufio.NewScanner(bytes.NewReader(fixture(t, "live_events.jsonl")))
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			out = append(out, json.RawMessage(bytes.Clone(line)))
		}
	}
	return out
}

func liveBody(idField, id string, event json.RawMessage) []byte {
	b, _ := json.Marshal(map[string]any{idField: id, "event": event})
	return b
}

// Identifiers of the call in the fixtures.
const (
	fixtureSID  = "EL_7f3c2a9e1b"
	fixtureConv = "conv_4k2m9x7p1q8w3e6r5t0y2u4i7o9a"
)

// TestClusterFanOut is the gateway's end-to-end promise: three instances
// share one Redis; clients subscribe on every instance by either
// identifier; webhooks land on other instances; every client receives
// every event of its call exactly once and in order, and nothing else.
func TestClusterFanOut(t *testing.T) {
	_, ins := startCluster(t, 3)
	a, b, c := ins[0], ins[1], ins[2]

	a.saveCall(calls.Update{CallSID: fixtureSID, ConversationID: fixtureConv})
	b.saveCall(calls.Update{CallSID: "EL_late"}) // its conversation_id comes later
	c.saveCall(calls.Update{CallSID: "CAother", ConversationID: "conv_other"})

	bySID := a.ws()
	bySID.MustSubscribe("s1", fixtureSID)
	byConv := b.ws()
	sub := byConv.MustSubscribe("s2", fixtureConv)
	var rec calls.Call
	if err := json.Unmarshal(sub.Call, &rec); err != nil || rec.CallSID != fixtureSID || rec.ConversationID != fixtureConv {
		t.Fatalf("subscribed by conversation_id: call %s (%v)", sub.Call, err)
	}
	both := c.ws() // subscribed through both identifiers: still once
	both.MustSubscribe("s3", fixtureSID)
	both.MustSubscribe("s4", fixtureConv)
	late := a.ws()
	late.MustSubscribe("s5", "EL_late")
	other := b.ws()
	other.MustSubscribe("s6", "conv_other")

	// Link the late call, then address it only by its conversation_id.
	c.saveCall(calls.Update{CallSID: "EL_late", ConversationID: "conv_late"})

	// The fixture call: live events (alternating identifiers), then the
	// post-call webhooks, posted round-robin to every instance so that
	// each client gets events that arrived on the other two.
	instances := []*instance{c, a, b}
	var wantMain []string // event names in order
	for i, ev := range liveEvents(t) {
		idField, id := "call_sid", fixtureSID
		if i%2 == 1 {
			idField, id = "conversation_id", fixtureConv
		}
		status, out := instances[i%3].webhook("/webhooks/transcription", liveBody(idField, id, ev))
		if status != http.StatusOK {
			t.Fatalf("live event %d: %d %v", i, status, out)
		}
		switch out["status"] {
		case "published":
			wantMain = append(wantMain, out["event"].(string))
		case "linked", "ignored":
		default:
			t.Fatalf("live event %d: %v", i, out)
		}
	}
	// The first transcript moved the call to in-progress, announced by a
	// status event before it.
	if wantMain[0] != "transcript" {
		t.Fatalf("events %v", wantMain)
	}
	wantMain = append([]string{"status"}, wantMain...)
	for _, f := range []string{"post_call_transcription.json", "post_call_audio.json"} {
		b.mustPublish("/webhooks/elevenlabs", fixture(t, f))
	}
	wantMain = append(wantMain, "completed", "audio_available")

	lateEvents := []string{}
	for i := 1; i <= 3; i++ {
		ev := json.RawMessage(fmt.Sprintf(`{"type":"agent_response","agent_response_event":{"agent_response":"late %d","event_id":%d}}`, i, i))
		instances[i%3].mustPublish("/webhooks/transcription", liveBody("conversation_id", "conv_late", ev))
		lateEvents = append(lateEvents, "transcript")
	}
	lateEvents = append([]string{"status"}, lateEvents...)

	check := func(name string, cl *wstest.Client, sid string, want []string) {
		t.Helper()
		for i, ev := range want {
			f := cl.Expect("event")
			if f.Event != ev || f.EventID != strconv.Itoa(i+1) || f.CallSID != sid {
				t.Fatalf("%s: event %d: got %s, want %s #%d of %s", name, i, f.Raw, ev, i+1, sid)
			}
		}
	}
	check("by call_sid", bySID, fixtureSID, wantMain)
	check("by conversation_id", byConv, fixtureSID, wantMain)
	check("by both identifiers", both, fixtureSID, wantMain)
	check("linked later", late, "EL_late", lateEvents)

	// Nobody got anything extra: a final event on each call is the very
	// next frame every client sees.
	a.mustPublish("/webhooks/transcription", liveBody("call_sid", fixtureSID, json.RawMessage(`{"type":"interruption","interruption_event":{"event_id":99}}`)))
	a.mustPublish("/webhooks/transcription", liveBody("call_sid", "EL_late", json.RawMessage(`{"type":"interruption","interruption_event":{"event_id":99}}`)))
	a.mustPublish("/webhooks/transcription", liveBody("call_sid", "CAother", json.RawMessage(`{"type":"interruption","interruption_event":{"event_id":99}}`)))
	for name, cl := range map[string]*wstest.Client{"by call_sid": bySID, "by conversation_id": byConv, "by both": both} {
		if f := cl.Expect("event"); f.EventID != strconv.Itoa(len(wantMain)+1) || f.Event != "interruption" {
			t.Fatalf("%s: after the sequence got %s", name, f.Raw)
		}
	}
	if f := late.Expect("event"); f.EventID != strconv.Itoa(len(lateEvents)+1) {
		t.Fatalf("linked later: after the sequence got %s", f.Raw)
	}
	// The other call's subscriber saw none of the above: its first frames
	// are its own call's status change and event.
	for _, want := range []string{"status", "interruption"} {
		if f := other.Expect("event"); f.CallSID != "CAother" || f.Event != want {
			t.Fatalf("other call's client got %s, want its own %s event", f.Raw, want)
		}
	}
}

// TestClusterConcurrentPublishers posts events for one call concurrently
// to all instances: every client, wherever it is connected, sees the same
// sequence 1..N with no gap, duplicate or reordering.
func TestClusterConcurrentPublishers(t *testing.T) {
	_, ins := startCluster(t, 3)
	ins[0].saveCall(calls.Update{CallSID: "EL_busy", ConversationID: "conv_busy", Status: calls.StatusInProgress})
	var clients []*wstest.Client
	for i, in := range ins {
		for j, id := range []string{"EL_busy", "conv_busy"} {
			cl := in.ws()
			cl.MustSubscribe(fmt.Sprintf("%d-%d", i, j), id)
			clients = append(clients, cl)
		}
	}
	const perWriter, writers = 50, 6
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := ins[w%3]
			for i := range perWriter {
				ev := json.RawMessage(fmt.Sprintf(`{"type":"user_transcript","user_transcription_event":{"user_transcript":"w%d n%d","event_id":%d}}`, w, i, w*1000+i))
				body := liveBody("conversation_id", "conv_busy", ev)
				h := http.Header{calls.SignatureHeader: {calls.Sign([]byte(testSecret), time.Now(), body)}}
				req, _ := http.NewRequest(http.MethodPost, in.url+"/webhooks/transcription", bytes.NewReader(body))
				req.Header = h
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("webhook: %d", resp.StatusCode)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var first []string
	for ci, cl := range clients {
		var texts []string
		// Event 1 was the status set when the call was registered.
		for n := 2; n <= perWriter*writers+1; n++ {
			f := cl.Expect("event")
			if f.EventID != strconv.Itoa(n) {
				t.Fatalf("client %d: event #%d has event_id %s", ci, n, f.EventID)
			}
			texts = append(texts, string(f.Data))
		}
		if ci == 0 {
			first = texts
			continue
		}
		for i := range texts {
			if texts[i] != first[i] {
				t.Fatalf("client %d disagrees with client 0 at event %d: %s vs %s", ci, i+1, texts[i], first[i])
			}
		}
	}
}
