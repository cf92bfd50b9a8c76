package calls

import (
	"encoding/json"
	"errors"
	"strconv"
)

// ErrMalformed reports a webhook or live-event body that cannot be used. A
// receiver answers it with 4xx: resending the same bytes cannot succeed.
var ErrMalformed = errors.New("calls: malformed event body")

// isJSONObject reports whether body starts like a JSON object. Unmarshal
// alone would accept a top-level null into a struct and leave it empty.
func isJSONObject(body []byte) bool {
	for _, c := range body {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return true
		default:
			return false
		}
	}
	return false
}

// jsonInt is an integer written either as a JSON number or as a string of
// digits: ElevenLabs has sent event_timestamp both ways. It never fails, so
// each caller decides whether a bad value matters.
type jsonInt struct {
	n   int64
	set bool // a non-null value was present
	ok  bool // and it was an integer
}

// maxIntLen is longer than any int64 in decimal; longer input is not
// worth converting.
const maxIntLen = 24

func (i *jsonInt) UnmarshalJSON(b []byte) error {
	*i = jsonInt{}
	if string(b) == "null" {
		return nil
	}
	i.set = true
	if len(b) >= 2 && b[0] == '"' {
		// A string holds digits only: no sign, no space.
		if n, err := parseDigits(string(b[1 : len(b)-1])); err == nil {
			i.n, i.ok = n, true
		}
		return nil
	}
	if len(b) == 0 || len(b) > maxIntLen {
		return nil
	}
	if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		i.n, i.ok = n, true
	}
	return nil
}

// looseString keeps a JSON string and ignores any other value. It is for
// optional fields in provider-controlled parts of a payload, whose shape the
// gateway does not own and must not fail on.
type looseString string

func (s *looseString) UnmarshalJSON(b []byte) error {
	*s = ""
	if len(b) == 0 || b[0] != '"' {
		return nil
	}
	var v string
	if json.Unmarshal(b, &v) == nil {
		*s = looseString(v)
	}
	return nil
}
