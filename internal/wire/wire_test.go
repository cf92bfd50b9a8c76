package wire

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"time"
)

// tricky are strings that need every kind of escape, or that look like the
// fields a reader looks for.
var tricky = []string{
	"",
	"CA0123456789abcdef",
	`CA"time":"2001-01-01T00:00:00Z"`,
	`","time":"2001-01-01T00:00:00Z","data":`,
	`back\slash`,
	"tab\tnew\nline\rcr\bbs\fff\x00nul\x1fus\x7fdel",
	"<script>&amp;</script>",
	"ünïcödé 日本語 🎧",
	"line\u2028sep\u2029para",
	"bad\xffutf8\xc3",
	"\xed\xa0\x80surrogate",
}

// marshalTail is the tail as encoding/json writes it: the reference that
// AppendTail must equal byte for byte.
func marshalTail(t testing.TB, tail Tail) []byte {
	t.Helper()
	data := json.RawMessage(tail.Data)
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	b, err := json.Marshal(struct {
		Event          string          `json:"event"`
		CallSID        string          `json:"call_sid"`
		ConversationID string          `json:"conversation_id,omitempty"`
		Time           time.Time       `json:"time"`
		Data           json.RawMessage `json:"data"`
	}{tail.Event, tail.CallSID, tail.ConversationID, tail.Time.UTC(), data})
	if err != nil {
		t.Fatal(err)
	}
	b[0] = ','
	return append([]byte{'"'}, b...)
}

// decoded is a frame as a JSON decoder reads it.
type decoded struct {
	Type           string          `json:"type"`
	EventID        string          `json:"event_id"`
	Epoch          *string         `json:"epoch"`
	Event          string          `json:"event"`
	CallSID        string          `json:"call_sid"`
	ConversationID *string         `json:"conversation_id"`
	Time           time.Time       `json:"time"`
	Data           json.RawMessage `json:"data"`
}

func TestAppendTailMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 30, 1, 2, 3, 456789000, time.FixedZone("CET", 3600))
	for _, s := range tricky {
		for _, tail := range []Tail{
			{Event: "transcript", CallSID: s, ConversationID: "conv_1", Time: at, Data: []byte(`{"text":"hi"}`)},
			{Event: s, CallSID: "CA1", Time: at.Truncate(time.Second)},
			{Event: "status", CallSID: "CA1", ConversationID: s, Time: time.Unix(0, 0), Data: []byte(`"x"`)},
		} {
			got := AppendTail(nil, tail)
			if want := marshalTail(t, tail); !bytes.Equal(got, want) {
				t.Errorf("AppendTail(%+v)\n got %s\nwant %s", tail, got, want)
			}
			plain := string(appendString(nil, s)) == `"`+s+`"`
			if plain && len(got) > TailCap(tail) {
				t.Errorf("TailCap %d, tail %d bytes", TailCap(tail), len(got))
			}
		}
	}
}

func TestAppendTailAppends(t *testing.T) {
	tail := Tail{Event: "e", CallSID: "c", Time: time.Unix(1, 0)}
	got := AppendTail([]byte("head"), tail)
	if want := "head" + string(AppendTail(nil, tail)); string(got) != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestBuildAndRead(t *testing.T) {
	at := time.Date(2026, 11, 30, 1, 2, 3, 456789000, time.UTC)
	for _, s := range tricky {
		for _, epoch := range []int64{0, 1764466799123} {
			for _, conv := range []string{"", s} {
				tail := Tail{Event: "transcript", CallSID: s, ConversationID: conv, Time: at,
					Data: []byte(`{"time":"1999-01-01T00:00:00Z","call_sid":"x"}`)}
				frame := Build(57, epoch, AppendTail(nil, tail))
				checkFrame(t, frame, 57, epoch, tail)
			}
		}
	}
}

// checkFrame checks that frame is valid JSON with exactly what was built
// into it, and that the readers find the same.
func checkFrame(t *testing.T, frame []byte, id, epoch int64, tail Tail) {
	t.Helper()
	var d decoded
	if err := json.Unmarshal(frame, &d); err != nil {
		t.Fatalf("frame %q is not JSON: %v", frame, err)
	}
	// A string goes through encoding/json as it goes through the frame.
	same := func(s string) string {
		var out string
		b, _ := json.Marshal(s)
		_ = json.Unmarshal(b, &out)
		return out
	}
	wantEpoch := ""
	if epoch != 0 {
		wantEpoch = strconv.FormatInt(epoch, 10)
	}
	gotEpoch := ""
	if d.Epoch != nil {
		gotEpoch = *d.Epoch
	}
	gotConv := ""
	if d.ConversationID != nil {
		gotConv = *d.ConversationID
		if gotConv == "" {
			t.Errorf("frame %s: empty conversation_id present", frame)
		}
	}
	wantData := tail.Data
	if len(wantData) == 0 {
		wantData = []byte("null")
	}
	if d.Type != "event" || d.EventID != strconv.FormatInt(id, 10) || gotEpoch != wantEpoch ||
		d.Event != same(tail.Event) || d.CallSID != same(tail.CallSID) || gotConv != same(tail.ConversationID) ||
		!d.Time.Equal(tail.Time) || !bytes.Equal(d.Data, wantData) {
		t.Errorf("frame %s decodes as %+v", frame, d)
	}
	gid, gepoch, ok := Parse(frame)
	if !ok || gid != id || gepoch != epoch {
		t.Errorf("Parse(%s) = %d, %d, %v; want %d, %d", frame, gid, gepoch, ok, id, epoch)
	}
	if got := PublishedAt(frame); got != tail.Time.UnixNano() {
		t.Errorf("PublishedAt(%s) = %d, want %d", frame, got, tail.Time.UnixNano())
	}
	if got, ok := EventName(frame); !ok || got != same(tail.Event) {
		t.Errorf("EventName(%s) = %q, %v", frame, got, ok)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		frame     string
		id, epoch int64
		ok        bool
	}{
		{`{"type":"event","event_id":"1","event":"x"}`, 1, 0, true},
		{`{"type":"event","event_id":"57","epoch":"1764466799123","event":"x"}`, 57, 1764466799123, true},
		{`{"type":"event","event_id":"9223372036854775807"}`, 1<<63 - 1, 0, true},
		{`{"type":"event","event_id":"1","epoch":"0"}`, 1, 0, true},
		{`{"type":"event","event_id":"9223372036854775808"}`, 0, 0, false},
		{`{"type":"event","event_id":"0"}`, 0, 0, false},
		{`{"type":"event","event_id":"01"}`, 0, 0, false},
		{`{"type":"event","event_id":"-1"}`, 0, 0, false},
		{`{"type":"event","event_id":""}`, 0, 0, false},
		{`{"type":"event","event_id":"1`, 0, 0, false},
		{`{"type":"event","event_id":"1x"}`, 0, 0, false},
		{`{"type":"event","event_id":"1","epoch":"}`, 0, 0, false},
		{`{"type":"event","event_id":"1","epoch":"12`, 0, 0, false},
		{`{"type":"event","event_id":"1","epoch":"007"}`, 0, 0, false},
		{`{"type":"event","event_id":"1","epoch":"99999999999999999999"}`, 0, 0, false},
		{`{"type":"event", "event_id":"1"}`, 0, 0, false},
		{`{"type":"state","version":1}`, 0, 0, false},
		{``, 0, 0, false},
	} {
		id, epoch, ok := Parse([]byte(tc.frame))
		if id != tc.id || epoch != tc.epoch || ok != tc.ok {
			t.Errorf("Parse(%s) = %d, %d, %v; want %d, %d, %v", tc.frame, id, epoch, ok, tc.id, tc.epoch, tc.ok)
		}
	}
}

func TestPublishedAtReadsItsOwnField(t *testing.T) {
	const want = "2026-11-30T01:02:03.456789Z"
	at, _ := time.Parse(time.RFC3339Nano, want)
	for _, tc := range []struct {
		frame string
		want  int64
	}{
		{`{"type":"event","event_id":"1","event":"e","call_sid":"c","time":"` + want + `","data":null}`, at.UnixNano()},
		{`{"type":"event","event_id":"1","epoch":"2","event":"e","call_sid":"c","conversation_id":"v","time":"` + want + `","data":{}}`, at.UnixNano()},
		// Look-alikes in the strings before the time are skipped.
		{`{"type":"event","event_id":"1","event":"\",\"time\":\"2001-01-01T00:00:00Z","call_sid":"\"time\":\"2001-01-01T00:00:00Z\\","time":"` + want + `","data":null}`, at.UnixNano()},
		// Fields out of place, or missing: no time.
		{`{"type":"event","event_id":"1","call_sid":"c","event":"e","time":"` + want + `","data":null}`, 0},
		{`{"type":"event","event_id":"1","event":"e","call_sid":"c","data":{"time":"` + want + `"}}`, 0},
		{`{"type":"event","event_id":"1","event":"e","call_sid":"c","time":"yesterday","data":null}`, 0},
		{`{"type":"event","event_id":"1","event":"e","call_sid":"c","time":"` + want, 0},
		{`{"type":"event","event_id":"1","event":"e","call_sid":"c`, 0},
		{`{"type":"state","time":"` + want + `"}`, 0},
	} {
		if got := PublishedAt([]byte(tc.frame)); got != tc.want {
			t.Errorf("PublishedAt(%s) = %d, want %d", tc.frame, got, tc.want)
		}
	}
}

func TestEventNameWithEscapes(t *testing.T) {
	frame := []byte(`{"type":"event","event_id":"1","event":"a\"b\u00fc","call_sid":"c"}`)
	if got, ok := EventName(frame); !ok || got != `a"bü` {
		t.Fatalf("EventName = %q, %v", got, ok)
	}
	if _, ok := EventName([]byte(`{"type":"event","event_id":"1","event":"a\x"}`)); ok {
		t.Fatal("EventName accepted an invalid escape")
	}
}

// sample is an event frame as calls publishes it.
var sample = Build(1234, 1764466799123, AppendTail(nil, Tail{
	Event: "transcript", CallSID: "CA0123456789abcdef", ConversationID: "conv_4k2m9x7p1q8w3e6r5t0y2u4i7o9a",
	Time: time.Date(2026, 11, 30, 1, 2, 3, 456789123, time.UTC),
	Data: []byte(`{"role":"agent","text":"Hi, this is Ava from Northwind Dental. Am I speaking with Maria?","final":true,"source_event_id":1}`),
}))

// BenchmarkParse measures what the gateway reads of every event it fans
// out to decide who gets it.
func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if id, _, ok := Parse(sample); !ok || id != 1234 {
			b.Fatal("event_id not read")
		}
	}
}

// BenchmarkPublishedAt measures the read of the publish time, done once
// per event delivered to this instance.
func BenchmarkPublishedAt(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if PublishedAt(sample) == 0 {
			b.Fatal("time not read")
		}
	}
}

// BenchmarkAppendTail measures the encoding of one event's tail, done
// once per published event.
func BenchmarkAppendTail(b *testing.B) {
	tail := Tail{
		Event: "transcript", CallSID: "CA0123456789abcdef", ConversationID: "conv_4k2m9x7p1q8w3e6r5t0y2u4i7o9a",
		Time: time.Now(),
		Data: []byte(`{"role":"agent","text":"Hi, this is Ava from Northwind Dental. Am I speaking with Maria?","final":true,"source_event_id":1}`),
	}
	buf := make([]byte, 0, TailCap(tail))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendTail(buf[:0], tail)
	}
	b.SetBytes(int64(len(buf)))
}
