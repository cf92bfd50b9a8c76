package pubsub

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
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
// clock), the cutoff (now less renewEvery, empty for no expiries), the
// channels, the record's
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
		m.FieldPrefix, fieldChan, m.Payload.Head, m.Payload.Mid, m.Payload.Tail, m.Payload.Rest)
	now, cutoff := time.Now().UnixMilli(), ""
	if every := renewEvery(m.SeqTTL, m.HistoryTTL); every > 0 {
		cutoff = strconv.FormatInt(now-every, 10)
	}
	args = append(args, now, cutoff)
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
	return b.steps.run(ctx, publishStep, func(asFunction bool) *redis.Cmd {
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
	run := b.steps.run(ctx, publishStep, func(asFunction bool) *redis.Cmd {
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
