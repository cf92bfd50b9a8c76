package calls_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/calls"
)

// The pure parts of webhook ingest: signature check, then decoding. The
// whole path, with the Redis work that follows, is measured by
// BenchmarkLiveWebhook in cmd/callgate and by cmd/callgate-bench.

func readFixture(b *testing.B, name string) []byte {
	b.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "elevenlabs", name))
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkDecodeLive decodes a live agent_response webhook as a
// forwarder sends it.
func BenchmarkDecodeLive(b *testing.B) {
	body := []byte(`{"call_sid":"CA0123456789abcdef0123456789abcdef","conversation_id":"conv_4k2m9x7p1q8w3e6r5t0y2u4i7o9a",` +
		`"event":{"type":"agent_response","agent_response_event":{"agent_response":"Hi, this is Ava from Northwind Dental. Am I speaking with Maria?","event_id":1}}}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		ev, err := calls.DecodeLive(body)
		if err != nil || ev.Kind != calls.KindTranscript {
			b.Fatalf("DecodeLive = %+v, %v", ev, err)
		}
	}
}

// audioBody is a post_call_audio webhook whose base64 recording makes the
// body about size bytes.
func audioBody(size int) []byte {
	var buf bytes.Buffer
	buf.WriteString(`{"type":"post_call_audio","event_timestamp":1763712004,"data":{"agent_id":"agent_7b21k9qf3m8xw2d5hn4c0ep6zt1y",` +
		`"conversation_id":"conv_4k2m9x7p1q8w3e6r5t0y2u4i7o9a","full_audio":"`)
	buf.WriteString(strings.Repeat("SUQzBAAA", size/8))
	buf.WriteString(`"}}`)
	return buf.Bytes()
}

// BenchmarkDecodePostCall decodes post-call webhooks: a transcription, and
// an audio webhook of 20 MB, whose recording is sized but not kept.
func BenchmarkDecodePostCall(b *testing.B) {
	for _, bc := range []struct {
		name string
		body func() []byte
		typ  string
	}{
		{"fixture=transcription", func() []byte { return readFixture(b, "post_call_transcription.json") }, calls.TypePostCallTranscription},
		{"fixture=audio-20MB", func() []byte { return audioBody(20 << 20) }, calls.TypePostCallAudio},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := bc.body()
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				pc, err := calls.DecodePostCall(body)
				if err != nil || pc.Type != bc.typ {
					b.Fatalf("DecodePostCall = %s, %v", pc.Type, err)
				}
			}
		})
	}
}

// BenchmarkVerifySignature checks an ElevenLabs-Signature over bodies of
// a live event's size and of the live-event body limit.
func BenchmarkVerifySignature(b *testing.B) {
	secret := []byte("wsec_0123456789abcdef0123456789abcdef")
	for _, bc := range []struct {
		name string
		size int
	}{
		{"body=1KB", 1 << 10},
		{"body=1MB", 1 << 20},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := bytes.Repeat([]byte("x"), bc.size)
			v := &calls.Verifier{Secrets: [][]byte{[]byte("an-old-secret"), secret}}
			header := calls.Sign(secret, time.Now(), body)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := v.Verify(header, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
