package gateway

import (
	"encoding/json"
	"testing"
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
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, ferr := decodeFrame(data)
		if ferr != nil {
			if ferr.Code == "" || ferr.Message == "" {
				t.Fatalf("error without code or message: %+v", ferr)
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
