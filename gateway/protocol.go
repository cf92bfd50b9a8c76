package gateway

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Client frame types.
const (
	typeSubscribe   = "subscribe"
	typeUnsubscribe = "unsubscribe"
	typePing        = "ping"
	typeAuth        = "auth"
)

// Error codes sent in {"type":"error","code":…} frames. The connection stays
// open after each of them.
const (
	// CodeInvalidJSON: the frame is not valid JSON.
	CodeInvalidJSON = "invalid_json"
	// CodeInvalidFrame: valid JSON, but not a frame object with a string
	// "type" (or a binary frame).
	CodeInvalidFrame = "invalid_frame"
	// CodeUnknownType: "type" is not one the server knows.
	CodeUnknownType = "unknown_type"
	// CodeMissingField: a required field is missing or empty.
	CodeMissingField = "missing_field"
	// CodeCallNotFound: no call has that call_sid or conversation_id.
	CodeCallNotFound = "call_not_found"
	// CodeNotSubscribed: unsubscribe from a call this connection does not
	// follow.
	CodeNotSubscribed = "not_subscribed"
	// CodeTooManySubscriptions: the connection follows the maximum number
	// of calls already.
	CodeTooManySubscriptions = "too_many_subscriptions"
	// CodeUnavailable: the gateway could not reach Redis; retry later.
	CodeUnavailable = "unavailable"
	// CodeAuthNotNeeded: an auth frame on a gateway that has no
	// authentication configured.
	CodeAuthNotNeeded = "auth_not_needed"
)

// Close codes the server uses besides the standard ones (1001 going away
// on shutdown, 1009 for a frame over the size limit).
const (
	// CloseSendQueueOverflow: the client did not read fast enough and its
	// send queue filled up. Reconnect and subscribe again.
	CloseSendQueueOverflow = 4008
)

// closeTryAgainLater (1013) closes a topic socket whose topic could not be
// loaded: the event bus is unreachable.
const closeTryAgainLater = 1013

// frame is a client frame. Unknown fields are ignored.
type frame struct {
	Type string
	ID   string
	Call string
	// Since is the event_id to resume after; -1 when not given.
	Since int64
	// Token is an auth frame's token.
	Token string
}

// frameError is a protocol error to report to the client.
type frameError struct {
	Code    string
	Message string
}

func (e *frameError) Error() string { return e.Code + ": " + e.Message }

// decodeFrame parses one client text frame. On error the returned frame
// still carries the request id if one could be read, so the error frame can
// echo it.
func decodeFrame(data []byte) (frame, *frameError) {
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
			if ferr := decodeSince(raw, &f); ferr != nil {
				return f, ferr
			}
		}
		return f, nil
	}
	return f, &frameError{CodeUnknownType, `unknown frame type; use subscribe, unsubscribe, auth or ping`}
}

// decodeSince reads "since" (an event_id, as a string of digits) or
// "history":true (the same as "since":"0").
func decodeSince(raw map[string]json.RawMessage, f *frame) *frameError {
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

// Server frames.
type (
	welcomeFrame struct {
		Type         string `json:"type"`
		ConnectionID string `json:"connection_id"`
		InstanceID   string `json:"instance_id,omitempty"`
		User         string `json:"user"`
	}
	subscribedFrame struct {
		Type string          `json:"type"`
		ID   string          `json:"id,omitempty"`
		Call json.RawMessage `json:"call"`
		// Recovered is set when the client asked to resume: whether
		// every event after its since was replayed.
		Recovered *bool `json:"recovered,omitempty"`
	}
	unsubscribedFrame struct {
		Type    string `json:"type"`
		ID      string `json:"id,omitempty"`
		CallSID string `json:"call_sid"`
	}
	tokenExpiringFrame struct {
		Type      string    `json:"type"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	authenticatedFrame struct {
		Type      string     `json:"type"`
		User      string     `json:"user"`
		ExpiresAt *time.Time `json:"expires_at,omitempty"`
	}
	pongFrame struct {
		Type string `json:"type"`
		ID   string `json:"id,omitempty"`
	}
	errorFrame struct {
		Type    string `json:"type"`
		ID      string `json:"id,omitempty"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}
)

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own frame structs reach here; they always encode.
		panic("gateway: encode frame: " + err.Error())
	}
	return b
}
