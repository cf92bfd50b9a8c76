package calls

import (
	"encoding/json"
	"fmt"

	"github.com/go-json-experiment/json/jsontext"
)

// ElevenLabs post-call webhook types that DecodePostCall validates.
const (
	TypePostCallTranscription = "post_call_transcription"
	TypePostCallAudio         = "post_call_audio"
	TypeCallInitiationFailure = "call_initiation_failure"
)

// PostCall is the part of an ElevenLabs post-call webhook the gateway uses.
type PostCall struct {
	Type           string
	EventTimestamp int64
	ConversationID string
	AgentID        string
	// CallSIDs are candidate call identifiers, most preferred first: the
	// application's own id from the dynamic variables, then the telephony
	// provider's. Empty and repeated values are dropped.
	CallSIDs []string
	// Transcript and Analysis are passed through as JSON, compacted, with
	// invalid UTF-8 in their strings replaced by U+FFFD; nil when absent or
	// null.
	Transcript json.RawMessage
	Analysis   json.RawMessage
	Metadata   PostCallMetadata
	// FailureReason is set for call_initiation_failure, e.g. "busy".
	FailureReason string
	// Provider is the telephony provider, e.g. "twilio" or "sip".
	Provider string
	// AudioBytes approximates the decoded size of full_audio; the audio
	// itself is never kept because it can be tens of megabytes.
	AudioBytes int64
}

// PostCallMetadata holds the few metadata fields that are safe to keep and
// log. They are best effort: a value of an unexpected type is left zero
// rather than failing the whole webhook.
type PostCallMetadata struct {
	CallDurationSecs  int64
	TerminationReason string
	StartTimeUnixSecs int64
}

type postCallBody struct {
	Type           string               `json:"type"`
	EventTimestamp jsonInt              `json:"event_timestamp"`
	Data           shaped[postCallData] `json:"data"`
}

// postCallData is ElevenLabs' part of the payload. Every field tolerates a
// value of another shape (see shaped, looseString, idString.loose), so a
// change there never fails a webhook whose type callgate does not act on;
// DecodePostCall checks what it needs of the types it acts on.
type postCallData struct {
	AgentID        looseString                `json:"agent_id"`
	ConversationID idString                   `json:"conversation_id"`
	Transcript     jsontext.Value             `json:"transcript"`
	Analysis       jsontext.Value             `json:"analysis"`
	FailureReason  looseString                `json:"failure_reason"`
	FullAudio      audioSize                  `json:"full_audio"`
	Metadata       shaped[postCallMeta]       `json:"metadata"`
	ClientData     shaped[postCallClientData] `json:"conversation_initiation_client_data"`
}

type postCallMeta struct {
	Type              looseString           `json:"type"`
	StartTimeUnixSecs jsonInt               `json:"start_time_unix_secs"`
	CallDurationSecs  jsonInt               `json:"call_duration_secs"`
	TerminationReason looseString           `json:"termination_reason"`
	PhoneCall         shaped[postCallPhone] `json:"phone_call"`
	// Body is the provider's own callback body for failures: SIP spells
	// the id call_sid, Twilio CallSid.
	Body shaped[postCallFailureBody] `json:"body"`
}

type postCallPhone struct {
	Type    looseString `json:"type"`
	CallSID idString    `json:"call_sid"`
}

type postCallFailureBody struct {
	CallSID       idString `json:"call_sid"`
	TwilioCallSID idString `json:"CallSid"`
}

type postCallClientData struct {
	DynamicVariables shaped[struct {
		CallSID idString `json:"call_sid"`
	}] `json:"dynamic_variables"`
}

// DecodePostCall decodes an ElevenLabs post-call webhook body. Known types
// must carry a type, an integer event_timestamp and data.conversation_id;
// other types decode as far as they can, since callers ignore them. Keys
// match exactly and may not repeat (see inputOptions), and the ids that
// select a call are exact (see idString). Errors wrap ErrMalformed.
func DecodePostCall(body []byte) (PostCall, error) {
	if !isJSONObject(body) {
		return PostCall{}, fmt.Errorf("%w: body is not a JSON object", ErrMalformed)
	}
	var in postCallBody
	if err := unmarshalInput(body, &in); err != nil {
		return PostCall{}, fmt.Errorf("%w: %s", ErrMalformed, inputProblem(err))
	}
	if in.Type == "" {
		return PostCall{}, fmt.Errorf("%w: missing type", ErrMalformed)
	}
	d := &in.Data.v
	meta := &d.Metadata.v
	pc := PostCall{
		Type:           in.Type,
		EventTimestamp: in.EventTimestamp.n,
		AgentID:        string(d.AgentID),
		Metadata: PostCallMetadata{
			CallDurationSecs:  meta.CallDurationSecs.n,
			TerminationReason: string(meta.TerminationReason),
			StartTimeUnixSecs: meta.StartTimeUnixSecs.n,
		},
		FailureReason: string(d.FailureReason),
		AudioBytes:    d.FullAudio.n,
	}
	// Candidate call ids, most preferred first; the failure body's only
	// for failures.
	ids := []namedID{
		{d.ClientData.v.DynamicVariables.v.CallSID, "data.conversation_initiation_client_data.dynamic_variables.call_sid"},
		{meta.PhoneCall.v.CallSID, "data.metadata.phone_call.call_sid"},
	}
	if in.Type == TypeCallInitiationFailure {
		ids = append(ids, namedID{meta.Body.v.CallSID, "data.metadata.body.call_sid"},
			namedID{meta.Body.v.TwilioCallSID, "data.metadata.body.CallSid"})
		pc.Provider = string(meta.Type)
	} else {
		pc.Provider = string(meta.PhoneCall.v.Type)
	}
	if !isKnownPostCallType(in.Type) {
		// Callers ignore it: whatever is usable, nothing is required.
		pc.ConversationID, _ = d.ConversationID.strict("")
		for _, c := range ids {
			id, _ := c.id.loose("")
			pc.CallSIDs = appendCallSID(pc.CallSIDs, id)
		}
		return pc, nil
	}

	if !in.EventTimestamp.ok {
		return PostCall{}, fmt.Errorf("%w: event_timestamp missing or not an integer", ErrMalformed)
	}
	if in.Data.wrong {
		return PostCall{}, fmt.Errorf("%w: data is not an object", ErrMalformed)
	}
	conv, err := d.ConversationID.strict("data.conversation_id")
	if err != nil {
		return PostCall{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if conv == "" {
		return PostCall{}, fmt.Errorf("%w: missing data.conversation_id", ErrMalformed)
	}
	pc.ConversationID = conv
	if d.FullAudio.bad {
		return PostCall{}, fmt.Errorf("%w: data.full_audio is not a string", ErrMalformed)
	}
	for _, c := range ids {
		id, err := c.id.loose(c.field)
		if err != nil {
			return PostCall{}, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		pc.CallSIDs = appendCallSID(pc.CallSIDs, id)
	}
	// Text passes through as JSON: valid UTF-8 from here on, so that every
	// frame built of it is (a browser closes a socket, 1007, on a frame that
	// is not, and every replay of the frame would close it again).
	if pc.Transcript, err = passThrough(d.Transcript); err != nil {
		return PostCall{}, err
	}
	if pc.Analysis, err = passThrough(d.Analysis); err != nil {
		return PostCall{}, err
	}
	return pc, nil
}

// namedID is a candidate id and where it is in the body, for messages.
type namedID struct {
	id    idString
	field string
}

// passThrough returns a provider's JSON value for subscribers: nil when
// absent or null, else compacted with its strings in valid UTF-8 (invalid
// bytes and escaped lone surrogates replaced by U+FFFD).
func passThrough(v jsontext.Value) (json.RawMessage, error) {
	if len(v) == 0 || v.Kind() == 'n' {
		return nil, nil
	}
	out, err := validUTF8(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return json.RawMessage(out), nil
}

func isKnownPostCallType(t string) bool {
	switch t {
	case TypePostCallTranscription, TypePostCallAudio, TypeCallInitiationFailure:
		return true
	}
	return false
}

// appendCallSID appends id unless it is empty or already present; the list
// has at most four entries, so a linear scan is cheapest.
func appendCallSID(ids []string, id string) []string {
	if id == "" {
		return ids
	}
	for _, have := range ids {
		if have == id {
			return ids
		}
	}
	return append(ids, id)
}

// audioSize records roughly how many bytes a base64 JSON string decodes to
// without copying or decoding it. Escapes or line breaks inside the string
// make the figure slightly high, which is fine for reporting.
type audioSize struct {
	n   int64
	bad bool // the value was neither a string nor null
}

func (a *audioSize) UnmarshalJSON(b []byte) error {
	*a = audioSize{}
	if string(b) == "null" {
		return nil
	}
	if len(b) < 2 || b[0] != '"' {
		a.bad = true
		return nil
	}
	s := b[1 : len(b)-1]
	n := len(s)
	for pad := 0; pad < 2 && n > 0 && s[n-1] == '='; pad++ {
		n--
	}
	a.n = int64(n) * 3 / 4
	return nil
}
