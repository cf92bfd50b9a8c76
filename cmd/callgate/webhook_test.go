package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/internal/redistest"
)

// TestBadRequestsPublishNothing sends every kind of bad webhook and API
// request, checks the exact answer, and checks that nothing was published:
// a subscriber's next event after all of them is the next number in the
// call's sequence.
func TestBadRequestsPublishNothing(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	in := startInstance(t, srv, prefix, "a", func(c *config) { c.MaxPostCallBody = 1 << 20 })
	in.saveCall(calls.Update{CallSID: fixtureSID, ConversationID: fixtureConv, Status: calls.StatusInProgress})
	cl := in.ws()
	cl.MustSubscribe("s", fixtureSID)

	good := liveBody("call_sid", fixtureSID, json.RawMessage(`{"type":"user_transcript","user_transcription_event":{"user_transcript":"hi","event_id":1}}`))
	sign := func(body []byte, at time.Time, secret string) http.Header {
		return http.Header{calls.SignatureHeader: {calls.Sign([]byte(secret), at, body)}}
	}
	now := time.Now()
	tampered := bytes.Replace(good, []byte(`"hi"`), []byte(`"HI"`), 1)
	for _, tc := range []struct {
		name   string
		method string
		path   string
		body   []byte
		header http.Header
		status int
		code   string
	}{
		{"live: no signature", "POST", "/webhooks/transcription", good, http.Header{}, 401, calls.CodeBadSignature},
		{"live: wrong secret", "POST", "/webhooks/transcription", good, sign(good, now, "other"), 401, calls.CodeBadSignature},
		{"live: body changed after signing (replay)", "POST", "/webhooks/transcription", tampered, sign(good, now, testSecret), 401, calls.CodeBadSignature},
		{"live: stale timestamp", "POST", "/webhooks/transcription", good, sign(good, now.Add(-31*time.Minute), testSecret), 401, calls.CodeBadSignature},
		{"live: future timestamp", "POST", "/webhooks/transcription", good, sign(good, now.Add(6*time.Minute), testSecret), 401, calls.CodeBadSignature},
		{"live: garbage header", "POST", "/webhooks/transcription", good, http.Header{calls.SignatureHeader: {"t=abc,v0=zz"}}, 401, calls.CodeBadSignature},
		{"live: malformed JSON", "POST", "/webhooks/transcription", []byte(`{"call_sid":`), nil, 400, calls.CodeInvalidRequest},
		{"live: no identifier", "POST", "/webhooks/transcription", []byte(`{"event":{"type":"interruption","interruption_event":{"event_id":1}}}`), nil, 400, calls.CodeInvalidRequest},
		{"live: unknown call", "POST", "/webhooks/transcription", liveBody("call_sid", "EL_unknown", json.RawMessage(`{"type":"interruption","interruption_event":{"event_id":1}}`)), nil, 404, calls.CodeCallNotFound},
		{"live: over the body limit", "POST", "/webhooks/transcription", []byte(`{"call_sid":"` + strings.Repeat("x", 2<<20) + `"}`), nil, 413, calls.CodeBodyTooLarge},
		{"post-call: no signature", "POST", "/webhooks/elevenlabs", fixture(t, "post_call_transcription.json"), http.Header{}, 401, calls.CodeBadSignature},
		{"post-call: malformed JSON", "POST", "/webhooks/elevenlabs", []byte(`[1,2,3]`), nil, 400, calls.CodeInvalidRequest},
		{"post-call: no conversation_id", "POST", "/webhooks/elevenlabs", []byte(`{"type":"post_call_transcription","event_timestamp":1,"data":{}}`), nil, 400, calls.CodeInvalidRequest},
		{"post-call: over the body limit", "POST", "/webhooks/elevenlabs", []byte(`{"type":"post_call_audio","data":{"full_audio":"` + strings.Repeat("A", 2<<20) + `"}}`), nil, 413, calls.CodeBodyTooLarge},
		{"api: no key", "POST", "/api/calls", []byte(`{"call_sid":"EL_x"}`), http.Header{}, 401, calls.CodeUnauthorized},
		{"api: wrong key", "POST", "/api/calls", []byte(`{"call_sid":"EL_x"}`), http.Header{"Authorization": {"Bearer nope"}}, 401, calls.CodeUnauthorized},
		{"api: malformed JSON", "POST", "/api/calls", []byte(`{"call_sid":`), apiHeader(), 400, calls.CodeInvalidJSON},
		{"api: unknown field", "POST", "/api/calls", []byte(`{"callSid":"EL_x"}`), apiHeader(), 400, calls.CodeInvalidJSON},
		{"api: no call_sid", "POST", "/api/calls", []byte(`{"conversation_id":"conv_x"}`), apiHeader(), 400, calls.CodeInvalidRequest},
		{"api: bad status", "POST", "/api/calls", []byte(`{"call_sid":"EL_x","status":"ringing"}`), apiHeader(), 400, calls.CodeInvalidRequest},
		{"api: id with spaces", "POST", "/api/calls", []byte(`{"call_sid":"EL x"}`), apiHeader(), 400, calls.CodeInvalidRequest},
		{"api: relink conversation", "POST", "/api/calls", []byte(`{"call_sid":"` + fixtureSID + `","conversation_id":"conv_else"}`), apiHeader(), 409, calls.CodeConflict},
		{"api: steal conversation", "POST", "/api/calls", []byte(`{"call_sid":"EL_thief","conversation_id":"` + fixtureConv + `"}`), apiHeader(), 409, calls.CodeConflict},
		{"api: unknown call", "GET", "/api/calls/EL_unknown", nil, apiHeader(), 404, calls.CodeCallNotFound},
		{"api: get without key", "GET", "/api/calls/" + fixtureSID, nil, http.Header{}, 401, calls.CodeUnauthorized},
		{"unknown route", "GET", "/nope", nil, nil, 404, "not_found"},
		{"wrong method", "GET", "/webhooks/elevenlabs", nil, nil, 405, "method_not_allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.header
			if h == nil && strings.HasPrefix(tc.path, "/webhooks/") {
				h = sign(tc.body, time.Now(), testSecret)
			}
			status, out := in.do(tc.method, tc.path, tc.body, h)
			if status != tc.status || out["code"] != tc.code || out["message"] == "" {
				t.Fatalf("got %d %v, want %d %s", status, out, tc.status, tc.code)
			}
		})
	}
	if status, _ := in.do("GET", "/api/calls/EL_x", nil, apiHeader()); status != 404 {
		t.Fatalf("a rejected request created call EL_x (GET answered %d)", status)
	}
	// Event 1 was the status set when the call was registered.
	id := in.mustPublish("/webhooks/transcription", good)
	if id != "2" {
		t.Fatalf("first good event has id %s: a bad request was published", id)
	}
	if f := cl.Expect("event"); f.EventID != "2" {
		t.Fatalf("subscriber got %s", f.Raw)
	}
}

// TestWebhookRepeatsPublishOnce re-sends identical deliveries, as
// ElevenLabs does when it retries: each is published once and the repeat
// answers with the first event's id.
func TestWebhookRepeatsPublishOnce(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	a := startInstance(t, srv, prefix, "a")
	b := startInstance(t, srv, prefix, "b")
	a.saveCall(calls.Update{CallSID: fixtureSID, ConversationID: fixtureConv, Status: calls.StatusInProgress})
	cl := b.ws()
	cl.MustSubscribe("s", fixtureConv)

	post := fixture(t, "post_call_transcription.json")
	tentative := liveBody("call_sid", fixtureSID, json.RawMessage(`{"type":"tentative_user_transcript","tentative_user_transcription_event":{"user_transcript":"Yes, spea","event_id":2}}`))
	tentative2 := liveBody("call_sid", fixtureSID, json.RawMessage(`{"type":"tentative_user_transcript","tentative_user_transcription_event":{"user_transcript":"Yes, speak","event_id":2}}`))
	final := liveBody("call_sid", fixtureSID, json.RawMessage(`{"type":"user_transcript","user_transcription_event":{"user_transcript":"Yes, speaking.","event_id":2}}`))
	steps := []struct {
		in     *instance
		path   string
		body   []byte
		status string
		id     string
	}{
		// Event 1 was the status set when the call was registered.
		{a, "/webhooks/transcription", tentative, "published", "2"},
		{b, "/webhooks/transcription", tentative, "duplicate", "2"},
		{a, "/webhooks/transcription", tentative2, "published", "3"}, // the turn grew: a new tentative
		{b, "/webhooks/transcription", final, "published", "4"},      // same event_id, final: a new event
		{a, "/webhooks/transcription", final, "duplicate", "4"},
		{a, "/webhooks/elevenlabs", post, "published", "5"},
		{b, "/webhooks/elevenlabs", post, "duplicate", "5"},
	}
	for i, s := range steps {
		status, out := s.in.webhook(s.path, s.body)
		if status != 200 || out["status"] != s.status || out["event_id"] != s.id {
			t.Fatalf("step %d: got %d %v, want %s %s", i, status, out, s.status, s.id)
		}
	}
	for i, want := range []string{"transcript", "transcript", "transcript", "completed"} {
		f := cl.Expect("event")
		if f.Event != want || f.EventID != strconv.Itoa(i+2) {
			t.Fatalf("event %d: got %s", i+1, f.Raw)
		}
	}
	// Exactly those four: the next event is number 6.
	a.mustPublish("/webhooks/transcription", liveBody("call_sid", fixtureSID, json.RawMessage(`{"type":"interruption","interruption_event":{"event_id":9}}`)))
	if f := cl.Expect("event"); f.EventID != "6" {
		t.Fatalf("after the repeats got %s", f.Raw)
	}
	// The post-call webhook completed the call.
	if _, out := a.do("GET", "/api/calls/"+fixtureConv, nil, apiHeader()); out["status"] != "done" {
		t.Fatalf("call after post_call_transcription: %v", out)
	}
}

// TestPostCallWebhooks checks each post-call type against its fixture:
// status, event and data, and that a call unknown until its webhook is
// created so that later subscribers find it by either identifier.
func TestPostCallWebhooks(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	in := startInstance(t, srv, prefix, "a")

	// Known by the application's own id only; the webhook links it.
	in.saveCall(calls.Update{CallSID: fixtureSID})
	cl := in.ws()
	cl.MustSubscribe("s", fixtureSID)
	in.mustPublish("/webhooks/elevenlabs", fixture(t, "post_call_transcription.json"))
	f := cl.Expect("event")
	var data struct {
		Transcript []struct {
			Role    string  `json:"role"`
			Message *string `json:"message"`
		} `json:"transcript"`
		Analysis struct {
			Summary string `json:"transcript_summary"`
		} `json:"analysis"`
		Duration int64 `json:"call_duration_secs"`
	}
	if err := json.Unmarshal(f.Data, &data); err != nil {
		t.Fatal(err)
	}
	if f.Event != "completed" || f.ConvID != fixtureConv || len(data.Transcript) != 6 ||
		data.Transcript[3].Message != nil || *data.Transcript[5].Message != "Wednesday at 10 am is open. I've moved it for you. 👍" ||
		!strings.Contains(data.Analysis.Summary, "rescheduled") || data.Duration != 38 {
		t.Fatalf("completed event: %s", f.Raw)
	}
	// The audio webhook carries a size, never the audio.
	in.mustPublish("/webhooks/elevenlabs", fixture(t, "post_call_audio.json"))
	if f := cl.Expect("event"); f.Event != "audio_available" || bytes.Contains(f.Raw, []byte("SUQz")) || !bytes.Contains(f.Data, []byte(`"audio_bytes":`)) {
		t.Fatalf("audio event: %s", f.Raw)
	}

	// Unknown calls: created from the payload, found by either identifier.
	for _, tc := range []struct{ file, sid, conv, reason string }{
		{"call_initiation_failure_twilio.json", "CA9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a", "conv_8h3j5k7l9z1x2c4v6b8n0m1q3w", "no-answer"},
		{"call_initiation_failure_sip.json", "3c1f7e2a-9b4d-4e6f-8a0c-5d2b7e9f1a3c", "conv_2p4o6i8u0y1t3r5e7w9q2a4s6d", "busy"},
	} {
		status, out := in.webhook("/webhooks/elevenlabs", fixture(t, tc.file))
		if status != 200 || out["call_sid"] != tc.sid || out["event"] != "failed" {
			t.Fatalf("%s: %d %v", tc.file, status, out)
		}
		for _, id := range []string{tc.sid, tc.conv} {
			c := in.ws()
			sub := c.MustSubscribe("x", id)
			var rec calls.Call
			json.Unmarshal(sub.Call, &rec)
			if rec.CallSID != tc.sid || rec.ConversationID != tc.conv || rec.Status != calls.StatusFailed {
				t.Fatalf("%s: subscribed by %s: %s", tc.file, id, sub.Call)
			}
		}
	}

	// A live event whose call_sid is unknown is found by its
	// conversation_id.
	status, out := in.webhook("/webhooks/transcription", []byte(`{"call_sid":"CA_unknown","conversation_id":"`+fixtureConv+`","event":{"type":"interruption","interruption_event":{"event_id":5}}}`))
	if status != 200 || out["call_sid"] != fixtureSID {
		t.Fatalf("live event by conversation_id: %d %v", status, out)
	}
	if f := cl.Expect("event"); f.Event != "interruption" {
		t.Fatalf("got %s", f.Raw)
	}

	// Unknown types are acknowledged and ignored.
	status, out = in.webhook("/webhooks/elevenlabs", fixture(t, "unknown_type.json"))
	if status != 200 || out["status"] != "ignored" {
		t.Fatalf("unknown type: %d %v", status, out)
	}
	in.mustPublish("/webhooks/transcription", liveBody("call_sid", fixtureSID, json.RawMessage(`{"type":"interruption","interruption_event":{"event_id":9}}`)))
	if f := cl.Expect("event"); f.EventID != "4" {
		t.Fatalf("after the ignored webhook got %s", f.Raw)
	}
}

// TestLargeAudioWebhook posts a recording of tens of MB: accepted, and the
// event carries only its size.
func TestLargeAudioWebhook(t *testing.T) {
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "a")
	audio := strings.Repeat("QUJD", 10<<20) // 40 MiB of base64
	body := []byte(`{"type":"post_call_audio","event_timestamp":1763712004,"data":{"agent_id":"a","conversation_id":"conv_big","full_audio":"` + audio + `"}}`)
	status, out := in.webhook("/webhooks/elevenlabs", body)
	if status != 200 || out["status"] != "published" || out["call_sid"] != "conv_big" {
		t.Fatalf("%d %v", status, out)
	}
	c := in.ws()
	c.MustSubscribe("s", "conv_big")
}

// TestLiveWebhooksReuseConversationLinks checks --call-cache-ttl: live
// webhooks addressed by conversation_id reuse the call_sid this instance
// found it linked to, so that each costs one Redis round trip. The link
// is deleted behind the instance's back to show which webhooks read it.
// Webhooks addressed by call_sid read the record in the publishing step
// itself: a call deleted meanwhile is not found.
func TestLiveWebhooksReuseConversationLinks(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	const sid, conv = "EL_cached", "conv_cached"
	event := func(field, id string, n int) []byte {
		return liveBody(field, id, json.RawMessage(`{"type":"interruption","interruption_event":{"event_id":`+strconv.Itoa(n)+`}}`))
	}
	start := func(t *testing.T, ttl time.Duration) (*instance, string) {
		t.Helper()
		prefix := redistest.Prefix(t)
		a := startInstance(t, srv, prefix, "a", func(c *config) { c.CallCacheTTL = ttl })
		a.saveCall(calls.Update{CallSID: sid, ConversationID: conv, Status: calls.StatusInProgress})
		a.mustPublish("/webhooks/transcription", event("conversation_id", conv, 1))
		if err := rdb.Del(context.Background(), prefix+":conv:"+conv).Err(); err != nil {
			t.Fatal(err)
		}
		return a, prefix
	}
	t.Run("cached", func(t *testing.T) {
		a, _ := start(t, time.Hour)
		a.mustPublish("/webhooks/transcription", event("conversation_id", conv, 2))
	})
	t.Run("off", func(t *testing.T) {
		a, _ := start(t, 0)
		if status, out := a.webhook("/webhooks/transcription", event("conversation_id", conv, 2)); status != http.StatusNotFound {
			t.Fatalf("without the cache, an unlinked conversation: %d %v", status, out)
		}
	})
	t.Run("by call_sid", func(t *testing.T) {
		a, _ := start(t, time.Hour)
		if err := rdb.Del(context.Background(), a.app.keys.Record(sid)).Err(); err != nil {
			t.Fatal(err)
		}
		if status, out := a.webhook("/webhooks/transcription", event("call_sid", sid, 2)); status != http.StatusNotFound {
			t.Fatalf("a deleted call: %d %v", status, out)
		}
	})
}
