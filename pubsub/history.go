package pubsub

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"
)

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
