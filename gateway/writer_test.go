package gateway

import (
	"bytes"
	"testing"
)

// TestRemainder checks the unwritten part of a batch for every split
// point, including inside headers and payloads and at empty headers.
func TestRemainder(t *testing.T) {
	var w writeScratch
	frames := []outFrame{
		{data: []byte("abc")},
		{data: pingFrame, control: true},
		{data: bytes.Repeat([]byte("x"), 300)},
		{data: []byte{}},
	}
	bufs, total := w.build(frames)
	whole := bytes.Join(bufs, nil)
	if total != len(whole) {
		t.Fatalf("build counted %d bytes, laid out %d", total, len(whole))
	}
	if want := 2 + 3 + 2 + 4 + 300 + 2; len(whole) != want {
		t.Fatalf("batch is %d bytes, want %d", len(whole), want)
	}
	for n := 0; n <= len(whole); n++ {
		rest := remainder(bufs, n)
		if got := bytes.Join(rest, nil); !bytes.Equal(got, whole[n:]) {
			t.Fatalf("after %d bytes: %q, want %q", n, got, whole[n:])
		}
		// The copy must not share the scratch headers.
		for i := range w.hdrs {
			w.hdrs[i] ^= 0xff
		}
		got := bytes.Join(rest, nil)
		for i := range w.hdrs {
			w.hdrs[i] ^= 0xff
		}
		if !bytes.Equal(got, whole[n:]) {
			t.Fatalf("after %d bytes the remainder changed with the scratch space", n)
		}
	}
}

// TestBuildStream lays frames out as events: ids from the positions the
// frames carry, names from the frames, multi-line data split into data
// lines, control frames as they are; every split point of the batch
// leaves a remainder that is the rest of it.
func TestBuildStream(t *testing.T) {
	c := &conn{stream: &sseStream{keys: []string{"A", "B"}, given: []string{"", "7"},
		pos: make([]Position, 2), known: make([]bool, 2)}}
	frames := []outFrame{
		{data: []byte(`{"type":"welcome"}`)},
		{data: []byte(`{"type":"subscribed"}`), meta: &frameMeta{call: "A", pos: Position{1, 0}}},
		{data: keepaliveComment, control: true},
		{data: []byte(`{"type":"event","event_id":"1","epoch":"1","event":"status","data":{}}`), meta: &frameMeta{call: "A", pos: Position{1, 1}}},
		{data: []byte("{\"type\":\"x\",\n\"a\":1}")},
		{data: streamClose(1001, "bye"), control: true, close: true},
	}
	var w writeScratch
	bufs, total := w.buildStream(c, frames)
	whole := bytes.Join(bufs, nil)
	if total != len(whole) {
		t.Fatalf("counted %d bytes, laid out %d", total, len(whole))
	}
	want := "event: welcome\ndata: {\"type\":\"welcome\"}\n\n" +
		"id: 1-0,7\nevent: subscribed\ndata: {\"type\":\"subscribed\"}\n\n" +
		": keepalive\n\n" +
		"id: 1-1,7\nevent: status\ndata: {\"type\":\"event\",\"event_id\":\"1\",\"epoch\":\"1\",\"event\":\"status\",\"data\":{}}\n\n" +
		"event: x\ndata: {\"type\":\"x\",\ndata: \"a\":1}\n\n" +
		"event: close\ndata: {\"type\":\"close\",\"code\":1001,\"reason\":\"bye\"}\n\n"
	if string(whole) != want {
		t.Fatalf("laid out\n%s\nwant\n%s", whole, want)
	}
	for n := 0; n <= len(whole); n++ {
		if got := bytes.Join(remainder(bufs, n), nil); !bytes.Equal(got, whole[n:]) {
			t.Fatalf("after %d bytes: %q, want %q", n, got, whole[n:])
		}
	}
}
