package calls

import (
	"encoding/json"
	"errors"
	"fmt"
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
	// Transcript and Analysis are passed through undecoded; nil when absent
	// or null.
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
	Type           string       `json:"type"`
	EventTimestamp jsonInt      `json:"event_timestamp"`
	Data           postCallData `json:"data"`
}

type postCallData struct {
	AgentID        string          `json:"agent_id"`
	ConversationID string          `json:"conversation_id"`
	Transcript     json.RawMessage `json:"transcript"`
	Analysis       json.RawMessage `json:"analysis"`
	FailureReason  looseString     `json:"failure_reason"`
	FullAudio      audioSize       `json:"full_audio"`
	Metadata       struct {
		Type              looseString `json:"type"`
		StartTimeUnixSecs jsonInt     `json:"start_time_unix_secs"`
		CallDurationSecs  jsonInt     `json:"call_duration_secs"`
		TerminationReason looseString `json:"termination_reason"`
		PhoneCall         struct {
			Type    looseString `json:"type"`
			CallSID looseString `json:"call_sid"`
		} `json:"phone_call"`
		// Body is the provider's own callback body for failures: SIP
		// spells the id call_sid, Twilio CallSid.
		Body struct {
			CallSID       looseString `json:"call_sid"`
			TwilioCallSID looseString `json:"CallSid"`
		} `json:"body"`
	} `json:"metadata"`
	ClientData struct {
		DynamicVariables struct {
			CallSID looseString `json:"call_sid"`
		} `json:"dynamic_variables"`
	} `json:"conversation_initiation_client_data"`
}

// DecodePostCall decodes an ElevenLabs post-call webhook body. Known types
// must carry a type, an integer event_timestamp and data.conversation_id;
// other types decode as far as they can, since callers ignore them. Errors
// wrap ErrMalformed.
func DecodePostCall(body []byte) (PostCall, error) {
	if !isJSONObject(body) {
		return PostCall{}, fmt.Errorf("%w: body is not a JSON object", ErrMalformed)
	}
	var in postCallBody
	err := json.Unmarshal(body, &in)
	known := isKnownPostCallType(in.Type)
	if err != nil {
		// A field of an unexpected type only matters for types we act on;
		// encoding/json still fills every other field in that case.
		var typeErr *json.UnmarshalTypeError
		if known || in.Type == "" || !errors.As(err, &typeErr) {
			return PostCall{}, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
	if in.Type == "" {
		return PostCall{}, fmt.Errorf("%w: missing type", ErrMalformed)
	}
	d := &in.Data
	if known {
		if !in.EventTimestamp.ok {
			return PostCall{}, fmt.Errorf("%w: event_timestamp missing or not an integer", ErrMalformed)
		}
		if d.ConversationID == "" {
			return PostCall{}, fmt.Errorf("%w: missing data.conversation_id", ErrMalformed)
		}
		if d.FullAudio.bad {
			return PostCall{}, fmt.Errorf("%w: data.full_audio is not a string", ErrMalformed)
		}
	}

	pc := PostCall{
		Type:           in.Type,
		EventTimestamp: in.EventTimestamp.n,
		ConversationID: d.ConversationID,
		AgentID:        d.AgentID,
		Transcript:     nonNull(d.Transcript),
		Analysis:       nonNull(d.Analysis),
		Metadata: PostCallMetadata{
			CallDurationSecs:  d.Metadata.CallDurationSecs.n,
			TerminationReason: string(d.Metadata.TerminationReason),
			StartTimeUnixSecs: d.Metadata.StartTimeUnixSecs.n,
		},
		FailureReason: string(d.FailureReason),
		AudioBytes:    d.FullAudio.n,
	}
	pc.CallSIDs = appendCallSID(pc.CallSIDs, string(d.ClientData.DynamicVariables.CallSID))
	pc.CallSIDs = appendCallSID(pc.CallSIDs, string(d.Metadata.PhoneCall.CallSID))
	if in.Type == TypeCallInitiationFailure {
		pc.CallSIDs = appendCallSID(pc.CallSIDs, string(d.Metadata.Body.CallSID))
		pc.CallSIDs = appendCallSID(pc.CallSIDs, string(d.Metadata.Body.TwilioCallSID))
		pc.Provider = string(d.Metadata.Type)
	} else {
		pc.Provider = string(d.Metadata.PhoneCall.Type)
	}
	return pc, nil
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
