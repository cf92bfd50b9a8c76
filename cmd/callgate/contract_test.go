package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/internal/redistest"
	"github.com/callgate/callgate/internal/spectest"
	"github.com/callgate/callgate/internal/wstest"
)

// The contract test: running instances are driven through every endpoint,
// answer, frame, error code and close code a test can provoke, and each
// request, response and frame is validated against docs/openapi.yaml and
// docs/asyncapi.yaml. A documented answer that no scenario provokes must
// be listed in notProvoked, with why; an answer or frame the documents do
// not describe fails the scenario that met it.

// notProvoked are the documented answers, frames and closes the contract
// test does not reach, with the reason.
var notProvoked = map[string]string{
	"POST /api/calls 500":              "an unexpected failure: a bug",
	"GET /api/calls/{id} 500":          "an unexpected failure: a bug",
	"GET /api/topics/{name} 500":       "an unexpected failure: a bug",
	"PUT /api/topics/{name} 500":       "an unexpected failure: a bug",
	"POST /webhooks/elevenlabs 500":    "an unexpected failure: a bug",
	"POST /webhooks/transcription 500": "an unexpected failure: a bug",
	"calls close 1011":                 "a panic while handling a frame: a bug",
	"topic close 1011":                 "a panic while handling a frame: a bug",
	"topic close 1002":                 "the WebSocket library's own answer, proven on the call socket",
	"topic close 1009":                 "the size limit is the call socket's, proven there",
	"topic close 4029":                 "the rate limit is the call socket's, proven there",
	"topic close 4030":                 "the per-user limit is the call socket's, proven there",
	"topic close 4002":                 "token expiry is the call socket's, proven there",
	"topic close 4008":                 "a live overflow needs a client that stops reading while its kernel buffers fill: timing, not a contract",
	"topic error invalid_frame":        "decoded by the call socket's decoder, proven there",
	"topic error auth_not_needed":      "proven on the call socket",
	"GET /sse/calls 505":               "refused only when the connection cannot be taken over (HTTP/2); instances speak HTTP/1.1",
	"GET /sse/calls/{id} 505":          "refused only when the connection cannot be taken over (HTTP/2); instances speak HTTP/1.1",
	"GET /sse/{topic} 505":             "refused only when the connection cannot be taken over (HTTP/2); instances speak HTTP/1.1",
	"callStream close 4002":            "token expiry on a stream is proven on the topic stream",
	"topicStream close 4008":           "a live overflow needs a client that stops reading while its kernel buffers fill: timing, not a contract",
}

// contractScenarios run in parallel, each on instances of its own.
var contractScenarios = []struct {
	name string
	run  func(t *testing.T)
}{
	{"api", contractAPI},
	{"webhooks", contractWebhooks},
	{"webhook budget", contractBudget},
	{"redis down", contractRedisDown},
	{"draining", contractDraining},
	{"call socket", contractCallSocket},
	{"socket auth", contractSocketAuth},
	{"socket limits", contractSocketLimits},
	{"topic socket", contractTopicSocket},
	{"redis lost the call", contractReset},
	{"streams", contractStreams},
	{"viewer", contractViewer},
}

func TestContract(t *testing.T) {
	api := spectest.OpenAPI(t)
	sockets := spectest.AsyncAPI(t)
	var ran atomic.Int64
	t.Run("scenarios", func(t *testing.T) {
		for _, sc := range contractScenarios {
			t.Run(sc.name, func(t *testing.T) {
				t.Parallel()
				sc.run(t)
				ran.Add(1)
			})
		}
	})
	if t.Failed() || ran.Load() != int64(len(contractScenarios)) {
		return // coverage is judged over every scenario
	}
	provoked := api.Provoked()
	for k := range sockets.Provoked() {
		provoked[k] = true
	}
	documented := append(api.Documented(t), sockets.Documented()...)
	t.Logf("%d documented answers, frames and closes; %d provoked, %d not provokable here", len(documented), len(provoked), len(notProvoked))
	for _, d := range documented {
		if !streamsServed.Load() && isStreamItem(d) {
			continue // this build serves no /sse/ routes
		}
		why, excused := notProvoked[d]
		switch {
		case provoked[d] && excused:
			t.Errorf("%s is provoked now: remove it from notProvoked (%s)", d, why)
		case !provoked[d] && !excused:
			t.Errorf("documented, but no scenario provokes it and notProvoked does not say why: %s", d)
		}
	}
	for d := range notProvoked {
		if !slices.Contains(documented, d) && (streamsServed.Load() || !isStreamItem(d)) {
			t.Errorf("notProvoked lists %s, which the documents do not", d)
		}
	}
}

// specCall sends a request to in and checks the answer against
// openapi.yaml as an answer of operation op ("METHOD /path/{template}");
// valid says the request is one the document accepts, validated too. It
// returns the status and the decoded JSON body.
func (in *instance) specCall(op, method, path string, body []byte, header http.Header, valid bool) (int, map[string]any) {
	in.t.Helper()
	resp, raw := in.send(method, path, body, header)
	spectest.OpenAPI(in.t).Check(in.t, spectest.Exchange{Op: op, Req: resp.Request, ReqBody: body,
		Resp: resp, RespBody: raw, CheckRequest: valid})
	var out map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &out); err != nil {
			in.t.Errorf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode, out
}

// noRedirects returns redirects as they are, to be checked.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (in *instance) send(method, path string, body []byte, header http.Header) (*http.Response, []byte) {
	in.t.Helper()
	req, err := http.NewRequest(method, in.url+path, bytes.NewReader(body))
	if err != nil {
		in.t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v) // canonical names, as a server reads them
		}
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		in.t.Fatal(err)
	}
	return resp, raw
}

// routeError checks an answer of the router itself, which no operation
// documents: its status and code, and that it is a RouteError.
func (in *instance) routeError(method, path string, header http.Header, status int, code string) {
	in.t.Helper()
	resp, raw := in.send(method, path, nil, header)
	if resp.StatusCode != status {
		in.t.Errorf("%s %s: %d %s, want %d", method, path, resp.StatusCode, raw, status)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		in.t.Errorf("%s %s: no X-Request-Id", method, path)
	}
	if status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "" {
		in.t.Errorf("%s %s: 405 without Allow", method, path)
	}
	if method == http.MethodHead {
		return // no body
	}
	v, err := decodeAny(raw)
	if err != nil {
		in.t.Fatalf("%s %s: %v", method, path, err)
	}
	if err := spectest.OpenAPI(in.t).Schema(in.t, "#/components/schemas/RouteError").Validate(v); err != nil {
		in.t.Errorf("%s %s -> %d %s: not a RouteError: %v", method, path, resp.StatusCode, raw, err)
	}
	if got, _ := v.(map[string]any)["code"].(string); got != code {
		in.t.Errorf("%s %s: code %q, want %q", method, path, got, code)
	}
}

func decodeAny(raw []byte) (any, error) {
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	return v, d.Decode(&v)
}

// signed returns the signature header of body.
func signed(body []byte) http.Header {
	return http.Header{calls.SignatureHeader: {calls.Sign([]byte(testSecret), time.Now(), body)},
		"Content-Type": {"application/json"}}
}

// refusal is a request and the error it must get.
type refusal struct {
	op, method, path string
	body             []byte
	header           http.Header
	status           int
	code             string
}

// refuse sends each request and checks its answer against openapi.yaml,
// and that it is the refusal wanted.
func (in *instance) refuse(rs ...refusal) {
	in.t.Helper()
	for _, r := range rs {
		status, out := in.specCall(r.op, r.method, r.path, r.body, r.header, false)
		if status != r.status || out["code"] != r.code {
			in.t.Errorf("%s %s %.60s: %d %v, want %d %s", r.method, r.path, r.body, status, out, r.status, r.code)
		}
	}
}

// expectCode fails unless status and the body's code are as wanted.
func expectCode(t *testing.T, what string, status int, body map[string]any, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus || body["code"] != wantCode {
		t.Errorf("%s: %d %v, want %d %s", what, status, body, wantStatus, wantCode)
	}
}

func contractAPI(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	in := startInstance(t, srv, prefix, "api", func(c *config) { c.MaxBody, c.MaxTopicBytes = 4<<10, 1<<10 })
	key := apiHeader()
	noKey := http.Header{"Content-Type": {"application/json"}}

	const save = "POST /api/calls"
	status, out := in.specCall(save, "POST", "/api/calls", []byte(`{"call_sid":"EL_c1"}`), key, true)
	if status != http.StatusCreated || out["status"] != "initiated" {
		t.Errorf("new call: %d %v", status, out)
	}
	status, out = in.specCall(save, "POST", "/api/calls",
		[]byte(`{"call_sid":"EL_c1","conversation_id":"conv_c1","status":"in-progress","org":null}`), key, true)
	if status != http.StatusOK || out["conversation_id"] != "conv_c1" {
		t.Errorf("updated call: %d %v", status, out)
	}
	for _, tc := range []struct{ body, code string }{
		{`{"call_sid":"EL_c1","CALL_SID":"EL_x"}`, "invalid_json"},
		{`{"call_sid":7}`, "invalid_json"},
		{`[1]`, "invalid_json"},
		{`{"call_sid":"EL_c1","call_sid":"EL_c1"}`, "invalid_request"},
		{`{"call_sid":"EL_c1","status":"paused"}`, "invalid_request"},
		{`{"conversation_id":"conv_z"}`, "invalid_request"},
		{`{"call_sid":"EL_\ud800"}`, "invalid_request"},
	} {
		status, out = in.specCall(save, "POST", "/api/calls", []byte(tc.body), key, false)
		expectCode(t, tc.body, status, out, http.StatusBadRequest, tc.code)
	}
	status, out = in.specCall(save, "POST", "/api/calls", []byte(`{"call_sid":"EL_c2","conversation_id":"conv_c1"}`), key, true)
	expectCode(t, "conversation of another call", status, out, http.StatusConflict, "conflict")
	status, out = in.specCall(save, "POST", "/api/calls", []byte(`{"call_sid":"EL_c1"}`), noKey, false)
	expectCode(t, "no API key", status, out, http.StatusUnauthorized, "unauthorized")
	big := []byte(`{"call_sid":"EL_c1","org":"` + strings.Repeat("x", 8<<10) + `"}`)
	status, out = in.specCall(save, "POST", "/api/calls", big, key, false)
	expectCode(t, "large body", status, out, http.StatusRequestEntityTooLarge, "body_too_large")
	// A conversation link another call is making right now (its record
	// does not point back yet): retry shortly.
	if err := srv.Client(t).Set(context.Background(), prefix+":conv:conv_busy", "EL_other", in.app.cfg.CallTTL).Err(); err != nil {
		t.Fatal(err)
	}
	resp, raw := in.send("POST", "/api/calls", []byte(`{"call_sid":"EL_c3","conversation_id":"conv_busy"}`), key)
	spectest.OpenAPI(t).Check(t, spectest.Exchange{Op: save, Req: resp.Request, ReqBody: []byte(`{"call_sid":"EL_c3","conversation_id":"conv_busy"}`), Resp: resp, RespBody: raw, CheckRequest: true})
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !bytes.Contains(raw, []byte(`"unavailable"`)) {
		t.Errorf("link being made: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), raw)
	}

	const get = "GET /api/calls/{id}"
	for _, id := range []string{"EL_c1", "conv_c1"} {
		if status, out = in.specCall(get, "GET", "/api/calls/"+id, nil, key, true); status != http.StatusOK || out["call_sid"] != "EL_c1" {
			t.Errorf("GET %s: %d %v", id, status, out)
		}
	}
	in.saveCall(calls.Update{CallSID: "sip:alice@example.com/leg-1"})
	if status, out = in.specCall(get, "GET", "/api/calls/sip%3Aalice%40example.com%2Fleg-1", nil, key, true); status != http.StatusOK {
		t.Errorf("GET an escaped id: %d %v", status, out)
	}
	in.refuse(
		refusal{get, "GET", "/api/calls/EL_nope", nil, key, http.StatusNotFound, "call_not_found"},
		refusal{get, "GET", "/api/calls/EL_%FF", nil, key, http.StatusBadRequest, "invalid_request"},
		refusal{get, "GET", "/api/calls/EL_c1", nil, nil, http.StatusUnauthorized, "unauthorized"},
	)

	const getTopic, setTopic = "GET /api/topics/{name}", "PUT /api/topics/{name}"
	if status, out = in.specCall(getTopic, "GET", "/api/topics/workflows", nil, key, true); status != http.StatusOK || out["version"] != 0.0 || out["data"] != nil {
		t.Errorf("topic without state: %d %v", status, out)
	}
	doc := []byte(`{"workflows":[{"id":"wf1","state":"running"}]}`)
	if status, out = in.specCall(setTopic, "PUT", "/api/topics/workflows", doc, key, true); status != http.StatusOK || out["changed"] != true {
		t.Errorf("set topic: %d %v", status, out)
	}
	if status, out = in.specCall(setTopic, "PUT", "/api/topics/workflows", []byte(` {"workflows" : [{"state":"running","id":"wf1"}]}`), key, true); status != http.StatusOK || out["changed"] != false {
		t.Errorf("set topic again: %d %v", status, out)
	}
	if status, out = in.specCall(getTopic, "GET", "/api/topics/workflows", nil, key, true); status != http.StatusOK || out["version"] != 1.0 {
		t.Errorf("topic: %d %v", status, out)
	}
	in.refuse(
		refusal{setTopic, "PUT", "/api/topics/workflows", []byte(`{"a":1} {}`), key, http.StatusBadRequest, "invalid_json"},
		refusal{setTopic, "PUT", "/api/topics/workflows", []byte(`"` + strings.Repeat("x", 2<<10) + `"`), key, http.StatusRequestEntityTooLarge, "body_too_large"},
		refusal{setTopic, "PUT", "/api/topics/nope", doc, key, http.StatusNotFound, "unknown_topic"},
		refusal{getTopic, "GET", "/api/topics/nope", nil, key, http.StatusNotFound, "unknown_topic"},
		refusal{getTopic, "GET", "/api/topics/workflows", nil, nil, http.StatusUnauthorized, "unauthorized"},
		refusal{setTopic, "PUT", "/api/topics/workflows", doc, noKey, http.StatusUnauthorized, "unauthorized"},
	)

	if status, out = in.specCall("GET /healthz", "GET", "/healthz", nil, nil, true); status != http.StatusOK {
		t.Errorf("/healthz: %d %v", status, out)
	}
	if status, out = in.specCall("GET /readyz", "GET", "/readyz", nil, nil, true); status != http.StatusOK || out["status"] != "ready" {
		t.Errorf("/readyz: %d %v", status, out)
	}
	in.specCall("GET /metrics", "GET", "/metrics", nil, nil, true)

	// The router's own answers.
	in.routeError("GET", "/nope", nil, http.StatusNotFound, "not_found")
	status, out = in.specCall("GET /ws/{topic}", "GET", "/ws/nope", nil, nil, false)
	expectCode(t, "unknown topic socket", status, out, http.StatusNotFound, "not_found")
	in.routeError("GET", "/api/nope", key, http.StatusNotFound, "not_found")
	in.routeError("DELETE", "/api/calls/EL_c1", key, http.StatusNotFound, "not_found")
	in.routeError("GET", "/webhooks/elevenlabs", nil, http.StatusMethodNotAllowed, "method_not_allowed")
	in.routeError("POST", "/healthz", nil, http.StatusMethodNotAllowed, "method_not_allowed")
	in.routeError("HEAD", "/healthz", nil, http.StatusMethodNotAllowed, "method_not_allowed")
	in.routeError("POST", "/ws/calls/transcriptions", nil, http.StatusMethodNotAllowed, "method_not_allowed")
	in.routeError("GET", "/api/calls/", key, http.StatusNotFound, "not_found")
	in.routeError("OPTIONS", "/api/calls", key, http.StatusNotFound, "not_found")
	for _, p := range []string{"/healthz", "/webhooks/elevenlabs", "/ws/calls/transcriptions"} {
		resp, raw = in.send("OPTIONS", p, nil, nil)
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Allow") == "" || len(raw) > 0 || resp.Header.Get("X-Request-Id") == "" {
			t.Errorf("OPTIONS %s: %d, Allow %q, %q", p, resp.StatusCode, resp.Header.Get("Allow"), raw)
		}
	}
	resp, _ = in.send("GET", "/api/nope", nil, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unknown API path without a key: %d, want 401 (the key is checked first)", resp.StatusCode)
	}
}

// twilioSID is the Twilio call of the call_initiation_failure fixture.
const twilioSID = "CA9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a"

// postEveryEvent posts, for the fixture's call and twilioSID (both
// registered), every kind of webhook answer: every live event of the
// fixture, a repeat, an ignored type, the post-call webhooks, a repeat and
// an unknown type, then an API status: every kind of event is published.
func postEveryEvent(t *testing.T, in *instance) {
	t.Helper()
	const live, post = "POST /webhooks/transcription", "POST /webhooks/elevenlabs"
	hook := func(op, path string, body []byte) (int, map[string]any) {
		t.Helper()
		return in.specCall(op, "POST", path, body, signed(body), true)
	}
	for i, ev := range liveEvents(t) {
		if status, out := hook(live, "/webhooks/transcription", liveBody("call_sid", fixtureSID, ev)); status != http.StatusOK {
			t.Fatalf("live event %d: %d %v", i, status, out)
		}
	}
	body := liveBody("call_sid", fixtureSID, liveEvents(t)[1])
	if status, out := hook(live, "/webhooks/transcription", body); status != http.StatusOK || out["status"] != "duplicate" {
		t.Errorf("repeated live event: %d %v", status, out)
	}
	ignored := liveBody("conversation_id", fixtureConv, json.RawMessage(`{"type":"audio","audio_event":{"audio_base_64":"AAAA"}}`))
	if status, out := hook(live, "/webhooks/transcription", ignored); status != http.StatusOK || out["status"] != "ignored" {
		t.Errorf("ignored live event: %d %v", status, out)
	}
	for _, name := range []string{"post_call_transcription.json", "post_call_audio.json", "call_initiation_failure_twilio.json"} {
		if status, out := hook(post, "/webhooks/elevenlabs", fixture(t, name)); status != http.StatusOK || out["status"] != "published" {
			t.Errorf("%s: %d %v", name, status, out)
		}
	}
	if status, out := hook(post, "/webhooks/elevenlabs", fixture(t, "post_call_audio.json")); status != http.StatusOK || out["status"] != "duplicate" {
		t.Errorf("repeated post-call webhook: %d %v", status, out)
	}
	if status, out := hook(post, "/webhooks/elevenlabs", fixture(t, "unknown_type.json")); status != http.StatusOK || out["status"] != "ignored" {
		t.Errorf("unknown post-call type: %d %v", status, out)
	}
	in.saveCall(calls.Update{CallSID: fixtureSID, Status: calls.StatusDone}) // a status event
}

func contractWebhooks(t *testing.T) {
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "hooks", func(c *config) { c.MaxBody, c.MaxPostCallBody = 64<<10, 256<<10 })
	const live, post = "POST /webhooks/transcription", "POST /webhooks/elevenlabs"
	hook := func(op, path string, body []byte, valid bool) (int, map[string]any) {
		t.Helper()
		return in.specCall(op, "POST", path, body, signed(body), valid)
	}
	in.saveCall(calls.Update{CallSID: fixtureSID})
	in.saveCall(calls.Update{CallSID: twilioSID})
	c := in.specSocket("/ws/calls/transcriptions", "calls", nil)
	c.Expect("welcome")
	for _, id := range []string{fixtureSID, twilioSID} {
		c.Send(map[string]string{"type": "subscribe", "id": id, "call": id})
		c.Expect("subscribed")
	}
	postEveryEvent(t, in)
	// Every kind of event, each checked as it arrives.
	seen := map[string]bool{}
	for len(seen) < 7 {
		seen[c.Expect("event").Event] = true
	}

	// Refusals.
	in.saveCall(calls.Update{CallSID: "EL_linked", ConversationID: "conv_linked"})
	for _, tc := range []struct {
		op, path string
		body     []byte
		status   int
		code     string
	}{
		{live, "/webhooks/transcription", []byte(`{"call_sid":"EL_linked"}`), 400, "invalid_request"},
		{live, "/webhooks/transcription", []byte(`[]`), 400, "invalid_request"},
		{live, "/webhooks/transcription", []byte(`{"call_sid":"EL_linked","event":{"type":"interruption","interruption_event":{"event_id":"+5"}}}`), 400, "invalid_request"},
		{live, "/webhooks/transcription", liveBody("call_sid", "EL_unknown", liveEvents(t)[1]), 404, "call_not_found"},
		{live, "/webhooks/transcription", []byte(`{"call_sid":"EL_linked","conversation_id":"conv_else","event":{"type":"interruption","interruption_event":{"event_id":1}}}`), 409, "conflict"},
		{live, "/webhooks/transcription", []byte(`{"call_sid":"EL_linked","event":{"type":"x","pad":"` + strings.Repeat("x", 64<<10) + `"}}`), 413, "body_too_large"},
		{post, "/webhooks/elevenlabs", []byte(`{"data":{}}`), 400, "invalid_request"},
		{post, "/webhooks/elevenlabs", []byte(`{"type":"post_call_audio","event_timestamp":1,"data":{"conversation_id":"conv_else","conversation_initiation_client_data":{"dynamic_variables":{"call_sid":"EL_linked"}}}}`), 409, "conflict"},
		{post, "/webhooks/elevenlabs", []byte(`{"type":"x","pad":"` + strings.Repeat("x", 256<<10) + `"}`), 413, "body_too_large"},
	} {
		// Bodies that are valid JSON of the right shape are checked as
		// requests too.
		status, out := hook(tc.op, tc.path, tc.body, tc.status == 404 || tc.status == 409)
		expectCode(t, fmt.Sprintf("%s %.80s", tc.path, tc.body), status, out, tc.status, tc.code)
	}
	body := liveBody("call_sid", "EL_linked", liveEvents(t)[1])
	now := time.Now()
	for name, sig := range map[string]string{
		"missing":    "",
		"malformed":  "t=1,v1=zz",
		"too old":    calls.Sign([]byte(testSecret), now.Add(-time.Hour), body),
		"in future":  calls.Sign([]byte(testSecret), now.Add(time.Hour), body),
		"wrong body": calls.Sign([]byte(testSecret), now, []byte("{}")),
	} {
		for _, p := range []struct{ op, path string }{{live, "/webhooks/transcription"}, {post, "/webhooks/elevenlabs"}} {
			status, out := in.specCall(p.op, "POST", p.path, body, http.Header{calls.SignatureHeader: {sig}}, false)
			expectCode(t, p.path+" signature "+name, status, out, http.StatusUnauthorized, "bad_signature")
		}
	}
}

// contractBudget: a webhook that does not fit in the body budget is
// answered busy, unread.
func contractBudget(t *testing.T) {
	in := startInstance(t, redistest.Start(t), "budget", "budget", func(c *config) { c.WebhookBodyBudget = 16 })
	body := liveBody("call_sid", fixtureSID, liveEvents(t)[1])
	for _, p := range []struct{ op, path string }{{"POST /webhooks/transcription", "/webhooks/transcription"}, {"POST /webhooks/elevenlabs", "/webhooks/elevenlabs"}} {
		resp, raw := in.send("POST", p.path, body, signed(body))
		spectest.OpenAPI(t).Check(t, spectest.Exchange{Op: p.op, Req: resp.Request, ReqBody: body, Resp: resp, RespBody: raw})
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !bytes.Contains(raw, []byte(`"busy"`)) {
			t.Errorf("%s over the budget: %d %q %s", p.path, resp.StatusCode, resp.Header.Get("Retry-After"), raw)
		}
	}
}

// contractRedisDown: what every endpoint answers while Redis is
// unreachable.
func contractRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "down")
	in.saveCall(calls.Update{CallSID: "EL_d"})
	topic := in.specSocket("/ws/workflows", "topic", nil)
	topic.Expect("welcome")
	c := in.specSocket("/ws/calls/transcriptions", "calls", nil)
	c.Expect("welcome")
	if srv.Mini != nil {
		srv.Mini.SetError("ERR Redis is down") // fails at once, where a stopped one makes clients retry
	} else {
		srv.Stop(t)
	}
	key := apiHeader()
	body := liveBody("call_sid", "EL_d", liveEvents(t)[1])
	for _, tc := range []struct {
		op, method, path string
		body             []byte
		header           http.Header
	}{
		{"POST /webhooks/transcription", "POST", "/webhooks/transcription", body, signed(body)},
		{"POST /webhooks/elevenlabs", "POST", "/webhooks/elevenlabs", fixture(t, "post_call_audio.json"), signed(fixture(t, "post_call_audio.json"))},
		{"POST /api/calls", "POST", "/api/calls", []byte(`{"call_sid":"EL_d"}`), key},
		{"GET /api/calls/{id}", "GET", "/api/calls/EL_d", nil, key},
		{"GET /api/topics/{name}", "GET", "/api/topics/workflows", nil, key},
		{"PUT /api/topics/{name}", "PUT", "/api/topics/workflows", []byte(`{}`), key},
	} {
		status, out := in.specCall(tc.op, tc.method, tc.path, tc.body, tc.header, true)
		expectCode(t, tc.op+" while Redis is down", status, out, http.StatusServiceUnavailable, "unavailable")
	}
	if status, out := in.specCall("GET /readyz", "GET", "/readyz", nil, nil, true); status != http.StatusServiceUnavailable || out["status"] != "redis unreachable" {
		t.Errorf("/readyz while Redis is down: %d %v", status, out)
	}
	c.Send(map[string]string{"type": "subscribe", "id": "u", "call": "EL_d"})
	if f := c.Expect("error"); f.Code != "unavailable" {
		t.Errorf("subscribe while Redis is down: %s", f.Raw)
	}
	streamsWhileRedisDown(in)
	// A topic socket whose state cannot be loaded is closed: try later.
	late := in.specSocket("/ws/workflows", "topic", nil)
	late.ExpectClose(1013)
}

// contractDraining: once shutdown begins, and while the sockets close,
// /readyz says draining, upgrades and streams are refused and open sockets
// are closed with 1001. One socket does not answer the close, so that the
// instance is still serving HTTP while the test asks.
func contractDraining(t *testing.T) {
	in := startInstance(t, redistest.Start(t), "drain", "drain")
	c := in.specSocket("/ws/calls/transcriptions", "calls", nil)
	c.Expect("welcome")
	topic := in.specSocket("/ws/routes", "topic", nil)
	topic.Expect("welcome")
	held := in.specSocket("/ws/calls/transcriptions", "calls", nil, func(ws *websocket.Conn) {
		ws.SetCloseHandler(func(int, string) error { return nil })
	})
	held.Expect("welcome")
	drained := openStreamsToDrain(t, in)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- in.app.shutdown(ctx) }()
	c.ExpectClose(1001)
	topic.ExpectClose(1001)
	held.ExpectClose(1001)
	if status, out := in.specCall("GET /readyz", "GET", "/readyz", nil, nil, true); status != http.StatusServiceUnavailable || out["status"] != "draining" {
		t.Errorf("/readyz while draining: %d %v", status, out)
	}
	for _, path := range []string{"/ws/calls/transcriptions", "/ws/routes"} {
		if status, code := in.refusedUpgrade(path, nil); status != http.StatusServiceUnavailable || code != "shutting_down" {
			t.Errorf("upgrade of %s while draining: %d %s", path, status, code)
		}
	}
	drained()
	// The last socket goes: the instance stops serving HTTP.
	held.ws.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(in.url + "/readyz"); err == nil {
		t.Error("/readyz answered after shutdown")
	}
}

func contractCallSocket(t *testing.T) {
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "sock", func(c *config) { c.MaxSubscriptions = 2 })
	in.saveCall(calls.Update{CallSID: "EL_s1", ConversationID: "conv_s1", Status: calls.StatusInProgress})
	in.saveCall(calls.Update{CallSID: "EL_s2"})
	in.saveCall(calls.Update{CallSID: "EL_s3"})
	for i := 1; i <= 3; i++ {
		in.mustPublish("/webhooks/transcription", transcript("EL_s1", "t", i))
	}
	c := in.specSocket("/ws/calls/transcriptions", "calls", nil)
	c.Expect("welcome")
	for _, tc := range []struct {
		frame string
		code  string
	}{
		{`not json`, "invalid_json"},
		{`[1,2]`, "invalid_frame"},
		{`{"type":"ping","id":7}`, "invalid_frame"},
		{`{"type":"subscribe","id":"f","call":"EL_s1","since":"x"}`, "invalid_frame"},
		{`{"type":"subscribe","id":"f","call":"EL_s1","epoch":-1}`, "invalid_frame"},
		{`{"type":"subscribe","id":"f","call":"EL_s1","history":1}`, "invalid_frame"},
		{`{"type":"hello","id":"h"}`, "unknown_type"},
		{`{"type":"subscribe","id":"m"}`, "missing_field"},
		{`{"type":"unsubscribe","id":"m","call":" "}`, "missing_field"},
		{`{"type":"subscribe","id":"n","call":"EL_nope"}`, "call_not_found"},
		{`{"type":"unsubscribe","id":"n","call":"EL_s2"}`, "not_subscribed"},
	} {
		c.SendRaw(websocket.TextMessage, []byte(tc.frame))
		if f := c.Expect("error"); f.Code != tc.code {
			t.Errorf("%s: %s, want %s", tc.frame, f.Raw, tc.code)
		}
	}
	c.SendRaw(websocket.BinaryMessage, []byte(`{"type":"ping"}`))
	if f := c.Expect("error"); f.Code != "invalid_frame" {
		t.Errorf("binary frame: %s", f.Raw)
	}
	c.Send(map[string]string{"type": "ping", "id": "p"})
	c.Expect("pong")
	// Resume: every event after 1, then with an epoch the store does not
	// have, then by the other identifier (already followed).
	c.Send(map[string]string{"type": "subscribe", "id": "r", "call": "EL_s1", "since": "1"})
	sub := c.Expect("subscribed")
	if sub.Recovered == nil || !*sub.Recovered {
		t.Errorf("resume: %s", sub.Raw)
	}
	for range 3 { // events 2 to 4
		c.Expect("event")
	}
	c.Send(map[string]any{"type": "subscribe", "id": "again", "call": "conv_s1"})
	c.Expect("subscribed")
	c.Send(map[string]string{"type": "subscribe", "id": "s2", "call": "EL_s2"})
	c.Expect("subscribed")
	c.Send(map[string]string{"type": "subscribe", "id": "s3", "call": "EL_s3"})
	if f := c.Expect("error"); f.Code != "too_many_subscriptions" {
		t.Errorf("third call: %s", f.Raw)
	}
	c.Send(map[string]string{"type": "unsubscribe", "id": "u", "call": "conv_s1"})
	c.Expect("unsubscribed")
	d := in.specSocket("/ws/calls/transcriptions", "calls", nil)
	d.Expect("welcome")
	d.Send(map[string]any{"type": "subscribe", "id": "old", "call": "EL_s1", "since": 2, "epoch": "1"})
	if f := d.Expect("subscribed"); f.Recovered == nil || *f.Recovered {
		t.Errorf("resume in an unknown epoch: %s", f.Raw)
	}
	for range 4 {
		d.Expect("event")
	}
	// An org set on the call ends the anonymous socket's subscription.
	in.saveCall(calls.Update{CallSID: "EL_s1", Org: "acme"})
	if f := d.Expect("unsubscribed"); f.Reason != "forbidden" || f.ID != "" {
		t.Errorf("org set: %s", f.Raw)
	}
	// The client closes: the server answers with the client's code.
	d.Close(websocket.CloseNormalClosure)
	d.ExpectClose(1000)

	// Frames over the size limit, a broken frame, a flood.
	big := in.specSocket("/ws/calls/transcriptions", "calls", nil)
	big.Expect("welcome")
	_ = big.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","pad":"`+strings.Repeat("x", 128<<10)+`"}`))
	big.ExpectClose(1009)
	broken := in.specSocket("/ws/calls/transcriptions", "calls", nil)
	broken.Expect("welcome")
	// A text frame with a reserved bit set, masked as clients must.
	if _, err := broken.ws.UnderlyingConn().Write([]byte{0xc1, 0x80, 1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	broken.ExpectClose(1002)
	flood := in.specSocket("/ws/calls/transcriptions", "calls", nil)
	flood.Expect("welcome")
	for range 200 {
		if flood.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)) != nil {
			break
		}
	}
	flood.ExpectClose(4029, "pong")

	// A gateway that checks no tokens answers auth frames so.
	open := startInstance(t, srv, redistest.Prefix(t), "open", func(c *config) { c.JWTSecrets, c.AllowAnonymous = nil, false })
	o := open.specSocket("/ws/calls/transcriptions", "calls", nil)
	o.Expect("welcome")
	o.Send(map[string]string{"type": "auth", "id": "a", "token": "x"})
	if f := o.Expect("error"); f.Code != "auth_not_needed" {
		t.Errorf("auth without tokens: %s", f.Raw)
	}
	o.Send(map[string]string{"type": "auth", "id": "a"})
	if f := o.Expect("error"); f.Code != "missing_field" {
		t.Errorf("auth without a token: %s", f.Raw)
	}

	// A silent client that does not answer pings is closed.
	quiet := startInstance(t, srv, redistest.Prefix(t), "quiet", func(c *config) { c.PongWait = 300 * time.Millisecond })
	q := quiet.specSocket("/ws/calls/transcriptions", "calls", nil, withoutPongs)
	q.Expect("welcome")
	q.ExpectClose(1001)
}

func contractSocketAuth(t *testing.T) {
	srv := redistest.Start(t)
	in := secureInstance(t, srv, redistest.Prefix(t), func(c *config) {
		c.TopicOrgs = []string{"routes=acme"}
		c.TokenWarning = 2 * time.Hour // every token is about to expire: warned at once
	})
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

	if status, code := in.refusedUpgrade("/ws/calls/transcriptions", bearer("nope")); status != http.StatusUnauthorized || code != "invalid_token" {
		t.Errorf("invalid token: %d %s", status, code)
	}
	if status, code := in.refusedUpgrade("/ws/routes?token="+token(t, "u", "globex"), nil); status != http.StatusForbidden || code != "forbidden" {
		t.Errorf("topic of another org: %d %s", status, code)
	}
	if status, code := in.refusedUpgrade("/ws/routes", bearer("nope")); status != http.StatusUnauthorized || code != "invalid_token" {
		t.Errorf("topic, invalid token: %d %s", status, code)
	}

	// A token in the header: welcome, then the warning.
	c := in.specSocket("/ws/calls/transcriptions", "calls", bearer(token(t, "u1", "acme")))
	c.ExpectSeq("welcome", "token_expiring")
	c.Send(map[string]string{"type": "auth", "token": token(t, "u1", "globex")})
	c.ExpectSeq("authenticated", "token_expiring")
	c.Send(map[string]string{"type": "auth", "token": token(t, "someone-else", "acme")})
	c.ExpectClose(4003)

	// A token in the first frame.
	f := in.specSocket("/ws/calls/transcriptions", "calls", nil)
	f.Send(map[string]string{"type": "auth", "token": token(t, "u2", "acme")})
	f.ExpectSeq("authenticated", "welcome", "token_expiring")
	for _, first := range []any{map[string]string{"type": "ping"}, map[string]string{"type": "auth", "token": "nope"}, nil} {
		s := in.specSocket("/ws/calls/transcriptions", "calls", nil)
		if first != nil {
			s.Send(first)
		}
		s.ExpectClose(4001)
	}
	// Topics: restricted to acme; the auth frame decides.
	r := in.specSocket("/ws/routes", "topic", nil)
	r.Send(map[string]string{"type": "auth", "token": token(t, "u3", "acme")})
	r.ExpectSeq("authenticated", "welcome", "token_expiring")
	r.Send(map[string]string{"type": "auth", "token": token(t, "u3", "globex")})
	r.Expect("authenticated")
	r.ExpectClose(4003, "token_expiring")
	r2 := in.specSocket("/ws/routes", "topic", nil)
	r2.Send(map[string]string{"type": "auth", "token": token(t, "u4", "globex")})
	r2.ExpectClose(4003)
	r3 := in.specSocket("/ws/routes", "topic", nil)
	r3.Send(map[string]string{"type": "ping"})
	r3.ExpectClose(4001)

	// A token that expires while the socket is open.
	soon := token(t, "u5", "", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(2 * time.Second).Unix() })
	e := in.specSocket("/ws/calls/transcriptions", "calls", bearer(soon))
	e.ExpectSeq("welcome", "token_expiring")
	e.ExpectClose(4002)
}

func contractSocketLimits(t *testing.T) {
	srv := redistest.Start(t)
	in := secureInstance(t, srv, redistest.Prefix(t), func(c *config) {
		c.MaxConnsPerUser = 1
		c.AllowedOrigins = []string{"https://dash.example.com"}
	})
	bearer := http.Header{"Authorization": {"Bearer " + token(t, "heavy", "")}}
	c := in.specSocket("/ws/calls/transcriptions", "calls", bearer)
	c.Expect("welcome")
	if status, code := in.refusedUpgrade("/ws/calls/transcriptions", bearer); status != http.StatusTooManyRequests || code != "too_many_connections" {
		t.Errorf("second socket of a user: %d %s", status, code)
	}
	if status, code := in.refusedUpgrade("/ws/workflows", bearer); status != http.StatusTooManyRequests || code != "too_many_connections" {
		t.Errorf("second socket of a user, topic: %d %s", status, code)
	}
	a := in.specSocket("/ws/calls/transcriptions", "calls", nil)
	a.Send(map[string]string{"type": "auth", "token": token(t, "heavy", "")})
	a.ExpectClose(4030)
	other := http.Header{"Origin": {"https://evil.example.com"}}
	for _, path := range []string{"/ws/calls/transcriptions", "/ws/workflows"} {
		if status, code := in.refusedUpgrade(path, other); status != http.StatusForbidden || code != "origin_not_allowed" {
			t.Errorf("%s from another origin: %d %s", path, status, code)
		}
		// The token and the user's limit are checked before the origin.
		bad := http.Header{"Origin": other["Origin"], "Authorization": {"Bearer nonsense"}}
		if status, code := in.refusedUpgrade(path, bad); status != http.StatusUnauthorized || code != "invalid_token" {
			t.Errorf("%s from another origin with an invalid token: %d %s", path, status, code)
		}
		heavy := http.Header{"Origin": other["Origin"], "Authorization": bearer["Authorization"]}
		if status, code := in.refusedUpgrade(path, heavy); status != http.StatusTooManyRequests || code != "too_many_connections" {
			t.Errorf("%s from another origin, user at its limit: %d %s", path, status, code)
		}
		// Not a WebSocket request at all.
		status, out := in.specCall("GET "+strings.Replace(path, "workflows", "{topic}", 1), "GET", path, nil, nil, false)
		expectCode(t, "plain GET "+path, status, out, http.StatusBadRequest, "bad_handshake")
		// Another method: 405 with Allow; OPTIONS: 204 with Allow.
		resp, raw := in.send("POST", path, nil, nil)
		var e struct{ Code string }
		_ = json.Unmarshal(raw, &e)
		if resp.StatusCode != http.StatusMethodNotAllowed || e.Code != "method_not_allowed" || !strings.Contains(resp.Header.Get("Allow"), "GET") {
			t.Errorf("POST %s: %d, Allow %q, %s", path, resp.StatusCode, resp.Header.Get("Allow"), raw)
		}
		resp, raw = in.send("OPTIONS", path, nil, nil)
		if resp.StatusCode != http.StatusNoContent || len(raw) != 0 || !strings.Contains(resp.Header.Get("Allow"), "GET") {
			t.Errorf("OPTIONS %s: %d, Allow %q, %q", path, resp.StatusCode, resp.Header.Get("Allow"), raw)
		}
	}
	full := startInstance(t, srv, redistest.Prefix(t), "full", func(c *config) { c.MaxConnections = 1 })
	f := full.specSocket("/ws/workflows", "topic", nil)
	f.Expect("welcome")
	for _, path := range []string{"/ws/calls/transcriptions", "/ws/workflows"} {
		if status, code := full.refusedUpgrade(path, nil); status != http.StatusServiceUnavailable || code != "too_many_connections" {
			t.Errorf("%s past --max-connections: %d %s", path, status, code)
		}
	}
	// A replay larger than the send queue goes out in pieces: what fits,
	// then 4008; resuming from the last event gets the next piece.
	small := startInstance(t, srv, redistest.Prefix(t), "small", func(c *config) { c.SendQueueBytes = 1200 })
	small.saveCall(calls.Update{CallSID: "EL_long", Status: calls.StatusInProgress})
	for i := 1; i <= 12; i++ {
		small.mustPublish("/webhooks/transcription", transcript("EL_long", strings.Repeat("words ", 20), i))
	}
	r := small.specSocket("/ws/calls/transcriptions", "calls", nil)
	r.Expect("welcome")
	r.Send(map[string]any{"type": "subscribe", "id": "h", "call": "EL_long", "history": true})
	r.Expect("subscribed")
	r.ExpectClose(4008, "event")
}

func contractTopicSocket(t *testing.T) {
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "topics")
	in.putTopic("workflows", `{"v":1}`)
	c := in.specSocket("/ws/workflows", "topic", nil)
	c.Expect("welcome")
	if f := c.Expect("state"); !strings.Contains(string(f.Raw), `"epoch":"`) {
		t.Errorf("state without an epoch: %s", f.Raw)
	}
	in.putTopic("workflows", `{"v":2}`)
	c.Expect("state")
	for _, tc := range []struct{ frame, code string }{
		{`{"type":"subscribe","id":"s","call":"EL_x"}`, "unknown_type"},
		{`{"type":"hello"}`, "unknown_type"},
		{`nope`, "invalid_json"},
		{`{"type":"auth","id":"a"}`, "missing_field"},
	} {
		c.SendRaw(websocket.TextMessage, []byte(tc.frame))
		if f := c.Expect("error"); f.Code != tc.code {
			t.Errorf("topic socket, %s: %s", tc.frame, f.Raw)
		}
	}
	c.Send(map[string]string{"type": "ping", "id": "p"})
	c.Expect("pong")
	c.Close(websocket.CloseNormalClosure)
	c.ExpectClose(1000)
}

// contractReset: Redis lost a followed call; the follower is told.
func contractReset(t *testing.T) {
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "reset")
	in.saveCall(calls.Update{CallSID: "EL_r", Status: calls.StatusInProgress})
	c := in.specSocket("/ws/calls/transcriptions", "calls", nil)
	c.Expect("welcome")
	c.Send(map[string]string{"type": "subscribe", "id": "s", "call": "EL_r"})
	c.Expect("subscribed")
	in.mustPublish("/webhooks/transcription", transcript("EL_r", "before", 1))
	c.Expect("event")
	srv.Flush(t)
	in.saveCall(calls.Update{CallSID: "EL_r", Status: calls.StatusInProgress})
	if f := c.Expect("reset"); f.EventID != "0" {
		t.Errorf("reset: %s", f.Raw)
	}
	c.Expect("event")
}

// specConn is a socket whose every frame, and its close, is checked
// against asyncapi.yaml's channel.
type specConn struct {
	t       *testing.T
	channel string
	ws      *websocket.Conn
	frames  chan []byte
	closed  chan error
}

// withoutPongs makes a client that does not answer the server's pings.
func withoutPongs(ws *websocket.Conn) { ws.SetPingHandler(func(string) error { return nil }) }

// specSocket opens a socket at path, checking the 101 answer against
// openapi.yaml, and reads its frames in the background.
func (in *instance) specSocket(path, channel string, header http.Header, setup ...func(*websocket.Conn)) *specConn {
	in.t.Helper()
	t := in.t.(*testing.T)
	ws, resp, err := websocket.DefaultDialer.Dial(in.wsURL(path), header)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	in.checkUpgrade(path, resp, nil)
	for _, f := range setup {
		f(ws)
	}
	c := &specConn{t: t, channel: channel, ws: ws, frames: make(chan []byte, 1024), closed: make(chan error, 1)}
	go func() {
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				c.closed <- err
				close(c.frames)
				return
			}
			c.frames <- data
		}
	}()
	t.Cleanup(func() { ws.Close() })
	return c
}

// checkUpgrade checks the answer to an upgrade request against
// openapi.yaml.
func (in *instance) checkUpgrade(path string, resp *http.Response, body []byte) {
	in.t.Helper()
	op := "GET /ws/calls/transcriptions"
	if !strings.HasPrefix(path, "/ws/calls/") {
		op = "GET /ws/{topic}"
	}
	req, _ := http.NewRequest(http.MethodGet, in.url+path, nil)
	spectest.OpenAPI(in.t).Check(in.t, spectest.Exchange{Op: op, Req: req, Resp: resp, RespBody: body})
}

// refusedUpgrade opens a socket that must be refused, checks the answer
// against openapi.yaml, and returns its status and code.
func (in *instance) refusedUpgrade(path string, header http.Header) (int, string) {
	in.t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(in.wsURL(path), header)
	if err == nil {
		ws.Close()
		in.t.Errorf("upgrade of %s was not refused", path)
		return 101, ""
	}
	if resp == nil {
		in.t.Fatalf("upgrade of %s: %v", path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	in.checkUpgrade(path, resp, body)
	var out struct{ Code string }
	json.Unmarshal(body, &out)
	return resp.StatusCode, out.Code
}

// Next returns the next frame, checked.
func (c *specConn) Next() wstest.Frame {
	c.t.Helper()
	select {
	case raw, ok := <-c.frames:
		if !ok {
			c.t.Fatalf("connection closed while waiting for a frame: %v", <-c.closed)
		}
		c.check(raw)
		var f wstest.Frame
		json.Unmarshal(raw, &f)
		f.Raw = raw
		return f
	case <-time.After(wstest.Wait):
		c.t.Fatalf("no frame within %s", wstest.Wait)
	}
	return wstest.Frame{}
}

func (c *specConn) check(raw []byte) {
	c.t.Helper()
	spectest.AsyncAPI(c.t).Check(c.t, c.channel, raw)
}

// Expect returns the next frame and fails unless its type is typ.
func (c *specConn) Expect(typ string) wstest.Frame {
	c.t.Helper()
	f := c.Next()
	if f.Type != typ {
		c.t.Fatalf("got frame %s, want type %q", f.Raw, typ)
	}
	return f
}

// ExpectSeq reads frames of these types, in this order.
func (c *specConn) ExpectSeq(types ...string) {
	c.t.Helper()
	for _, typ := range types {
		c.Expect(typ)
	}
}

// ExpectClose reads until the connection ends, checking every frame (only
// of the types allowed) and the close, which must have code.
func (c *specConn) ExpectClose(code int, allowed ...string) {
	c.t.Helper()
	deadline := time.After(wstest.Wait)
	for {
		select {
		case raw, ok := <-c.frames:
			if !ok {
				err := <-c.closed
				var ce *websocket.CloseError
				if !errors.As(err, &ce) {
					c.t.Fatalf("connection ended without a close frame: %v", err)
				}
				if ce.Code != code {
					c.t.Errorf("closed with %d %q, want %d", ce.Code, ce.Text, code)
				}
				spectest.AsyncAPI(c.t).CheckClose(c.t, c.channel, ce.Code, ce.Text)
				return
			}
			c.check(raw)
			var f wstest.Frame
			json.Unmarshal(raw, &f)
			if !slices.Contains(allowed, f.Type) {
				c.t.Errorf("frame %s before the close, want only %v", raw, allowed)
			}
		case <-deadline:
			c.t.Fatalf("connection still open after %s", wstest.Wait)
		}
	}
}

// Send writes v as a JSON text frame.
func (c *specConn) Send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.SendRaw(websocket.TextMessage, b)
}

// SendRaw writes one frame of type typ.
func (c *specConn) SendRaw(typ int, b []byte) {
	c.t.Helper()
	if err := c.ws.WriteMessage(typ, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Close sends a close frame with code.
func (c *specConn) Close(code int) {
	c.t.Helper()
	msg := websocket.FormatCloseMessage(code, "")
	if err := c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)); err != nil {
		c.t.Fatal(err)
	}
}

// TestEveryRouteIsDocumented: every route an instance serves is an
// operation of openapi.yaml, so a new endpoint fails here until it is
// described (and then the contract test asks for its answers).
func TestEveryRouteIsDocumented(t *testing.T) {
	in := startInstance(t, redistest.Start(t), "routes", "routes", func(c *config) { c.Viewer = true })
	doc := spectest.Decode(t, "openapi.yaml")
	paths, _ := doc["paths"].(map[string]any)
	topics := in.app.cfg.Topics
	checked := 0
	for _, r := range in.app.http.Handler.(*echo.Echo).Routes() {
		if r.Path == "/api" || r.Path == "/api/*" {
			continue // the API group's own answer to what no route matches: 404 not_found
		}
		checked++
		path := r.Path
		for _, name := range topics {
			for _, p := range []string{"/ws/", "/sse/"} {
				if path == p+name {
					path = p + "{topic}"
				}
			}
		}
		parts := strings.Split(path, "/")
		for i, p := range parts {
			if name, ok := strings.CutPrefix(p, ":"); ok {
				parts[i] = "{" + name + "}"
			}
		}
		path = strings.Join(parts, "/")
		if strings.HasPrefix(path, "/viewer") {
			switch path {
			case "/viewer":
				path = "/viewer/" // its redirect is documented there
			case "/viewer/*":
				path = "/viewer/{file}"
			}
			if r.Method != http.MethodGet {
				continue // registered for every method: the viewer answers 405 itself
			}
		}
		if spectest.At(paths[path], strings.ToLower(r.Method)) == nil {
			t.Errorf("%s %s (%s) is served but not in openapi.yaml", r.Method, r.Path, path)
		}
	}
	if checked < 10 {
		t.Fatalf("only %d routes: the router's list is not what this test reads", checked)
	}
}

// contractViewer: the live call viewer's files, its redirect, and its
// errors.
func contractViewer(t *testing.T) {
	in := startInstance(t, redistest.Start(t), "viewer", "viewer", func(c *config) { c.Viewer = true })
	if status, _ := in.specCall("GET /viewer/", "GET", "/viewer?call=EL_1", nil, nil, true); status != http.StatusMovedPermanently {
		t.Errorf("/viewer: %d", status)
	}
	resp, raw := in.send("GET", "/viewer/", nil, nil)
	spectest.OpenAPI(t).Check(t, spectest.Exchange{Op: "GET /viewer/", Req: resp.Request, Resp: resp, RespBody: raw, CheckRequest: true})
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("/viewer/: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	resp, raw = in.send("GET", "/viewer/", nil, http.Header{"If-None-Match": {resp.Header.Get("ETag")}})
	spectest.OpenAPI(t).Check(t, spectest.Exchange{Op: "GET /viewer/", Req: resp.Request, Resp: resp, RespBody: raw, CheckRequest: true})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("/viewer/ again: %d", resp.StatusCode)
	}
	for _, f := range []string{"callgate.js", "viewer.js", "viewer.css", "icon.svg"} {
		if status, _ := in.specCall("GET /viewer/{file}", "GET", "/viewer/"+f, nil, nil, true); status != http.StatusOK {
			t.Errorf("/viewer/%s: %d", f, status)
		}
	}
	resp, raw = in.send("GET", "/viewer/viewer.js", nil, nil)
	resp, raw = in.send("GET", "/viewer/viewer.js", nil, http.Header{"If-None-Match": {resp.Header.Get("ETag")}})
	spectest.OpenAPI(t).Check(t, spectest.Exchange{Op: "GET /viewer/{file}", Req: resp.Request, Resp: resp, RespBody: raw, CheckRequest: true})
	if status, _ := in.specCall("GET /viewer/{file}", "GET", "/viewer/nope.js", nil, nil, true); status != http.StatusNotFound {
		t.Errorf("/viewer/nope.js: %d", status)
	}
	// Another method: the router's error body, as on every other path.
	resp, raw = in.send("POST", "/viewer/", nil, nil)
	var e struct{ Code string }
	_ = json.Unmarshal(raw, &e)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" ||
		resp.Header.Get("Content-Type") != "application/json" || e.Code != "method_not_allowed" {
		t.Errorf("POST /viewer/: %d, Allow %q, %s", resp.StatusCode, resp.Header.Get("Allow"), raw)
	}
}
