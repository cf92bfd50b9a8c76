package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/internal/redistest"
)

// TestRedisDown: while Redis is unreachable, webhooks answer 503 (the
// sender retries) and /readyz fails while /healthz and the sockets stay
// up; once Redis is back, the retried webhook is published and the
// subscriber receives it, in order.
func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "a")
	in.saveCall(calls.Update{CallSID: fixtureSID, ConversationID: fixtureConv, Status: calls.StatusInProgress})
	cl := in.ws()
	cl.Send(map[string]string{"type": "subscribe", "id": "s", "call": fixtureSID, "since": "0"})
	cl.Expect("subscribed")
	if f := cl.Expect("event"); f.EventID != "1" || f.Event != "status" {
		t.Fatalf("got %s", f.Raw)
	}

	srv.Stop(t)
	body := liveBody("call_sid", fixtureSID, json.RawMessage(`{"type":"user_transcript","user_transcription_event":{"user_transcript":"are you there?","event_id":7}}`))
	status, out := in.webhook("/webhooks/transcription", body)
	if status != http.StatusServiceUnavailable || out["code"] != "unavailable" {
		t.Fatalf("webhook while Redis is down: %d %v", status, out)
	}
	if status, out := in.do("GET", "/readyz", nil, nil); status != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while Redis is down: %d %v", status, out)
	}
	if status, _ := in.do("GET", "/healthz", nil, nil); status != http.StatusOK {
		t.Fatalf("/healthz while Redis is down: %d", status)
	}

	srv.Restart(t)
	// The sender retries until the instance has reconnected.
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, out = in.webhook("/webhooks/transcription", body)
		if status == http.StatusOK {
			break
		}
		if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("webhook after Redis came back: %d %v", status, out)
		}
		time.Sleep(50 * time.Millisecond) // the sender's retry interval
	}
	// A real Redis restarted is another process: the events it may have
	// lost could have had the next numbers, so numbering goes on in a new
	// epoch, and the follower is told. miniredis keeps its data and has no
	// process id to tell.
	want := "2"
	if srv.Real {
		want = "1"
		if f := cl.Expect("reset"); f.Epoch != out["epoch"] || f.EventID != "0" {
			t.Fatalf("after Redis came back got %s, webhook answered %v", f.Raw, out)
		}
	}
	if out["status"] != "published" || out["event_id"] != want {
		t.Fatalf("retried webhook: %v", out)
	}
	if f := cl.Expect("event"); f.EventID != want || f.Event != "transcript" || f.Epoch != out["epoch"] {
		t.Fatalf("after Redis came back got %s", f.Raw)
	}
	// Ready again once the bus has followed its channels again.
	waitFor(t, "/readyz after Redis came back", func() bool {
		status, _ := in.do("GET", "/readyz", nil, nil)
		return status == http.StatusOK
	})
}
