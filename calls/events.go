package calls

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/callgate/callgate/internal/wire"
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

// Retention says how long what a call publishes is kept.
type Retention struct {
	// Call keeps a call's event counter, and its history while the call
	// runs, as long as its record: event numbers never restart while the
	// call is known. Zero: forever.
	Call time.Duration
	// Dedup is how long a delivery is remembered to drop its repeats.
	// Zero: 24h.
	Dedup time.Duration
	// HistoryEvents bounds each call's history (approximately). Zero:
	// 1000.
	HistoryEvents int64
	// HistoryAfterEnd is how long a call's history is kept after the call
	// is done or failed. Zero: as long as Call.
	HistoryAfterEnd time.Duration
}

// Events publishes call events on the channels of both identifiers, and
// records them in each call's history in the same step.
type Events struct {
	pub  Publisher
	keys Keys
	ret  Retention
	now  func() time.Time

	published atomic.Int64
}

// Published returns how many events this process has published (repeats
// of a delivery not included).
func (e *Events) Published() int64 { return e.published.Load() }

// NewEvents returns an Events.
func NewEvents(pub Publisher, keys Keys, ret Retention) *Events {
	if ret.HistoryAfterEnd <= 0 {
		ret.HistoryAfterEnd = ret.Call
	}
	return &Events{pub: pub, keys: keys, ret: ret, now: time.Now}
}

// frameHead starts every event frame; the event_id follows it.
var frameHead = []byte(wire.Prefix)

// Publish publishes one event of call c. The frame is encoded here, once:
// subscribers receive exactly these bytes. When mark is not empty, an
// event with the same mark for the same call is published only once, and
// the repeat reports the first one's number.
//
// The frame is wire's event frame (see package wire); event_id counts up
// from 1 within the call.
func (e *Events) Publish(ctx context.Context, c Call, event string, data any, mark string) (pubsub.Published, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return pubsub.Published{}, fmt.Errorf("encode %s event: %w", event, err)
	}
	t := wire.Tail{Event: event, CallSID: c.CallSID, ConversationID: c.ConversationID, Time: e.now(), Data: raw}
	tail := wire.AppendTail(make([]byte, 0, wire.TailCap(t)), t)
	channels := []string{e.keys.ChannelBySID(c.CallSID)}
	if c.ConversationID != "" {
		channels = append(channels, e.keys.ChannelByConversation(c.ConversationID))
	}
	historyTTL := e.ret.Call
	if c.Status == StatusDone || c.Status == StatusFailed {
		historyTTL = e.ret.HistoryAfterEnd
	}
	m := pubsub.Message{
		Seq:        e.keys.Seq(c.CallSID),
		SeqTTL:     e.ret.Call,
		DedupTTL:   e.ret.Dedup,
		History:    e.keys.History(c.CallSID),
		HistoryMax: e.ret.HistoryEvents,
		HistoryTTL: historyTTL,
		Channels:   channels,
		Head:       frameHead,
		Tail:       tail,
	}
	if mark != "" {
		m.Dedup = e.keys.dedup(c.CallSID, mark)
	}
	res, err := e.pub.Publish(ctx, m)
	if err != nil {
		return res, fmt.Errorf("publish %s event of call %q: %w", event, c.CallSID, err)
	}
	if !res.Duplicate {
		e.published.Add(1)
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
