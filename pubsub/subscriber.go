package pubsub

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// subscriber is one subscriber connection and the channels it carries:
// all of them, or when sharded those of one hash slot.
//
// Its receive loop (run) owns the connection's reads and replaces the
// connection when it fails. Commands are written by whoever holds sendMu.
//
// The state of the connection, as the loop sees it:
//
//	(none) ── a member ──▶ up ── read error, error reply, or a
//	                        ▲    subscription Redis ended ──▶ down
//	                        │                                   │
//	                        └── every member confirmed ◀── reconnect, retried
//	                                                       after a backoff
//
// Healthy is false while any subscriber is down.
type subscriber struct {
	bus  *Bus
	slot int

	// sendMu is held by the one goroutine sending on the connection:
	// flush, or the loop while it reconnects.
	sendMu sync.Mutex

	// Guarded by bus.mu:

	// ps is the current connection; nil until the receive loop connects
	// (when there are members), and from a failure until it reconnects.
	ps *redis.PubSub
	// down: ps failed; true until every member is confirmed on the
	// connection that replaced it.
	down bool
	// members are the channels this subscriber carries.
	members map[string]*channel
	// queue holds SUBSCRIBE and UNSUBSCRIBE commands decided and not yet
	// sent, in the order they were decided.
	queue []command
	// pending holds, per channel, the confirmation each SUBSCRIBE sent on
	// ps waits for, oldest first; Redis confirms in the order sent.
	pending map[string][]*signal
	// leaving counts, per channel, the UNSUBSCRIBEs sent on ps that Redis
	// has not confirmed.
	leaving map[string]int

	// wake tells an idle receive loop that there are members to connect
	// for.
	wake chan struct{}
}

// command is a SUBSCRIBE or UNSUBSCRIBE of one channel waiting to be sent.
type command struct {
	subscribe bool
	channel   string
	// ready is the confirmation a SUBSCRIBE waits for.
	ready *signal
}

// errSlotMoved: Redis ended a subscription the bus did not end, which it
// does when the slot moves to another node.
var errSlotMoved = errors.New("redis ended a subscription: the slot moved")

// newPubSub returns an unconnected PubSub; the first command connects it,
// when sharded to the master of that command's first channel. Nothing
// may read from it before that command: a sharded PubSub read first
// connects to a random node.
func (s *subscriber) newPubSub() *redis.PubSub {
	if s.bus.cfg.Sharded {
		return s.bus.rdb.SSubscribe(s.bus.ctx)
	}
	return s.bus.rdb.Subscribe(s.bus.ctx)
}

// flush sends the queued commands, consecutive ones of a kind as one
// command. One caller at a time sends (sendMu); a caller that finds it
// held leaves its commands to the holder, which sends until the queue is
// empty. While there is no connection the commands are dropped: the
// receive loop's (re)connect subscribes every member, and only them.
func (s *subscriber) flush() {
	b := s.bus
	for {
		if !s.sendMu.TryLock() {
			return
		}
		b.mu.Lock()
		cmds := s.queue
		s.queue = nil
		ps := s.ps
		if ps != nil && !b.closed {
			for _, c := range cmds {
				if c.subscribe {
					s.pending[c.channel] = append(s.pending[c.channel], c.ready)
				} else {
					s.leaving[c.channel]++
				}
			}
		} else {
			cmds = nil
			s.wakeUp()
		}
		b.mu.Unlock()
		for len(cmds) > 0 {
			n := 1
			for n < len(cmds) && cmds[n].subscribe == cmds[0].subscribe {
				n++
			}
			names := make([]string, n)
			for i, c := range cmds[:n] {
				names[i] = c.channel
			}
			// A failed send means a broken connection, which the receive
			// loop notices and replaces.
			if err := s.send(ps, cmds[0].subscribe, names); err != nil {
				b.log.Debug("redis subscriber command failed", "err", err)
			}
			cmds = cmds[n:]
		}
		s.sendMu.Unlock()
		b.mu.Lock()
		more := len(s.queue) > 0
		b.mu.Unlock()
		if !more {
			return
		}
	}
}

// send writes one SUBSCRIBE or UNSUBSCRIBE (sharded: SSUBSCRIBE,
// SUNSUBSCRIBE) of names on ps. Called with sendMu held.
func (s *subscriber) send(ps *redis.PubSub, subscribe bool, names []string) error {
	ctx, cancel := context.WithTimeout(s.bus.ctx, 5*time.Second)
	defer cancel()
	switch {
	case subscribe && s.bus.cfg.Sharded:
		return ps.SSubscribe(ctx, names...)
	case subscribe:
		return ps.Subscribe(ctx, names...)
	case s.bus.cfg.Sharded:
		return ps.SUnsubscribe(ctx, names...)
	default:
		return ps.Unsubscribe(ctx, names...)
	}
}

// run receives on the subscriber's connection and passes messages to h
// until the bus closes, replacing the connection whenever it fails. It
// runs in a goroutine of its own.
func (s *subscriber) run(h Handler) {
	b := s.bus
	defer b.wg.Done()
	const minBackoff = 50 * time.Millisecond
	backoff := minBackoff
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return
		}
		ps := s.ps
		idle := ps == nil && len(s.members) == 0
		if idle {
			s.down = false // nothing left to confirm
		}
		b.mu.Unlock()
		if idle {
			select {
			case <-s.wake:
			case <-b.ctx.Done():
				return
			}
			continue
		}
		if ps == nil {
			if !s.reconnect() {
				select {
				case <-b.ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, b.cfg.MaxBackoff)
			}
			// Commands queued while the reconnect held sendMu.
			s.flush()
			continue
		}
		msg, err := ps.ReceiveTimeout(b.ctx, b.cfg.HealthCheck)
		if err != nil {
			if b.ctx.Err() != nil {
				return
			}
			if isTimeout(err) {
				// A quiet connection: a PING proves it alive, or breaks
				// it so that the next receive fails.
				if perr := ps.Ping(b.ctx); perr != nil {
					b.log.Debug("redis subscriber ping failed", "err", perr)
				}
				continue
			}
			s.fail(ps, err)
			continue
		}
		backoff = minBackoff
		switch m := msg.(type) {
		case *redis.Message:
			h(m.Channel, []byte(m.Payload))
		case *redis.Subscription:
			s.confirm(ps, m)
		case *redis.Pong:
		}
	}
}

// fail gives up ps, which broke: its channels are subscribed again on a
// new connection by the receive loop. It runs in the receive loop.
func (s *subscriber) fail(ps *redis.PubSub, err error) {
	b := s.bus
	b.mu.Lock()
	if s.ps != ps {
		b.mu.Unlock()
		return
	}
	s.ps = nil
	s.down = true
	// What was sent on ps will never be confirmed, and the channels it
	// was leaving are not subscribed on the next connection.
	clear(s.pending)
	clear(s.leaving)
	names := slices.Collect(maps.Keys(s.members))
	b.mu.Unlock()
	b.log.Warn("redis subscriber connection lost; reconnecting", "err", err, "slot", s.slot, "channels", len(names))
	_ = ps.Close()
	if b.cfg.OnLost != nil && len(names) > 0 {
		b.cfg.OnLost(names)
	}
}

// reconnect connects, or replaces the failed connection, and subscribes
// every member on the new one in one command. It reports whether that
// command was sent; after a failure the subscriber stays down until Redis
// confirms every channel.
func (s *subscriber) reconnect() bool {
	b := s.bus
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if cc, ok := b.rdb.(*redis.ClusterClient); ok {
		// The slot may have a new master: the client reloads the
		// cluster's layout (it only does so lazily otherwise) before the
		// new connection picks the node.
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		err := cc.ForEachMaster(ctx, func(context.Context, *redis.Client) error { return nil })
		cancel()
		if err != nil {
			b.log.Debug("reloading the cluster layout failed", "err", err)
			return false
		}
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	// Queued commands are covered: the members are subscribed, and only
	// them.
	s.queue = nil
	names := slices.Sorted(maps.Keys(s.members))
	if len(names) == 0 {
		b.mu.Unlock()
		return true // the last member left meanwhile
	}
	for _, name := range names {
		s.pending[name] = []*signal{s.members[name].ready}
	}
	ps := s.newPubSub()
	s.ps = ps
	b.mu.Unlock()
	if err := s.send(ps, true, names); err != nil {
		s.fail(ps, err)
		return false
	}
	return true
}

// confirm handles Redis's confirmation of a command sent on ps.
func (s *subscriber) confirm(ps *redis.PubSub, m *redis.Subscription) {
	b := s.bus
	b.mu.Lock()
	if s.ps != ps {
		b.mu.Unlock()
		return
	}
	switch m.Kind {
	case "subscribe", "ssubscribe":
		q := s.pending[m.Channel]
		if len(q) == 0 {
			break
		}
		q[0].fire()
		if len(q) == 1 {
			delete(s.pending, m.Channel)
		} else {
			s.pending[m.Channel] = q[1:]
		}
		if s.down && len(s.pending) == 0 {
			s.up()
		}
	case "unsubscribe", "sunsubscribe":
		if k := s.leaving[m.Channel]; k > 0 {
			if k == 1 {
				delete(s.leaving, m.Channel)
			} else {
				s.leaving[m.Channel] = k - 1
			}
			break
		}
		if _, ok := s.members[m.Channel]; ok {
			b.mu.Unlock()
			s.fail(ps, errSlotMoved)
			return
		}
	}
	b.mu.Unlock()
}

// wakeUp wakes the receive loop if it waits for members. Called with
// bus.mu held.
func (s *subscriber) wakeUp() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// up marks the subscriber's channels all confirmed again after a failure,
// and has OnReconnect catch them up. Called with bus.mu held.
func (s *subscriber) up() {
	b := s.bus
	s.down = false
	b.reconnects.Add(1)
	names := slices.Collect(maps.Keys(s.members))
	b.log.Info("redis subscriber connection restored", "slot", s.slot, "channels", len(names))
	if b.cfg.OnReconnect == nil || len(names) == 0 {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.cfg.OnReconnect(b.ctx, names)
	}()
}
