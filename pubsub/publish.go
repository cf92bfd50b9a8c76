package pubsub

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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

// publishScript numbers, deduplicates and publishes in one step.
// KEYS[1] counter, KEYS[2] optional dedup mark.
// ARGV: counter TTL ms (0: none), dedup TTL ms, head, tail, channels...
var publishScript = redis.NewScript(`
if #KEYS > 1 then
  local prev = redis.call('GET', KEYS[2])
  if prev then return {tonumber(prev), 1} end
end
local seq = redis.call('INCR', KEYS[1])
if tonumber(ARGV[1]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if #KEYS > 1 then redis.call('SET', KEYS[2], seq, 'PX', ARGV[2]) end
local payload = ARGV[3] .. seq .. ARGV[4]
for i = 5, #ARGV do redis.call('PUBLISH', ARGV[i], payload) end
return {seq, 0}
`)

// Publish numbers m, and unless it is a duplicate, publishes it to every
// channel. An error means nothing may have been published; publishing the
// same message again (with its Dedup key) is safe.
func (b *Bus) Publish(ctx context.Context, m Message) (Published, error) {
	if m.Seq == "" {
		return Published{}, errors.New("pubsub: message without a sequence key")
	}
	keys := []string{m.Seq}
	if m.Dedup != "" {
		keys = append(keys, m.Dedup)
	}
	dedupTTL := m.DedupTTL
	if dedupTTL <= 0 {
		dedupTTL = 24 * time.Hour
	}
	args := make([]any, 0, 4+len(m.Channels))
	args = append(args, m.SeqTTL.Milliseconds(), dedupTTL.Milliseconds(), m.Head, m.Tail)
	for _, ch := range m.Channels {
		args = append(args, ch)
	}
	res, err := publishScript.Run(ctx, b.rdb, keys, args...).Int64Slice()
	if err != nil {
		return Published{}, fmt.Errorf("pubsub: publish to %v: %w", m.Channels, err)
	}
	if len(res) != 2 {
		return Published{}, fmt.Errorf("pubsub: publish: unexpected reply %v", res)
	}
	return Published{Seq: res[0], Duplicate: res[1] == 1}, nil
}

// FormatSeq formats a sequence number as it appears in payloads.
func FormatSeq(seq int64) string { return strconv.FormatInt(seq, 10) }
