package pubsub

import (
	"context"
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
	// its last number and the Redis process that last wrote it.
	Seq string
	// SeqTTL is how long the position outlives the last message. Zero
	// means it never expires.
	SeqTTL time.Duration
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

// publishScript checks, numbers, records, deduplicates and publishes in one
// step. Nothing is written before the step that can fail (XADD), so a
// failure leaves no trace.
//
// The position: a new epoch starts, at number 1, when the sequence has no
// position and no history (new, or lost), or when its position was written
// by another Redis process than this one (a restart, a failover to a
// replica that may have missed the last writes, a slot migration): the
// last numbers may then be reused, and the epoch tells them apart. A
// position lost while the history survives (eviction) is taken from the
// history's last entry, and numbering goes on in its epoch, so numbers
// never go below what the history holds; so does an XADD that finds the
// history ahead of the position.
//
// KEYS: position, history, then the dedup mark and the record when given
// (a cluster refuses empty key names, which have a slot of their own).
// ARGV: which of those are given ("d", "r", "dr" or empty, and "w" when a
// WAIT follows), publish
// command, position TTL ms, dedup TTL ms, history max,
// history TTL ms, field, raw field, field prefix, field channel prefix
// (empty for none), head, mid, tail, rest, #channels, channels...,
// transition field (empty for none), from, to, record TTL ms, head, mid,
// tail, rest, #set pairs, pairs..., #expect pairs, pairs..., #fields,
// fields...
// Replies {'ok', epoch, seq, transitioned, record, field JSON, field},
// {'dup',
// 'epoch-seq', record}, {'stale', record} or {'norecord'}.
var publishScript = redis.NewScript(`
local pos, hist, dedup, rec = KEYS[1], KEYS[2], '', ''
local k = 3
if string.find(ARGV[1], 'd', 1, true) then dedup, k = KEYS[k], k + 1 end
if string.find(ARGV[1], 'r', 1, true) then rec = KEYS[k] end
local pub = ARGV[2]
local posTTL, dedupTTL, histMax, histTTL = tonumber(ARGV[3]), ARGV[4], ARGV[5], tonumber(ARGV[6])
local fName, fRaw, fPrefix, fChan = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local main = {ARGV[11], ARGV[12], ARGV[13], ARGV[14]}
local i = 15
local chans = {}
for j = 1, tonumber(ARGV[i]) do chans[j] = ARGV[i + j] end
i = i + #chans + 1
local tField, tFrom, tTo, tTTL = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
local announce = {ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]}
i = i + 8
local tSet = {}
for j = 1, 2 * tonumber(ARGV[i]) do tSet[j] = ARGV[i + j] end
i = i + #tSet + 1
local expect = {}
for j = 1, 2 * tonumber(ARGV[i]) do expect[j] = ARGV[i + j] end
i = i + #expect + 1
local fields = {}
for j = 1, tonumber(ARGV[i]) do fields[j] = ARGV[i + j] end

local function num(x) return string.format('%d', x) end

-- The record's fields the step needs, read in one command.
local values = {}
local function field(name) return values[name] or '' end
local function reply()
  local out = {}
  for _, f in ipairs(fields) do
    out[#out + 1] = f
    out[#out + 1] = field(f)
  end
  return out
end
if rec ~= '' then
  local need = {}
  for _, f in ipairs(fields) do need[#need + 1] = f end
  for _, f in ipairs({tField, fName, fRaw}) do
    if f ~= '' then need[#need + 1] = f end
  end
  for j = 1, #expect, 2 do need[#need + 1] = expect[j] end
  local got = redis.call('HMGET', rec, unpack(need))
  if not got[1] then return {'norecord'} end
  for j, f in ipairs(need) do
    if got[j] then values[f] = got[j] end
  end
end
if dedup ~= '' then
  local prev = redis.call('GET', dedup)
  if prev then
    if string.find(ARGV[1], 'w', 1, true) then
      -- A write of this connection's, so that the WAIT that follows
      -- waits for the first publication's writes too, whichever
      -- connection made them: the same expiry, set again.
      redis.call('PEXPIRE', dedup, redis.call('PTTL', dedup))
    end
    return {'dup', prev, reply()}
  end
end
for j = 1, #expect, 2 do
  if field(expect[j]) ~= expect[j + 1] then return {'stale', reply()} end
end

local fValue, fJSON = '', ''
if fName ~= '' then
  fValue, fJSON = field(fName), field(fRaw)
  if fJSON == '' and fValue ~= '' then fJSON = cjson.encode(fValue) end
end

local function top()
  local e = redis.call('XREVRANGE', hist, '+', '-', 'COUNT', 1)
  if #e == 0 then return nil end
  local a, b = string.match(e[1][1], '^(%d+)-(%d+)$')
  return tonumber(a), tonumber(b)
end
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local me = ''
local info = redis.pcall('INFO', 'server')
if type(info) == 'string' then
  local at = string.find(info, 'run_id:', 1, true)
  if at then me = string.sub(info, at + 7, at + 46) end
end
local p = redis.call('HMGET', pos, 'g', 'n', 'rid')
local g, n = tonumber(p[1]), tonumber(p[2])
if not g or not n then
  g, n = top()
  if not g then g, n = now(), 0 end
elseif me ~= '' and p[3] and p[3] ~= me then
  g, n = math.max(now(), g + 1), 0
end

local function build(pl, seq)
  local b = pl[1] .. num(seq) .. pl[2] .. num(g) .. pl[3]
  if fJSON ~= '' then b = b .. fPrefix .. fJSON end
  return b .. pl[4]
end
local pre = tField ~= '' and rec ~= '' and field(tField) == tFrom
local function append()
  local out = {}
  if pre then out[1] = build(announce, n + 1) end
  out[#out + 1] = build(main, n + #out + 1)
  for k, payload in ipairs(out) do
    local r = redis.pcall('XADD', hist, 'MAXLEN', '~', histMax, num(g) .. '-' .. num(n + k), 'p', payload)
    if type(r) == 'table' and r.err then return nil, r.err end
  end
  return out
end
local out, err = append()
if not out then
  g, n = top()
  if not g then return redis.error_reply(err) end
  out, err = append()
  if not out then return redis.error_reply(err) end
end
n = n + #out

redis.call('HSET', pos, 'g', num(g), 'n', num(n), 'rid', me)
if posTTL > 0 then redis.call('PEXPIRE', pos, posTTL) end
if histTTL > 0 then redis.call('PEXPIRE', hist, histTTL) end
if dedup ~= '' then redis.call('SET', dedup, num(g) .. '-' .. num(n), 'PX', dedupTTL) end
if pre then
  redis.call('HSET', rec, tField, tTo, unpack(tSet))
  if tTTL > 0 then redis.call('PEXPIRE', rec, tTTL) end
  values[tField] = tTo
  for j = 1, #tSet, 2 do values[tSet[j]] = tSet[j + 1] end
end
if fChan ~= '' and fValue ~= '' then chans[#chans + 1] = fChan .. fValue end
for _, payload in ipairs(out) do
  for _, ch in ipairs(chans) do redis.call(pub, ch, payload) end
end
return {'ok', g, n, pre and 1 or 0, reply(), fJSON, fValue}
`)

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
	args := make([]any, 0, 32+len(m.Channels)+len(m.Expect)+len(m.Fields))
	keys := []string{m.Seq, m.History}
	given := ""
	if m.Dedup != "" {
		keys, given = append(keys, m.Dedup), given+"d"
	}
	if m.Record != "" {
		keys, given = append(keys, m.Record), given+"r"
	}
	if b.cfg.WaitReplicas > 0 {
		given += "w"
	}
	args = append(args, given, cmd, m.SeqTTL.Milliseconds(), dedupTTL.Milliseconds(),
		historyMax, m.HistoryTTL.Milliseconds(), m.Field, m.RawField, m.FieldPrefix, fieldChan,
		m.Payload.Head, m.Payload.Mid, m.Payload.Tail, m.Payload.Rest, len(m.Channels))
	for _, ch := range m.Channels {
		args = append(args, ch)
	}
	if t := m.Transition; t != nil {
		args = append(args, t.Field, t.From, t.To, t.RecordTTL.Milliseconds(),
			t.Payload.Head, t.Payload.Mid, t.Payload.Tail, t.Payload.Rest, len(t.Set)/2)
		for _, v := range t.Set {
			args = append(args, v)
		}
	} else {
		args = append(args, "", "", "", 0, "", "", "", "", 0)
	}
	args = append(args, len(m.Expect)/2)
	for _, v := range m.Expect {
		args = append(args, v)
	}
	if m.Record != "" && len(m.Fields) == 0 {
		return Published{}, errors.New("pubsub: a message with a record names the fields that tell it exists")
	}
	args = append(args, len(m.Fields))
	for _, f := range m.Fields {
		args = append(args, f)
	}
	var res []any
	var err error
	if b.cfg.WaitReplicas > 0 {
		res, err = b.runWaiting(ctx, keys, args)
	} else {
		res, err = publishScript.Run(ctx, b.publisher, keys, args...).Slice()
	}
	if err != nil {
		return Published{}, fmt.Errorf("pubsub: publish on %s: %w", m.Seq, err)
	}
	p, field, value, err := parsePublished(res)
	if err != nil || p.Duplicate || !b.cfg.Sharded || m.FieldChannel == nil || value == "" {
		return p, err
	}
	return p, b.publishOnField(ctx, m, p, field, value)
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
	for attempt := 0; ; attempt++ {
		pipe := node.Pipeline()
		run := publishScript.EvalSha(ctx, pipe, keys, args...)
		wait := pipe.Do(ctx, "WAIT", b.cfg.WaitReplicas, b.cfg.WaitTimeout.Milliseconds())
		_, _ = pipe.Exec(ctx)
		if err := run.Err(); err != nil {
			if attempt == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
				if err := publishScript.Load(ctx, node).Err(); err != nil {
					return nil, err
				}
				continue
			}
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

func parsePublished(res []any) (p Published, field []byte, value string, err error) {
	kind, _ := res[0].(string)
	strs := func(v any) []string {
		raw, _ := v.([]any)
		out := make([]string, len(raw))
		for i, r := range raw {
			out[i], _ = r.(string)
		}
		return out
	}
	switch {
	case kind == "ok" && len(res) == 7:
		g, _ := res[1].(int64)
		n, _ := res[2].(int64)
		t, _ := res[3].(int64)
		f, _ := res[5].(string)
		value, _ = res[6].(string)
		return Published{Position: Position{g, n}, Transitioned: t == 1, Record: strs(res[4])}, []byte(f), value, nil
	case kind == "dup" && len(res) == 3:
		s, _ := res[1].(string)
		pos, err := ParsePosition(s)
		if err != nil {
			return Published{}, nil, "", err
		}
		return Published{Position: pos, Duplicate: true, Record: strs(res[2])}, nil, "", nil
	case kind == "stale" && len(res) == 2:
		return Published{Record: strs(res[1])}, nil, "", ErrStale
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
