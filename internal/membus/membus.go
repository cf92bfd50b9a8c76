// Package membus is an in-process bus with the behaviour of the Redis bus
// (package pubsub) that the gateway relies on: reference-counted
// subscriptions confirmed before Subscribe returns, messages of a channel
// delivered in order, and a catch-up signal after a simulated connection
// loss. The gateway's tests run on it; the suite in internal/bustest
// holds it to the same behaviours as the Redis bus.
package membus

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
)

// ErrClosed is returned by calls on a Bus after Close.
var ErrClosed = errors.New("membus: bus closed")

// Bus is an in-process bus. Its handler is called from the goroutine that
// publishes, one message at a time, in publishing order.
type Bus struct {
	// OnLost, if set before Run, is called by Break with every channel
	// followed, before anything else is delivered.
	OnLost func(channels []string)
	// OnReconnect, if set before Run, is called after Break with every
	// channel followed, from a goroutine of its own.
	OnReconnect func(ctx context.Context, channels []string)

	deliver sync.Mutex // held while the handler runs: one message at a time

	mu      sync.Mutex
	refs    map[string]int
	handler func(channel string, payload []byte)
	closed  bool
	fail    error
	// changed is closed and replaced at every change of refs.
	changed chan struct{}

	running chan struct{} // closed by Run once the handler is set

	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	reconnects atomic.Int64
}

// New returns a Bus. Call Run to start delivering.
func New() *Bus {
	b := &Bus{refs: map[string]int{}, changed: make(chan struct{}), running: make(chan struct{})}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b
}

// Subscribe adds a subscriber to channel, once Run delivers. It fails
// with the error set by FailSubscribes, if any.
func (b *Bus) Subscribe(ctx context.Context, channel string) error {
	select {
	case <-b.running:
	case <-ctx.Done():
		return ctx.Err()
	case <-b.ctx.Done():
		return ErrClosed
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if b.fail != nil {
		return b.fail
	}
	b.refs[channel]++
	b.notify()
	return nil
}

// Unsubscribe removes a subscriber from channel.
func (b *Bus) Unsubscribe(ctx context.Context, channel string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if b.refs[channel]--; b.refs[channel] <= 0 {
		delete(b.refs, channel)
	}
	b.notify()
	return nil
}

// notify wakes whoever waits for a change of refs. Called with mu held.
func (b *Bus) notify() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// Changed returns a channel closed at the next change of subscriptions.
func (b *Bus) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// FailSubscribes makes every Subscribe fail with err until it is called
// again with nil.
func (b *Bus) FailSubscribes(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fail = err
}

// Refs returns how many subscribers channel has.
func (b *Bus) Refs(channel string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.refs[channel]
}

// Total returns how many subscribers all channels have.
func (b *Bus) Total() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, r := range b.refs {
		n += r
	}
	return n
}

// Channels returns how many channels have subscribers.
func (b *Bus) Channels() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.refs)
}

// Healthy is always true: nothing here can fail but on Break, which
// restores every subscription before it returns.
func (b *Bus) Healthy() bool { return true }

// Reconnects counts Breaks.
func (b *Bus) Reconnects() int64 { return b.reconnects.Load() }

// Publish passes payload to the handler if channel has subscribers,
// before it returns. Messages published before Run are dropped.
func (b *Bus) Publish(channel string, payload []byte) {
	b.deliver.Lock()
	defer b.deliver.Unlock()
	b.mu.Lock()
	h := b.handler
	followed := b.refs[channel] > 0
	b.mu.Unlock()
	if h != nil && followed {
		h(channel, payload)
	}
}

// Break simulates the loss and restoration of the connection to the
// backend: messages published meanwhile would be lost, so OnReconnect is
// called with every channel followed.
func (b *Bus) Break() {
	b.deliver.Lock()
	defer b.deliver.Unlock()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	chs := slices.Collect(maps.Keys(b.refs))
	if b.OnLost != nil && len(chs) > 0 {
		b.OnLost(chs)
	}
	b.reconnects.Add(1)
	if b.OnReconnect != nil && len(chs) > 0 {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.OnReconnect(b.ctx, chs)
		}()
	}
	b.mu.Unlock()
}

// Run delivers to h until ctx ends or Close, then closes the bus.
func (b *Bus) Run(ctx context.Context, h func(channel string, payload []byte)) error {
	b.mu.Lock()
	b.handler = h
	b.mu.Unlock()
	close(b.running)
	select {
	case <-ctx.Done():
		b.Close()
		return ctx.Err()
	case <-b.ctx.Done():
		return ErrClosed
	}
}

// Close stops the bus and waits for its OnReconnect calls.
func (b *Bus) Close() error {
	b.mu.Lock()
	b.closed = true
	b.handler = nil
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	return nil
}
