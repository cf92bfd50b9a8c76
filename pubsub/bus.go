// Package pubsub moves byte payloads over named Redis Pub/Sub channels. It
// publishes numbered messages atomically and keeps one shared subscriber
// connection per process, subscribed to the channels in use (and, for a
// moment, to the ones just left).
//
// It knows nothing of what the payloads mean or who receives them.
package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Handler receives every message on a subscribed channel. It is called from
// the bus's single receive loop, in the order Redis delivered the messages,
// and must not block: a slow handler delays every channel of the process.
// The payload is the handler's to keep.
type Handler func(channel string, payload []byte)

// Config tunes a Bus. The zero value is usable.
type Config struct {
	// Logger receives connection problems. Nil means slog.Default().
	Logger *slog.Logger
	// HealthCheck is how long the receive loop waits for a message before
	// it pings Redis to check the subscriber connection. Zero means 15s.
	HealthCheck time.Duration
	// MaxBackoff caps the wait between reconnect attempts while Redis is
	// unreachable. Zero means 2s.
	MaxBackoff time.Duration
	// OnReconnect, if set, runs in its own goroutine each time the
	// subscriber connection is back after a failure and its channels are
	// subscribed again. Messages published while it was down were lost;
	// this is the moment to catch up from stored state.
	OnReconnect func()
	// Linger is how long the process stays subscribed to a channel after
	// its last local subscriber left: a Subscribe in that time needs no
	// round trip to Redis, and the channels whose time is up are
	// unsubscribed together, between Linger and 1.5 x Linger after they
	// were left. Messages that arrive meanwhile reach the handler as
	// usual. Zero unsubscribes at once.
	Linger time.Duration
}

// ErrClosed is returned by calls on a Bus after Close.
var ErrClosed = errors.New("pubsub: bus closed")

// Bus publishes to and subscribes on Redis channels for one process.
//
// Subscriptions are reference-counted: the first Subscribe of a channel
// sends SUBSCRIBE and waits for Redis to confirm it; later ones only count;
// the last Unsubscribe sends UNSUBSCRIBE, at once or after Config.Linger.
// All share one connection, which go-redis re-establishes (re-subscribing
// every channel) after a failure.
type Bus struct {
	rdb redis.UniversalClient
	// publisher sends Publish calls; concurrent ones go to Redis together,
	// as one pipeline per round trip. It is the client's autopipeliner,
	// which go-redis shares among the client's users and closes with the
	// client.
	publisher redis.Scripter
	ps        *redis.PubSub
	log       *slog.Logger
	cfg       Config

	// cmdMu is held by the one goroutine sending queued commands. Lock
	// order: cmdMu, then mu.
	cmdMu sync.Mutex

	mu sync.Mutex // guards the fields below; never held across I/O
	// refs counts local subscribers per channel; 0 for a channel that
	// lingers.
	refs map[string]int
	// ready is closed once Redis has confirmed the channel's current
	// subscription; present while the channel is subscribed or being
	// subscribed in Redis.
	ready map[string]chan struct{}
	// left holds when each lingering channel lost its last subscriber.
	left map[string]time.Time
	// sweeper unsubscribes lingering channels; nil while none lingers.
	sweeper *time.Timer
	// pending holds, per channel, one chan for each SUBSCRIBE sent and not
	// yet confirmed, oldest first; Redis confirms in the order sent.
	pending map[string][]chan struct{}
	// queue holds SUBSCRIBE and UNSUBSCRIBE commands not yet sent, in the
	// order they were decided.
	queue  []command
	closed bool

	reconnects atomic.Int64
	// down is set while the subscriber connection is lost.
	down atomic.Bool
}

// New returns a Bus on rdb. Call Run to start receiving.
func New(rdb redis.UniversalClient, cfg Config) *Bus {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HealthCheck <= 0 {
		cfg.HealthCheck = 15 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 2 * time.Second
	}
	b := &Bus{
		rdb:     rdb,
		ps:      rdb.Subscribe(context.Background()), // no channels yet: connects lazily
		log:     cfg.Logger.With("component", "pubsub"),
		cfg:     cfg,
		refs:    make(map[string]int),
		ready:   make(map[string]chan struct{}),
		left:    make(map[string]time.Time),
		pending: make(map[string][]chan struct{}),
	}
	b.publisher = rdb
	if ap, err := rdb.AutoPipeline(); err != nil {
		b.log.Warn("publishing without batching", "err", err)
	} else {
		b.publisher = ap
	}
	return b
}

// Subscribe adds one local subscriber to channel and returns once Redis has
// confirmed the subscription, so every message published after it returns
// reaches the handler. On error the subscriber was not added.
//
// The SUBSCRIBE commands of concurrent calls go out together: after a
// failover thousands of clients subscribe at once, and Redis gets a few
// commands instead of thousands.
func (b *Bus) Subscribe(ctx context.Context, channel string) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	b.refs[channel]++
	if ready, ok := b.ready[channel]; ok {
		delete(b.left, channel)
		b.mu.Unlock()
		return b.await(ctx, channel, ready)
	}
	ready := make(chan struct{})
	b.ready[channel] = ready
	b.pending[channel] = append(b.pending[channel], ready)
	cmd := b.enqueue(true, channel)
	b.mu.Unlock()
	b.flush()
	select {
	case err := <-cmd.sent:
		if err != nil {
			b.release(channel)
			return fmt.Errorf("pubsub: subscribe %q: %w", channel, err)
		}
	case <-ctx.Done():
		b.release(channel)
		return fmt.Errorf("pubsub: subscribe %q: %w", channel, ctx.Err())
	}
	return b.await(ctx, channel, ready)
}

func (b *Bus) await(ctx context.Context, channel string, ready chan struct{}) error {
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		b.release(channel)
		return fmt.Errorf("pubsub: subscribe %q: waiting for confirmation: %w", channel, ctx.Err())
	}
}

// release drops a subscriber whose Subscribe failed.
func (b *Bus) release(channel string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Without lingering: the channel's subscription may be unconfirmed.
	if err := b.unsubscribe(ctx, channel, false); err != nil && !errors.Is(err, ErrClosed) {
		b.log.Warn("unsubscribe after failed subscribe", "channel", channel, "err", err)
	}
}

// Unsubscribe removes one local subscriber from channel; the last one
// unsubscribes the process in Redis, at once or after Config.Linger.
func (b *Bus) Unsubscribe(ctx context.Context, channel string) error {
	return b.unsubscribe(ctx, channel, b.cfg.Linger > 0)
}

func (b *Bus) unsubscribe(ctx context.Context, channel string, linger bool) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	n := b.refs[channel]
	switch {
	case n == 0:
		b.mu.Unlock()
		return nil
	case n > 1:
		b.refs[channel] = n - 1
		b.mu.Unlock()
		return nil
	}
	if linger {
		b.refs[channel] = 0
		b.left[channel] = time.Now()
		if b.sweeper == nil {
			b.sweeper = time.AfterFunc(b.cfg.Linger/2, b.sweep)
		}
		b.mu.Unlock()
		return nil
	}
	delete(b.refs, channel)
	delete(b.ready, channel)
	cmd := b.enqueue(false, channel)
	b.mu.Unlock()
	b.flush()
	select {
	case err := <-cmd.sent:
		if err != nil {
			// The connection is broken; go-redis re-subscribes only
			// the channels still wanted when it reconnects.
			return fmt.Errorf("pubsub: unsubscribe %q: %w", channel, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pubsub: unsubscribe %q: %w", channel, ctx.Err())
	}
}

// sweep unsubscribes, in one command, the channels that lingered for
// Linger, and runs again every Linger/2 while any lingers.
func (b *Bus) sweep() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	now := time.Now()
	var cmds []command
	for ch, t := range b.left {
		if now.Sub(t) >= b.cfg.Linger {
			delete(b.left, ch)
			delete(b.refs, ch)
			delete(b.ready, ch)
			cmds = append(cmds, b.enqueue(false, ch))
		}
	}
	if len(b.left) > 0 {
		b.sweeper.Reset(b.cfg.Linger / 2)
	} else {
		b.sweeper = nil
	}
	b.mu.Unlock()
	if len(cmds) == 0 {
		return
	}
	b.flush()
	// All rode on one command (or a few, if subscribes came between).
	if err := <-cmds[0].sent; err != nil && !b.isClosed() {
		// go-redis re-subscribes only the channels still wanted when it
		// reconnects.
		b.log.Warn("unsubscribe of channels left failed", "channels", len(cmds), "err", err)
	}
}

// command is a SUBSCRIBE or UNSUBSCRIBE of one channel waiting to be sent.
type command struct {
	subscribe bool
	channel   string
	// sent receives the outcome of the Redis command that carried it.
	sent chan error
}

// enqueue queues a command behind the ones decided before it. Called with
// mu held, in the same critical section as the reference count that
// decided it, so commands go out in the order of the decisions.
func (b *Bus) enqueue(subscribe bool, channel string) command {
	cmd := command{subscribe: subscribe, channel: channel, sent: make(chan error, 1)}
	b.queue = append(b.queue, cmd)
	return cmd
}

// flush sends the queued commands, consecutive ones of a kind as one
// command. One caller at a time sends (cmdMu); a caller that finds it held
// leaves its command to the holder, which sends until the queue is empty.
func (b *Bus) flush() {
	for {
		if !b.cmdMu.TryLock() {
			return
		}
		b.mu.Lock()
		cmds := b.queue
		b.queue = nil
		b.mu.Unlock()
		b.send(cmds)
		b.cmdMu.Unlock()
		b.mu.Lock()
		more := len(b.queue) > 0
		b.mu.Unlock()
		if !more {
			return
		}
	}
}

// send sends cmds in order. Called with cmdMu held.
func (b *Bus) send(cmds []command) {
	for len(cmds) > 0 {
		n := 1
		for n < len(cmds) && cmds[n].subscribe == cmds[0].subscribe {
			n++
		}
		group := cmds[:n]
		channels := make([]string, n)
		for i, c := range group {
			channels[i] = c.channel
		}
		// A command of its own deadline: the callers' contexts may end
		// while others' channels ride on it.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var err error
		if group[0].subscribe {
			err = b.ps.Subscribe(ctx, channels...)
		} else {
			err = b.ps.Unsubscribe(ctx, channels...)
		}
		cancel()
		for _, c := range group {
			c.sent <- err
		}
		cmds = cmds[n:]
	}
}

// Healthy reports whether the subscriber connection is up: false from a
// failure until every channel is followed again.
func (b *Bus) Healthy() bool { return !b.down.Load() }

// Reconnects returns how many times the subscriber connection was
// restored after a failure.
func (b *Bus) Reconnects() int64 { return b.reconnects.Load() }

// Channels returns how many channels the process is subscribed to.
func (b *Bus) Channels() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.refs)
}

// Run receives messages and passes them to h until ctx is done or the Bus
// is closed. It reconnects with capped exponential backoff when Redis
// fails. Run must be called exactly once.
func (b *Bus) Run(ctx context.Context, h Handler) error {
	backoff := 50 * time.Millisecond
	recovering := false
	for {
		msg, err := b.ps.ReceiveTimeout(ctx, b.cfg.HealthCheck)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if b.isClosed() {
				return ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Quiet connection: a PING proves it alive, or breaks
				// it so that the next receive reconnects.
				if perr := b.ps.Ping(ctx); perr != nil {
					b.log.Warn("redis subscriber ping failed", "err", perr)
				}
				continue
			}
			b.log.Warn("redis subscriber connection lost; reconnecting", "err", err, "retry_in", backoff)
			recovering = true
			b.down.Store(true)
			b.reconnected()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, b.cfg.MaxBackoff)
			continue
		}
		backoff = 50 * time.Millisecond
		if recovering {
			// The first reply on the new connection answers the
			// re-subscription, which go-redis sent as one command: every
			// channel is followed again.
			recovering = false
			b.down.Store(false)
			b.reconnects.Add(1)
			b.log.Info("redis subscriber connection restored", "channels", b.Channels())
			if b.cfg.OnReconnect != nil {
				go b.cfg.OnReconnect()
			}
		}
		switch m := msg.(type) {
		case *redis.Message:
			h(m.Channel, []byte(m.Payload))
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				b.confirm(m.Channel)
			}
		case *redis.Pong:
		}
	}
}

// confirm marks the oldest unconfirmed SUBSCRIBE of channel as done.
// Confirmations nobody waits for (re-subscriptions after a reconnect of
// channels already confirmed) are ignored.
func (b *Bus) confirm(channel string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.pending[channel]
	if len(q) == 0 {
		return
	}
	close(q[0])
	if len(q) == 1 {
		delete(b.pending, channel)
	} else {
		b.pending[channel] = q[1:]
	}
}

// reconnected is called after the subscriber connection broke. Commands
// sent on it may never be confirmed; go-redis re-subscribes every wanted
// channel on the new connection, so each unconfirmed channel now waits for
// exactly that one confirmation.
func (b *Bus) reconnected() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch, q := range b.pending {
		for _, c := range q {
			if c != b.ready[ch] {
				close(c)
			}
		}
		delete(b.pending, ch)
	}
	for ch, c := range b.ready {
		select {
		case <-c:
		default:
			b.pending[ch] = []chan struct{}{c}
		}
	}
}

func (b *Bus) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Close closes the subscriber connection and stops Run. It does not close
// the Redis client, which the caller owns, nor the client's autopipeliner,
// which closes with it.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	if b.sweeper != nil {
		b.sweeper.Stop()
	}
	b.mu.Unlock()
	return b.ps.Close()
}
