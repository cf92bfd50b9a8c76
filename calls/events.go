package calls

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/callgate/callgate/pubsub"
)

// The events a call's subscribers receive, as the frame's "event" field.
const (
	EventStatus               = "status"
	EventTranscript           = KindTranscript
	EventTranscriptCorrection = KindTranscriptCorrection
	EventInterruption         = KindInterruption
	EventCompleted            = "completed"
	EventFailed               = "failed"
	EventAudioAvailable       = "audio_available"
)

// Publisher numbers and publishes messages; *pubsub.Bus is one.
type Publisher interface {
	Publish(ctx context.Context, m pubsub.Message) (pubsub.Published, error)
}

var _ Publisher = (*pubsub.Bus)(nil)

// Events publishes call events on the channels of both identifiers.
type Events struct {
	pub  Publisher
	keys Keys
	// seqTTL keeps a call's event counter as long as its record.
	seqTTL time.Duration
	// dedupTTL is how long a delivery is remembered to drop its repeats.
	dedupTTL time.Duration
	now      func() time.Time
}

// NewEvents returns an Events. seqTTL should be the record TTL so event
// numbers never restart while a call is known; dedupTTL bounds how late a
// repeated webhook is still recognised (zero: 24h).
func NewEvents(pub Publisher, keys Keys, seqTTL, dedupTTL time.Duration) *Events {
	return &Events{pub: pub, keys: keys, seqTTL: seqTTL, dedupTTL: dedupTTL, now: time.Now}
}

// frameTail is everything of an event frame after its event_id.
type frameTail struct {
	Event          string    `json:"event"`
	CallSID        string    `json:"call_sid"`
	ConversationID string    `json:"conversation_id,omitempty"`
	Time           time.Time `json:"time"`
	Data           any       `json:"data"`
}

// frameHead starts every event frame; the event_id follows it.
var frameHead = []byte(`{"type":"event","event_id":"`)

// Publish publishes one event of call c. The frame is encoded here, once:
// subscribers receive exactly these bytes. When mark is not empty, an
// event with the same mark for the same call is published only once, and
// the repeat reports the first one's number.
//
// The frame is {"type":"event","event_id":"N","event":…,"call_sid":…,
// "conversation_id":…,"time":…,"data":…}; event_id counts up from 1
// within the call.
func (e *Events) Publish(ctx context.Context, c Call, event string, data any, mark string) (pubsub.Published, error) {
	tail, err := json.Marshal(frameTail{
		Event:          event,
		CallSID:        c.CallSID,
		ConversationID: c.ConversationID,
		Time:           e.now().UTC(),
		Data:           data,
	})
	if err != nil {
		return pubsub.Published{}, fmt.Errorf("encode %s event: %w", event, err)
	}
	// tail is {"event":…}; the frame goes on after the id's closing quote.
	tail[0] = ','
	tail = append([]byte{'"'}, tail...)
	channels := []string{e.keys.ChannelBySID(c.CallSID)}
	if c.ConversationID != "" {
		channels = append(channels, e.keys.ChannelByConversation(c.ConversationID))
	}
	m := pubsub.Message{
		Seq:      e.keys.seq(c.CallSID),
		SeqTTL:   e.seqTTL,
		DedupTTL: e.dedupTTL,
		Channels: channels,
		Head:     frameHead,
		Tail:     tail,
	}
	if mark != "" {
		m.Dedup = e.keys.dedup(c.CallSID, mark)
	}
	res, err := e.pub.Publish(ctx, m)
	if err != nil {
		return res, fmt.Errorf("publish %s event of call %q: %w", event, c.CallSID, err)
	}
	return res, nil
}

// deliveryMark condenses what makes two deliveries the same event.
func deliveryMark(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
