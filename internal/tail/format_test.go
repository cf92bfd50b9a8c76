package tail

import (
	"encoding/json"
	"testing"
	"time"
)

func TestEventText(t *testing.T) {
	for _, c := range []struct{ event, data, want string }{
		{"status", `{"status":"in-progress"}`, "status in-progress"},
		{"transcript", `{"role":"agent","text":"Hi, this is Ava.","final":true,"source_event_id":1}`, "transcript agent: Hi, this is Ava."},
		{"transcript", `{"role":"user","text":"Yes, spea","final":false,"source_event_id":2}`, "transcript user (tentative): Yes, spea"},
		{"transcript_correction", `{"role":"agent","text":"I am calling.","original_text":"I am calling to say","source_event_id":3}`, "transcript_correction agent (corrected): I am calling."},
		{"interruption", `{"source_event_id":4}`, "interruption"},
		{"completed", `{"transcript":[{"role":"agent","message":"Hi"},{"role":"user","message":"Yes"}],"analysis":{"call_successful":"success","transcript_summary":"The agent confirmed a dental cleaning."},"call_duration_secs":38,"termination_reason":"end_call tool was called."}`,
			"completed 38 s, 2 turns, success: The agent confirmed a dental cleaning. (ended: end_call tool was called.)"},
		{"completed", `{"transcript":null,"analysis":null}`, "completed"},
		{"completed", `{"transcript":[],"analysis":{"call_successful":7,"transcript_summary":["x"]}}`, "completed 0 turns"},
		{"failed", `{"reason":"no-answer","provider":"twilio"}`, "failed no-answer (twilio)"},
		{"failed", `{"reason":""}`, "failed (no reason given)"},
		{"audio_available", `{"audio_bytes":114}`, "audio_available 114 bytes"},
		{"something_new", `{"a": 1}`, `something_new {"a":1}`},
		{"status", `[1]`, `status [1]`},
		// Text that would break the line or drive the terminal is escaped.
		{"transcript", `{"role":"user","text":"a\nb\u001b[31mc\td","final":true}`, `transcript user: a\nb\u001b[31mc d`},
	} {
		if got := eventText(c.event, json.RawMessage(c.data)); got != c.want {
			t.Errorf("%s %s:\n got %q\nwant %q", c.event, c.data, got, c.want)
		}
	}
}

func TestClock(t *testing.T) {
	ts := "2026-11-30T01:02:03.456789Z"
	want := time.Date(2026, 11, 30, 1, 2, 3, 456789000, time.UTC).Local().Format("15:04:05.000")
	if got := clock(ts); got != want {
		t.Errorf("clock(%s) = %s, want %s", ts, got, want)
	}
	if got := clock("yesterday\n"); got != `yesterday\n` {
		t.Errorf("clock of a bad time = %q", got)
	}
}

// TestBackoff: full jitter under a ceiling that doubles with each failure
// in a row, capped; at once after a connection that got going ended with
// an instance going away; slower when the gateway asked for it.
func TestBackoff(t *testing.T) {
	tl := &Tail{maxBackoff: 3 * time.Second}
	for n, ceiling := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second} {
		tl.attempt = n
		for range 200 {
			if d := tl.backoff(paceBackoff); d < 0 || d > ceiling {
				t.Fatalf("attempt %d: %s, want at most %s", n, d, ceiling)
			}
		}
	}
	tl.attempt = 0
	if d := tl.backoff(paceNow); d != 0 {
		t.Errorf("at once: %s", d)
	}
	var most time.Duration
	for range 200 {
		most = max(most, tl.backoff(paceSlow))
	}
	if most <= time.Second {
		t.Errorf("slowed down: at most %s in 200 draws under a 3s ceiling", most)
	}
	tl.attempt = 100
	if d := tl.backoff(paceBackoff); d > 3*time.Second {
		t.Errorf("after 100 failures: %s", d)
	}
}
