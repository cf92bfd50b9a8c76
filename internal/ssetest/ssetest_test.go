package ssetest

import (
	"io"
	"testing"
	"time"
)

// TestParse follows the HTML standard's examples and edge cases: line
// ends, comments, multi-line data, ids that persist, retry, fields
// without a value, and an unfinished event at the end.
func TestParse(t *testing.T) {
	body := "\uFEFFretry: 1500\n" +
		": a comment\n" +
		"id: 1-1\nevent: status\ndata: {\"a\":1}\n\n" +
		"data: first\r\ndata: second\r\n\r\n" + // CRLF, default name, id kept
		"event: x\rdata\rid: 1-2\r\r" + // CR only, a field without a colon
		"event: ignored\n\n" + // no data: nothing dispatched
		"retry: 5s\nid: a\x00b\ndata:no space\n\n" + // bad retry and id ignored
		"data: unfinished"
	p := NewParser(stringsReader(body))
	want := []Event{
		{Name: "status", ID: "1-1", Data: `{"a":1}`},
		{Name: "message", ID: "1-1", Data: "first\nsecond"},
		{Name: "x", ID: "1-2", Data: ""},
		{Name: "message", ID: "1-2", Data: "no space"},
	}
	for i, w := range want {
		ev, err := p.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if ev.Name != w.Name || ev.ID != w.ID || ev.Data != w.Data {
			t.Fatalf("event %d: %+v, want %+v", i, ev, w)
		}
	}
	if _, err := p.Next(); err == nil {
		t.Fatal("the unfinished event was dispatched")
	}
	if p.Retry() != 1500*time.Millisecond {
		t.Fatalf("retry %v, want 1.5s", p.Retry())
	}
}

func stringsReader(s string) *stringReader { return &stringReader{s: s} }

// stringReader hands out one byte per Read, to cross every boundary.
type stringReader struct{ s string }

func (r *stringReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}
