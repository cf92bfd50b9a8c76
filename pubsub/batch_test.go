package pubsub

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/callgate/callgate/internal/redistest"
)

// TestSubscribesAreBatched: the subscribes of many callers that come while
// one is being sent (as after a failover, when every client subscribes
// again at once) go to Redis as one SUBSCRIBE. The send in progress is
// held for as long as it takes the callers to queue, so the test does not
// depend on how the scheduler interleaves them. It needs a real single
// Redis, which counts commands.
func TestSubscribesAreBatched(t *testing.T) {
	srv := redistest.Shared(t)
	if srv.Mode() != redistest.ModeReal {
		t.Skip("counts commands: needs CALLGATE_TEST_REDIS=real")
	}
	rdb := srv.Client(t)
	bus := New(rdb, Config{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		bus.Run(context.Background(), func(string, []byte) {})
	}()
	t.Cleanup(func() {
		bus.Close()
		<-done
	})
	ctx := context.Background()
	prefix := redistest.Prefix(t)
	if err := bus.Subscribe(ctx, prefix+":first"); err != nil {
		t.Fatal(err)
	}
	before := redistest.CommandCalls(t, rdb, "subscribe")

	bus.mu.Lock()
	s := bus.subs[0]
	bus.mu.Unlock()
	s.sendMu.Lock() // a send in progress
	const n = 300
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := bus.Subscribe(ctx, prefix+":"+strconv.Itoa(i)); err != nil {
				t.Error(err)
			}
		})
	}
	for queued := 0; queued < n; runtime.Gosched() {
		bus.mu.Lock()
		queued = len(s.queue)
		bus.mu.Unlock()
	}
	s.sendMu.Unlock()
	s.flush() // what the sender does when its send is done
	wg.Wait()
	if sent := redistest.CommandCalls(t, rdb, "subscribe") - before; sent != 1 {
		t.Fatalf("%d channels subscribed with %d SUBSCRIBE commands, want 1", n, sent)
	}
}
