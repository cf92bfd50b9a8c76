package tail

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// frame is a server frame, every type's fields in one struct; see
// docs/PROTOCOL.md.
type frame struct {
	Type       string          `json:"type"`
	ID         string          `json:"id"`
	Code       string          `json:"code"`
	Message    string          `json:"message"`
	InstanceID string          `json:"instance_id"`
	Call       json.RawMessage `json:"call"`
	Recovered  *bool           `json:"recovered"`
	EventID    decimal         `json:"event_id"`
	Epoch      decimal         `json:"epoch"`
	Event      string          `json:"event"`
	CallSID    string          `json:"call_sid"`
	Time       string          `json:"time"`
	Data       json.RawMessage `json:"data"`
	Topic      string          `json:"topic"`
	Version    int64           `json:"version"`
	Reason     string          `json:"reason"`
	ExpiresAt  string          `json:"expires_at"`
}

// callRecord is the call in a subscribed frame.
type callRecord struct {
	CallSID        string `json:"call_sid"`
	ConversationID string `json:"conversation_id"`
	Status         string `json:"status"`
}

// decimal is an event_id or epoch: a string of digits, read from a JSON
// string or number.
type decimal string

func (d *decimal) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*d = decimal(s)
		return nil
	}
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	if !isDigits(string(b)) {
		return fmt.Errorf("not a decimal: %s", b)
	}
	*d = decimal(b)
	return nil
}

// eventText is what a readable line says after an event's id: its name
// and what it carries.
func eventText(name string, data json.RawMessage) string {
	var d struct {
		Status            string   `json:"status"`
		Role              string   `json:"role"`
		Text              string   `json:"text"`
		Final             *bool    `json:"final"`
		Transcript        []any    `json:"transcript"`
		Analysis          analysis `json:"analysis"`
		DurationSecs      float64  `json:"call_duration_secs"`
		TerminationReason string   `json:"termination_reason"`
		Reason            string   `json:"reason"`
		Provider          string   `json:"provider"`
		AudioBytes        *int64   `json:"audio_bytes"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return name + " " + clean(compact(data))
	}
	switch name {
	case "status":
		return name + " " + clean(d.Status)
	case "transcript":
		who := clean(d.Role)
		if d.Final != nil && !*d.Final {
			who += " (tentative)"
		}
		return name + " " + who + ": " + clean(d.Text)
	case "transcript_correction":
		return name + " " + clean(d.Role) + " (corrected): " + clean(d.Text)
	case "interruption":
		return name
	case "completed":
		var parts []string
		if d.DurationSecs > 0 {
			parts = append(parts, strconv.FormatFloat(d.DurationSecs, 'f', -1, 64)+" s")
		}
		if d.Transcript != nil {
			parts = append(parts, fmt.Sprintf("%d turns", len(d.Transcript)))
		}
		if d.Analysis.CallSuccessful != "" {
			parts = append(parts, clean(d.Analysis.CallSuccessful))
		}
		s := name + " " + strings.Join(parts, ", ")
		if d.Analysis.Summary != "" {
			s += ": " + clean(d.Analysis.Summary)
		}
		if d.TerminationReason != "" {
			s += " (ended: " + clean(d.TerminationReason) + ")"
		}
		return strings.TrimRight(s, " ")
	case "failed":
		s := name + " " + clean(d.Reason)
		if d.Reason == "" {
			s += "(no reason given)"
		}
		if d.Provider != "" {
			s += " (" + clean(d.Provider) + ")"
		}
		return s
	case "audio_available":
		if d.AudioBytes != nil {
			return fmt.Sprintf("%s %d bytes", name, *d.AudioBytes)
		}
	}
	return strings.TrimRight(clean(name)+" "+clean(compact(data)), " ")
}

// analysis is the part of ElevenLabs' post-call analysis a line shows.
// It is passed through by the gateway, so anything else in it is ignored
// and a value of another shape shows nothing.
type analysis struct {
	CallSuccessful string
	Summary        string
}

func (a *analysis) UnmarshalJSON(b []byte) error {
	var v struct {
		CallSuccessful any `json:"call_successful"`
		Summary        any `json:"transcript_summary"`
	}
	if json.Unmarshal(b, &v) == nil {
		a.CallSuccessful, _ = v.CallSuccessful.(string)
		a.Summary, _ = v.Summary.(string)
	}
	return nil
}

// clock is an event's time as a readable line shows it: local time to
// the millisecond, or the time as sent if it does not parse.
func clock(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return clean(s)
	}
	return t.Local().Format("15:04:05.000")
}

// compact returns JSON on one line.
func compact(b json.RawMessage) string {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return string(b)
	}
	return buf.String()
}

// clean makes text from the gateway safe to print on one terminal line:
// line breaks and other control characters (which could also drive the
// terminal) are written as escapes.
func clean(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteByte(' ')
		case unicode.IsControl(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
