// Package bustest is one suite of behaviours that every bus of callgate
// must have, run against each of them: the Redis bus (package pubsub) on
// miniredis, a real Redis, a Redis Cluster and Sentinel, and the in-memory
// bus the gateway's tests use (internal/membus), so that the double is
// proven to behave as the real thing.
package bustest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// Bus is what the suite exercises.
type Bus interface {
	// Subscribe returns once messages published on channel reach the
	// bus's handler; subscriptions are counted per channel.
	Subscribe(ctx context.Context, channel string) error
	// Unsubscribe drops one count; the last one ends the subscription.
	Unsubscribe(ctx context.Context, channel string) error
	// Channels is how many channels the bus is subscribed to.
	Channels() int
	// Healthy is false while a subscription the bus holds is not in place.
	Healthy() bool
	// Reconnects counts restored subscriber connections.
	Reconnects() int64
	// Close stops the bus.
	Close() error
}

// Message is what the bus's handler received.
type Message struct{ Channel, Payload string }

// Env is one bus implementation and its backend.
type Env struct {
	// Start returns a running bus, closed at the test's end, whose
	// handler sends every message to the returned channel, and which
	// calls the hooks: onLost with the channels of a connection that
	// failed, onReconnect with the channels it caught up after the
	// connection was restored.
	Start func(t *testing.T, h Hooks) (Bus, <-chan Message)
	// Publish publishes payload on channel as another process would.
	Publish func(t *testing.T, channel, payload string)
	// Subscribed reports how many subscriptions the backend holds on
	// channel, from all buses.
	Subscribed func(t *testing.T, channel string) int
	// Break breaks every subscriber connection of every bus, as a
	// restart of the backend or a network failure does.
	Break func(t *testing.T)
	// Channel names channel i of the test: unique to the test, and, for
	// sharded buses, spread so that some share a slot and some do not.
	Channel func(t *testing.T, i int) string
}

// Hooks are the bus's callbacks about lost connections; nil ones are not
// set.
type Hooks struct {
	OnLost      func(channels []string)
	OnReconnect func(channels []string)
}

// Wait bounds every wait for something the bus must do.
const Wait = 10 * time.Second

// Run runs the suite against env.
func Run(t *testing.T, env Env) {
	t.Run("ConfirmedBeforeReturn", func(t *testing.T) { confirmedBeforeReturn(t, env) })
	t.Run("ReferenceCounted", func(t *testing.T) { referenceCounted(t, env) })
	t.Run("OrderedPerChannel", func(t *testing.T) { orderedPerChannel(t, env) })
	t.Run("ConcurrentSubscribes", func(t *testing.T) { concurrentSubscribes(t, env) })
	t.Run("ReconnectSignalled", func(t *testing.T) { reconnectSignalled(t, env) })
	t.Run("Close", func(t *testing.T) { closeStops(t, env) })
}

// Next returns the next message, or fails the test after Wait.
func Next(t *testing.T, msgs <-chan Message) Message {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(Wait):
		t.Fatal("no message within", Wait)
		return Message{}
	}
}

// WaitFor waits until cond holds, checking whenever tick fires.
func WaitFor(t *testing.T, what string, tick <-chan struct{}, cond func() bool) {
	t.Helper()
	deadline := time.After(Wait)
	for !cond() {
		select {
		case <-tick:
		case <-deadline:
			t.Fatalf("%s: not within %s", what, Wait)
		}
	}
}

func confirmedBeforeReturn(t *testing.T, env Env) {
	bus, msgs := env.Start(t, Hooks{})
	ctx := context.Background()
	for i := range 5 {
		ch := env.Channel(t, i)
		if err := bus.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
		env.Publish(t, ch, "right after")
		if m := Next(t, msgs); m != (Message{ch, "right after"}) {
			t.Fatalf("got %+v", m)
		}
	}
}

func referenceCounted(t *testing.T, env Env) {
	bus, msgs := env.Start(t, Hooks{})
	ctx := context.Background()
	ch := env.Channel(t, 0)
	for range 2 {
		if err := bus.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	if n := env.Subscribed(t, ch); n != 1 {
		t.Fatalf("two local subscribers hold %d subscriptions in the backend, want 1", n)
	}
	if err := bus.Unsubscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	env.Publish(t, ch, "one left")
	if m := Next(t, msgs); m != (Message{ch, "one left"}) {
		t.Fatalf("got %+v", m)
	}
	if err := bus.Unsubscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	// Channels() counts a channel until its unsubscription is confirmed.
	WaitFor(t, "channel released", Tick(t), func() bool { return bus.Channels() == 0 })
	if n := env.Subscribed(t, ch); n != 0 {
		t.Fatalf("after the last local subscriber left, the backend holds %d subscriptions", n)
	}
	env.Publish(t, ch, "nobody")
	other := env.Channel(t, 1)
	if err := bus.Subscribe(ctx, other); err != nil {
		t.Fatal(err)
	}
	env.Publish(t, other, "proof")
	if m := Next(t, msgs); m != (Message{other, "proof"}) {
		t.Fatalf("got %+v after unsubscribing", m)
	}
}

func orderedPerChannel(t *testing.T, env Env) {
	bus, msgs := env.Start(t, Hooks{})
	ctx := context.Background()
	const channels, each = 4, 100
	var names []string
	for i := range channels {
		names = append(names, env.Channel(t, i))
		if err := bus.Subscribe(ctx, names[i]); err != nil {
			t.Fatal(err)
		}
	}
	for j := range each {
		for _, ch := range names {
			env.Publish(t, ch, fmt.Sprint(j))
		}
	}
	next := map[string]int{}
	for range channels * each {
		m := Next(t, msgs)
		if want := fmt.Sprint(next[m.Channel]); m.Payload != want {
			t.Fatalf("%s: got %s, want %s", m.Channel, m.Payload, want)
		}
		next[m.Channel]++
	}
}

func concurrentSubscribes(t *testing.T, env Env) {
	bus, msgs := env.Start(t, Hooks{})
	ctx := context.Background()
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := bus.Subscribe(ctx, env.Channel(t, i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := bus.Channels(); got != n {
		t.Fatalf("Channels() = %d, want %d", got, n)
	}
	for _, i := range []int{0, n / 2, n - 1} {
		env.Publish(t, env.Channel(t, i), "x")
		if m := Next(t, msgs); m.Channel != env.Channel(t, i) {
			t.Fatalf("got %+v", m)
		}
	}
	for i := range n {
		wg.Go(func() {
			if err := bus.Unsubscribe(ctx, env.Channel(t, i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	WaitFor(t, "every channel released", Tick(t), func() bool { return bus.Channels() == 0 })
}

func reconnectSignalled(t *testing.T, env Env) {
	caught := make(chan []string, 16)
	var mu sync.Mutex
	var lost []string
	bus, msgs := env.Start(t, Hooks{
		OnLost: func(chs []string) {
			mu.Lock()
			defer mu.Unlock()
			lost = append(lost, chs...)
		},
		OnReconnect: func(chs []string) {
			mu.Lock()
			n := len(lost)
			mu.Unlock()
			if n < len(chs) {
				t.Errorf("caught up %v, lost only %d channels before", chs, n)
			}
			caught <- chs
		},
	})
	ctx := context.Background()
	var names []string
	for i := range 3 {
		names = append(names, env.Channel(t, i))
		if err := bus.Subscribe(ctx, names[i]); err != nil {
			t.Fatal(err)
		}
	}
	before := bus.Reconnects()
	env.Break(t)
	var got []string
	deadline := time.After(Wait)
	for len(got) < len(names) {
		select {
		case chs := <-caught:
			got = append(got, chs...)
		case <-deadline:
			t.Fatalf("catch-up signalled for %v of %v", got, names)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, slices.Sorted(slices.Values(names))) {
		t.Fatalf("caught up %v, want %v", got, names)
	}
	// The signal comes once every channel is confirmed again.
	if !bus.Healthy() {
		t.Fatal("not healthy after every channel was caught up")
	}
	if bus.Reconnects() <= before {
		t.Fatalf("Reconnects() = %d, was %d", bus.Reconnects(), before)
	}
	for _, ch := range names {
		env.Publish(t, ch, "after")
		if m := Next(t, msgs); m != (Message{ch, "after"}) {
			t.Fatalf("got %+v", m)
		}
	}
}

func closeStops(t *testing.T, env Env) {
	bus, _ := env.Start(t, Hooks{})
	ctx := context.Background()
	if err := bus.Subscribe(ctx, env.Channel(t, 0)); err != nil {
		t.Fatal(err)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bus.Subscribe(ctx, env.Channel(t, 1)); err == nil {
		t.Fatal("Subscribe after Close succeeded")
	}
}

// Tick fires every few milliseconds, for waits on state that offers no
// notification (a count the bus keeps).
func Tick(t *testing.T) <-chan struct{} {
	c := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-tk.C:
				select {
				case c <- struct{}{}:
				case <-done:
					return
				}
			case <-done:
				return
			}
		}
	}()
	return c
}
