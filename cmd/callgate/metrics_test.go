package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/internal/redistest"
)

// scrape returns the instance's metrics as name{labels} -> value.
func (in *instance) scrape() map[string]float64 {
	in.t.Helper()
	resp, err := http.Get(in.url + "/metrics")
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		b, _ := io.ReadAll(resp.Body)
		in.t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			in.t.Fatalf("metric line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetricsMatchWhatHappened runs a script of connections, subscriptions
// and webhooks, then checks every counter against it.
func TestMetricsMatchWhatHappened(t *testing.T) {
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "a")
	in.saveCall(calls.Update{CallSID: "EL_m1", ConversationID: "conv_m1"}) // no status: no event
	in.saveCall(calls.Update{CallSID: "EL_m2"})
	a, b, c := in.ws(), in.ws(), in.ws()
	a.MustSubscribe("1", "EL_m1")
	b.MustSubscribe("1", "conv_m1")
	c.MustSubscribe("1", "EL_m2")
	c.MustSubscribe("2", "EL_m1")

	ev := func(n int) []byte {
		return liveBody("call_sid", "EL_m1", json.RawMessage(`{"type":"interruption","interruption_event":{"event_id":`+strconv.Itoa(n)+`}}`))
	}
	// The first live event also publishes the call's in-progress status:
	// 1 + 3 events on EL_m1, each delivered to three sockets.
	for n := 1; n <= 3; n++ {
		in.mustPublish("/webhooks/transcription", ev(n))
	}
	in.webhook("/webhooks/transcription", ev(3))                                                       // a repeat: 200, not published
	in.do("POST", "/webhooks/transcription", ev(4), http.Header{calls.SignatureHeader: {"t=1,v0=00"}}) // 401
	in.webhook("/webhooks/elevenlabs", fixture(t, "unknown_type.json"))                                // 200, ignored
	for i := 0; i < 4; i++ {
		a.Expect("event")
		b.Expect("event")
		c.Expect("event")
	}

	// A delivery is counted once its write returned, which may be just
	// after the client read it: poll until a scrape shows every write.
	m := in.scrape()
	for polls := 0; m["callgate_publish_to_socket_seconds_count"] < 12 || m["callgate_events_delivered_total"] < 12; polls++ {
		if polls == 500 {
			break // the checks below say what is missing
		}
		time.Sleep(10 * time.Millisecond) // polling: a write's end has no notification to wait on
		m = in.scrape()
	}
	want := map[string]float64{
		`callgate_connections{transport="websocket"}`:                                    3,
		`callgate_connections{transport="sse"}`:                                          0,
		"callgate_subscriptions":                                                         4,
		"callgate_redis_channels":                                                        2,
		"callgate_events_published_total":                                                4,
		"callgate_events_delivered_total":                                                12,
		"callgate_events_dropped_total":                                                  0,
		`callgate_webhook_requests_total{code="200",endpoint="/webhooks/transcription"}`: 4,
		`callgate_webhook_requests_total{code="401",endpoint="/webhooks/transcription"}`: 1,
		`callgate_webhook_requests_total{code="200",endpoint="/webhooks/elevenlabs"}`:    1,
		"callgate_publish_to_socket_seconds_count":                                       12,
		"callgate_send_queue_overflows_total":                                            0,
		"callgate_redis_reconnects_total":                                                0,
		"callgate_bus_messages_total":                                                    4,
		"callgate_bus_messages_followed_total":                                           4,
	}
	for name, v := range want {
		if got, ok := m[name]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, v)
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := m[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
	if m[`callgate_publish_to_socket_seconds_bucket{le="+Inf"}`] != 12 {
		t.Errorf("histogram +Inf bucket %v", m[`callgate_publish_to_socket_seconds_bucket{le="+Inf"}`])
	}

	// Closing a socket shows in the gauges. A scrape reads each gauge at
	// its own moment, so one scrape may catch the close half done: poll
	// until a scrape shows all three settled.
	c.Conn.Close()
	for deadline := 0; ; deadline++ {
		m = in.scrape()
		if m[`callgate_connections{transport="websocket"}`] == 2 && m["callgate_subscriptions"] == 2 && m["callgate_redis_channels"] == 1 {
			break
		}
		if deadline == 500 {
			t.Fatalf("after close: connections %v, subscriptions %v, channels %v; want 2, 2, 1",
				m[`callgate_connections{transport="websocket"}`], m["callgate_subscriptions"], m["callgate_redis_channels"])
		}
		time.Sleep(10 * time.Millisecond) // polling: a socket close has no notification to wait on
	}
}
