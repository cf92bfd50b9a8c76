package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/internal/redistest"
	"github.com/callgate/callgate/internal/wstest"
)

// postCallFor is a signed-looking post_call_transcription body whose
// dynamic variables are written as given, raw.
func postCallFor(conv, dynamicVariables, message string) []byte {
	return []byte(`{"type":"post_call_transcription","event_timestamp":1763712000,"data":{"agent_id":"a","conversation_id":"` + conv +
		`","transcript":[{"role":"user","message":"` + message + `"}],"analysis":null,` +
		`"conversation_initiation_client_data":{"dynamic_variables":` + dynamicVariables + `}}}`)
}

// post sends body to a webhook, signed, or to the API, with the API key.
func (in *instance) post(path string, body []byte) (int, map[string]any) {
	in.t.Helper()
	if strings.HasPrefix(path, "/webhooks/") {
		return in.webhook(path, body)
	}
	return in.do(http.MethodPost, path, body, apiHeader())
}

// TestKeysMatchExactly replays the attack of case-insensitive keys: a
// caller who controls the agent's dynamic variables (ElevenLabs signs the
// webhook that carries them) writes call_sid twice, once in another case,
// to reach another org's call. Every endpoint reads keys exactly, refuses
// repeated keys, and the victim's call and subscriber see nothing.
func TestKeysMatchExactly(t *testing.T) {
	srv := redistest.Start(t)
	in := secureInstance(t, srv, redistest.Prefix(t))
	in.saveCall(calls.Update{CallSID: "CA_victim", Org: "acme", Status: calls.StatusInProgress})
	in.saveCall(calls.Update{CallSID: "legit_call"})
	victim, _, _ := in.dialWith(token(t, "victim", "acme"))
	victim.MustSubscribe("v", "CA_victim")

	// Another case of a key is another key: ignored.
	status, out := in.webhook("/webhooks/elevenlabs",
		postCallFor("conv_attacker", `{"call_sid":"legit_call","CALL_SID":"CA_victim"}`, "injected"))
	if status != http.StatusOK || out["call_sid"] != "legit_call" {
		t.Errorf("post-call with call_sid and CALL_SID: %d %v, want published to legit_call", status, out)
	}
	status, out = in.webhook("/webhooks/transcription", []byte(`{"call_sid":"legit_call","CALL_SID":"CA_victim",`+
		`"event":{"type":"agent_response","agent_response_event":{"agent_response":"injected live","event_id":1}}}`))
	if status != http.StatusOK || out["call_sid"] != "legit_call" {
		t.Errorf("live event with call_sid and CALL_SID: %d %v, want published to legit_call", status, out)
	}
	status, out = in.do(http.MethodPost, "/api/calls", []byte(`{"call_sid":"legit_call","CALL_SID":"CA_victim","status":"done"}`), apiHeader())
	if status != http.StatusBadRequest || out["code"] != calls.CodeInvalidJSON {
		t.Errorf("API body with CALL_SID: %d %v, want 400 invalid_json (unknown field)", status, out)
	}

	// The same key twice is refused, wherever it is.
	for _, tc := range []struct {
		name, path string
		body       []byte
	}{
		{"post-call", "/webhooks/elevenlabs", postCallFor("conv_attacker2", `{"call_sid":"legit_call","call_sid":"CA_victim"}`, "injected")},
		{"live", "/webhooks/transcription", []byte(`{"call_sid":"legit_call","call_sid":"CA_victim","event":{"type":"interruption","interruption_event":{"event_id":2}}}`)},
		{"API", "/api/calls", []byte(`{"call_sid":"legit_call","call_sid":"CA_victim","status":"done"}`)},
	} {
		status, out := in.post(tc.path, tc.body)
		msg, _ := out["message"].(string)
		if status != http.StatusBadRequest || out["code"] != calls.CodeInvalidRequest || !strings.Contains(msg, `duplicate key "call_sid"`) {
			t.Errorf("%s with call_sid twice: %d %v, want 400 invalid_request naming the key", tc.name, status, out)
		}
	}

	// The victim's call is as it was, and its subscriber's next event is
	// the one published to it now.
	status, out = in.do(http.MethodGet, "/api/calls/CA_victim", nil, apiHeader())
	if status != http.StatusOK || out["status"] != "in-progress" || out["conversation_id"] != nil {
		t.Errorf("victim's call after the attempts: %d %v", status, out)
	}
	in.mustPublish("/webhooks/transcription", liveBody("call_sid", "CA_victim", json.RawMessage(`{"type":"interruption","interruption_event":{"event_id":7}}`)))
	if f := victim.Expect("event"); f.Event != "interruption" || f.CallSID != "CA_victim" {
		t.Errorf("victim's subscriber got %s before its own event", f.Raw)
	}
}

// TestCallIDsAreExact: an id is what the client wrote, byte for byte. A
// path with percent-encoded characters finds its call; an id that is not
// valid UTF-8, or not a valid id, is refused with 400 wherever it comes
// from, never repaired into another id.
func TestCallIDsAreExact(t *testing.T) {
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "a")
	in.saveCall(calls.Update{CallSID: "sip:alice@example.com/leg-1"})
	in.saveCall(calls.Update{CallSID: "a%41"})
	in.saveCall(calls.Update{CallSID: "dup\ufffd"})

	for _, tc := range []struct {
		path   string
		status int
		sid    string
	}{
		{"/api/calls/sip%3Aalice%40example.com%2Fleg-1", http.StatusOK, "sip:alice@example.com/leg-1"},
		{"/api/calls/sip:alice@example.com%2Fleg-1", http.StatusOK, "sip:alice@example.com/leg-1"},
		{"/api/calls/a%2541", http.StatusOK, "a%41"}, // decoded once, not twice
		{"/api/calls/aA", http.StatusNotFound, ""},
		{"/api/calls/dup%EF%BF%BD", http.StatusOK, "dup\ufffd"},
		{"/api/calls/dup%FF", http.StatusBadRequest, ""},
		{"/api/calls/a%20b", http.StatusBadRequest, ""},
		{"/api/calls/" + strings.Repeat("x", 129), http.StatusBadRequest, ""},
	} {
		status, out := in.do(http.MethodGet, tc.path, nil, apiHeader())
		if status != tc.status || (tc.sid != "" && out["call_sid"] != tc.sid) || (status == http.StatusBadRequest && out["code"] != calls.CodeInvalidRequest) {
			t.Errorf("GET %s: %d %v, want %d %q", tc.path, status, out, tc.status, tc.sid)
		}
	}

	// Ids in bodies: "dup\xfe" must not become the existing "dup\ufffd".
	for _, tc := range []struct {
		name, path string
		body       string
	}{
		{"API call_sid", "/api/calls", "{\"call_sid\":\"dup\xfe\",\"status\":\"done\"}"},
		{"API call_sid, lone surrogate", "/api/calls", `{"call_sid":"dup\udbff"}`},
		{"API org", "/api/calls", "{\"call_sid\":\"ok\",\"org\":\"acme\xc3\"}"},
		{"live call_sid", "/webhooks/transcription", "{\"call_sid\":\"dup\xfe\",\"event\":{\"type\":\"interruption\",\"interruption_event\":{\"event_id\":1}}}"},
		{"post-call conversation_id", "/webhooks/elevenlabs", string(postCallFor("conv\xff", `{}`, "hi"))},
		{"post-call dynamic call_sid", "/webhooks/elevenlabs", string(postCallFor("conv_ok", "{\"call_sid\":\"dup\xfe\"}", "hi"))},
	} {
		status, out := in.post(tc.path, []byte(tc.body))
		if status != http.StatusBadRequest || out["code"] != calls.CodeInvalidRequest {
			t.Errorf("%s: %d %v, want 400 invalid_request", tc.name, status, out)
		}
	}
	if status, out := in.do(http.MethodGet, "/api/calls/dup%EF%BF%BD", nil, apiHeader()); status != http.StatusOK || out["status"] != "initiated" {
		t.Errorf("the call dup\\ufffd after the refused requests: %d %v", status, out)
	}
}

// TestFramesAreValidUTF8: a post-call transcript with invalid UTF-8 (a raw
// byte, escaped lone surrogates) reaches subscribers as a valid UTF-8
// frame, live and replayed, with U+FFFD in place of what could not be
// read. A browser closes a socket (1007) on a text frame that is not
// valid UTF-8, and would again on every replay.
func TestFramesAreValidUTF8(t *testing.T) {
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "a")
	in.saveCall(calls.Update{CallSID: "EL_utf8", ConversationID: "conv_utf8"})
	live := in.ws()
	live.MustSubscribe("1", "EL_utf8")
	body := []byte(`{"type":"post_call_transcription","event_timestamp":1763712000,"data":{"conversation_id":"conv_utf8",` +
		"\"transcript\":[{\"role\":\"user\",\"message\":\"caf\xc3 ok \\ud83d\"}],\"analysis\":{\"summary\":\"\xff\\udc00 \\ud83d\\ude00\"}}}")
	in.mustPublish("/webhooks/elevenlabs", body)
	replay := in.ws()
	replay.Send(map[string]string{"type": "subscribe", "id": "2", "call": "EL_utf8", "since": "0"})
	replay.Expect("subscribed")
	for name, c := range map[string]*wstest.Client{"live": live, "replayed": replay} {
		f := c.Expect("event")
		if f.Event != "completed" || !utf8.Valid(f.Raw) {
			t.Fatalf("%s frame %q: want a completed event in valid UTF-8", name, f.Raw)
		}
		var data struct {
			Transcript []struct{ Message string }
			Analysis   struct{ Summary string }
		}
		if err := json.Unmarshal(f.Data, &data); err != nil || len(data.Transcript) != 1 ||
			data.Transcript[0].Message != "caf\ufffd ok \ufffd" || data.Analysis.Summary != "\ufffd\ufffd \U0001F600" {
			t.Errorf("%s frame's data %s (%v)", name, f.Data, err)
		}
	}
}
