package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// decodeFrame parses one client text frame. On error the returned frame
// still carries the request id if one could be read, so the error frame can
// echo it.
func decodeFrame(data []byte) (frame, *frameError) {
	var fs frameFields
	if !fs.scan(data) {
		if ferr := fs.unmarshal(data); ferr != nil {
			return frame{}, ferr
		}
	}
	return fs.frame()
}

// frameFields are the values of the fields a client frame may have, as
// JSON; nil when absent.
type frameFields struct {
	typ, id, call, since, epoch, history, token json.RawMessage
}

// set keeps v as the value of field key, if frames have such a field. A
// later duplicate replaces an earlier one, as in encoding/json.
func (fs *frameFields) set(key []byte, v json.RawMessage) {
	switch string(key) {
	case "type":
		fs.typ = v
	case "id":
		fs.id = v
	case "call":
		fs.call = v
	case "since":
		fs.since = v
	case "epoch":
		fs.epoch = v
	case "history":
		fs.history = v
	case "token":
		fs.token = v
	}
}

// unmarshal reads the fields of any frame with encoding/json.
func (fs *frameFields) unmarshal(data []byte) *frameError {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return &frameError{CodeInvalidFrame, "a frame must be a JSON object"}
		}
		return &frameError{CodeInvalidJSON, "frame is not valid JSON"}
	}
	for k, v := range raw {
		fs.set([]byte(k), v)
	}
	return nil
}

// scan reads the fields of the frames clients send, in one pass without
// allocating: a flat object whose keys and strings have no escapes and
// whose values are strings, numbers, true, false or null. It reports
// false for anything else, which unmarshal then reads: the result is
// the same either way.
func (fs *frameFields) scan(data []byte) bool {
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return skipSpace(data, i+1) == len(data)
	}
	for {
		keyEnd, ok := plainString(data, i)
		if !ok {
			return false
		}
		key := data[i+1 : keyEnd-1]
		i = skipSpace(data, keyEnd)
		if i == len(data) || data[i] != ':' {
			return false
		}
		v := skipSpace(data, i+1)
		vEnd, ok := plainValue(data, v)
		if !ok {
			return false
		}
		fs.set(key, data[v:vEnd:vEnd])
		i = skipSpace(data, vEnd)
		if i == len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return skipSpace(data, i+1) == len(data)
		default:
			return false
		}
	}
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// plainString returns the end of the JSON string at data[i], if it is
// one without escapes: valid UTF-8 with no quote, backslash or control
// character inside.
func plainString(data []byte, i int) (int, bool) {
	if i == len(data) || data[i] != '"' {
		return 0, false
	}
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return j + 1, utf8.Valid(data[i+1 : j])
		case c == '\\' || c < 0x20:
			return 0, false
		}
	}
	return 0, false
}

// plainValue returns the end of the JSON value at data[i], if it is a
// plain string, a number, true, false or null.
func plainValue(data []byte, i int) (int, bool) {
	if i == len(data) {
		return 0, false
	}
	switch c := data[i]; {
	case c == '"':
		return plainString(data, i)
	case c == '-' || c >= '0' && c <= '9':
		return number(data, i)
	}
	for _, lit := range [...]string{"true", "false", "null"} {
		if end := i + len(lit); end <= len(data) && string(data[i:end]) == lit {
			return end, true
		}
	}
	return 0, false
}

// number returns the end of the JSON number at data[i]:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func number(data []byte, i int) (int, bool) {
	if data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && data[i] >= '1' && data[i] <= '9':
		i = digits(data, i)
	default:
		return 0, false
	}
	if i < len(data) && data[i] == '.' {
		j := digits(data, i+1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := digits(data, i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

func digits(data []byte, i int) int {
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		i++
	}
	return i
}

// frame interprets the fields: what each frame type needs, of the right
// JSON type.
func (fs *frameFields) frame() (frame, *frameError) {
	f := frame{Since: -1}
	if fs.id != nil {
		var ok bool
		if f.ID, ok = jsonString(fs.id); !ok {
			return frame{}, &frameError{CodeInvalidFrame, `"id" must be a string`}
		}
	}
	var ok bool
	if f.Type, ok = jsonString(fs.typ); !ok || f.Type == "" {
		return f, &frameError{CodeInvalidFrame, `a frame needs a string "type"`}
	}
	switch f.Type {
	case typePing:
		return f, nil
	case typeAuth:
		if f.Token, ok = jsonString(fs.token); !ok || f.Token == "" {
			return f, &frameError{CodeMissingField, `auth needs "token": a JWT`}
		}
		return f, nil
	case typeSubscribe, typeUnsubscribe:
		if fs.call != nil {
			if f.Call, ok = jsonString(fs.call); !ok {
				return f, &frameError{CodeInvalidFrame, `"call" must be a string`}
			}
		}
		if strings.TrimSpace(f.Call) == "" {
			return f, &frameError{CodeMissingField, f.Type + ` needs "call": a call_sid or conversation_id`}
		}
		if f.Type == typeSubscribe {
			if ferr := fs.decodeSince(&f); ferr != nil {
				return f, ferr
			}
		}
		return f, nil
	}
	return f, &frameError{CodeUnknownType, `unknown frame type; use subscribe, unsubscribe, auth or ping`}
}

// jsonString decodes v, a valid JSON value, as encoding/json decodes it
// into a string: null leaves it empty. ok is false for a missing value
// or one of another type.
func jsonString(v json.RawMessage) (s string, ok bool) {
	if len(v) >= 2 && v[0] == '"' && bytes.IndexByte(v, '\\') < 0 && utf8.Valid(v) {
		return string(v[1 : len(v)-1]), true
	}
	if v == nil {
		return "", false
	}
	return s, json.Unmarshal(v, &s) == nil
}

// decodeSince reads "since" (an event_id, as a string of digits) with the
// optional "epoch" it belongs to, or "history":true (the same as
// "since":"0").
func (fs *frameFields) decodeSince(f *frame) *frameError {
	if v := fs.history; v != nil {
		switch string(v) {
		case "true":
			f.Since = 0
		case "false", "null":
		default:
			return &frameError{CodeInvalidFrame, `"history" must be true or false`}
		}
	}
	if v := fs.since; v != nil && string(v) != "null" {
		n, ok := decimal(v)
		if !ok {
			return &frameError{CodeInvalidFrame, `"since" must be an event_id: a string of digits like "42"`}
		}
		f.Since = n
	}
	if v := fs.epoch; v != nil && string(v) != "null" {
		n, ok := decimal(v)
		if !ok {
			return &frameError{CodeInvalidFrame, `"epoch" must be an epoch as the server sent it: a string of digits`}
		}
		f.Epoch, f.HasEpoch = n, true
	}
	return nil
}

// decimal reads a non-negative integer written as a string of digits (or,
// since ids look like numbers, as a bare JSON number) in canonical form.
func decimal(v json.RawMessage) (int64, bool) {
	s, ok := jsonString(v)
	if !ok {
		s = string(v)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0 && s == strconv.FormatInt(n, 10)
}
