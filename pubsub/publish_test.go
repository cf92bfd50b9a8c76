package pubsub_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callgate/callgate/internal/bustest"
	"github.com/callgate/callgate/internal/redistest"
	"github.com/callgate/callgate/pubsub"
)

// seqKeys are the keys of one test sequence, in one slot.
type seqKeys struct{ pos, hist, rec, ch, prefix string }

// publisher returns a bus that publishes and is not run.
func (e *env) publisher(t *testing.T) *pubsub.Bus {
	bus := pubsub.New(e.rdb, pubsub.Config{Sharded: e.sharded})
	t.Cleanup(func() { bus.Close() })
	return bus
}

func (e *env) keys(t *testing.T) seqKeys {
	p := e.channel(t, 0) // unique to the test, hash-tagged
	return seqKeys{pos: p + ":pos", hist: p + ":hist", rec: p + ":rec", ch: p + ":ch", prefix: p}
}

// msg is a message whose payload reads "n=<seq>;e=<epoch>;" + text.
func (k seqKeys) msg(text string) pubsub.Message {
	return pubsub.Message{
		Seq: k.pos, History: k.hist, Channels: []string{k.ch},
		Payload: pubsub.Payload{Head: []byte("n="), Mid: []byte(";e="), Tail: []byte(";" + text)},
	}
}

func payload(p pubsub.Position, text string) string {
	return fmt.Sprintf("n=%d;e=%d;%s", p.Seq, p.Epoch, text)
}

func TestPublishNumbersInOrder(t *testing.T) {
	e := newEnv(t)
	k := e.keys(t)
	bus, msgs := e.start(t, pubsub.Config{})
	ctx := context.Background()
	if err := bus.Subscribe(ctx, k.ch); err != nil {
		t.Fatal(err)
	}
	var epoch int64
	for i := 1; i <= 50; i++ {
		res, err := bus.Publish(ctx, k.msg("x"))
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			epoch = res.Epoch
		}
		if res.Seq != int64(i) || res.Epoch != epoch || epoch == 0 || res.Duplicate {
			t.Fatalf("publish %d: got %+v", i, res)
		}
	}
	for i := 1; i <= 50; i++ {
		want := bustest.Message{Channel: k.ch, Payload: payload(pubsub.Position{Epoch: epoch, Seq: int64(i)}, "x")}
		if m := bustest.Next(t, msgs); m != want {
			t.Fatalf("message %d: got %+v, want %+v", i, m, want)
		}
	}
}

func TestPublishDeduplicates(t *testing.T) {
	e := newEnv(t)
	k := e.keys(t)
	bus, msgs := e.start(t, pubsub.Config{})
	ctx := context.Background()
	if err := bus.Subscribe(ctx, k.ch); err != nil {
		t.Fatal(err)
	}
	m := k.msg("x")
	m.Dedup = k.prefix + ":d1"
	first, err := bus.Publish(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	again, err := bus.Publish(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !again.Duplicate || again.Position != first.Position {
		t.Fatalf("first %+v, again %+v", first, again)
	}
	m.Dedup = k.prefix + ":d2"
	if _, err := bus.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	if got := bustest.Next(t, msgs).Payload; got != payload(first.Position, "x") {
		t.Fatalf("first delivery %q", got)
	}
	if got := bustest.Next(t, msgs).Payload; got != payload(pubsub.Position{Epoch: first.Epoch, Seq: 2}, "x") {
		t.Fatalf("second delivery %q (the duplicate must not be published)", got)
	}
}

func TestHistoryRange(t *testing.T) {
	e := newEnv(t)
	k := e.keys(t)
	bus := e.publisher(t)
	ctx := context.Background()
	var epoch int64
	for i := 1; i <= 300; i++ {
		m := k.msg("m")
		m.HistoryMax = 10
		res, err := bus.Publish(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		epoch = res.Epoch
	}
	if err := e.rdb.HSet(ctx, k.rec, "k", "v").Err(); err != nil {
		t.Fatal(err)
	}
	at := func(n int64) pubsub.Position { return pubsub.Position{Epoch: epoch, Seq: n} }
	sp, err := bus.Range(ctx, k.pos, k.hist, k.rec, at(295), 0)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Last != at(300) || len(sp.Entries) != 5 || !slices.Equal(sp.With, []string{"k", "v"}) {
		t.Fatalf("after 295: last %v, %d entries, with %q", sp.Last, len(sp.Entries), sp.With)
	}
	for i, en := range sp.Entries {
		if want := at(int64(296 + i)); en.Position != want || string(en.Payload) != payload(want, "m") {
			t.Fatalf("entry %d: %v %q", i, en.Position, en.Payload)
		}
	}
	if sp, err = bus.Range(ctx, k.pos, k.hist, "", at(290), 3); err != nil || len(sp.Entries) != 3 || sp.Entries[2].Position != at(293) {
		t.Fatalf("limited to 3: %+v %v", sp.Entries, err)
	}
	sp, err = bus.Range(ctx, k.pos, k.hist, "", pubsub.Position{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	all := sp.Entries
	if len(all) < 10 || len(all) > 200 || all[0].Seq == 1 || all[len(all)-1].Position != at(300) {
		t.Fatalf("trimmed history: %d entries from %v to %v", len(all), all[0].Position, all[len(all)-1].Position)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq != all[i-1].Seq+1 {
			t.Fatalf("history not contiguous at %v", all[i].Position)
		}
	}
	sp, err = bus.Range(ctx, k.prefix+":nopos", k.prefix+":nohist", k.prefix+":norec", pubsub.Position{}, 0)
	if err != nil || len(sp.Entries) != 0 || sp.Last != (pubsub.Position{}) || len(sp.With) != 0 {
		t.Fatalf("empty sequence: %+v %v", sp, err)
	}
}

// TestLostPositionContinuesFromHistory: when Redis loses a sequence's
// position but keeps its history (eviction did this to 6 of 150 calls in a
// trial), numbering goes on after the history's last entry, in its epoch:
// no number below what the history holds, no failed publish.
func TestLostPositionContinuesFromHistory(t *testing.T) {
	e := newEnv(t)
	k := e.keys(t)
	bus := e.publisher(t)
	ctx := context.Background()
	var last pubsub.Published
	for range 5 {
		var err error
		if last, err = bus.Publish(ctx, k.msg("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.rdb.Del(ctx, k.pos).Err(); err != nil {
		t.Fatal(err)
	}
	res, err := bus.Publish(ctx, k.msg("x"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (pubsub.Position{Epoch: last.Epoch, Seq: 6}); res.Position != want {
		t.Fatalf("after losing the position: %v, want %v", res.Position, want)
	}
	// A position behind its history (restored from an older copy) is
	// caught up the same way.
	if err := e.rdb.HSet(ctx, k.pos, "n", 2).Err(); err != nil {
		t.Fatal(err)
	}
	if res, err = bus.Publish(ctx, k.msg("x")); err != nil || res.Seq != 7 {
		t.Fatalf("position behind the history: %+v %v", res, err)
	}
}

// TestLostStateStartsNewEpoch: when Redis loses both (a restart without
// persistence), numbering restarts at 1 in a later epoch, so subscribers
// that saw the old numbers can tell the new events apart.
func TestLostStateStartsNewEpoch(t *testing.T) {
	e := newEnv(t)
	k := e.keys(t)
	bus := e.publisher(t)
	ctx := context.Background()
	first, err := bus.Publish(ctx, k.msg("x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.Del(ctx, k.pos, k.hist).Err(); err != nil {
		t.Fatal(err)
	}
	res, err := bus.Publish(ctx, k.msg("x"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Seq != 1 || res.Epoch < first.Epoch {
		t.Fatalf("after losing everything: %v, first was %v", res.Position, first.Position)
	}
	// Epochs come from Redis's clock in milliseconds; a new one is
	// strictly later than the last it knows of.
	if err := e.rdb.HSet(ctx, k.pos, "rid", "another-process").Err(); err != nil {
		t.Fatal(err)
	}
	again, err := bus.Publish(ctx, k.msg("x"))
	if err != nil {
		t.Fatal(err)
	}
	if e.srv.Mode() == redistest.ModeMini {
		// miniredis has no INFO server, hence no process id to compare.
		if again.Position != (pubsub.Position{Epoch: res.Epoch, Seq: 2}) {
			t.Fatalf("on miniredis: %v", again.Position)
		}
		return
	}
	if again.Seq != 1 || again.Epoch <= res.Epoch {
		t.Fatalf("position written by another Redis process: %v, before %v", again.Position, res.Position)
	}
}

// TestFailedPublishLeavesNoTrace: nothing is written before the step that
// can fail, so a failed publish leaves no dedup mark (its retry is
// published, not called a duplicate) and no position.
func TestFailedPublishLeavesNoTrace(t *testing.T) {
	e := newEnv(t)
	k := e.keys(t)
	bus := e.publisher(t)
	ctx := context.Background()
	if err := e.rdb.Set(ctx, k.hist, "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	m := k.msg("x")
	m.Dedup = k.prefix + ":mark"
	if _, err := bus.Publish(ctx, m); err == nil {
		t.Fatal("publish into a broken history succeeded")
	}
	if n, err := e.rdb.Exists(ctx, m.Dedup, k.pos).Result(); err != nil || n != 0 {
		t.Fatalf("a failed publish left %d keys (%v)", n, err)
	}
	if err := e.rdb.Del(ctx, k.hist).Err(); err != nil {
		t.Fatal(err)
	}
	res, err := bus.Publish(ctx, m)
	if err != nil || res.Duplicate || res.Seq != 1 {
		t.Fatalf("retry: %+v %v", res, err)
	}
}

// TestTransitionIsAnnouncedFirst: a transition and its announcing message
// are made in the message's step, numbered just before it, once.
func TestTransitionIsAnnouncedFirst(t *testing.T) {
	e := newEnv(t)
	k := e.keys(t)
	bus, msgs := e.start(t, pubsub.Config{})
	ctx := context.Background()
	if err := bus.Subscribe(ctx, k.ch); err != nil {
		t.Fatal(err)
	}
	m := k.msg("event")
	m.Record, m.Fields = k.rec, []string{"who", "status", "updated"}
	m.Transition = &pubsub.Transition{
		Field: "status", From: "initiated", To: "running", Set: []string{"updated", "now"},
		Payload: pubsub.Payload{Head: []byte("n="), Mid: []byte(";e="), Tail: []byte(";status")},
	}
	if _, err := bus.Publish(ctx, m); !errors.Is(err, pubsub.ErrNoRecord) {
		t.Fatalf("without the record: %v", err)
	}
	if err := e.rdb.HSet(ctx, k.rec, "status", "initiated", "who", "CA1").Err(); err != nil {
		t.Fatal(err)
	}
	// Concurrent first messages: exactly one transition, announced
	// before anything after it.
	const n = 20
	var wg sync.WaitGroup
	var transitions atomic.Int32
	for range n {
		wg.Go(func() {
			res, err := bus.Publish(ctx, m)
			if err != nil {
				t.Error(err)
				return
			}
			if res.Transitioned {
				transitions.Add(1)
			}
			if !slices.Contains(res.Record, "running") {
				t.Errorf("record after the step: %q", res.Record)
			}
		})
	}
	wg.Wait()
	if transitions.Load() != 1 {
		t.Fatalf("%d transitions", transitions.Load())
	}
	first := bustest.Next(t, msgs).Payload
	if want := ";status"; first[len(first)-len(want):] != want || first[:4] != "n=1;" {
		t.Fatalf("first message %q, want the announcement numbered 1", first)
	}
	for i := 2; i <= n+1; i++ {
		if got := bustest.Next(t, msgs).Payload; got[:len("n="+strconv.Itoa(i)+";")] != "n="+strconv.Itoa(i)+";" {
			t.Fatalf("message %d: %q", i, got)
		}
	}
	rec, err := e.rdb.HGetAll(ctx, k.rec).Result()
	if err != nil || rec["status"] != "running" || rec["updated"] != "now" {
		t.Fatalf("record %v %v", rec, err)
	}
}

// TestFieldIsCarried: a record's field reaches the payload, raw or as a
// JSON string, and names one more channel.
func TestFieldIsCarried(t *testing.T) {
	e := newEnv(t)
	k := e.keys(t)
	bus, msgs := e.start(t, pubsub.Config{})
	ctx := context.Background()
	byField := e.channel(t, 1) + ":by:"
	name := func(v string) string { return byField + v }
	for _, ch := range []string{k.ch, name("c/1")} {
		if err := bus.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	m := k.msg("")
	m.Record, m.Fields, m.Field, m.RawField, m.FieldPrefix = k.rec, []string{"x"}, "conv", "conv_json", []byte(",conv=")
	m.FieldChannel = &pubsub.FieldChannel{Prefix: byField, Name: name}
	if err := e.rdb.HSet(ctx, k.rec, "x", "y").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	if got := bustest.Next(t, msgs); got.Channel != k.ch || got.Payload[len(got.Payload)-1] != ';' {
		t.Fatalf("without the field: %+v", got)
	}
	if err := e.rdb.HSet(ctx, k.rec, "conv", "c/1").Err(); err != nil {
		t.Fatal(err)
	}
	res, err := bus.Publish(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got := bustest.Next(t, msgs)
		want := payload(res.Position, ",conv=")
		if got.Payload[:len(want)] != want || (got.Payload[len(want):] != `"c/1"` && got.Payload[len(want):] != `"c\/1"`) {
			t.Fatalf("with the field: %+v", got)
		}
	}
	if err := e.rdb.HSet(ctx, k.rec, "conv_json", `"raw"`).Err(); err != nil {
		t.Fatal(err)
	}
	if res, err = bus.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	if got := bustest.Next(t, msgs); got.Payload != payload(res.Position, `,conv="raw"`) {
		t.Fatalf("with the raw field: %+v", got)
	}
}

// pipelineCounter counts the pipelines a client sends, and the commands in
// them.
type pipelineCounter struct{ pipelines, commands atomic.Int64 }

func (*pipelineCounter) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (*pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (p *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		p.pipelines.Add(1)
		p.commands.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// TestConcurrentPublishesArePipelined: publishes made at once reach Redis
// in fewer round trips than there are publishes, each still numbered and
// delivered once.
func TestConcurrentPublishesArePipelined(t *testing.T) {
	e := newEnv(t)
	k := e.keys(t)
	var count pipelineCounter
	e.rdb.AddHook(&count)
	bus, msgs := e.start(t, pubsub.Config{})
	ctx := context.Background()
	if err := bus.Subscribe(ctx, k.ch); err != nil {
		t.Fatal(err)
	}
	const n = 400
	var wg sync.WaitGroup
	seqs := make(chan int64, n)
	for range n {
		wg.Go(func() {
			res, err := bus.Publish(ctx, k.msg("p"))
			if err != nil {
				t.Error(err)
			}
			seqs <- res.Seq
		})
	}
	wg.Wait()
	close(seqs)
	seen := map[int64]bool{}
	for s := range seqs {
		seen[s] = true
	}
	if len(seen) != n || seen[0] {
		t.Fatalf("%d distinct numbers for %d publishes", len(seen), n)
	}
	for range n {
		bustest.Next(t, msgs)
	}
	t.Logf("%d publishes in %d pipelines", count.commands.Load(), count.pipelines.Load())
	if p := count.pipelines.Load(); p == 0 || p >= n {
		t.Fatalf("%d publishes went out in %d pipelines", n, p)
	}
}

// TestWaitForReplicas: with WaitReplicas, Publish returns once that many
// replicas have the step's writes, and fails (ErrNotReplicated) when they
// do not within WaitTimeout; the message was published all the same, and
// publishing it again is a duplicate, not a second copy.
func TestWaitForReplicas(t *testing.T) {
	e := newEnv(t)
	k := e.keys(t)
	replicas := 0
	switch e.srv.Mode() {
	case redistest.ModeCluster, redistest.ModeSentinel:
		replicas = 1 // one replica per master
	case redistest.ModeMini:
		t.Skip("miniredis has no WAIT")
	}
	ctx := context.Background()
	m := k.msg("w")
	m.Dedup = k.prefix + ":w1"
	bus := pubsub.New(e.rdb, pubsub.Config{Sharded: e.sharded, WaitReplicas: 1, WaitTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { bus.Close() })
	res, err := bus.Publish(ctx, m)
	if replicas == 0 {
		if !errors.Is(err, pubsub.ErrNotReplicated) {
			t.Fatalf("without replicas: %+v %v", res, err)
		}
		plain := pubsub.New(e.rdb, pubsub.Config{Sharded: e.sharded})
		t.Cleanup(func() { plain.Close() })
		again, err := plain.Publish(ctx, m)
		if err != nil || !again.Duplicate || again.Seq != 1 {
			t.Fatalf("the retry: %+v %v", again, err)
		}
		return
	}
	if err != nil || res.Seq != 1 {
		t.Fatalf("with a replica: %+v %v", res, err)
	}
	strict := pubsub.New(e.rdb, pubsub.Config{Sharded: e.sharded, WaitReplicas: 2, WaitTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { strict.Close() })
	m.Dedup = k.prefix + ":w2"
	if _, err := strict.Publish(ctx, m); !errors.Is(err, pubsub.ErrNotReplicated) {
		t.Fatalf("two replicas asked for, one there: %v", err)
	}
}
