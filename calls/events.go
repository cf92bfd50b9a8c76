package calls

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callgate/callgate/internal/expiring"
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
	// Expire sets how long key lives from now.
	Expire(ctx context.Context, key string, ttl time.Duration) error
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

	// started remembers, for a while, the calls seen past initiated. The
	// step of their next events is sent with the transition to
	// in-progress as a check alone (pubsub.Transition.Unlikely): a call's
	// status never goes back to initiated, so the transition's status
	// event and fields are sent for nothing. A record lost and made again
	// as initiated still gets it, in a second round trip.
	startedMu sync.Mutex
	started   *expiring.Map[struct{}]
}

// Bounds of Events.started: it costs a round trip only when wrong.
const (
	startedTTL = 10 * time.Minute
	maxStarted = 100_000
)

func (e *Events) wasStarted(sid string) bool {
	e.startedMu.Lock()
	defer e.startedMu.Unlock()
	_, ok := e.started.Get(sid)
	return ok
}

func (e *Events) sawStarted(sid string) {
	e.startedMu.Lock()
	defer e.startedMu.Unlock()
	e.started.Set(sid, struct{}{})
}

// Published returns how many events this process has published (repeats
// of a delivery not included).
func (e *Events) Published() int64 { return e.published.Load() }

// NewEvents returns an Events.
func NewEvents(pub Publisher, keys Keys, ret Retention) *Events {
	if ret.HistoryAfterEnd <= 0 {
		ret.HistoryAfterEnd = ret.Call
	}
	return &Events{pub: pub, keys: keys, ret: ret, now: time.Now,
		started: expiring.New[struct{}](startedTTL, maxStarted)}
}

// Event is one event of a call to publish.
type Event struct {
	// Name is the frame's "event".
	Name string
	// Data is the event's data, one JSON value.
	Data []byte
	// Mark, when set, makes the event one delivery: an event with the
	// same mark for the same call is published once per dedup window,
	// and a repeat reports the first one's position.
	Mark string
	// Start moves a call that is initiated to in-progress in the same
	// step, announced by a status event numbered just before this one:
	// the first live event of a call, whichever instance gets it.
	Start bool
	// Ended: the call is done or failed; its history is kept for
	// Retention.HistoryAfterEnd from this event.
	Ended bool
}

// Outcome is what Publish did.
type Outcome struct {
	pubsub.Position
	// Duplicate: the event's mark was seen; nothing was published, and
	// Position is the first delivery's.
	Duplicate bool
	// Call is the call after the step: its call_sid, conversation_id and
	// status.
	Call Call
}

// outcomeFields are the fields of the call's record that a publish reads
// back for its outcome.
var outcomeFields = []string{"call_sid", "conversation_id", "status"}

// statusData is the data of the status event that announces a start.
var statusData = []byte(`{"status":"` + string(StatusInProgress) + `"}`)

// Publish publishes ev of the call sid, which must exist (ErrNotFound).
// The frame is encoded here, once, but for what is known only in the
// step (event_id, epoch, and conversation_id, read from the call's
// record): subscribers receive exactly the bytes stored in the history.
// See package wire for the frame.
func (e *Events) Publish(ctx context.Context, sid string, ev Event) (Outcome, error) {
	return e.publish(ctx, sid, "", ev)
}

func (e *Events) publish(ctx context.Context, sid, conv string, ev Event) (Outcome, error) {
	now := e.now()
	m := pubsub.Message{
		Seq:          e.keys.Record(sid),
		SeqTTL:       e.ret.Call,
		History:      e.keys.History(sid),
		HistoryMax:   e.ret.HistoryEvents,
		HistoryTTL:   e.ret.Call,
		DedupTTL:     e.ret.Dedup,
		Record:       e.keys.Record(sid),
		Fields:       outcomeFields,
		Field:        "conversation_id",
		RawField:     "conversation_id_json",
		FieldPrefix:  []byte(wire.ConvKey),
		FieldChannel: &pubsub.FieldChannel{Prefix: e.keys.convChannels(), Name: e.keys.ChannelByConversation},
		Channels:     []string{e.keys.ChannelBySID(sid)},
		Payload:      payload(wire.Tail{Event: ev.Name, CallSID: sid, Time: now, Data: ev.Data}),
	}
	if ev.Ended {
		m.HistoryTTL, m.ExpireNow = e.ret.HistoryAfterEnd, true
	}
	if ev.Mark != "" {
		m.Dedup = e.keys.dedup(sid, ev.Mark)
	}
	if conv != "" {
		m.Expect = []string{"conversation_id", conv}
	}
	if ev.Start {
		m.Transition = &pubsub.Transition{
			Field: "status", From: string(StatusInitiated), To: string(StatusInProgress),
			Set:       []string{"updated_at", now.UTC().Format(time.RFC3339Nano)},
			RecordTTL: e.ret.Call,
			Payload:   payload(wire.Tail{Event: EventStatus, CallSID: sid, Time: now, Data: statusData}),
			Unlikely:  e.wasStarted(sid),
		}
	}
	res, err := e.pub.Publish(ctx, m)
	switch {
	case errors.Is(err, pubsub.ErrNoRecord):
		return Outcome{}, ErrNotFound
	case errors.Is(err, pubsub.ErrStale):
		if other := recordField(res.Record, "conversation_id"); other != "" {
			return Outcome{}, fmt.Errorf("%w: call is linked to another conversation_id", ErrConflict)
		}
		return Outcome{}, ErrNotLinked
	case err != nil:
		return Outcome{}, fmt.Errorf("publish %s event of call %q: %w", ev.Name, sid, err)
	}
	call, err := ParseRecord(res.Record)
	if err != nil {
		return Outcome{}, err
	}
	if call.Status != StatusInitiated && call.Status != "" {
		e.sawStarted(sid)
	}
	out := Outcome{Position: res.Position, Duplicate: res.Duplicate, Call: call}
	if res.Duplicate {
		return out, nil
	}
	e.published.Add(1)
	if res.Transitioned {
		e.published.Add(1)
	}
	if ended := call.Status == StatusDone || call.Status == StatusFailed; ended && !ev.Ended {
		// An event after the call ended: its history keeps the shorter
		// time it was given at the end.
		if err := e.pub.Expire(ctx, m.History, e.ret.HistoryAfterEnd); err != nil {
			return out, fmt.Errorf("publish %s event of call %q: %w", ev.Name, sid, err)
		}
	}
	return out, nil
}

// ErrNotLinked is returned by PublishLinked when the call is not linked to
// the conversation it names.
var ErrNotLinked = errors.New("call not linked to that conversation")

// PublishLinked publishes ev of the call sid, if that call is linked to the
// conversation conv; otherwise nothing (ErrNotLinked, or ErrConflict when
// it is linked to another).
func (e *Events) PublishLinked(ctx context.Context, sid, conv string, ev Event) (Outcome, error) {
	return e.publish(ctx, sid, conv, ev)
}

// payload is the frame of t around what the publishing step fills in.
func payload(t wire.Tail) pubsub.Payload {
	before, after := wire.AppendSplitTail(make([]byte, 0, 64+len(t.CallSID)+len(t.Event)), make([]byte, 0, 64+len(t.Data)), t)
	return pubsub.Payload{Head: frameHead, Mid: frameEpoch, Tail: before, Rest: after}
}

var (
	frameHead  = []byte(wire.Prefix)
	frameEpoch = []byte(wire.EpochSep)
)

// recordField returns the value of field in HGETALL's pairs.
func recordField(kv []string, field string) string {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == field {
			return kv[i+1]
		}
	}
	return ""
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
