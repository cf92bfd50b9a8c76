package pubsub

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Message is one payload for one or more channels, numbered within a
// sequence. Publish assigns the number and publishes in one atomic step,
// so the order of numbers and the order in which subscribers receive the
// messages of one sequence always agree.
type Message struct {
	// Seq is the key of the counter that numbers this sequence.
	Seq string
	// SeqTTL is how long the counter outlives the last message. Zero
	// means it never expires.
	SeqTTL time.Duration
	// Dedup, when set, is a key that marks this message as published:
	// publishing a message whose Dedup key exists publishes nothing and
	// returns the number it was first given.
	Dedup string
	// DedupTTL is how long the Dedup mark is kept. Zero means 24h.
	DedupTTL time.Duration
	// History, when set, is the key of a Redis Stream that keeps the
	// payloads of this sequence, written in the same step as they are
	// published, with the sequence number as entry id (0-<seq>). Range
	// reads it back.
	History string
	// HistoryMax bounds the stream, approximately (MAXLEN ~); zero means
	// 1000 entries.
	HistoryMax int64
	// HistoryTTL is how long the stream outlives its last entry; zero
	// means it never expires.
	HistoryTTL time.Duration
	// Channels receive the payload, in this order.
	Channels []string
	// The payload is Head, the decimal sequence number, then Tail.
	Head, Tail []byte
}

// Published is the outcome of Publish.
type Published struct {
	// Seq is the message's number in its sequence.
	Seq int64
	// Duplicate reports that the Dedup key was already set: nothing was
	// published this time.
	Duplicate bool
}

// publishScript numbers, deduplicates, records and publishes in one step.
// KEYS[1] counter, KEYS[2] history stream, KEYS[3] dedup mark (empty keys
// are skipped: the caller passes the same key list shape every time).
// ARGV: counter TTL ms (0: none), dedup TTL ms, history max, history TTL
// ms (0: none), head, tail, channels...
var publishScript = redis.NewScript(`
if KEYS[3] ~= '' then
  local prev = redis.call('GET', KEYS[3])
  if prev then return {tonumber(prev), 1} end
end
local seq = redis.call('INCR', KEYS[1])
if tonumber(ARGV[1]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], seq, 'PX', ARGV[2]) end
local payload = ARGV[5] .. seq .. ARGV[6]
if KEYS[2] ~= '' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '0-' .. seq, 'p', payload)
  if tonumber(ARGV[4]) > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
end
for i = 7, #ARGV do redis.call('PUBLISH', ARGV[i], payload) end
return {seq, 0}
`)

// Publish numbers m, and unless it is a duplicate, publishes it to every
// channel. An error means nothing may have been published; publishing the
// same message again (with its Dedup key) is safe. Concurrent calls go to
// Redis together, as one pipeline (go-redis's autopipeliner): fewer round
// trips for the process and fewer reads and writes for Redis, which every
// instance shares.
func (b *Bus) Publish(ctx context.Context, m Message) (Published, error) {
	if m.Seq == "" {
		return Published{}, errors.New("pubsub: message without a sequence key")
	}
	keys := []string{m.Seq, m.History, m.Dedup}
	dedupTTL := m.DedupTTL
	if dedupTTL <= 0 {
		dedupTTL = 24 * time.Hour
	}
	historyMax := m.HistoryMax
	if historyMax <= 0 {
		historyMax = 1000
	}
	args := make([]any, 0, 6+len(m.Channels))
	args = append(args, m.SeqTTL.Milliseconds(), dedupTTL.Milliseconds(),
		historyMax, m.HistoryTTL.Milliseconds(), m.Head, m.Tail)
	for _, ch := range m.Channels {
		args = append(args, ch)
	}
	res, err := publishScript.Run(ctx, b.publisher, keys, args...).Int64Slice()
	if err != nil {
		return Published{}, fmt.Errorf("pubsub: publish to %v: %w", m.Channels, err)
	}
	if len(res) != 2 {
		return Published{}, fmt.Errorf("pubsub: publish: unexpected reply %v", res)
	}
	return Published{Seq: res[0], Duplicate: res[1] == 1}, nil
}

// Entry is one recorded message of a sequence.
type Entry struct {
	Seq     int64
	Payload []byte
}

// rangeScript reads a sequence's counter, its recorded messages after a
// number and, when KEYS[3] is given, a hash, in one step. KEYS[1]
// counter, KEYS[2] stream; ARGV[1] first id.
var rangeScript = redis.NewScript(`
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local with = {}
if KEYS[3] then with = redis.call('HGETALL', KEYS[3]) end
return {last, redis.call('XRANGE', KEYS[2], ARGV[1], '+'), with}
`)

// Span is what Range read, at one moment.
type Span struct {
	// Entries are the recorded messages, oldest first.
	Entries []Entry
	// Last is the sequence's last number.
	Last int64
	// With holds the fields and values of the hash read along; none if
	// it does not exist.
	With []string
}

// Range returns the recorded messages of a sequence numbered after after
// and the sequence's last number. Messages the history no longer holds
// are missing: the first entry is then numbered beyond after+1, or there
// is none while last > after. When with is not empty, the hash at that
// key, a record the messages belong to, is read in the same step.
func (b *Bus) Range(ctx context.Context, seqKey, history, with string, after int64) (Span, error) {
	keys := []string{seqKey, history}
	if with != "" {
		keys = append(keys, with)
	}
	res, err := rangeScript.Run(ctx, b.rdb, keys, "0-"+strconv.FormatInt(after+1, 10)).Slice()
	if err != nil {
		return Span{}, fmt.Errorf("pubsub: range %s after %d: %w", history, after, err)
	}
	if len(res) != 3 {
		return Span{}, fmt.Errorf("pubsub: range: unexpected reply %v", res)
	}
	var sp Span
	sp.Last, _ = res[0].(int64)
	raw, _ := res[1].([]any)
	sp.Entries = make([]Entry, 0, len(raw))
	for _, r := range raw {
		e, ok := r.([]any)
		if len(e) != 2 || !ok {
			return Span{}, fmt.Errorf("pubsub: range: unexpected entry %v", r)
		}
		id, _ := e[0].(string)
		_, n, _ := strings.Cut(id, "-")
		seq, err := strconv.ParseInt(n, 10, 64)
		if err != nil {
			return Span{}, fmt.Errorf("pubsub: range: entry id %q: %w", id, err)
		}
		fields, _ := e[1].([]any)
		if len(fields) != 2 {
			return Span{}, fmt.Errorf("pubsub: range: entry %s has %d fields", id, len(fields))
		}
		p, _ := fields[1].(string)
		sp.Entries = append(sp.Entries, Entry{Seq: seq, Payload: []byte(p)})
	}
	hash, _ := res[2].([]any)
	for _, v := range hash {
		str, _ := v.(string)
		sp.With = append(sp.With, str)
	}
	return sp, nil
}
