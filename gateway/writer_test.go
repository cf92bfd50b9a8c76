package gateway

import (
	"bytes"
	"net"
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
