package calls

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// ErrMalformed reports a webhook or live-event body that cannot be used. A
// receiver answers it with 4xx: resending the same bytes cannot succeed.
var ErrMalformed = errors.New("calls: malformed event body")

// ElevenLabs post-call webhook types that DecodePostCall validates.
const (
	TypePostCallTranscription = "post_call_transcription"
	TypePostCallAudio         = "post_call_audio"
	TypeCallInitiationFailure = "call_initiation_failure"
)

// Kinds of live events, as set in Live.Kind.
const (
	KindTranscript           = "transcript"
	KindTranscriptCorrection = "transcript_correction"
	KindInterruption         = "interruption"
	KindLink                 = "link"
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

// Live is one event from an ElevenLabs agent conversation socket, forwarded
// by the backend that owns that socket.
type Live struct {
	CallSID        string
	ConversationID string
	// Type is the ElevenLabs event type, e.g. "user_transcript".
	Type             string
	SourceEventID    int64
	HasSourceEventID bool
	// Kind is one of the Kind constants, or "" for events the gateway
	// does not publish.
	Kind string
	// Role is "user" or "agent" for transcripts and corrections.
	Role string
	// Text is the transcript text, or the corrected text for corrections.
	Text         string
	OriginalText string
	// Final is false only for tentative user transcripts, which a later
	// user_transcript with the same event id replaces.
	Final bool
	// LinkConversationID is the conversation id announced by
	// conversation_initiation_metadata, used to link it to the call.
	LinkConversationID string
}

type liveBody struct {
	CallSID        string     `json:"call_sid"`
	ConversationID string     `json:"conversation_id"`
	Event          *liveEvent `json:"event"`
}

// liveEvent uses pointers so that a missing or null payload or text can be
// told apart from an empty one.
type liveEvent struct {
	Type         string                   `json:"type"`
	Initiation   *initiationMetadataEvent `json:"conversation_initiation_metadata_event"`
	Agent        *agentResponseEvent      `json:"agent_response_event"`
	Tentative    *userTranscriptionEvent  `json:"tentative_user_transcription_event"`
	User         *userTranscriptionEvent  `json:"user_transcription_event"`
	Interruption *interruptionEvent       `json:"interruption_event"`
	Correction   *correctionEvent         `json:"agent_response_correction_event"`
}

type initiationMetadataEvent struct {
	ConversationID string `json:"conversation_id"`
}

type agentResponseEvent struct {
	Text    *string `json:"agent_response"`
	EventID jsonInt `json:"event_id"`
}

type userTranscriptionEvent struct {
	Text    *string `json:"user_transcript"`
	EventID jsonInt `json:"event_id"`
}

type interruptionEvent struct {
	EventID jsonInt `json:"event_id"`
}

type correctionEvent struct {
	Original  *string `json:"original_agent_response"`
	Corrected *string `json:"corrected_agent_response"`
	EventID   jsonInt `json:"event_id"`
}

// DecodeLive decodes a forwarded live event:
// {"call_sid": ..., "conversation_id": ..., "event": {...}}. At least one id
// is required. Events of unknown ElevenLabs types decode with Kind "".
// Errors wrap ErrMalformed.
func DecodeLive(body []byte) (Live, error) {
	if !isJSONObject(body) {
		return Live{}, fmt.Errorf("%w: body is not a JSON object", ErrMalformed)
	}
	var in liveBody
	if err := json.Unmarshal(body, &in); err != nil {
		return Live{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if in.CallSID == "" && in.ConversationID == "" {
		return Live{}, fmt.Errorf("%w: need call_sid or conversation_id", ErrMalformed)
	}
	if in.Event == nil {
		return Live{}, fmt.Errorf("%w: missing event", ErrMalformed)
	}
	ev := in.Event
	if ev.Type == "" {
		return Live{}, fmt.Errorf("%w: event without type", ErrMalformed)
	}

	l := Live{
		CallSID:        in.CallSID,
		ConversationID: in.ConversationID,
		Type:           ev.Type,
		Final:          true,
	}
	var (
		eventID  jsonInt
		missing  string // the payload part that is absent, if any
		required bool   // whether the event id must be present
	)
	switch ev.Type {
	case "conversation_initiation_metadata":
		l.Kind = KindLink
		switch {
		case ev.Initiation == nil:
			missing = "conversation_initiation_metadata_event"
		case ev.Initiation.ConversationID == "":
			missing = "conversation_initiation_metadata_event.conversation_id"
		default:
			l.LinkConversationID = ev.Initiation.ConversationID
		}
	case "agent_response":
		l.Kind, l.Role = KindTranscript, "agent"
		switch {
		case ev.Agent == nil:
			missing = "agent_response_event"
		case ev.Agent.Text == nil:
			missing = "agent_response_event.agent_response"
		default:
			l.Text, eventID = *ev.Agent.Text, ev.Agent.EventID
		}
	case "user_transcript", "tentative_user_transcript":
		l.Kind, l.Role = KindTranscript, "user"
		p, name := ev.User, "user_transcription_event"
		if ev.Type == "tentative_user_transcript" {
			p, name = ev.Tentative, "tentative_user_transcription_event"
			l.Final = false
		}
		switch {
		case p == nil:
			missing = name
		case p.Text == nil:
			missing = name + ".user_transcript"
		default:
			l.Text, eventID = *p.Text, p.EventID
		}
	case "agent_response_correction":
		l.Kind, l.Role = KindTranscriptCorrection, "agent"
		switch c := ev.Correction; {
		case c == nil:
			missing = "agent_response_correction_event"
		case c.Corrected == nil:
			missing = "agent_response_correction_event.corrected_agent_response"
		default:
			// The original text is a convenience; the event id already
			// says which response is corrected.
			l.Text, eventID = *c.Corrected, c.EventID
			if c.Original != nil {
				l.OriginalText = *c.Original
			}
		}
	case "interruption":
		l.Kind, required = KindInterruption, true
		if ev.Interruption == nil {
			missing = "interruption_event"
		} else {
			eventID = ev.Interruption.EventID
		}
	}
	if missing != "" {
		return Live{}, fmt.Errorf("%w: %s event without %s", ErrMalformed, ev.Type, missing)
	}
	switch {
	case eventID.ok:
		l.SourceEventID, l.HasSourceEventID = eventID.n, true
	case eventID.set:
		return Live{}, fmt.Errorf("%w: %s event_id is not an integer", ErrMalformed, ev.Type)
	case required:
		return Live{}, fmt.Errorf("%w: %s event without event_id", ErrMalformed, ev.Type)
	}
	return l, nil
}

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

// nonNull returns raw, or nil when it is absent or JSON null.
func nonNull(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
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
		b = b[1 : len(b)-1]
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
