package pubsub_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/redistest"
	"github.com/callgate/callgate/pubsub"
	"github.com/redis/go-redis/v9"
)

type received struct{ channel, payload string }

// startBus runs a Bus against srv and returns it with the stream of
// messages its handler saw.
func startBus(t *testing.T, srv *redistest.Server) (*pubsub.Bus, <-chan received) {
	t.Helper()
	return startBusWith(t, srv, pubsub.Config{})
}

func startBusWith(t *testing.T, srv *redistest.Server, cfg pubsub.Config) (*pubsub.Bus, <-chan received) {
	t.Helper()
	bus := pubsub.New(srv.Client(t), cfg)
	out := make(chan received, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		bus.Run(ctx, func(ch string, p []byte) { out <- received{ch, string(p)} })
	}()
	t.Cleanup(func() {
		cancel()
		bus.Close()
		<-done
	})
	return bus, out
}

func next(t *testing.T, c <-chan received) received {
	t.Helper()
	select {
	case m := <-c:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
		return received{}
	}
}

func TestPublishNumbersInOrder(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	bus, msgs := startBus(t, srv)
	ctx := context.Background()
	chA, chB := prefix+":a", prefix+":b"
	for _, ch := range []string{chA, chB} {
		if err := bus.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	pub := pubsub.New(srv.Client(t), pubsub.Config{})
	for i := 1; i <= 50; i++ {
		res, err := pub.Publish(ctx, pubsub.Message{
			Seq:      prefix + ":seq",
			Channels: []string{chA, chB},
			Head:     []byte("n="),
			Tail:     []byte(";"),
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Seq != int64(i) || res.Duplicate {
			t.Fatalf("publish %d: got %+v", i, res)
		}
	}
	for i := 1; i <= 50; i++ {
		for _, ch := range []string{chA, chB} {
			m := next(t, msgs)
			want := received{ch, fmt.Sprintf("n=%d;", i)}
			if m != want {
				t.Fatalf("message %d: got %+v, want %+v", i, m, want)
			}
		}
	}
}

func TestPublishDeduplicates(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	bus, msgs := startBus(t, srv)
	ctx := context.Background()
	ch := prefix + ":c"
	if err := bus.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	m := pubsub.Message{Seq: prefix + ":seq", Dedup: prefix + ":d1", Channels: []string{ch}, Head: []byte("x")}
	first, err := bus.Publish(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	again, err := bus.Publish(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !again.Duplicate || again.Seq != first.Seq {
		t.Fatalf("first %+v, again %+v", first, again)
	}
	m.Dedup = prefix + ":d2"
	if _, err := bus.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	if got := next(t, msgs).payload; got != "x1" {
		t.Fatalf("first delivery %q", got)
	}
	if got := next(t, msgs).payload; got != "x2" {
		t.Fatalf("second delivery %q, want x2 (the duplicate must not be published)", got)
	}
}

// TestSubscriptionsAreCounted checks that the process holds a Redis
// subscription exactly while it has local subscribers.
func TestSubscriptionsAreCounted(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	bus, msgs := startBus(t, srv)
	rdb := srv.Client(t)
	ctx := context.Background()
	ch := prefix + ":counted"
	numsub := func() int64 {
		t.Helper()
		n, err := rdb.PubSubNumSub(ctx, ch).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n[ch]
	}
	for range 3 {
		if err := bus.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	if got := numsub(); got != 1 {
		t.Fatalf("after 3 local subscribers: %d Redis subscriptions, want 1", got)
	}
	if bus.Channels() != 1 {
		t.Fatalf("Channels() = %d", bus.Channels())
	}
	for range 2 {
		if err := bus.Unsubscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	if got := numsub(); got != 1 {
		t.Fatalf("with 1 local subscriber left: %d Redis subscriptions, want 1", got)
	}
	if err := bus.Unsubscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	// The UNSUBSCRIBE is confirmed asynchronously; a publish on another
	// channel that this bus still follows orders after it.
	marker := prefix + ":marker"
	if err := bus.Subscribe(ctx, marker); err != nil {
		t.Fatal(err)
	}
	if got := numsub(); got != 0 {
		t.Fatalf("after the last local subscriber left: %d Redis subscriptions, want 0", got)
	}
	if bus.Channels() != 1 {
		t.Fatalf("Channels() = %d, want 1 (the marker)", bus.Channels())
	}
	if err := rdb.Publish(ctx, ch, "late").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Publish(ctx, marker, "m").Err(); err != nil {
		t.Fatal(err)
	}
	if m := next(t, msgs); m.channel != marker {
		t.Fatalf("got %+v after unsubscribing", m)
	}
}

// TestResubscribesAfterConnectionLoss kills the subscriber connection and
// checks that the channel is followed again without any local action.
func TestResubscribesAfterConnectionLoss(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	bus, msgs := startBus(t, srv)
	rdb := srv.Client(t)
	ctx := context.Background()
	ch := prefix + ":resub"
	if err := bus.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if srv.Real {
		if err := rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
			t.Fatal(err)
		}
	} else {
		srv.Mini.Close()
		if err := srv.Mini.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := rdb.PubSubNumSub(ctx, ch).Result()
		if err == nil && n[ch] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not re-subscribed within 10s (numsub %v, err %v)", n, err)
		}
		time.Sleep(10 * time.Millisecond) // polling Redis state, which offers no notification
	}
	if err := rdb.Publish(ctx, ch, "after").Err(); err != nil {
		t.Fatal(err)
	}
	if m := next(t, msgs); m.payload != "after" {
		t.Fatalf("got %+v", m)
	}
}

// TestHistoryRange checks that published messages are recorded in the
// same step, read back in order after any number, and trimmed to a bound.
func TestHistoryRange(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	bus := pubsub.New(srv.Client(t), pubsub.Config{})
	ctx := context.Background()
	seq, hist := prefix+":seq", prefix+":hist"
	for i := 1; i <= 300; i++ {
		_, err := bus.Publish(ctx, pubsub.Message{
			Seq: seq, History: hist, HistoryMax: 10,
			Channels: []string{prefix + ":ch"}, Head: []byte("m"), Tail: []byte("."),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	rec := prefix + ":rec"
	if err := srv.Client(t).HSet(ctx, rec, "k", "v").Err(); err != nil {
		t.Fatal(err)
	}
	sp, err := bus.Range(ctx, seq, hist, rec, 295)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Last != 300 || len(sp.Entries) != 5 || !slices.Equal(sp.With, []string{"k", "v"}) {
		t.Fatalf("after 295: last %d, %d entries, with %q", sp.Last, len(sp.Entries), sp.With)
	}
	for i, e := range sp.Entries {
		if want := int64(296 + i); e.Seq != want || string(e.Payload) != fmt.Sprintf("m%d.", want) {
			t.Fatalf("entry %d: %d %q", i, e.Seq, e.Payload)
		}
	}
	sp, err = bus.Range(ctx, seq, hist, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	all := sp.Entries
	if len(all) < 10 || len(all) > 200 || all[0].Seq == 1 || all[len(all)-1].Seq != 300 {
		t.Fatalf("trimmed history: %d entries from %d to %d", len(all), all[0].Seq, all[len(all)-1].Seq)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq != all[i-1].Seq+1 {
			t.Fatalf("history not contiguous at %d", all[i].Seq)
		}
	}
	sp, err = bus.Range(ctx, prefix+":noseq", prefix+":nohist", prefix+":norec", 0)
	if err != nil || len(sp.Entries) != 0 || sp.Last != 0 || len(sp.With) != 0 {
		t.Fatalf("empty sequence: %+v %v", sp, err)
	}
}

// TestConcurrentSubscribesAreBatched subscribes to many channels at once,
// as clients do after a failover: every one is confirmed, and with a real
// Redis the SUBSCRIBE commands are fewer than the channels.
func TestConcurrentSubscribesAreBatched(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	bus, _ := startBus(t, srv)
	rdb := srv.Client(t)
	ctx := context.Background()
	const n = 300
	calls := func() int64 { return commandCalls(t, srv, "subscribe") }
	before := calls()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- bus.Subscribe(ctx, fmt.Sprintf("%s:b%d", prefix, i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if bus.Channels() != n {
		t.Fatalf("Channels() = %d", bus.Channels())
	}
	for _, i := range []int{0, n / 2, n - 1} {
		ch := fmt.Sprintf("%s:b%d", prefix, i)
		if got, _ := rdb.PubSubNumSub(ctx, ch).Result(); got[ch] != 1 {
			t.Fatalf("%s has %d subscribers in Redis", ch, got[ch])
		}
	}
	if srv.Real {
		sent := calls() - before
		t.Logf("%d channels subscribed with %d SUBSCRIBE commands", n, sent)
		if sent >= n {
			t.Fatalf("%d SUBSCRIBE commands for %d channels: not batched", sent, n)
		}
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := bus.Unsubscribe(ctx, fmt.Sprintf("%s:b%d", prefix, i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if bus.Channels() != 0 {
		t.Fatalf("Channels() = %d after unsubscribing all", bus.Channels())
	}
}

// commandCalls returns how many times a real Redis ran command; 0 on
// miniredis, which does not count.
func commandCalls(t *testing.T, srv *redistest.Server, command string) int64 {
	t.Helper()
	if !srv.Real {
		return 0
	}
	info, err := srv.Client(t).Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+command+":calls="); ok {
			v, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
			return v
		}
	}
	return 0
}

// TestLingeringChannels: with Linger, a channel left by its last local
// subscriber stays subscribed for a while. A Subscribe then needs no
// SUBSCRIBE, messages still reach the handler, and the channels whose
// time is up are unsubscribed together.
func TestLingeringChannels(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	bus, msgs := startBusWith(t, srv, pubsub.Config{Linger: 300 * time.Millisecond})
	rdb := srv.Client(t)
	ctx := context.Background()
	const n = 100
	ch := func(i int) string { return fmt.Sprintf("%s:l%d", prefix, i) }
	numsub := func(i int) int64 {
		t.Helper()
		got, err := rdb.PubSubNumSub(ctx, ch(i)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return got[ch(i)]
	}
	for i := range n {
		if err := bus.Subscribe(ctx, ch(i)); err != nil {
			t.Fatal(err)
		}
	}
	subscribes, unsubscribes := commandCalls(t, srv, "subscribe"), commandCalls(t, srv, "unsubscribe")
	for i := range n {
		if err := bus.Unsubscribe(ctx, ch(i)); err != nil {
			t.Fatal(err)
		}
	}
	if bus.Channels() != n || numsub(0) != 1 {
		t.Fatalf("right after the last subscribers left: Channels() = %d, Redis subscribers %d", bus.Channels(), numsub(0))
	}
	if err := rdb.Publish(ctx, ch(1), "meanwhile").Err(); err != nil {
		t.Fatal(err)
	}
	if m := next(t, msgs); m != (received{ch(1), "meanwhile"}) {
		t.Fatalf("got %+v", m)
	}
	if err := bus.Subscribe(ctx, ch(0)); err != nil {
		t.Fatal(err)
	}
	if got := commandCalls(t, srv, "subscribe") - subscribes; got != 0 {
		t.Fatalf("subscribing again to a lingering channel sent %d SUBSCRIBE", got)
	}

	deadline := time.Now().Add(5 * time.Second)
	for bus.Channels() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("Channels() = %d 5s after the channels were left, want 1", bus.Channels())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The UNSUBSCRIBE is confirmed asynchronously; a publish on the
	// channel still followed orders after it.
	if err := rdb.Publish(ctx, ch(1), "late").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Publish(ctx, ch(0), "followed").Err(); err != nil {
		t.Fatal(err)
	}
	if m := next(t, msgs); m != (received{ch(0), "followed"}) {
		t.Fatalf("got %+v after the channels were unsubscribed", m)
	}
	if numsub(0) != 1 || numsub(1) != 0 || numsub(n-1) != 0 {
		t.Fatalf("Redis subscribers: %d, %d, %d; want 1, 0, 0", numsub(0), numsub(1), numsub(n-1))
	}
	if srv.Real {
		sent := commandCalls(t, srv, "unsubscribe") - unsubscribes
		t.Logf("%d channels unsubscribed with %d UNSUBSCRIBE commands", n-1, sent)
		if sent >= n/10 {
			t.Fatalf("%d UNSUBSCRIBE commands for %d channels: not batched", sent, n-1)
		}
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
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	bus, msgs := startBus(t, srv)
	ctx := context.Background()
	ch := prefix + ":piped"
	if err := bus.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	rdb := srv.Client(t)
	var count pipelineCounter
	rdb.AddHook(&count)
	pub := pubsub.New(rdb, pubsub.Config{})
	t.Cleanup(func() { pub.Close() })
	const n = 400
	var wg sync.WaitGroup
	seqs := make(chan int64, n)
	for i := range n {
		wg.Go(func() {
			res, err := pub.Publish(ctx, pubsub.Message{Seq: prefix + ":seq", Channels: []string{ch}, Head: []byte(strconv.Itoa(i) + ":")})
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
		next(t, msgs)
	}
	t.Logf("%d publishes in %d pipelines", count.commands.Load(), count.pipelines.Load())
	if p := count.pipelines.Load(); p == 0 || p >= n {
		t.Fatalf("%d publishes went out in %d pipelines", n, p)
	}
}
