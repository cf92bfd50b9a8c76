package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/internal/ssetest"
)

// expectStreamEvent reads the next event of s and checks that it is event
// n of call sid, with the stream id want.
func expectStreamEvent(t *testing.T, s *ssetest.Stream, sid string, n int, want string) {
	t.Helper()
	ev := s.Next()
	if ev.Frame.Type != "event" || ev.Frame.CallSID != sid || ev.Frame.EventID != strconv.Itoa(n) || ev.Name != ev.Frame.Event || ev.ID != want {
		t.Fatalf("got %q id %q: %s; want event %d of %s with id %q", ev.Name, ev.ID, ev.Data, n, sid, want)
	}
}

// interruption is a live event body for call sid.
func interruption(sid string, n int) []byte {
	return liveBody("call_sid", sid, json.RawMessage(fmt.Sprintf(`{"type":"interruption","interruption_event":{"event_id":%d}}`, n)))
}

// TestStreamResumeAcrossInstances: a stream on one instance, webhooks
// through another; the client goes away and comes back through a third
// with the Last-Event-ID EventSource sends, and gets every event after
// it once, in order, then live ones. The same holds for a stream of two
// calls.
func TestStreamResumeAcrossInstances(t *testing.T) {
	_, ins := startCluster(t, 3)
	a, b, c := ins[0], ins[1], ins[2]
	a.saveCall(calls.Update{CallSID: "EL_s1", ConversationID: "conv_s1", Status: calls.StatusInProgress})
	a.saveCall(calls.Update{CallSID: "EL_s2"})

	s := ssetest.Dial(t, a.url+"/sse/calls/conv_s1", nil)
	if w := s.Expect("welcome"); !strings.Contains(w.Data, `"instance_id":"i0"`) {
		t.Fatalf("welcome %s", w.Data)
	}
	sub := s.Expect("subscribed")
	epoch := sub.Frame.Epoch
	if sub.Frame.EventID != "1" || sub.ID != epoch+"-1" || epoch == "" || epoch == "0" {
		t.Fatalf("subscribed %+v", sub)
	}
	for n := 2; n <= 4; n++ {
		b.mustPublish("/webhooks/transcription", interruption("EL_s1", n))
		expectStreamEvent(t, s, "EL_s1", n, epoch+"-"+strconv.Itoa(n))
	}
	last := epoch + "-4"
	s.Close()
	for n := 5; n <= 7; n++ {
		b.mustPublish("/webhooks/transcription", interruption("EL_s1", n))
	}
	r := ssetest.Dial(t, c.url+"/sse/calls/conv_s1", http.Header{"Last-Event-ID": {last}})
	r.Expect("welcome")
	if sub := r.Expect("subscribed"); sub.Frame.Recovered == nil || !*sub.Frame.Recovered || sub.ID != last {
		t.Fatalf("resume: %+v", sub)
	}
	for n := 5; n <= 7; n++ {
		expectStreamEvent(t, r, "EL_s1", n, epoch+"-"+strconv.Itoa(n))
	}
	a.mustPublish("/webhooks/transcription", interruption("EL_s1", 8))
	expectStreamEvent(t, r, "EL_s1", 8, epoch+"-8")

	// Two calls in one stream.
	m := ssetest.Dial(t, b.url+"/sse/calls?call=EL_s1&call=EL_s2", nil)
	m.Expect("welcome")
	m.Expect("subscribed")
	if sub := m.Expect("subscribed"); sub.ID != epoch+"-8,0-0" {
		t.Fatalf("subscribed: id %q", sub.ID)
	}
	a.mustPublish("/webhooks/transcription", interruption("EL_s2", 1)) // status, then the event
	ev := m.Next()
	e2 := ev.Frame.Epoch
	if ev.Frame.CallSID != "EL_s2" || ev.Name != "status" || ev.ID != epoch+"-8,"+e2+"-1" {
		t.Fatalf("got %+v", ev)
	}
	expectStreamEvent(t, m, "EL_s2", 2, epoch+"-8,"+e2+"-2")
	m.Close()
	c.mustPublish("/webhooks/transcription", interruption("EL_s1", 9))
	c.mustPublish("/webhooks/transcription", interruption("EL_s2", 2))
	m2 := ssetest.Dial(t, a.url+"/sse/calls?call=EL_s1&call=EL_s2", http.Header{"Last-Event-ID": {epoch + "-8," + e2 + "-2"}})
	m2.Expect("welcome")
	// Each call's subscribed event, then what it missed; the two calls'
	// events may interleave, and each id is exact.
	evs := m2.Follow([]string{"EL_s1", "EL_s2"}, []string{epoch + "-8", e2 + "-2"}, 4)
	var order []string
	for _, ev := range evs {
		call, pos, _ := ev.Position()
		order = append(order, ev.Frame.Type+" "+call+" "+pos)
	}
	for _, want := range [][2]string{
		{"subscribed EL_s1 " + epoch + "-8", "event EL_s1 " + epoch + "-9"},
		{"subscribed EL_s2 " + e2 + "-2", "event EL_s2 " + e2 + "-3"},
	} {
		if i, j := slices.Index(order, want[0]), slices.Index(order, want[1]); i < 0 || j < i {
			t.Fatalf("resumed stream: %v; want %q, then %q", order, want[0], want[1])
		}
	}

	if got := c.scrape()[`callgate_connections{transport="sse"}`]; got != 1 {
		t.Errorf(`callgate_connections{transport="sse"} = %v on the instance with one stream, want 1`, got)
	}
}

// TestTopicStream: a topic's stream gets the current state at once, then
// each change published through another instance, with the version as
// the event id.
func TestTopicStream(t *testing.T) {
	_, ins := startCluster(t, 2)
	if status, out := ins[0].putTopic("routes", `{"r":1}`); status != 200 {
		t.Fatalf("PUT: %d %v", status, out)
	}
	s := ssetest.Dial(t, ins[1].url+"/sse/routes", nil)
	s.Expect("welcome")
	first := s.Expect("state")
	epoch, _, _ := strings.Cut(first.ID, "-")
	if first.ID != epoch+"-1" || !strings.Contains(first.Data, `"data":{"r":1}`) {
		t.Fatalf("state %+v", first)
	}
	ins[0].putTopic("routes", `{"r":2}`)
	if ev := s.Expect("state"); ev.ID != epoch+"-2" || !strings.Contains(ev.Data, `"data":{"r":2}`) {
		t.Fatalf("state %+v", ev)
	}
}
