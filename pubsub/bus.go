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

	"github.com/callgate/callgate/internal/slots"
)

// Handler receives every message on a subscribed channel. Messages of one
// channel arrive in the order Redis delivered them, from one goroutine at a
// time; in sharded mode messages of channels in different slots may arrive
// concurrently. It must not block: a slow handler delays every channel that
// shares its connection. The payload is the handler's to keep.
type Handler func(channel string, payload []byte)

// Config tunes a Bus. The zero value is usable.
type Config struct {
	// Logger receives connection problems. Nil means slog.Default().
	Logger *slog.Logger
	// HealthCheck is how long a subscriber connection may stay silent
	// before it is pinged to prove it alive. Zero means 15s.
	HealthCheck time.Duration
	// MaxBackoff caps the wait between reconnect attempts while Redis is
	// unreachable, so that the bus notices Redis is back within about
	// that long. Zero means 1s.
	MaxBackoff time.Duration
	// OnLost, if set, is called when a subscriber connection failed (or
	// Redis moved its slot away), with the channels it carried: messages
	// on them may be lost from now until OnReconnect. It is called from
	// the connection's receive loop, before anything is received on the
	// connection that replaces it, and must not block.
	OnLost func(channels []string)
	// OnReconnect, if set, is called after a subscriber connection failed
	// and every channel it carried is confirmed subscribed again, with
	// those channels: messages published on them meanwhile were lost,
	// and this is the moment to catch up from stored state. It runs in a
	// goroutine of its own; ctx ends when the bus closes, and Close waits
	// for it to return.
	OnReconnect func(ctx context.Context, channels []string)
	// Linger is how long the process stays subscribed to a channel after
	// its last local subscriber left: a Subscribe in that time needs no
	// round trip to Redis, and the channels whose time is up are
	// unsubscribed together, between Linger and 1.5 x Linger after they
	// were left. Messages that arrive meanwhile reach the handler as
	// usual. Zero unsubscribes at once.
	Linger time.Duration
	// WaitReplicas, when positive, makes Publish return only once that
	// many replicas have the step's writes (Redis WAIT, on the connection
	// that ran it), and fail when they do not within WaitTimeout: the
	// message was published and recorded all the same, but could be
	// lost if the primary failed before a replica had it. Publishing it
	// again is safe (its Dedup key).
	WaitReplicas int
	// WaitTimeout bounds the wait of WaitReplicas. Zero means 1s.
	WaitTimeout time.Duration
	// Sharded selects sharded Pub/Sub (SPUBLISH, SSUBSCRIBE), which a
	// Redis Cluster needs for a message to reach only the shard that owns
	// its channel. Channels are then followed on one connection per hash
	// slot in use, to the master that owns the slot, and should be
	// hash-tagged so that they use few slots (see internal/slots).
	Sharded bool
}

// ErrClosed is returned by calls on a Bus after Close.
var ErrClosed = errors.New("pubsub: bus closed")

// Bus publishes to and follows Redis channels for one process.
//
// Subscriptions are reference-counted: the first Subscribe of a channel
// sends SUBSCRIBE (SSUBSCRIBE when sharded) and waits for Redis to confirm
// it; later ones only count; the last Unsubscribe sends UNSUBSCRIBE, at
// once or after Config.Linger. Channels are followed on subscriber
// connections: one for all of them, or, when sharded, one per hash slot.
// Each connection is read by a goroutine of its own. When one fails, or
// Redis moves its slot elsewhere, the bus replaces it and subscribes its
// channels again in one command, and calls Config.OnReconnect once every
// one is confirmed.
//
// # Concurrency
//
// Every method is safe for concurrent use. Bus.mu guards the channel and
// subscriber state and is never held across I/O; a subscriber's sendMu
// is held by the one goroutine sending its queued commands (lock order:
// sendMu, then mu). Each subscriber's receive loop, started by Run, owns
// its connection's reads; commands are written to the same connection by
// whoever holds sendMu, which go-redis allows alongside a read. Close (or
// the end of Run's context) stops every goroutine of the bus, the
// OnReconnect calls included, and waits for them.
type Bus struct {
	rdb redis.UniversalClient
	// publisher sends Publish calls; concurrent ones go to Redis together,
	// as one pipeline per round trip. It is the client's autopipeliner,
	// which go-redis shares among the client's users and closes with the
	// client.
	publisher redis.UniversalClient
	log       *slog.Logger
	cfg       Config

	// ctx is the parent of every goroutine's work; cancelled by Close.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // receive loops and OnReconnect calls

	mu      sync.Mutex // guards the fields below
	handler Handler    // nil until Run
	closed  bool
	chans   map[string]*channel
	subs    map[int]*subscriber // by slot; one, at 0, unless sharded
	sweeper *time.Timer         // nil while no channel lingers

	reconnects atomic.Int64
	steps      stepRunner // how the publish step runs on this Bus's Redis
}

// channel is one channel the process follows, or lingers on. Guarded by
// Bus.mu.
type channel struct {
	name string
	sub  *subscriber
	// refs counts local subscribers; 0 while the channel lingers.
	refs int
	// left is when a lingering channel lost its last subscriber.
	left time.Time
	// ready fires once Redis confirmed this membership's subscription.
	ready *signal
}

// signal is a channel closed once. Guarded by Bus.mu.
type signal struct {
	c     chan struct{}
	fired bool
}

func newSignal() *signal { return &signal{c: make(chan struct{})} }

func (s *signal) fire() {
	if !s.fired {
		s.fired = true
		close(s.c)
	}
}

// New returns a Bus on rdb. Call Run to start receiving. With
// Config.Sharded, rdb must be a *redis.ClusterClient.
func New(rdb redis.UniversalClient, cfg Config) *Bus {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HealthCheck <= 0 {
		cfg.HealthCheck = 15 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Second
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = time.Second
	}
	b := &Bus{
		rdb:   rdb,
		log:   cfg.Logger.With("component", "pubsub"),
		cfg:   cfg,
		chans: make(map[string]*channel),
		subs:  make(map[int]*subscriber),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.publisher = rdb
	if ap, err := rdb.AutoPipeline(); err != nil {
		b.log.Warn("publishing without batching", "err", err)
	} else {
		b.publisher = ap
	}
	return b
}

// Sharded reports whether the bus uses sharded Pub/Sub.
func (b *Bus) Sharded() bool { return b.cfg.Sharded }

// Subscribe adds one local subscriber to channel and returns once Redis has
// confirmed the subscription, so every message published after it returns
// reaches the handler. On error the subscriber was not added.
//
// The commands of concurrent calls go out together, one per subscriber
// connection: after a failover thousands of clients subscribe at once,
// and Redis gets a few commands instead of thousands.
func (b *Bus) Subscribe(ctx context.Context, name string) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	ch := b.chans[name]
	if ch != nil {
		ch.refs++
		ch.left = time.Time{}
		ready := ch.ready
		b.mu.Unlock()
		return b.await(ctx, name, ready.c)
	}
	s := b.subscriberFor(name)
	ch = &channel{name: name, sub: s, refs: 1, ready: newSignal()}
	b.chans[name] = ch
	s.members[name] = ch
	s.queue = append(s.queue, command{subscribe: true, channel: name, ready: ch.ready})
	ready := ch.ready
	b.mu.Unlock()
	s.flush()
	return b.await(ctx, name, ready.c)
}

// subscriberFor returns the subscriber that carries name, creating it if
// needed. Called with mu held.
func (b *Bus) subscriberFor(name string) *subscriber {
	slot := 0
	if b.cfg.Sharded {
		slot = slots.Slot(name)
	}
	s := b.subs[slot]
	if s == nil {
		s = &subscriber{
			bus:     b,
			slot:    slot,
			members: make(map[string]*channel),
			pending: make(map[string][]*signal),
			leaving: make(map[string]int),
			wake:    make(chan struct{}, 1),
		}
		b.subs[slot] = s
		if b.handler != nil {
			b.start(s)
		}
	}
	return s
}

func (b *Bus) await(ctx context.Context, name string, ready <-chan struct{}) error {
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
	case <-b.ctx.Done():
	}
	b.release(name)
	if ctx.Err() != nil {
		return fmt.Errorf("pubsub: subscribe %q: waiting for confirmation: %w", name, ctx.Err())
	}
	return ErrClosed
}

// release drops a subscriber whose Subscribe failed, without lingering:
// the channel's subscription may be unconfirmed.
func (b *Bus) release(name string) {
	b.mu.Lock()
	s := b.unref(name, false)
	b.mu.Unlock()
	if s != nil {
		s.flush()
	}
}

// Unsubscribe removes one local subscriber from channel; the last one
// unsubscribes the process in Redis, at once or after Config.Linger. It
// does not wait for Redis.
func (b *Bus) Unsubscribe(ctx context.Context, name string) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	s := b.unref(name, b.cfg.Linger > 0)
	b.mu.Unlock()
	if s != nil {
		s.flush()
	}
	return nil
}

// unref drops one reference to name. The last one makes the channel
// linger, or queues its UNSUBSCRIBE and returns the subscriber to flush.
// Called with mu held.
func (b *Bus) unref(name string, linger bool) *subscriber {
	ch := b.chans[name]
	if ch == nil || ch.refs == 0 {
		return nil
	}
	if ch.refs--; ch.refs > 0 {
		return nil
	}
	if linger {
		ch.left = time.Now()
		if b.sweeper == nil && !b.closed {
			b.sweeper = time.AfterFunc(b.cfg.Linger/2, b.sweep)
		}
		return nil
	}
	b.drop(ch)
	return ch.sub
}

// drop ends the membership of ch and queues its UNSUBSCRIBE. Called with
// mu held.
func (b *Bus) drop(ch *channel) {
	delete(b.chans, ch.name)
	s := ch.sub
	delete(s.members, ch.name)
	s.queue = append(s.queue, command{channel: ch.name})
}

// sweep unsubscribes the channels that lingered for Linger, and runs again
// every Linger/2 while any lingers.
func (b *Bus) sweep() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	now := time.Now()
	touched := map[*subscriber]bool{}
	lingering := false
	for _, ch := range b.chans {
		if ch.refs > 0 {
			continue
		}
		if now.Sub(ch.left) >= b.cfg.Linger {
			b.drop(ch)
			touched[ch.sub] = true
		} else {
			lingering = true
		}
	}
	if lingering {
		b.sweeper.Reset(b.cfg.Linger / 2)
	} else {
		b.sweeper = nil
	}
	b.mu.Unlock()
	for s := range touched {
		s.flush()
	}
}

// Healthy reports whether every channel the process follows is subscribed
// in Redis: false from the failure of a subscriber connection (or Redis
// moving its slot) until every channel it carried is confirmed again.
// Channels whose first subscription is still on its way do not count.
func (b *Bus) Healthy() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.subs {
		if s.down {
			return false
		}
	}
	return true
}

// Reconnects returns how many times a subscriber connection was restored
// after a failure.
func (b *Bus) Reconnects() int64 { return b.reconnects.Load() }

// Channels returns how many channels the process is subscribed to in
// Redis: the ones followed or lingering, and the ones whose UNSUBSCRIBE
// Redis has not confirmed yet.
func (b *Bus) Channels() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.chans)
	for _, s := range b.subs {
		for name := range s.leaving {
			if b.chans[name] == nil {
				n++
			}
		}
	}
	return n
}

// Run passes every message on the followed channels to h until ctx ends
// or the Bus is closed, then closes the bus and returns once every
// goroutine of it has stopped. Run must be called exactly once.
func (b *Bus) Run(ctx context.Context, h Handler) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	b.handler = h
	for _, s := range b.subs {
		b.start(s)
	}
	b.mu.Unlock()
	select {
	case <-ctx.Done():
		b.Close()
		return ctx.Err()
	case <-b.ctx.Done():
		b.wg.Wait()
		return ErrClosed
	}
}

// start starts the receive loop of s. Called with mu held, once Run has
// set the handler.
func (b *Bus) start(s *subscriber) {
	b.wg.Add(1)
	go s.run(b.handler)
}

// Close stops every goroutine of the bus and closes its subscriber
// connections, and returns once they have stopped. It does not close the
// Redis client, which the caller owns, nor the client's autopipeliner,
// which closes with it.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.wg.Wait()
		return nil
	}
	b.closed = true
	if b.sweeper != nil {
		b.sweeper.Stop()
		b.sweeper = nil
	}
	b.cancel()
	var conns []*redis.PubSub
	for _, s := range b.subs {
		if s.ps != nil {
			conns = append(conns, s.ps)
		}
	}
	b.mu.Unlock()
	for _, ps := range conns {
		_ = ps.Close() // ends a receive under way
	}
	b.wg.Wait()
	return nil
}

// isTimeout reports whether err is a read that timed out.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
