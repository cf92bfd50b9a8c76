package pubsub

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
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

//go:embed publish.lua
var publishLua string

// publishStep checks, numbers, records, deduplicates and publishes in one
// step (publish.lua).
//
// The position: a new epoch starts, at number 1, when the sequence has no
// position and no history (new, or lost), or when its position was written
// by another Redis process than this one (a restart, a failover to a
// replica that may have missed the last writes, a slot migration): the
// last numbers may then be reused, and the epoch tells them apart. A
// position lost while the history survives (eviction) is taken from the
// history's last entry, and numbering goes on in its epoch, so numbers
// never go below what the history holds; so does an XADD that finds the
// history ahead of the position. The dedup mark is set before the history
// is written and taken back in the same step if XADD refuses the entry, so
// a failed step leaves no trace.
//
// Expiries are set when a sequence starts or restarts, when the message
// asks (ExpireNow), and when they were last set a sixteenth of the shorter
// TTL ago or more (see renewEvery); most steps write none.
//
// KEYS: position, history, then the dedup mark when given, then the
// record when given and not the position's own hash (a cluster refuses
// empty key names, which have a slot of their own).
//
// ARGV[1] is a header of 15 bytes, each a small number: dedup mark given
// (0/1); record (0 none, 1 its own key, 2 the position's hash); a WAIT
// follows (0/1); set the expiries now (0/1); #channels; #fields to read;
// the indexes in the fields to read (from 1, 0 for none) of the
// transition's field, Field and RawField and of the first expected field;
// #expected values; #transition set pairs; #Fields; return the field
// channel's value (0/1); the transition sent in full (0/1: with its check
// only, the step answers {'transition'} if it is due, and is sent again
// in full). Then: publish command, position TTL ms, dedup TTL ms, history
// max, history TTL ms, field prefix, field channel prefix (empty for
// none), the payload's head, mid, tail and rest, now (ms, the publisher's
// clock), the expiries' renewal interval ms, the channels, the record's
// fields to read (Fields, then the others the step needs), the expected
// values, then the transition when given: from, and when in full: to,
// record TTL ms, head, mid, tail, rest, the set pairs.
//
// Replies, flat: {'ok', epoch, seq, transitioned (0/1), Fields' values
// [, field JSON, field value]}, {'dup', 'epoch-seq', Fields' values},
// {'stale', Fields' values}, {'norecord'} or {'transition'}.
var publishStep = newLuaStep("callgate_publish", "publish", publishLua)

// Publish numbers m, and unless it is a duplicate, records it and
// publishes it to every channel. An error other than ErrNoRecord means
// nothing may have been published; publishing the same message again
// (with its Dedup key) is safe. Concurrent calls go to Redis together, as
// one pipeline (go-redis's autopipeliner): fewer round trips for the
// process and fewer reads and writes for Redis, which every instance
// shares.
func (b *Bus) Publish(ctx context.Context, m Message) (Published, error) {
	if m.Seq == "" || m.History == "" {
		return Published{}, errors.New("pubsub: message without a sequence or history key")
	}
	dedupTTL := m.DedupTTL
	if dedupTTL <= 0 {
		dedupTTL = 24 * time.Hour
	}
	historyMax := m.HistoryMax
	if historyMax <= 0 {
		historyMax = 1000
	}
	cmd, fieldChan := "PUBLISH", ""
	if b.cfg.Sharded {
		cmd = "SPUBLISH"
	} else if m.FieldChannel != nil {
		fieldChan = m.FieldChannel.Prefix
	}
	if m.Record == "" && (len(m.Expect) > 0 || m.Field != "" || m.Transition != nil) {
		return Published{}, errors.New("pubsub: a message without a record expects, carries or changes a field")
	}
	if m.Record != "" && len(m.Fields) == 0 {
		return Published{}, errors.New("pubsub: a message with a record names the fields that tell it exists")
	}
	keys := make([]string, 2, 4)
	keys[0], keys[1] = m.Seq, m.History
	// The header: small numbers, one byte each (see publishStep).
	var h [15]byte
	if m.Dedup != "" {
		keys, h[0] = append(keys, m.Dedup), 1
	}
	switch {
	case m.Record != "" && m.Record == m.Seq:
		h[1] = 2
	case m.Record != "":
		keys, h[1] = append(keys, m.Record), 1
	}
	if b.cfg.WaitReplicas > 0 {
		h[2] = 1
	}
	if m.ExpireNow {
		h[3] = 1
	}
	// The record's fields to read: Fields first, then those the step
	// needs, each once; the position's last when it is in the record.
	read := make([]string, 0, len(m.Fields)+len(m.Expect)/2+6)
	read = append(read, m.Fields...)
	index := func(f string) int {
		if f == "" {
			return 0
		}
		for i, r := range read {
			if r == f {
				return i + 1
			}
		}
		read = append(read, f)
		return len(read)
	}
	iT := 0
	if m.Transition != nil {
		iT = index(m.Transition.Field)
	}
	iF, iRaw := index(m.Field), index(m.RawField)
	iE := 0
	if len(m.Expect) > 0 {
		iE = len(read) + 1
		for i := 0; i+1 < len(m.Expect); i += 2 {
			read = append(read, m.Expect[i]) // in order, even if read already
		}
	}
	nSet := 0
	if m.Transition != nil {
		nSet = len(m.Transition.Set) / 2
	}
	nFields := 0
	if m.Record != "" {
		nFields = len(m.Fields)
	}
	field := m.FieldChannel != nil && b.cfg.Sharded
	small := []int{len(m.Channels), len(read), iT, iF, iRaw, iE, len(m.Expect) / 2, nSet, nFields}
	for i, v := range small {
		if v > 255 {
			return Published{}, errors.New("pubsub: a message with more than 255 channels, fields or pairs")
		}
		h[4+i] = byte(v)
	}
	if field {
		h[13] = 1
	}
	full := m.Transition != nil && !m.Transition.Unlikely
	if full {
		h[14] = 1
	}
	args := make([]any, 0, 24+len(m.Channels)+len(read)+len(m.Expect)/2)
	args = append(args, h[:], cmd, ms(m.SeqTTL), ms(dedupTTL), historyMax, ms(m.HistoryTTL),
		m.FieldPrefix, fieldChan, m.Payload.Head, m.Payload.Mid, m.Payload.Tail, m.Payload.Rest,
		time.Now().UnixMilli(), renewEvery(m.SeqTTL, m.HistoryTTL))
	for _, ch := range m.Channels {
		args = append(args, ch)
	}
	for _, f := range read {
		args = append(args, f)
	}
	for i := 1; i < len(m.Expect); i += 2 {
		args = append(args, m.Expect[i])
	}
	if t := m.Transition; t != nil {
		args = append(args, t.From)
		if full {
			args = appendTransition(args, t)
		}
	}
	res, err := b.runPublish(ctx, keys, args)
	if err != nil {
		return Published{}, fmt.Errorf("pubsub: publish on %s: %w", m.Seq, err)
	}
	if len(res) == 0 {
		return Published{}, fmt.Errorf("pubsub: publish on %s: empty reply", m.Seq)
	}
	if kind, _ := res[0].(string); kind == "transition" && !full {
		// The unlikely happened: the same step, with the transition.
		h[14] = 1
		args = appendTransition(args, m.Transition)
		res, err = b.runPublish(ctx, keys, args)
		if err != nil {
			return Published{}, fmt.Errorf("pubsub: publish on %s: %w", m.Seq, err)
		}
	}
	p, fieldJSON, value, err := parsePublished(res, m.Fields[:nFields], field)
	if err != nil || p.Duplicate || !b.cfg.Sharded || m.FieldChannel == nil || value == "" {
		return p, err
	}
	return p, b.publishOnField(ctx, m, p, fieldJSON, value)
}

// appendTransition appends to args what the step needs of t to make it.
func appendTransition(args []any, t *Transition) []any {
	args = append(args, t.To, ms(t.RecordTTL), t.Payload.Head, t.Payload.Mid, t.Payload.Tail, t.Payload.Rest)
	for _, v := range t.Set {
		args = append(args, v)
	}
	return args
}

// runPublish runs the publish step once.
func (b *Bus) runPublish(ctx context.Context, keys []string, args []any) ([]any, error) {
	if b.cfg.WaitReplicas > 0 {
		return b.runWaiting(ctx, keys, args)
	}
	return publishStep.run(ctx, func(asFunction bool) *redis.Cmd {
		if asFunction {
			return b.publisher.FCall(ctx, publishStep.fn, keys, args...)
		}
		return publishStep.script.Run(ctx, b.publisher, keys, args...)
	}, b.loadLibrary).Slice()
}

// ms is d in whole milliseconds, 0 (none) for a negative d.
func ms(d time.Duration) int64 { return max(d.Milliseconds(), 0) }

// renewEvery returns how long, in milliseconds, the step may leave the
// expiries of a sequence's keys as they are: a sixteenth of the shorter
// TTL, so that they outlive the last message by 15/16 of their TTL at
// least; 0 when neither expires.
func renewEvery(ttls ...time.Duration) int64 {
	var least int64
	for _, d := range ttls {
		if t := ms(d); t > 0 && (least == 0 || t < least) {
			least = t
		}
	}
	if least == 0 {
		return 0
	}
	return max(least/16, 1)
}

// loadLibrary loads a step's function library on every primary.
func (b *Bus) loadLibrary(ctx context.Context, lib string) error {
	return loadLibrary(ctx, b.rdb, lib)
}

// ErrNotReplicated: a message was published, but fewer replicas than
// Config.WaitReplicas acknowledged it in time.
var ErrNotReplicated = errors.New("pubsub: not acknowledged by enough replicas")

// runWaiting runs the publish script and WAIT on one connection to the
// primary that owns keys, in one round trip.
func (b *Bus) runWaiting(ctx context.Context, keys []string, args []any) ([]any, error) {
	var node *redis.Client
	switch c := b.rdb.(type) {
	case *redis.ClusterClient:
		var err error
		if node, err = c.MasterForKey(ctx, keys[0]); err != nil {
			return nil, err
		}
	case *redis.Client:
		node = c
	default:
		return nil, fmt.Errorf("pubsub: waiting for replicas needs a Redis client, not %T", b.rdb)
	}
	var wait *redis.Cmd
	run := publishStep.run(ctx, func(asFunction bool) *redis.Cmd {
		for attempt := 0; ; attempt++ {
			pipe := node.Pipeline()
			var run *redis.Cmd
			if asFunction {
				run = pipe.FCall(ctx, publishStep.fn, keys, args...)
			} else {
				run = publishStep.script.EvalSha(ctx, pipe, keys, args...)
			}
			wait = pipe.Do(ctx, "WAIT", b.cfg.WaitReplicas, b.cfg.WaitTimeout.Milliseconds())
			_, _ = pipe.Exec(ctx)
			if err := run.Err(); !asFunction && attempt == 0 && err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
				if err := publishStep.script.Load(ctx, node).Err(); err != nil {
					run.SetErr(err)
					return run
				}
				continue
			}
			return run
		}
	}, func(ctx context.Context, lib string) error {
		return node.FunctionLoadReplace(ctx, lib).Err()
	})
	if err := run.Err(); err != nil {
		return nil, err
	}
	n, err := wait.Int()
	if err != nil {
		return nil, err
	}
	if n < b.cfg.WaitReplicas {
		return nil, fmt.Errorf("%w: %d of %d within %s", ErrNotReplicated, n, b.cfg.WaitReplicas, b.cfg.WaitTimeout)
	}
	return run.Slice()
}

// publishOnField publishes, after the step, what it published on
// m.Channels on m's field channel too, in the same order.
func (b *Bus) publishOnField(ctx context.Context, m Message, p Published, field []byte, value string) error {
	ch := m.FieldChannel.Name(value)
	if p.Transitioned {
		payload := m.Transition.Payload.At(Position{p.Epoch, p.Seq - 1}, m.FieldPrefix, field)
		if err := b.publisher.SPublish(ctx, ch, payload).Err(); err != nil {
			return fmt.Errorf("pubsub: publish on %s: %w", ch, err)
		}
	}
	if err := b.publisher.SPublish(ctx, ch, m.Payload.At(p.Position, m.FieldPrefix, field)).Err(); err != nil {
		return fmt.Errorf("pubsub: publish on %s: %w", ch, err)
	}
	return nil
}

// parsePublished reads the step's reply: a kind, what it says, then the
// values of fields (the message's Fields) and, when withField, the
// field's JSON and value.
func parsePublished(res []any, fields []string, withField bool) (p Published, field []byte, value string, err error) {
	kind, _ := res[0].(string)
	record := func(vals []any) []string {
		out := make([]string, 0, 2*len(fields))
		for i, f := range fields {
			s, _ := vals[i].(string)
			out = append(out, f, s)
		}
		return out
	}
	n := len(fields)
	switch {
	case kind == "ok" && len(res) == 4+n+2 && withField, kind == "ok" && len(res) == 4+n && !withField:
		g, _ := res[1].(string)
		seq, _ := res[2].(string)
		pos, err := ParsePosition(g + "-" + seq)
		if err != nil {
			return Published{}, nil, "", err
		}
		t, _ := res[3].(int64)
		if withField {
			f, _ := res[4+n].(string)
			value, _ = res[5+n].(string)
			field = []byte(f)
		}
		return Published{Position: pos, Transitioned: t == 1, Record: record(res[4:])}, field, value, nil
	case kind == "dup" && len(res) == 2+n:
		s, _ := res[1].(string)
		pos, err := ParsePosition(s)
		if err != nil {
			return Published{}, nil, "", err
		}
		return Published{Position: pos, Duplicate: true, Record: record(res[2:])}, nil, "", nil
	case kind == "stale" && len(res) == 1+n:
		return Published{Record: record(res[1:])}, nil, "", ErrStale
	case kind == "norecord":
		return Published{}, nil, "", ErrNoRecord
	}
	return Published{}, nil, "", fmt.Errorf("pubsub: publish: unexpected reply %v", res)
}

// Entry is one recorded message of a sequence.
type Entry struct {
	Position
	Payload []byte
}

// rangeScript reads a sequence's position, its recorded messages after a
// position and, when KEYS[3] is given, a hash, in one step. KEYS[1]
// position, KEYS[2] stream; ARGV[1] first entry id (empty for none), ARGV[2]
// at most that many entries (0: all).
var rangeScript = redis.NewScript(`
local p = redis.call('HMGET', KEYS[1], 'g', 'n')
local g, n = tonumber(p[1]), tonumber(p[2])
if not g or not n then
  local e = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  g, n = 0, 0
  if #e > 0 then
    local a, b = string.match(e[1][1], '^(%d+)-(%d+)$')
    g, n = tonumber(a), tonumber(b)
  end
end
local entries = {}
if ARGV[1] == '' then
elseif tonumber(ARGV[2]) > 0 then
  entries = redis.call('XRANGE', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])
else
  entries = redis.call('XRANGE', KEYS[2], ARGV[1], '+')
end
local with = {}
if KEYS[3] then with = redis.call('HGETALL', KEYS[3]) end
return {g, n, entries, with}
`)

// Span is what Range read, at one moment.
type Span struct {
	// Entries are the recorded messages, oldest first.
	Entries []Entry
	// Last is the sequence's position: its last message's. Zero when the
	// sequence has none.
	Last Position
	// With holds the fields and values of the hash read along; none if
	// it does not exist.
	With []string
}

// Range returns the recorded messages of a sequence after position after,
// at most limit of them (0: all), and the sequence's position. Messages
// the history no longer holds are missing. An after whose Seq is the
// largest int64 reads no message. When with is not empty, the hash at
// that key, a record the messages belong to, is read in the same step.
func (b *Bus) Range(ctx context.Context, seqKey, history, with string, after Position, limit int) (Span, error) {
	keys := []string{seqKey, history}
	if with != "" {
		keys = append(keys, with)
	}
	first := ""
	if after.Seq < math.MaxInt64 {
		first = Position{after.Epoch, after.Seq + 1}.String()
	}
	res, err := rangeScript.Run(ctx, b.rdb, keys, first, limit).Slice()
	if err != nil {
		return Span{}, fmt.Errorf("pubsub: range %s after %s: %w", history, after, err)
	}
	if len(res) != 4 {
		return Span{}, fmt.Errorf("pubsub: range: unexpected reply %v", res)
	}
	var sp Span
	sp.Last.Epoch, _ = res[0].(int64)
	sp.Last.Seq, _ = res[1].(int64)
	raw, _ := res[2].([]any)
	sp.Entries = make([]Entry, 0, len(raw))
	for _, r := range raw {
		e, ok := r.([]any)
		if len(e) != 2 || !ok {
			return Span{}, fmt.Errorf("pubsub: range: unexpected entry %v", r)
		}
		id, _ := e[0].(string)
		pos, err := ParsePosition(id)
		if err != nil {
			return Span{}, fmt.Errorf("pubsub: range: entry id %q: %w", id, err)
		}
		fields, _ := e[1].([]any)
		if len(fields) != 2 {
			return Span{}, fmt.Errorf("pubsub: range: entry %s has %d fields", id, len(fields))
		}
		p, _ := fields[1].(string)
		sp.Entries = append(sp.Entries, Entry{Position: pos, Payload: []byte(p)})
	}
	hash, _ := res[3].([]any)
	for _, v := range hash {
		str, _ := v.(string)
		sp.With = append(sp.With, str)
	}
	return sp, nil
}

// Expire sets how long key lives from now: a history's shorter life once
// its sequence has ended, say.
func (b *Bus) Expire(ctx context.Context, key string, ttl time.Duration) error {
	if err := b.publisher.PExpire(ctx, key, ttl).Err(); err != nil {
		return fmt.Errorf("pubsub: expire %s: %w", key, err)
	}
	return nil
}
