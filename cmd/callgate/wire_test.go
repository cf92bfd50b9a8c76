package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/internal/redistest"
	"github.com/callgate/callgate/internal/wire"
)

// TestEventFramesRoundTrip checks that the frames calls publishes are
// the frames the gateway reads: the gateway orders them by the event_id
// wire.Parse finds and times them by wire.PublishedAt, and the client gets
// the bytes stored in the call's history. The identifiers and the text
// look like the fields the readers look for.
func TestEventFramesRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	in := startInstance(t, srv, prefix, "wire")
	rdb := srv.Client(t)
	keys := in.app.keys
	written := 0
	for _, call := range []calls.Update{
		{CallSID: `EL_"time":"2001-01-01T00:00:00Z"<&>ü`, ConversationID: `conv_","time":"2001-01-01T00:00:00Z`},
		{CallSID: `EL_wire\plain`},
	} {
		in.saveCall(call)
		c := in.ws()
		c.MustSubscribe("1", call.CallSID)
		text := `"time":"1999-01-01T00:00:00Z" </script>` + call.CallSID
		event, _ := json.Marshal(map[string]any{"type": "user_transcript",
			"user_transcription_event": map[string]any{"user_transcript": text, "event_id": 1}})
		transcriptID := in.mustPublish("/webhooks/transcription", liveBody("call_sid", call.CallSID, event))

		stored, err := rdb.XRange(context.Background(), keys.History(call.CallSID), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		// The first live event of a call publishes its status first.
		for i, want := range []string{calls.EventStatus, calls.EventTranscript} {
			f := c.Expect("event")
			id, epoch, ok := wire.Parse(f.Raw)
			if !ok || strconv.FormatInt(id, 10) != f.EventID || strconv.FormatInt(epoch, 10) != f.Epoch || epoch == 0 {
				t.Fatalf("Parse(%s) = %d, %d, %v", f.Raw, id, epoch, ok)
			}
			if want == calls.EventTranscript && f.EventID != transcriptID {
				t.Fatalf("transcript frame %s, webhook answered event_id %s", f.Raw, transcriptID)
			}
			var d struct {
				Time time.Time `json:"time"`
				Data struct {
					Text string `json:"text"`
				} `json:"data"`
			}
			if err := json.Unmarshal(f.Raw, &d); err != nil {
				t.Fatal(err)
			}
			if got := wire.PublishedAt(f.Raw); d.Time.IsZero() || got != d.Time.UnixNano() {
				t.Fatalf("PublishedAt(%s) = %d, want %d", f.Raw, got, d.Time.UnixNano())
			}
			if name, _ := wire.EventName(f.Raw); f.Event != want || name != want ||
				f.CallSID != call.CallSID || f.ConvID != call.ConversationID {
				t.Fatalf("frame %s: want a %s event of %+v", f.Raw, want, call)
			}
			if want == calls.EventTranscript && d.Data.Text != text {
				t.Fatalf("frame %s: text %q, want %q", f.Raw, d.Data.Text, text)
			}
			if i >= len(stored) || !bytes.Equal([]byte(stored[i].Values["p"].(string)), f.Raw) {
				t.Fatalf("client got %s; history holds %v", f.Raw, stored)
			}
			written++
		}
		// The gateway times every event it writes, by the time it read.
		waitFor(t, "the gateway to time the events", func() bool {
			return in.scrape()["callgate_publish_to_socket_seconds_count"] == float64(written)
		})
	}
}
