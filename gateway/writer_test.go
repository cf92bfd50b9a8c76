package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
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

// TestNextChunk checks that a batch cut into chunks of every size from 1
// to past its length loses, repeats and reorders nothing, and that no
// chunk is larger than asked or empty.
func TestNextChunk(t *testing.T) {
	var w writeScratch
	bufs, total := w.build([]outFrame{
		{data: []byte("abc")},
		{data: pingFrame, control: true},
		{data: bytes.Repeat([]byte("x"), 300)},
		{data: []byte{}},
	})
	whole := bytes.Join(bufs, nil)
	for size := 1; size <= total+1; size++ {
		rest := remainder(bufs, 0)
		var got []byte
		var chunk net.Buffers
		for len(rest) > 0 {
			chunk, rest = nextChunk(chunk[:0], rest, size)
			n := 0
			for _, b := range chunk {
				n += len(b)
			}
			if n == 0 || n > size {
				t.Fatalf("size %d: a chunk of %d bytes", size, n)
			}
			got = append(got, bytes.Join(chunk, nil)...)
		}
		if !bytes.Equal(got, whole) {
			t.Fatalf("size %d: chunks join to %q, want %q", size, got, whole)
		}
	}
}

// deadlineConn is a socket that takes every write at once and checks the
// deadlines finishWrite sets: each covers at most writeChunk bytes, and
// runs WriteWait from when the bytes before it were written, not from
// the start of the batch; none is left once the batch is written.
type deadlineConn struct {
	net.Conn // nil: finishWrite calls only the methods below
	wait     time.Duration
	data     bytes.Buffer
	chunks   []int // bytes written under each deadline
	lastEnd  time.Time
	cleared  bool // the last deadline set was none
	err      error
}

func (d *deadlineConn) SetWriteDeadline(t time.Time) error {
	d.cleared = t.IsZero()
	if d.cleared {
		return nil
	}
	if t.Before(d.lastEnd.Add(d.wait)) && d.err == nil {
		d.err = fmt.Errorf("deadline %d: less than WriteWait after the previous write ended", len(d.chunks))
	}
	d.chunks = append(d.chunks, 0)
	return nil
}

func (d *deadlineConn) Write(p []byte) (int, error) {
	if len(d.chunks) == 0 {
		d.err = errors.New("a write before any deadline")
		d.chunks = append(d.chunks, 0)
	}
	d.chunks[len(d.chunks)-1] += len(p)
	d.data.Write(p)
	d.lastEnd = time.Now()
	return len(p), nil
}

// TestFinishWriteArmsADeadlinePerChunk: a blocked write of megabytes goes
// out in chunks of writeChunk bytes, each under a deadline of its own, so
// a client that keeps reading is never held to one deadline for the
// whole backlog; and the socket has no deadline left afterwards.
func TestFinishWriteArmsADeadlinePerChunk(t *testing.T) {
	var w writeScratch
	var frames []outFrame
	for i, size := range []int{10, 1 << 20, 125, 70000, 3 << 20, 0, 65536} {
		frames = append(frames, outFrame{data: bytes.Repeat([]byte{byte('a' + i)}, size)})
		if i == 2 {
			frames = append(frames, outFrame{data: pingFrame, control: true})
		}
	}
	bufs, total := w.build(frames)
	whole := bytes.Join(bufs, nil)
	const sent = 1000 // what the non-blocking write took
	d := &deadlineConn{wait: time.Minute}
	c := &conn{srv: &Server{cfg: Config{WriteWait: d.wait}}, nc: d}
	c.finishWrite(remainder(bufs, sent), frames, false)
	if d.err != nil {
		t.Fatal(d.err)
	}
	if !bytes.Equal(d.data.Bytes(), whole[sent:]) {
		t.Fatalf("wrote %d bytes, not the %d after the first %d", d.data.Len(), total-sent, sent)
	}
	if want := (total - sent + writeChunk - 1) / writeChunk; len(d.chunks) != want {
		t.Fatalf("%d deadlines for %d bytes, want %d (one per %d bytes)", len(d.chunks), total-sent, want, writeChunk)
	}
	for i, n := range d.chunks {
		if n > writeChunk || n == 0 {
			t.Fatalf("chunk %d: %d bytes under one deadline, want 1 to %d", i, n, writeChunk)
		}
	}
	if !d.cleared {
		t.Fatal("the last chunk's deadline is left on the socket, where it would fail later writes")
	}
	if c.writing {
		t.Fatal("the writer role was not given back")
	}
}
