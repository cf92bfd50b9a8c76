package gateway

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeFrame checks that no client frame crashes the decoder, and that
// what it accepts is well-formed.
func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"subscribe","id":"r1","call":"EL_1"}`,
		`{"type":"unsubscribe","id":"r2","call":"conv_1"}`,
		`{"type":"ping"}`,
		`{"type":"subscribe","call":"  "}`,
		`{"type":7}`,
		`[{"type":"ping"}]`,
		`null`,
		"{\"type\":\"\xff\"}",
		`{"type":"subscribe","call":"a","call":"b"}`,
		// Shapes the one-pass scanner reads, and shapes it leaves to
		// encoding/json: both must answer as the reference does.
		" \t\r\n{ \"type\" : \"subscribe\" , \"call\" : \"EL_1\" , \"since\" : 42 } \n",
		`{"type":"subscribe","call":"EL_1","since":-0.5e+3,"x":true,"y":false,"z":null}`,
		`{"type":"subscribe","call":"EL_1","since":"007"}`,
		`{"type":"subscribe","call":"EL_1","history":true,"since":null}`,
		`{"type":"subscribe","call":"EL_1","history":"true"}`,
		`{"type":"subscribe","call":"EL_1","history":1}`,
		`{"type":"subscribe","call":"EL_\u0031","id":"\"q\""}`,
		`{"t\u0079pe":"ping","id":7}`,
		`{"type":"ping","id":null,"extra":{"a":[1,2,{"b":"c"}]}}`,
		`{"type":"ping","n":01}`,
		`{"type":"ping","n":1.}`,
		`{"type":"ping","n":-}`,
		`{"type":"ping","n":tru}`,
		`{"type":"ping"}x`,
		`{"type":"ping",}`,
		`{}`,
		` { } `,
		`{"type":"auth","token":"a.b.c"}`,
		`{"type":"auth","token":""}`,
		"{\"type\":\"ping\",\"id\":\"tab\there\"}",
		"{\"ty\xffpe\":\"ping\"}",
		`{"Type":"ping"}`,
		`{"type":"unsubscribe","call":null}`,
		`{"type":"subscribe","call":"EL_1","since":"18446744073709551616"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, ferr := decodeFrame(data)
		if wantFr, wantErr := referenceDecode(data); !reflect.DeepEqual(fr, wantFr) || !reflect.DeepEqual(ferr, wantErr) {
			t.Fatalf("%q: decoded %+v, %+v; the reference decoder gives %+v, %+v", data, fr, ferr, wantFr, wantErr)
		}
		// Decoded strings are echoed in replies (id) or looked up and
		// logged (call): they must be valid UTF-8, as every frame sent is.
		for _, s := range []string{fr.ID, fr.Type, fr.Call, fr.Token} {
			if !utf8.ValidString(s) {
				t.Fatalf("%q: decoded %q, not valid UTF-8", data, s)
			}
		}
		if ferr != nil {
			if ferr.Code == "" || ferr.Message == "" {
				t.Fatalf("error without code or message: %+v", ferr)
			}
			if !utf8.ValidString(ferr.Message) {
				t.Fatalf("%q: error message %q is not valid UTF-8", data, ferr.Message)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		switch fr.Type {
		case typePing:
		case typeAuth:
			if fr.Token == "" {
				t.Fatalf("accepted auth without a token: %q", data)
			}
		case typeSubscribe, typeUnsubscribe:
			if fr.Call == "" {
				t.Fatalf("accepted %s without a call: %q", fr.Type, data)
			}
			if fr.Since < -1 {
				t.Fatalf("accepted since %d: %q", fr.Since, data)
			}
		default:
			t.Fatalf("accepted unknown type %q", fr.Type)
		}
	})
}

// referenceDecode is the decoder that decodeFrame replaced, which
// read every frame with encoding/json: decodeFrame must give the same
// answer for every input.
func referenceDecode(data []byte) (frame, *frameError) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return frame{}, &frameError{CodeInvalidFrame, "a frame must be a JSON object"}
		}
		return frame{}, &frameError{CodeInvalidJSON, "frame is not valid JSON"}
	}
	f := frame{Since: -1}
	if v, ok := raw["id"]; ok {
		if json.Unmarshal(v, &f.ID) != nil {
			return frame{}, &frameError{CodeInvalidFrame, `"id" must be a string`}
		}
	}
	v, ok := raw["type"]
	if !ok || json.Unmarshal(v, &f.Type) != nil || f.Type == "" {
		return f, &frameError{CodeInvalidFrame, `a frame needs a string "type"`}
	}
	switch f.Type {
	case typePing:
		return f, nil
	case typeAuth:
		if v, ok := raw["token"]; !ok || json.Unmarshal(v, &f.Token) != nil || f.Token == "" {
			return f, &frameError{CodeMissingField, `auth needs "token": a JWT`}
		}
		return f, nil
	case typeSubscribe, typeUnsubscribe:
		v, ok := raw["call"]
		if ok && json.Unmarshal(v, &f.Call) != nil {
			return f, &frameError{CodeInvalidFrame, `"call" must be a string`}
		}
		if strings.TrimSpace(f.Call) == "" {
			return f, &frameError{CodeMissingField, f.Type + ` needs "call": a call_sid or conversation_id`}
		}
		if f.Type == typeSubscribe {
			if ferr := referenceSince(raw, &f); ferr != nil {
				return f, ferr
			}
		}
		return f, nil
	}
	return f, &frameError{CodeUnknownType, `unknown frame type; use subscribe, unsubscribe, auth or ping`}
}

// referenceSince reads "since" (an event_id, as a string of digits) or
// "history":true (the same as "since":"0").
func referenceSince(raw map[string]json.RawMessage, f *frame) *frameError {
	if v, ok := raw["history"]; ok {
		var all bool
		if json.Unmarshal(v, &all) != nil {
			return &frameError{CodeInvalidFrame, `"history" must be true or false`}
		}
		if all {
			f.Since = 0
		}
	}
	v, ok := raw["since"]
	if !ok || string(v) == "null" {
		return nil
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		// Accept a bare number too: event ids look like numbers.
		s = string(v)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || s != strconv.FormatInt(n, 10) {
		return &frameError{CodeInvalidFrame, `"since" must be an event_id: a string of digits like "42"`}
	}
	f.Since = n
	return nil
}
