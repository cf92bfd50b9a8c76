package calls

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func FuzzParseSignature(f *testing.F) {
	body := []byte(`{"type":"post_call_audio"}`)
	f.Add(Sign(testSecret, testNow, body))
	f.Add("t=1763712000,v0=" + strings.Repeat("ab", 32) + ",v0=" + strings.Repeat("CD", 32))
	f.Add(" t=0 , v1=x , v0=" + strings.Repeat("00", 32) + " ,")
	f.Add("t=9223372036854775807,v0=" + strings.Repeat("ff", 32))
	f.Add("t=9223372036854775808,v0=" + strings.Repeat("ff", 32))
	f.Add("t=-1,v0=00")
	f.Add("t=1,t=2,v0=")
	f.Add("v0=zz")
	f.Add("=,=,=")
	f.Add("t=1\x00,v0=\xff")
	f.Add("")

	verifier := &Verifier{Secrets: [][]byte{testSecret}, Now: func() time.Time { return testNow }}
	f.Fuzz(func(t *testing.T, header string) {
		sig, err := ParseSignature(header)
		verr := verifier.Verify(header, body)
		if err != nil {
			if !errors.Is(err, ErrSignatureMissing) && !errors.Is(err, ErrSignatureMalformed) {
				t.Fatalf("ParseSignature error %v wraps no sentinel", err)
			}
			if !errors.Is(verr, ErrSignatureMissing) && !errors.Is(verr, ErrSignatureMalformed) {
				t.Fatalf("Verify = %v for an unparsable header", verr)
			}
			return
		}
		if len(header) > maxSignatureHeaderLen {
			t.Fatalf("accepted a %d-byte header", len(header))
		}
		if !utf8.ValidString(sig.T) {
			t.Fatalf("T %q is not valid UTF-8", sig.T)
		}
		if strings.ContainsAny(header, " \t") {
			t.Fatalf("accepted a header with white space: %q", header)
		}
		if n, perr := strconv.ParseInt(sig.T, 10, 64); perr != nil || n != sig.Timestamp || n < 0 {
			t.Fatalf("T %q does not match Timestamp %d", sig.T, sig.Timestamp)
		}
		if len(sig.V0) == 0 {
			t.Fatal("accepted a header without v0")
		}
		for _, mac := range sig.V0 {
			if len(mac) != sha256.Size {
				t.Fatalf("accepted a %d-byte v0", len(mac))
			}
		}
		if verr != nil && !errors.Is(verr, ErrSignatureExpired) && !errors.Is(verr, ErrSignatureFuture) &&
			!errors.Is(verr, ErrSignatureMismatch) {
			t.Fatalf("Verify = %v for a parsable header", verr)
		}
	})
}

// validText fails unless every string a decoder produced is valid UTF-8:
// they end up in frames, and a browser closes a socket (1007) on a frame
// that is not.
func validText(t *testing.T, body []byte, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if !utf8.ValidString(s) {
			t.Fatalf("%q: produced %q, not valid UTF-8", body, s)
		}
	}
}

// accepted reports whether a decoder accepted body: a rejection must wrap
// ErrMalformed, and only a JSON object may be accepted.
func accepted(t *testing.T, body []byte, err error) bool {
	t.Helper()
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
		return false
	}
	if !json.Valid(body) || !isJSONObject(body) {
		t.Fatalf("accepted a body that is not a JSON object: %q", body)
	}
	return true
}

func FuzzDecodePostCall(f *testing.F) {
	for _, name := range []string{
		"post_call_transcription.json",
		"post_call_audio.json",
		"call_initiation_failure_twilio.json",
		"call_initiation_failure_sip.json",
		"unknown_type.json",
	} {
		f.Add(readFixture(f, name))
	}
	f.Add([]byte(`{"type":"post_call_audio","event_timestamp":"1","data":{"conversation_id":"c","full_audio":"=="}}`))
	f.Add([]byte(`{"type":"call_initiation_failure","event_timestamp":1,"data":{"conversation_id":"c","metadata":{"body":{"CallSid":"a","call_sid":"a"}}}}`))
	f.Add([]byte(`{"type":"x","data":{"conversation_id":[],"metadata":7}}`))
	f.Add([]byte(`{"type":"post_call_transcription","event_timestamp":1e3,"data":{"conversation_id":"c"}}`))
	f.Add([]byte(`{"type":"post_call_audio","event_timestamp":"\u0031","data":{"conversation_id":"c"}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{`))
	f.Add([]byte("{\"type\":\"post_call_transcription\",\"event_timestamp\":1,\"data\":{\"conversation_id\":\"c\",\"transcript\":[{\"message\":\"a\xff\\ud800\\ud83d\\ude00\"}],\"analysis\":{\"s\":\"\xed\xa0\x80\"}}}"))

	f.Fuzz(func(t *testing.T, body []byte) {
		pc, err := DecodePostCall(body)
		if !accepted(t, body, err) {
			return
		}
		if pc.Type == "" {
			t.Fatal("accepted a body without type")
		}
		if isKnownPostCallType(pc.Type) && pc.ConversationID == "" {
			t.Fatalf("accepted %s without conversation_id", pc.Type)
		}
		if pc.AudioBytes < 0 || pc.AudioBytes > int64(len(body)) {
			t.Fatalf("AudioBytes = %d for a %d-byte body", pc.AudioBytes, len(body))
		}
		seen := make(map[string]bool)
		for _, id := range pc.CallSIDs {
			if id == "" || seen[id] {
				t.Fatalf("CallSIDs %q has an empty or repeated id", pc.CallSIDs)
			}
			seen[id] = true
		}
		for _, raw := range []json.RawMessage{pc.Transcript, pc.Analysis} {
			if raw != nil && !json.Valid(raw) {
				t.Fatalf("passed through invalid JSON %q", raw)
			}
			if bytes.Contains(raw, []byte(`\ud8`)) || bytes.Contains(raw, []byte(`\udc`)) {
				// validUTF8 turns every escaped surrogate into its character.
				t.Fatalf("passed through an escaped surrogate: %q", raw)
			}
			validText(t, body, string(raw))
		}
		validText(t, body, append([]string{pc.Type, pc.ConversationID, pc.AgentID, pc.FailureReason,
			pc.Provider, pc.Metadata.TerminationReason}, pc.CallSIDs...)...)
	})
}

func FuzzDecodeLive(f *testing.F) {
	for _, line := range liveFixture(f) {
		f.Add(liveBodyFor(line))
	}
	f.Add([]byte(`{"conversation_id":"c","event":{"type":"interruption","interruption_event":{"event_id":"9223372036854775808"}}}`))
	f.Add([]byte(`{"call_sid":"a","event":{"type":"tentative_user_transcript","tentative_user_transcription_event":{"user_transcript":null}}}`))
	f.Add([]byte(`{"call_sid":"a","event":{"type":"agent_response_correction","agent_response_correction_event":{"corrected_agent_response":""}}}`))
	f.Add([]byte(`{"call_sid":"a","event":{"type":"ping"}}`))
	f.Add([]byte(`{"call_sid":"a","event":[]}`))
	f.Add([]byte(`{"event":{"type":"interruption"}}`))
	f.Add([]byte(`null`))
	f.Add([]byte("{\"call_sid\":\"a\",\"event\":{\"type\":\"agent_response\",\"agent_response_event\":{\"agent_response\":\"hi\xff\\udc00\"}}}"))

	kinds := map[string]bool{"": true, KindTranscript: true, KindTranscriptCorrection: true, KindInterruption: true, KindLink: true}
	f.Fuzz(func(t *testing.T, body []byte) {
		l, err := DecodeLive(body)
		if !accepted(t, body, err) {
			return
		}
		if l.CallSID == "" && l.ConversationID == "" {
			t.Fatal("accepted an event without ids")
		}
		if l.Type == "" || !kinds[l.Kind] {
			t.Fatalf("Type %q, Kind %q", l.Type, l.Kind)
		}
		if l.Final != (l.Type != "tentative_user_transcript") {
			t.Fatalf("Final = %v for %s", l.Final, l.Type)
		}
		switch l.Kind {
		case KindTranscript, KindTranscriptCorrection:
			if l.Role != "user" && l.Role != "agent" {
				t.Fatalf("Role = %q for %s", l.Role, l.Type)
			}
		case KindInterruption:
			if !l.HasSourceEventID {
				t.Fatal("interruption without event id")
			}
		case KindLink:
			if l.LinkConversationID == "" {
				t.Fatal("link without conversation id")
			}
		}
		validText(t, body, l.CallSID, l.ConversationID, l.Type, l.Role, l.Text, l.OriginalText, l.LinkConversationID)
		if !l.HasSourceEventID && l.SourceEventID != 0 {
			t.Fatalf("SourceEventID %d without HasSourceEventID", l.SourceEventID)
		}
	})
}
