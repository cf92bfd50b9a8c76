// Package wire is the call event frame: built by calls, read by the
// gateway and the load generator, here only.
//
// An event frame is
//
//	{"type":"event","event_id":"<n>","epoch":"<g>","event":"<name>","call_sid":<string>,
//	 "conversation_id":<string>,"time":"<RFC 3339, UTC>","data":<JSON>}
//
// in exactly this field order, on one line. The epoch is absent from
// frames published before epochs existed (read as epoch 0), and
// conversation_id is absent when the call has none. The order is what lets
// readers take the id, the epoch and the time at fixed places, without
// decoding the frame: the id and the epoch right after Prefix, the time
// after the strings of event, call_sid and conversation_id.
//
// Frames are numbered where they are published (a Lua script in Redis),
// so a frame is built in three parts: Prefix, then the decimal event_id
// (and EpochSep and the decimal epoch), then a tail from AppendTail.
package wire

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

const (
	// Prefix starts every event frame; the decimal event_id follows.
	Prefix = `{"type":"event","event_id":"`
	// EpochSep follows the event_id of a frame that has an epoch; the
	// decimal epoch follows it.
	EpochSep = `","epoch":"`
)

// Tail is what an event frame says after its event_id and epoch.
type Tail struct {
	Event          string
	CallSID        string
	ConversationID string // omitted when empty
	Time           time.Time
	// Data is the event's data as JSON, written as it is: the caller
	// vouches that it is one valid JSON value in valid UTF-8 (browsers
	// close a socket on a frame that is not). Empty writes null.
	Data []byte
}

// Fixed parts of the frame after the event_id (and epoch).
const (
	eventKey   = `","event":`
	callKey    = `,"call_sid":`
	convKey    = `,"conversation_id":`
	timeKey    = `,"time":"`
	dataKey    = `","data":`
	timeLayout = time.RFC3339Nano
)

// ConvKey comes before the conversation_id's JSON string in a frame.
const ConvKey = convKey

// AppendSplitTail appends to before and after the frame's tail without
// its conversation_id: before ends with the call_sid, after starts with
// the time. The whole tail is before, ConvKey and the conversation_id as a
// JSON string (when the call has one), then after: the form the publish
// script fills in with the conversation_id it reads from the call's
// record. t.ConversationID is ignored.
func AppendSplitTail(before, after []byte, t Tail) ([]byte, []byte) {
	before = append(before, eventKey...)
	before = appendString(before, t.Event)
	before = append(before, callKey...)
	before = appendString(before, t.CallSID)
	after = append(after, timeKey...)
	after = t.Time.UTC().AppendFormat(after, timeLayout)
	after = append(after, dataKey...)
	if len(t.Data) == 0 {
		after = append(after, "null"...)
	} else {
		after = append(after, t.Data...)
	}
	return before, append(after, '}')
}

// AppendString appends s as a JSON string, as frames write strings.
func AppendString(dst []byte, s string) []byte { return appendString(dst, s) }

// AppendTail appends the frame's tail to dst: from the quote that closes
// the event_id (or the epoch) to the closing brace. Strings are escaped as
// encoding/json escapes them, invalid UTF-8 replaced by U+FFFD; the time
// is written in UTC.
func AppendTail(dst []byte, t Tail) []byte {
	dst, after := AppendSplitTail(dst, nil, t)
	if t.ConversationID != "" {
		dst = append(dst, convKey...)
		dst = appendString(dst, t.ConversationID)
	}
	return append(dst, after...)
}

// TailCap is a capacity that fits AppendTail's output for t, unless its
// strings need escapes.
func TailCap(t Tail) int {
	return len(eventKey) + len(callKey) + len(convKey) + len(timeKey) + len(dataKey) +
		len(timeLayout) + len(t.Event) + len(t.CallSID) + len(t.ConversationID) + len(t.Data) + len("null}")
}

// Build returns a whole frame: Prefix, id, the epoch unless it is 0, and
// tail (from AppendTail). The Lua script that publishes events builds the
// same bytes.
func Build(id, epoch int64, tail []byte) []byte {
	b := make([]byte, 0, len(Prefix)+len(EpochSep)+40+len(tail))
	b = append(b, Prefix...)
	b = strconv.AppendInt(b, id, 10)
	if epoch != 0 {
		b = append(b, EpochSep...)
		b = strconv.AppendInt(b, epoch, 10)
	}
	return append(b, tail...)
}

// Parse reads an event frame's event_id and epoch (0 when it has none)
// from where Build puts them, without decoding the rest. ok is false for
// anything that is not an event frame with an event_id above 0.
func Parse(frame []byte) (id, epoch int64, ok bool) {
	id, epoch, end := head(frame)
	return id, epoch, end > 0
}

// head reads the event_id and epoch, and returns the index of the quote
// that closes the last of them; end is 0 for a frame that is not an
// event.
func head(frame []byte) (id, epoch int64, end int) {
	if !hasAt(frame, 0, Prefix) {
		return 0, 0, 0
	}
	id, i := number(frame, len(Prefix))
	if i < 0 || id <= 0 || i == len(frame) || frame[i] != '"' {
		return 0, 0, 0
	}
	if hasAt(frame, i, EpochSep) {
		epoch, i = number(frame, i+len(EpochSep))
		if i < 0 || i == len(frame) || frame[i] != '"' {
			return 0, 0, 0
		}
	}
	return id, epoch, i
}

// PublishedAt reads an event frame's "time", in Unix nanoseconds; 0 if the
// frame is not an event frame or its time is missing or invalid. The time
// is read at its place after the strings of event, call_sid and
// conversation_id, so nothing in those strings or in data can stand in
// for it.
func PublishedAt(frame []byte) int64 {
	i := timeAt(frame)
	if i < 0 {
		return 0
	}
	end := bytes.IndexByte(frame[i:], '"')
	if end < 0 {
		return 0
	}
	var t time.Time
	if t.UnmarshalText(frame[i:i+end]) != nil {
		return 0
	}
	return t.UnixNano()
}

// EventName reads an event frame's "event"; ok is false if the frame is not
// an event frame.
func EventName(frame []byte) (name string, ok bool) {
	_, _, i := head(frame)
	if i == 0 || !hasAt(frame, i, eventKey) {
		return "", false
	}
	start := i + len(eventKey)
	end := skipString(frame, start)
	if end < 0 {
		return "", false
	}
	s := frame[start+1 : end-1]
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s), true
	}
	return unquote(frame[start:end])
}

// timeAt returns the index of the first byte of the time's value, or -1.
func timeAt(frame []byte) int {
	_, _, i := head(frame)
	if i == 0 {
		return -1
	}
	i = field(frame, i, eventKey)
	i = field(frame, i, callKey)
	if i >= 0 && hasAt(frame, i, convKey) {
		i = field(frame, i, convKey)
	}
	if i < 0 || !hasAt(frame, i, timeKey) {
		return -1
	}
	return i + len(timeKey)
}

// field skips key, found at frame[i], and the JSON string after it, and
// returns the index after the string; -1 if they are not there (or i is
// -1).
func field(frame []byte, i int, key string) int {
	if i < 0 || !hasAt(frame, i, key) {
		return -1
	}
	return skipString(frame, i+len(key))
}

// hasAt reports whether s is in frame at i.
func hasAt(frame []byte, i int, s string) bool {
	return len(frame)-i >= len(s) && string(frame[i:i+len(s)]) == s
}

// skipString returns the index after the JSON string that starts at
// frame[i], or -1 if there is none.
func skipString(frame []byte, i int) int {
	if i >= len(frame) || frame[i] != '"' {
		return -1
	}
	for i++; i < len(frame); i++ {
		switch frame[i] {
		case '\\':
			i++ // the escaped byte; \uXXXX's digits are skipped as plain bytes
		case '"':
			return i + 1
		}
	}
	return -1
}

// number reads the decimal integer at frame[i], in canonical form (no sign,
// no leading zero), and returns it with the index after it; the index is
// -1 if there is no such number or it overflows int64.
func number(frame []byte, i int) (n int64, end int) {
	start := i
	for ; i < len(frame) && frame[i] >= '0' && frame[i] <= '9'; i++ {
		d := int64(frame[i] - '0')
		if n > (1<<63-1-d)/10 {
			return 0, -1
		}
		n = n*10 + d
	}
	if i == start || frame[start] == '0' && i-start > 1 {
		return 0, -1
	}
	return n, i
}

// unquote decodes the JSON string s.
func unquote(s []byte) (string, bool) {
	var v string
	return v, json.Unmarshal(s, &v) == nil
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped exactly as
// encoding/json.Marshal escapes it: quote, backslash and control
// characters; <, > and & (for HTML); U+2028 and U+2029 (for JavaScript);
// and each byte of invalid UTF-8 as \ufffd.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// OrgNoticePrefix starts the notice published on a call's channel when an
// org is set on an existing call: {"type":"org","org":<string>}. Instances
// that follow the call then check that every follower may still see it.
// It is not an event and never reaches clients.
const OrgNoticePrefix = `{"type":"org","org":`

// ParseOrgNotice reads the org of an org notice.
func ParseOrgNotice(frame []byte) (org string, ok bool) {
	if !hasAt(frame, 0, OrgNoticePrefix) {
		return "", false
	}
	end := skipString(frame, len(OrgNoticePrefix))
	if end < 0 || end != len(frame)-1 || frame[end] != '}' {
		return "", false
	}
	return unquote(frame[len(OrgNoticePrefix):end])
}
