package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/internal/redistest"
	"github.com/callgate/callgate/internal/wstest"
)

// TestResumeSeamUnderLoad subscribes clients with "since" on every
// instance while events of the call are being published: each gets every
// event exactly once, in order, across the replay/live seam.
func TestResumeSeamUnderLoad(t *testing.T) {
	_, ins := startCluster(t, 3)
	ins[0].saveCall(calls.Update{CallSID: "EL_seam", ConversationID: "conv_seam", Status: calls.StatusInProgress})
	const events = 300
	want := events + 1 // and the status event of the registration

	var clients []*wstest.Client
	var mu sync.Mutex
	subscribed := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the publisher
		defer wg.Done()
		for n := 1; n <= events; n++ {
			if n == 50 {
				close(subscribed)
			}
			ev := json.RawMessage(fmt.Sprintf(`{"type":"agent_response","agent_response_event":{"agent_response":"n%d","event_id":%d}}`, n, n))
			ins[n%3].mustPublish("/webhooks/transcription", liveBody("call_sid", "EL_seam", ev))
		}
	}()
	<-subscribed
	for i := range 9 {
		c := ins[i%3].ws()
		id := "EL_seam"
		if i%2 == 1 {
			id = "conv_seam"
		}
		since := strconv.Itoa(i * 5) // some from the start, some from later
		c.Send(map[string]string{"type": "subscribe", "id": "s", "call": id, "since": since})
		if f := c.Expect("subscribed"); f.Recovered == nil || !*f.Recovered {
			t.Fatalf("client %d: %s", i, f.Raw)
		}
		mu.Lock()
		clients = append(clients, c)
		mu.Unlock()
	}
	wg.Wait()
	for i, c := range clients {
		for n := i*5 + 1; n <= want; n++ {
			if f := c.Expect("event"); f.EventID != strconv.Itoa(n) {
				t.Fatalf("client %d (since %d): got event %s, want %d", i, i*5, f.EventID, n)
			}
		}
	}
}

// TestResumeBeyondRetention: with a short history, a client resuming from
// an event that is no longer stored is told recovered:false and gets what
// is stored; one resuming within the history is complete.
func TestResumeBeyondRetention(t *testing.T) {
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "a", func(c *config) { c.HistoryEvents = 10 })
	in.saveCall(calls.Update{CallSID: "EL_long", Status: calls.StatusInProgress})
	for n := 1; n <= 400; n++ {
		ev := json.RawMessage(fmt.Sprintf(`{"type":"interruption","interruption_event":{"event_id":%d}}`, n))
		in.mustPublish("/webhooks/transcription", liveBody("call_sid", "EL_long", ev))
	}
	old := in.ws()
	old.Send(map[string]string{"type": "subscribe", "id": "o", "call": "EL_long", "since": "1"})
	if f := old.Expect("subscribed"); f.Recovered == nil || *f.Recovered {
		t.Fatalf("resume beyond retention: %s", f.Raw)
	}
	first := old.Expect("event")
	n, _ := strconv.Atoi(first.EventID)
	if n <= 2 || n > 392 {
		t.Fatalf("first replayed event %d: want a trimmed history ending at 401", n)
	}
	for n++; n <= 401; n++ {
		if f := old.Expect("event"); f.EventID != strconv.Itoa(n) {
			t.Fatalf("got %s, want %d", f.EventID, n)
		}
	}
	recent := in.ws()
	recent.Send(map[string]string{"type": "subscribe", "id": "r", "call": "EL_long", "since": "395"})
	if f := recent.Expect("subscribed"); f.Recovered == nil || !*f.Recovered {
		t.Fatalf("resume within retention: %s", f.Raw)
	}
	for n := 396; n <= 401; n++ {
		if f := recent.Expect("event"); f.EventID != strconv.Itoa(n) {
			t.Fatalf("got %s, want %d", f.EventID, n)
		}
	}
}
