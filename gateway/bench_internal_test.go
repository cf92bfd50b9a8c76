package gateway

import (
	"testing"
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
