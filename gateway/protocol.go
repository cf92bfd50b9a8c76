package gateway

import (
	"bytes"
	"encoding/json"
	"sync"
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

// reasonForbidden is the reason of an unsubscribed frame the server sends
// on its own when the call's org and the connection's token no longer
// match.
const reasonForbidden = "forbidden"

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
	// Epoch is the epoch Since belongs to, when HasEpoch; without it,
	// Since is read in the call's current epoch.
	Epoch    int64
	HasEpoch bool
	// Token is an auth frame's token.
	Token string
}

// frameError is a protocol error to report to the client.
type frameError struct {
	Code    string
	Message string
}

func (e *frameError) Error() string { return e.Code + ": " + e.Message }

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
		// Epoch and EventID are the position the events that follow
		// continue after: the call's last event's for a subscribe that
		// starts now, the since of a resume (or where the store can
		// continue from, when it lost what the client had). "0" and "0"
		// before the call's first event.
		Epoch   string `json:"epoch"`
		EventID string `json:"event_id"`
		// Recovered is set when the client asked to resume: whether
		// every event after its since was replayed.
		Recovered *bool `json:"recovered,omitempty"`
	}
	unsubscribedFrame struct {
		Type    string `json:"type"`
		ID      string `json:"id,omitempty"`
		CallSID string `json:"call_sid"`
		// Reason is set when the server ended the subscription itself.
		Reason string `json:"reason,omitempty"`
	}
	// resetFrame tells a follower that the call's numbering went back
	// (Redis lost state): the events that follow continue after the
	// position it gives, and earlier ones may be lost.
	resetFrame struct {
		Type      string `json:"type"`
		CallSID   string `json:"call_sid"`
		Epoch     string `json:"epoch"`
		EventID   string `json:"event_id"`
		Recovered bool   `json:"recovered"`
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

// frameBuffers hold client frames while they are handled. Taken only once
// a frame arrives, so a connection waiting for one holds none.
var frameBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putFrameBuffer(buf *bytes.Buffer) {
	if buf.Cap() <= 64<<10 {
		frameBuffers.Put(buf)
	}
}
