package calls

import (
	"fmt"
)

// Kinds of live events, as set in Live.Kind.
const (
	KindTranscript           = "transcript"
	KindTranscriptCorrection = "transcript_correction"
	KindInterruption         = "interruption"
	KindLink                 = "link"
)

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
	CallSID        idString   `json:"call_sid"`
	ConversationID idString   `json:"conversation_id"`
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
	ConversationID idString `json:"conversation_id"`
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
// is required, and ids must be exact (see idString). Keys match exactly and
// may not repeat (see inputOptions). Events of unknown ElevenLabs types
// decode with Kind "". Errors wrap ErrMalformed.
func DecodeLive(body []byte) (Live, error) {
	if !isJSONObject(body) {
		return Live{}, fmt.Errorf("%w: body is not a JSON object", ErrMalformed)
	}
	var in liveBody
	if err := unmarshalInput(body, &in); err != nil {
		return Live{}, fmt.Errorf("%w: %s", ErrMalformed, inputProblem(err))
	}
	sid, err := in.CallSID.strict("call_sid")
	if err != nil {
		return Live{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	conv, err := in.ConversationID.strict("conversation_id")
	if err != nil {
		return Live{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if sid == "" && conv == "" {
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
		CallSID:        sid,
		ConversationID: conv,
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
		if ev.Initiation == nil {
			missing = "conversation_initiation_metadata_event"
			break
		}
		link, err := ev.Initiation.ConversationID.strict("conversation_initiation_metadata_event.conversation_id")
		if err != nil {
			return Live{}, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		if link == "" {
			missing = "conversation_initiation_metadata_event.conversation_id"
		}
		l.LinkConversationID = link
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
