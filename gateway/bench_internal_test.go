package gateway

import (
	"testing"
	"time"
)

// BenchmarkDecodeFrame measures the parse of one client frame, done for
// every frame a client sends.
func BenchmarkDecodeFrame(b *testing.B) {
	for _, bc := range []struct {
		name  string
		frame string
	}{
		{"subscribe", `{"type":"subscribe","id":"17","call":"CA0123456789abcdef0123456789abcdef","since":"42"}`},
		{"unsubscribe", `{"type":"unsubscribe","id":"18","call":"conv_4k2m9x7p1q8w3e6r5t0y2u4i7o9a"}`},
		{"ping", `{"type":"ping","id":"19"}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			data := []byte(bc.frame)
			if _, ferr := decodeFrame(data); ferr != nil {
				b.Fatal(ferr)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, ferr := decodeFrame(data); ferr != nil {
					b.Fatal(ferr)
				}
			}
		})
	}
}

// BenchmarkEventHeader measures what the hub reads from every event it
// fans out: the event_id and the publish time, without decoding the frame.
func BenchmarkEventHeader(b *testing.B) {
	frame := []byte(`{"type":"event","event_id":"1234","event":"transcript","call_sid":"CA0123456789abcdef","conversation_id":"conv_4k2m9x7p1q8w3e6r5t0y2u4i7o9a","time":"` +
		time.Now().UTC().Format(time.RFC3339Nano) + `","data":{"role":"agent","text":"Hi, this is Ava from Northwind Dental. Am I speaking with Maria?","final":true,"source_event_id":1}}`)
	b.ReportAllocs()
	for b.Loop() {
		if seq, ok := eventSeq(frame); !ok || seq != 1234 {
			b.Fatal("event_id not read")
		}
		if publishedAt(frame) == 0 {
			b.Fatal("time not read")
		}
	}
}
