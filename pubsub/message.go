package pubsub

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Position is where a message stands in its sequence: its epoch, then its
// number within the epoch. Numbers count 1, 2, 3… within an epoch. A new
// epoch starts, numbering from 1 again, when Redis may have lost the
// sequence's state (see Publish); epochs only grow. Positions compare by
// epoch first.
type Position struct {
	Epoch, Seq int64
}

// Less reports whether p comes before q.
func (p Position) Less(q Position) bool {
	return p.Epoch < q.Epoch || p.Epoch == q.Epoch && p.Seq < q.Seq
}

// String returns p as a stream entry id, "<epoch>-<seq>".
func (p Position) String() string {
	return strconv.FormatInt(p.Epoch, 10) + "-" + strconv.FormatInt(p.Seq, 10)
}

// ParsePosition reads "<epoch>-<seq>", or "<seq>" alone as epoch 0.
func ParsePosition(s string) (Position, error) {
	e, n, ok := strings.Cut(s, "-")
	if !ok {
		e, n = "0", s
	}
	epoch, err1 := strconv.ParseInt(e, 10, 64)
	seq, err2 := strconv.ParseInt(n, 10, 64)
	if err1 != nil || err2 != nil || epoch < 0 || seq < 0 {
		return Position{}, fmt.Errorf("pubsub: bad position %q", s)
	}
	return Position{epoch, seq}, nil
}

// Payload is a message's bytes around what is known only when it is
// published, in Redis: Head, the decimal number, Mid, the decimal epoch,
// Tail, then (when the message's Field is set and not empty in its
// Record) the Message's FieldPrefix and the field as JSON, then Rest.
type Payload struct {
	Head, Mid, Tail, Rest []byte
}

// At returns the payload's bytes at position p with field, a JSON value
// (nil: none), after prefix.
func (pl Payload) At(p Position, prefix, field []byte) []byte {
	b := make([]byte, 0, len(pl.Head)+len(pl.Mid)+len(pl.Tail)+len(prefix)+len(field)+len(pl.Rest)+40)
	b = append(b, pl.Head...)
	b = strconv.AppendInt(b, p.Seq, 10)
	b = append(b, pl.Mid...)
	b = strconv.AppendInt(b, p.Epoch, 10)
	b = append(b, pl.Tail...)
	if field != nil {
		b = append(b, prefix...)
		b = append(b, field...)
	}
	return append(b, pl.Rest...)
}

// Message is one payload for one or more channels, numbered within a
// sequence. Publish numbers it, records it and publishes it in one atomic
// step, so the order of numbers and the order in which subscribers receive
// the messages of one sequence always agree.
//
// Every key a message names must be in one hash slot when the bus is
// sharded (a Redis Cluster), and so must Channels.
type Message struct {
	// Seq is the key of the sequence's position: a hash with its epoch,
	// its last number and the Redis process that last wrote it (fields
	// "g", "n" and "rid"). It may be the Record: one read then serves
	// both.
	Seq string
	// SeqTTL is how long the position outlives the last message. Zero
	// means it never expires. Expiries (SeqTTL, HistoryTTL) are set when
	// the sequence starts or restarts, at every 64th number, and when
	// ExpireNow says so; in between each key keeps its expiry, so a key
	// outlives the last message by its TTL less the time of at most 63
	// messages. Setting them at every message would cost Redis two
	// commands per message.
	SeqTTL time.Duration
	// ExpireNow sets the expiries in this message's step: for a last
	// message, or one whose TTLs differ from the sequence's until then.
	ExpireNow bool
	// History is the key of a Redis Stream that keeps the payloads of the
	// sequence, written in the same step as they are published, with the
	// position as entry id (<epoch>-<seq>). Range reads it back.
	History string
	// HistoryMax bounds the stream, approximately (MAXLEN ~); zero means
	// 1000 entries.
	HistoryMax int64
	// HistoryTTL is how long the stream outlives its last entry; zero
	// means it never expires.
	HistoryTTL time.Duration
	// Dedup, when set, is a key that marks this message as published:
	// publishing a message whose Dedup key exists publishes nothing and
	// returns the position it was first given.
	Dedup string
	// DedupTTL is how long the Dedup mark is kept. Zero means 24h.
	DedupTTL time.Duration
	// Record, when set, is a hash the message belongs to. Nothing is
	// published unless it exists (ErrNoRecord) and holds Expect.
	Record string
	// Fields are the fields of Record the step reads and returns, in
	// Published.Record. The first must be set in every record: it tells
	// that the record exists.
	Fields []string
	// Expect holds field, value pairs that Record must hold (a missing
	// field holds ""); otherwise nothing is published (ErrStale).
	Expect []string
	// Field names a field of Record that the payload carries, after
	// FieldPrefix, when it is not empty: the value of RawField, a JSON
	// value, when Record has it; else Field's value as a JSON string.
	Field, RawField string
	FieldPrefix     []byte
	// FieldChannel, when set, publishes the payload on one more channel,
	// named after Field's value, when it is not empty.
	FieldChannel *FieldChannel
	// Transition, when set, changes Record in the same step and publishes
	// a message of its own first, when Record's field holds a value.
	Transition *Transition
	// Channels receive the payload in the same step, in this order.
	Channels []string
	// Payload is the message's bytes around its position.
	Payload Payload
}

// FieldChannel names a channel after a Record's field value v.
type FieldChannel struct {
	// Prefix + v is the channel when the bus is not sharded; the payload
	// goes there in the publishing step.
	Prefix string
	// Name(v) is the channel when the bus is sharded: it may be in
	// another slot, so the payload goes there right after the step, as a
	// separate command. A failure in between leaves it without the
	// message, which is recorded and published on Channels all the same.
	Name func(v string) string
}

// Transition is a change of one field of a Message's Record, made in the
// message's step when the field holds From, and announced by a message
// numbered just before it, on the same channels.
type Transition struct {
	Field, From, To string
	// Set holds more field, value pairs set with the change.
	Set []string
	// RecordTTL, when set, is the Record's expiry from the change.
	RecordTTL time.Duration
	// Payload is the announcing message's.
	Payload Payload
	// Unlikely tells that the caller expects the field not to hold From
	// (it saw it hold something else): the step is sent with the check
	// alone, and when the field does hold From, sent again in full. A
	// wrong guess costs a round trip, never the change.
	Unlikely bool
}

// Published is the outcome of Publish.
type Published struct {
	// Position is the message's place in its sequence.
	Position
	// Duplicate reports that the Dedup key was already set: nothing was
	// published this time, and Position is the first publication's.
	Duplicate bool
	// Transitioned reports that the Transition was made; its message took
	// the position just before this one.
	Transitioned bool
	// Record holds the message's Record's Fields and their values after
	// the step, as field, value pairs; a field the record lacks is "".
	Record []string
}

// Errors of Publish that callers must tell apart.
var (
	// ErrNoRecord: the message's Record does not exist.
	ErrNoRecord = errors.New("pubsub: record not found")
	// ErrStale: the message's Record does not hold what Expect says.
	// Published.Record holds what it holds.
	ErrStale = errors.New("pubsub: record changed")
)
