package calls

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "elevenlabs", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const (
	fixtureAgent = "agent_7b21k9qf3m8xw2d5hn4c0ep6zt1y"
	fixtureConv  = "conv_4k2m9x7p1q8w3e6r5t0y2u4i7o9a"
)

func TestDecodePostCallFixtures(t *testing.T) {
	tests := []struct {
		file string
		want PostCall
	}{
		{"post_call_transcription.json", PostCall{
			Type:           TypePostCallTranscription,
			EventTimestamp: 1763712000,
			ConversationID: fixtureConv,
			AgentID:        fixtureAgent,
			CallSIDs:       []string{"EL_7f3c2a9e1b", "CA5e0b6f1d2c3a4b5c6d7e8f9a0b1c2d3e"},
			Metadata: PostCallMetadata{
				CallDurationSecs:  38,
				TerminationReason: "end_call tool was called.",
				StartTimeUnixSecs: 1763711958,
			},
			Provider: "twilio",
		}},
		{"post_call_audio.json", PostCall{
			Type:           TypePostCallAudio,
			EventTimestamp: 1763712004,
			ConversationID: fixtureConv,
			AgentID:        fixtureAgent,
			AudioBytes:     114, // base64 -d | wc -c
		}},
		{"call_initiation_failure_twilio.json", PostCall{
			Type:           TypeCallInitiationFailure,
			EventTimestamp: 1763712100,
			ConversationID: "conv_8h3j5k7l9z1x2c4v6b8n0m1q3w",
			AgentID:        fixtureAgent,
			CallSIDs:       []string{"CA9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a"},
			FailureReason:  "no-answer",
			Provider:       "twilio",
		}},
		{"call_initiation_failure_sip.json", PostCall{
			Type:           TypeCallInitiationFailure,
			EventTimestamp: 1763712160,
			ConversationID: "conv_2p4o6i8u0y1t3r5e7w9q2a4s6d",
			AgentID:        fixtureAgent,
			CallSIDs:       []string{"3c1f7e2a-9b4d-4e6f-8a0c-5d2b7e9f1a3c"},
			FailureReason:  "busy",
			Provider:       "sip",
		}},
		{"unknown_type.json", PostCall{
			Type:           "post_call_unredacted_transcript",
			EventTimestamp: 1763712200,
			ConversationID: fixtureConv,
			AgentID:        fixtureAgent,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := DecodePostCall(readFixture(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			transcript, analysis := got.Transcript, got.Analysis
			got.Transcript, got.Analysis = nil, nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			if tt.want.Type != TypePostCallTranscription && (transcript != nil || analysis != nil) {
				t.Errorf("unexpected transcript %q / analysis %q", transcript, analysis)
			}
		})
	}
}

func TestDecodePostCallTranscript(t *testing.T) {
	pc, err := DecodePostCall(readFixture(t, "post_call_transcription.json"))
	if err != nil {
		t.Fatal(err)
	}
	var turns []struct {
		Role    string  `json:"role"`
		Message *string `json:"message"`
	}
	if err := json.Unmarshal(pc.Transcript, &turns); err != nil {
		t.Fatalf("Transcript: %v", err)
	}
	if len(turns) != 6 {
		t.Fatalf("got %d turns, want 6", len(turns))
	}
	if turns[3].Message != nil {
		t.Errorf("tool turn message = %q, want null", *turns[3].Message)
	}
	if want := "Could we move it to Wednesday? Ça marche pour moi le matin aussi."; turns[4].Role != "user" || turns[4].Message == nil || *turns[4].Message != want {
		t.Errorf("turn 4 = %+v, want user %q", turns[4], want)
	}
	var analysis struct {
		CallSuccessful string `json:"call_successful"`
	}
	if err := json.Unmarshal(pc.Analysis, &analysis); err != nil || analysis.CallSuccessful != "success" {
		t.Errorf("Analysis call_successful = %q, %v", analysis.CallSuccessful, err)
	}
}

// decodeCase is a body and what a decoder must make of it.
type decodeCase[T any] struct {
	name    string
	body    string
	want    T
	wantErr bool
}

// runDecodeCases checks decode against each case: ErrMalformed where an
// error is wanted, else exactly want.
func runDecodeCases[T any](t *testing.T, decode func([]byte) (T, error), cases []decodeCase[T]) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decode([]byte(tt.body))
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestDecodePostCallCases(t *testing.T) {
	tests := []decodeCase[PostCall]{
		{name: "empty", body: ``, wantErr: true},
		{name: "null", body: `null`, wantErr: true},
		{name: "array", body: `[{"type":"post_call_audio"}]`, wantErr: true},
		{name: "string", body: `"post_call_audio"`, wantErr: true},
		{name: "number", body: `42`, wantErr: true},
		{name: "truncated", body: `{"type":"post_call_audio"`, wantErr: true},
		{name: "trailing garbage", body: `{"type":"x"} {}`, wantErr: true},
		{name: "missing type", body: `{"event_timestamp":1,"data":{"conversation_id":"c"}}`, wantErr: true},
		{name: "numeric type", body: `{"type":5,"event_timestamp":1,"data":{"conversation_id":"c"}}`, wantErr: true},
		{name: "missing conversation", body: `{"type":"post_call_transcription","event_timestamp":1,"data":{}}`, wantErr: true},
		{name: "missing data", body: `{"type":"post_call_audio","event_timestamp":1}`, wantErr: true},
		{name: "data not object", body: `{"type":"post_call_audio","event_timestamp":1,"data":[]}`, wantErr: true},
		{name: "missing timestamp", body: `{"type":"post_call_audio","data":{"conversation_id":"c"}}`, wantErr: true},
		{name: "null timestamp", body: `{"type":"post_call_audio","event_timestamp":null,"data":{"conversation_id":"c"}}`, wantErr: true},
		{name: "fractional timestamp", body: `{"type":"post_call_audio","event_timestamp":1.5,"data":{"conversation_id":"c"}}`, wantErr: true},
		{name: "text timestamp", body: `{"type":"post_call_audio","event_timestamp":"soon","data":{"conversation_id":"c"}}`, wantErr: true},
		{name: "signed text timestamp", body: `{"type":"post_call_audio","event_timestamp":"+1763712000","data":{"conversation_id":"c"}}`, wantErr: true},
		{name: "bool timestamp", body: `{"type":"post_call_audio","event_timestamp":true,"data":{"conversation_id":"c"}}`, wantErr: true},
		{name: "numeric conversation", body: `{"type":"post_call_audio","event_timestamp":1,"data":{"conversation_id":7}}`, wantErr: true},
		{name: "numeric audio", body: `{"type":"post_call_audio","event_timestamp":1,"data":{"conversation_id":"c","full_audio":7}}`, wantErr: true},
		{
			name: "string timestamp on known type",
			body: ` {"type":"post_call_audio","event_timestamp":"1763712000","data":{"conversation_id":"c","full_audio":"QUJDRA=="}}`,
			want: PostCall{Type: TypePostCallAudio, EventTimestamp: 1763712000, ConversationID: "c", AudioBytes: 4},
		},
		{
			name: "null audio and transcript",
			body: `{"type":"post_call_audio","event_timestamp":1,"data":{"conversation_id":"c","full_audio":null,"transcript":null}}`,
			want: PostCall{Type: TypePostCallAudio, EventTimestamp: 1, ConversationID: "c"},
		},
		{
			name: "unknown type tolerates odd fields",
			body: `{"type":"future_event","event_timestamp":"later","data":{"conversation_id":7,"agent_id":"a","metadata":"x"}}`,
			want: PostCall{Type: "future_event", AgentID: "a"},
		},
		{
			name: "unknown type without data",
			body: `{"type":"future_event"}`,
			want: PostCall{Type: "future_event"},
		},
		{
			name: "duplicate call ids dropped",
			body: `{"type":"post_call_transcription","event_timestamp":1,"data":{"conversation_id":"c",
				"metadata":{"phone_call":{"type":"sip","call_sid":"X"}},
				"conversation_initiation_client_data":{"dynamic_variables":{"call_sid":"X"}}}}`,
			want: PostCall{Type: TypePostCallTranscription, EventTimestamp: 1, ConversationID: "c", CallSIDs: []string{"X"}, Provider: "sip"},
		},
		{
			name: "odd provider fields ignored",
			body: `{"type":"post_call_transcription","event_timestamp":1,"data":{"conversation_id":"c",
				"metadata":{"call_duration_secs":"long","termination_reason":{},"phone_call":{"type":1,"call_sid":""}},
				"conversation_initiation_client_data":{"dynamic_variables":{"call_sid":123}}}}`,
			want: PostCall{Type: TypePostCallTranscription, EventTimestamp: 1, ConversationID: "c"},
		},
		{
			name: "failure with every id",
			body: `{"type":"call_initiation_failure","event_timestamp":1,"data":{"conversation_id":"c","failure_reason":"unknown",
				"metadata":{"type":"twilio","phone_call":{"call_sid":"P"},"body":{"CallSid":"T","call_sid":"S"}},
				"conversation_initiation_client_data":{"dynamic_variables":{"call_sid":"EL_1"}}}}`,
			want: PostCall{
				Type: TypeCallInitiationFailure, EventTimestamp: 1, ConversationID: "c",
				CallSIDs: []string{"EL_1", "P", "S", "T"}, FailureReason: "unknown", Provider: "twilio",
			},
		},
		{
			name: "keys match exactly",
			body: `{"type":"post_call_transcription","event_timestamp":1,"data":{"conversation_id":"c","CONVERSATION_ID":"x",
				"conversation_initiation_client_data":{"dynamic_variables":{"call_sid":"legit_call","CALL_SID":"CA_victim","Call_Sid":"CA_other"}},
				"metadata":{"phone_call":{"Call_SID":"CA_victim"},"body":{"CallSid":"T","callsid":"CA_victim"}}}}`,
			want: PostCall{Type: TypePostCallTranscription, EventTimestamp: 1, ConversationID: "c", CallSIDs: []string{"legit_call"}},
		},
		{name: "type in another case", body: `{"TYPE":"post_call_audio","event_timestamp":1,"data":{"conversation_id":"c"}}`, wantErr: true},
		{name: "repeated dynamic call_sid", body: `{"type":"post_call_transcription","event_timestamp":1,"data":{"conversation_id":"c",
			"conversation_initiation_client_data":{"dynamic_variables":{"call_sid":"legit_call","call_sid":"CA_victim"}}}}`, wantErr: true},
		{name: "repeated conversation_id", body: `{"type":"post_call_audio","event_timestamp":1,"data":{"conversation_id":"c","conversation_id":"d"}}`, wantErr: true},
		{name: "repeated type", body: `{"type":"future_event","type":"post_call_audio","event_timestamp":1,"data":{"conversation_id":"c"}}`, wantErr: true},
		{name: "repeated key in the transcript", body: `{"type":"post_call_transcription","event_timestamp":1,"data":{"conversation_id":"c","transcript":[{"role":"user","role":"agent"}]}}`, wantErr: true},
		{name: "repeated key in an unknown type", body: `{"type":"future_event","data":{"x":1,"x":2}}`, wantErr: true},
		{name: "conversation id not UTF-8", body: "{\"type\":\"post_call_audio\",\"event_timestamp\":1,\"data\":{\"conversation_id\":\"c\xff\"}}", wantErr: true},
		{name: "conversation id a lone surrogate", body: `{"type":"post_call_audio","event_timestamp":1,"data":{"conversation_id":"c\ud800"}}`, wantErr: true},
		{name: "conversation id with a space", body: `{"type":"post_call_audio","event_timestamp":1,"data":{"conversation_id":"c d"}}`, wantErr: true},
		{name: "dynamic call_sid not UTF-8", body: "{\"type\":\"post_call_audio\",\"event_timestamp\":1,\"data\":{\"conversation_id\":\"c\",\"conversation_initiation_client_data\":{\"dynamic_variables\":{\"call_sid\":\"CA\xfe\"}}}}", wantErr: true},
		{name: "failure body id too long", body: `{"type":"call_initiation_failure","event_timestamp":1,"data":{"conversation_id":"c","metadata":{"body":{"CallSid":"` + strings.Repeat("A", 129) + `"}}}}`, wantErr: true},
		{
			name: "invalid UTF-8 in text replaced",
			body: "{\"type\":\"post_call_transcription\",\"event_timestamp\":1,\"data\":{\"conversation_id\":\"c\"," +
				"\"transcript\":[ {\"message\" : \"caf\xc3 \\ud800 \\ud83d\\ude00 \\u00e9\"} ],\"analysis\":{\"summary\":\"\xed\xa0\x80<b>\"}}}",
			want: PostCall{Type: TypePostCallTranscription, EventTimestamp: 1, ConversationID: "c",
				Transcript: json.RawMessage("[{\"message\":\"caf\ufffd \ufffd \U0001F600 \u00e9\"}]"),
				Analysis:   json.RawMessage("{\"summary\":\"\ufffd\ufffd\ufffd<b>\"}")},
		},
		{
			name: "escaped id is the same id",
			body: `{"type":"post_call_audio","event_timestamp":1,"data":{"conversation_id":"c\u0031","metadata":{"phone_call":{"call_sid":"CA\u00e9"}}}}`,
			want: PostCall{Type: TypePostCallAudio, EventTimestamp: 1, ConversationID: "c1", CallSIDs: []string{"CAé"}},
		},
		{
			name: "body ids ignored outside failures",
			body: `{"type":"post_call_transcription","event_timestamp":1,"data":{"conversation_id":"c","metadata":{"type":"x","body":{"call_sid":"S"}}}}`,
			want: PostCall{Type: TypePostCallTranscription, EventTimestamp: 1, ConversationID: "c"},
		},
	}
	runDecodeCases(t, DecodePostCall, tests)
}

func TestDecodePostCallLargeAudio(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 20 MB body")
	}
	audio := make([]byte, 15<<20+1) // +1 so the base64 ends in padding
	if _, err := rand.Read(audio); err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.WriteString(`{"type":"post_call_audio","event_timestamp":1763712004,"data":{"agent_id":"a","conversation_id":"c","full_audio":"`)
	enc := base64.NewEncoder(base64.StdEncoding, &body)
	enc.Write(audio)
	enc.Close()
	body.WriteString(`"}}`)
	if body.Len() < 20<<20 {
		t.Fatalf("body is only %d bytes", body.Len())
	}

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	pc, err := DecodePostCall(body.Bytes())
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	// The audio must be measured in place, not copied or decoded.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("decoding allocated %d bytes, want well under the body size", alloc)
	}
	if pc.AudioBytes != int64(len(audio)) {
		t.Errorf("AudioBytes = %d, want %d", pc.AudioBytes, len(audio))
	}
	if pc.ConversationID != "c" || pc.EventTimestamp != 1763712004 {
		t.Errorf("got %+v", pc)
	}
}

// liveFixture returns the lines of live_events.jsonl.
func liveFixture(t testing.TB) [][]byte {
	t.Helper()
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(readFixture(t, "live_events.jsonl")))
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			lines = append(lines, bytes.Clone(line))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// liveBodyFor wraps an ElevenLabs event the way a backend forwards it.
func liveBodyFor(event []byte) []byte {
	return []byte(`{"call_sid":"EL_7f3c2a9e1b","event":` + string(event) + `}`)
}

func TestDecodeLiveFixture(t *testing.T) {
	const (
		greeting  = "Hi, this is Ava from Northwind Dental. Am I speaking with Maria?"
		long      = "I'm calling to confirm your cleaning on Tuesday at 3 pm and to tell you about our complete history of service."
		corrected = "I'm calling to confirm your cleaning on Tuesday at 3 pm."
	)
	sid := "EL_7f3c2a9e1b"
	want := []Live{
		{CallSID: sid, Type: "conversation_initiation_metadata", Kind: KindLink, Final: true, LinkConversationID: fixtureConv},
		{CallSID: sid, Type: "agent_response", SourceEventID: 1, HasSourceEventID: true, Kind: KindTranscript, Role: "agent", Text: greeting, Final: true},
		{CallSID: sid, Type: "tentative_user_transcript", SourceEventID: 2, HasSourceEventID: true, Kind: KindTranscript, Role: "user", Text: "Yes, spea"},
		{CallSID: sid, Type: "user_transcript", SourceEventID: 2, HasSourceEventID: true, Kind: KindTranscript, Role: "user", Text: "Yes, speaking.", Final: true},
		{CallSID: sid, Type: "agent_response", SourceEventID: 3, HasSourceEventID: true, Kind: KindTranscript, Role: "agent", Text: long, Final: true},
		{CallSID: sid, Type: "interruption", SourceEventID: 4, HasSourceEventID: true, Kind: KindInterruption, Final: true},
		{CallSID: sid, Type: "agent_response_correction", SourceEventID: 3, HasSourceEventID: true, Kind: KindTranscriptCorrection, Role: "agent", Text: corrected, OriginalText: long, Final: true},
		{CallSID: sid, Type: "user_transcript", SourceEventID: 5, HasSourceEventID: true, Kind: KindTranscript, Role: "user", Text: "Could we move it to Wednesday? Ça marche pour moi le matin aussi.", Final: true},
		{CallSID: sid, Type: "agent_response", SourceEventID: 6, HasSourceEventID: true, Kind: KindTranscript, Role: "agent", Text: "Wednesday at 10 am is open. I've moved it for you. 👍", Final: true},
	}
	lines := liveFixture(t)
	if len(lines) != len(want) {
		t.Fatalf("fixture has %d events, want %d", len(lines), len(want))
	}
	for i, line := range lines {
		got, err := DecodeLive(liveBodyFor(line))
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("line %d:\ngot  %+v\nwant %+v", i+1, got, want[i])
		}
	}
}

func TestDecodeLiveCases(t *testing.T) {
	tests := []decodeCase[Live]{
		{name: "empty", body: ``, wantErr: true},
		{name: "not json", body: `call_sid=1`, wantErr: true},
		{name: "null", body: `null`, wantErr: true},
		{name: "array", body: `[]`, wantErr: true},
		{name: "no ids", body: `{"event":{"type":"interruption","interruption_event":{"event_id":1}}}`, wantErr: true},
		{name: "empty ids", body: `{"call_sid":"","conversation_id":"","event":{"type":"interruption","interruption_event":{"event_id":1}}}`, wantErr: true},
		{name: "numeric id", body: `{"call_sid":5,"event":{"type":"interruption","interruption_event":{"event_id":1}}}`, wantErr: true},
		{name: "no event", body: `{"call_sid":"a"}`, wantErr: true},
		{name: "null event", body: `{"call_sid":"a","event":null}`, wantErr: true},
		{name: "string event", body: `{"call_sid":"a","event":"agent_response"}`, wantErr: true},
		{name: "event without type", body: `{"call_sid":"a","event":{"agent_response_event":{"agent_response":"hi"}}}`, wantErr: true},
		{name: "agent without payload", body: `{"call_sid":"a","event":{"type":"agent_response"}}`, wantErr: true},
		{name: "agent without text", body: `{"call_sid":"a","event":{"type":"agent_response","agent_response_event":{"event_id":1}}}`, wantErr: true},
		{name: "agent null text", body: `{"call_sid":"a","event":{"type":"agent_response","agent_response_event":{"agent_response":null}}}`, wantErr: true},
		{name: "agent numeric text", body: `{"call_sid":"a","event":{"type":"agent_response","agent_response_event":{"agent_response":1}}}`, wantErr: true},
		{name: "user without payload", body: `{"call_sid":"a","event":{"type":"user_transcript"}}`, wantErr: true},
		{name: "tentative with final payload", body: `{"call_sid":"a","event":{"type":"tentative_user_transcript","user_transcription_event":{"user_transcript":"x"}}}`, wantErr: true},
		{name: "correction without corrected", body: `{"call_sid":"a","event":{"type":"agent_response_correction","agent_response_correction_event":{"original_agent_response":"x","event_id":1}}}`, wantErr: true},
		{name: "interruption without payload", body: `{"call_sid":"a","event":{"type":"interruption"}}`, wantErr: true},
		{name: "interruption without id", body: `{"call_sid":"a","event":{"type":"interruption","interruption_event":{}}}`, wantErr: true},
		{name: "interruption text id", body: `{"call_sid":"a","event":{"type":"interruption","interruption_event":{"event_id":"four"}}}`, wantErr: true},
		{name: "interruption id with a plus", body: `{"call_sid":"a","event":{"type":"interruption","interruption_event":{"event_id":"+5"}}}`, wantErr: true},
		{name: "interruption id with a minus", body: `{"call_sid":"a","event":{"type":"interruption","interruption_event":{"event_id":"-5"}}}`, wantErr: true},
		{name: "user id with a space", body: `{"call_sid":"a","event":{"type":"user_transcript","user_transcription_event":{"user_transcript":"x","event_id":" 5"}}}`, wantErr: true},
		{name: "agent empty id", body: `{"call_sid":"a","event":{"type":"agent_response","agent_response_event":{"agent_response":"x","event_id":""}}}`, wantErr: true},
		{name: "agent fractional id", body: `{"call_sid":"a","event":{"type":"agent_response","agent_response_event":{"agent_response":"x","event_id":1.5}}}`, wantErr: true},
		{name: "link without payload", body: `{"call_sid":"a","event":{"type":"conversation_initiation_metadata"}}`, wantErr: true},
		{name: "link without conversation", body: `{"call_sid":"a","event":{"type":"conversation_initiation_metadata","conversation_initiation_metadata_event":{}}}`, wantErr: true},
		{
			name: "conversation id only, string event id, empty text",
			body: `{"conversation_id":"conv_1","event":{"type":"agent_response","agent_response_event":{"agent_response":"","event_id":"7"}}}`,
			want: Live{ConversationID: "conv_1", Type: "agent_response", SourceEventID: 7, HasSourceEventID: true, Kind: KindTranscript, Role: "agent", Final: true},
		},
		{
			name: "user without event id",
			body: `{"call_sid":"a","event":{"type":"user_transcript","user_transcription_event":{"user_transcript":"hi"}}}`,
			want: Live{CallSID: "a", Type: "user_transcript", Kind: KindTranscript, Role: "user", Text: "hi", Final: true},
		},
		{
			name: "correction without original",
			body: `{"call_sid":"a","event":{"type":"agent_response_correction","agent_response_correction_event":{"corrected_agent_response":"y","event_id":3}}}`,
			want: Live{CallSID: "a", Type: "agent_response_correction", SourceEventID: 3, HasSourceEventID: true, Kind: KindTranscriptCorrection, Role: "agent", Text: "y", Final: true},
		},
		{
			name: "keys match exactly",
			body: `{"call_sid":"legit","CALL_SID":"CA_victim","Conversation_Id":"conv_victim","event":{"type":"interruption","TYPE":"agent_response","interruption_event":{"event_id":1}}}`,
			want: Live{CallSID: "legit", Type: "interruption", SourceEventID: 1, HasSourceEventID: true, Kind: KindInterruption, Final: true},
		},
		{name: "repeated call_sid", body: `{"call_sid":"legit","call_sid":"CA_victim","event":{"type":"interruption","interruption_event":{"event_id":1}}}`, wantErr: true},
		{name: "repeated key in the event", body: `{"call_sid":"a","event":{"type":"interruption","interruption_event":{"event_id":1,"event_id":2}}}`, wantErr: true},
		{name: "call_sid not UTF-8", body: "{\"call_sid\":\"a\xff\",\"event\":{\"type\":\"interruption\",\"interruption_event\":{\"event_id\":1}}}", wantErr: true},
		{name: "call_sid a lone surrogate", body: `{"call_sid":"a\udc00","event":{"type":"interruption","interruption_event":{"event_id":1}}}`, wantErr: true},
		{name: "call_sid with a space", body: `{"call_sid":"a b","event":{"type":"interruption","interruption_event":{"event_id":1}}}`, wantErr: true},
		{name: "conversation_id too long", body: `{"conversation_id":"` + strings.Repeat("c", 129) + `","event":{"type":"interruption","interruption_event":{"event_id":1}}}`, wantErr: true},
		{name: "linked conversation not UTF-8", body: "{\"call_sid\":\"a\",\"event\":{\"type\":\"conversation_initiation_metadata\",\"conversation_initiation_metadata_event\":{\"conversation_id\":\"c\xff\"}}}", wantErr: true},
		{
			name: "invalid UTF-8 in text replaced",
			body: "{\"call_sid\":\"a\",\"event\":{\"type\":\"agent_response\",\"agent_response_event\":{\"agent_response\":\"hi\xff \\udc00\"}}}",
			want: Live{CallSID: "a", Type: "agent_response", Kind: KindTranscript, Role: "agent", Text: "hi\ufffd \ufffd", Final: true},
		},
		{
			name: "unknown type",
			body: `{"call_sid":"a","event":{"type":"ping","ping_event":{"event_id":9,"ping_ms":null}}}`,
			want: Live{CallSID: "a", Type: "ping", Final: true},
		},
	}
	runDecodeCases(t, DecodeLive, tests)
}

// TestRepeatedKeyMessage: the answer to a repeated key says which key and
// where.
func TestRepeatedKeyMessage(t *testing.T) {
	_, err := DecodePostCall([]byte(`{"type":"post_call_transcription","event_timestamp":1,"data":{"conversation_id":"c",
		"conversation_initiation_client_data":{"dynamic_variables":{"call_sid":"legit_call","call_sid":"CA_victim"}}}}`))
	want := `duplicate key "call_sid" in /data/conversation_initiation_client_data/dynamic_variables: a key may appear only once in an object`
	if err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("error %v, want one ending %q", err, want)
	}
}

// TestLiveDataIsWhatJSONEncodingWrites: the data of live events, written
// by hand on the hot path, is byte for byte what encoding/json writes for
// the same fields, escapes included.
func TestLiveDataIsWhatJSONEncodingWrites(t *testing.T) {
	type transcript struct {
		Role          string `json:"role"`
		Text          string `json:"text"`
		Final         bool   `json:"final"`
		SourceEventID *int64 `json:"source_event_id,omitempty"`
	}
	type correction struct {
		Role          string `json:"role"`
		Text          string `json:"text"`
		OriginalText  string `json:"original_text"`
		SourceEventID *int64 `json:"source_event_id,omitempty"`
	}
	type interruption struct {
		SourceEventID *int64 `json:"source_event_id,omitempty"`
	}
	id := int64(42)
	text := "Hé <b>\"quoted\"</b> & \\ \n\u2028 \xff"
	for _, ev := range []Live{
		{Kind: KindTranscript, Role: "user", Text: text, Final: true, SourceEventID: 42, HasSourceEventID: true},
		{Kind: KindTranscript, Role: "agent", Text: "", Final: false},
		{Kind: KindTranscriptCorrection, Role: "agent", Text: text, OriginalText: text + "!", SourceEventID: 42, HasSourceEventID: true},
		{Kind: KindTranscriptCorrection, Role: "agent", Text: "a"},
		{Kind: KindInterruption, SourceEventID: 42, HasSourceEventID: true},
		{Kind: KindInterruption},
	} {
		var src *int64
		if ev.HasSourceEventID {
			src = &id
		}
		var v any
		switch ev.Kind {
		case KindTranscript:
			v = transcript{ev.Role, ev.Text, ev.Final, src}
		case KindTranscriptCorrection:
			v = correction{ev.Role, ev.Text, ev.OriginalText, src}
		default:
			v = interruption{src}
		}
		want, _ := json.Marshal(v)
		if got := liveData(nil, ev); string(got) != string(want) {
			t.Errorf("%+v:\n got %s\nwant %s", ev, got, want)
		}
	}
}
