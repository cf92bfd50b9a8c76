package gateway

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
)

// subscription is one call a connection follows.
type subscription struct {
	key     string // the call
	channel string
	// ids are the identifiers the client used for this call.
	ids []string
	// revoked is set by the hub when it ended the subscription itself
	// (the call's org and the connection's identity no longer match);
	// the connection still holds its bus reference until it drops the
	// subscription.
	revoked atomic.Bool
}

// byKey returns c's subscription to call key, or nil.
func (c *conn) byKey(key string) *subscription {
	for _, s := range c.subs {
		if s.key == key {
			return s
		}
	}
	return nil
}

// byID returns c's subscription that the client named id, or nil.
func (c *conn) byID(id string) *subscription {
	for _, s := range c.subs {
		if slices.Contains(s.ids, id) {
			return s
		}
	}
	return nil
}

func (c *conn) reply(v any) { c.enqueue(encode(v)) }

func (c *conn) replyError(id string, e *frameError) {
	c.reply(errorFrame{Type: "error", ID: id, Code: e.Code, Message: e.Message})
}

func (c *conn) handle(ctx context.Context, data []byte) {
	f, ferr := decodeFrame(data)
	if ferr != nil {
		c.replyError(f.ID, ferr)
		return
	}
	if f.Type == typeAuth {
		if c.srv.cfg.Authenticator == nil {
			c.replyError(f.ID, &frameError{CodeAuthNotNeeded, "this gateway does not check tokens"})
			return
		}
		_, identified := c.principal()
		c.authenticate(f.Token, !identified)
		return
	}
	if c.topic != nil && f.Type != typePing {
		c.replyError(f.ID, &frameError{CodeUnknownType, "a topic socket carries states only; the client frames are ping and auth"})
		return
	}
	switch f.Type {
	case typePing:
		c.reply(pongFrame{Type: "pong", ID: f.ID})
	case typeSubscribe:
		if ferr := c.subscribe(ctx, f); ferr != nil {
			c.replyError(f.ID, ferr)
		}
	case typeUnsubscribe:
		if ferr := c.unsubscribe(ctx, f); ferr != nil {
			c.replyError(f.ID, ferr)
		}
	}
}

var (
	errUnavailable  = &frameError{CodeUnavailable, "the gateway cannot reach its event bus right now; retry later"}
	errCallNotFound = &frameError{CodeCallNotFound, "no call has that call_sid or conversation_id"}
)

// errConnClosed: the connection ended while a subscribe waited.
var errConnClosed = errors.New("gateway: connection closed")

// resolve finds the call id names: from what this instance resolved in
// the last minute, unless fresh; else from the Resolver. cached says
// which.
//
// Only a call the connection may see is taken from memory: a call of
// another org is looked up again, as an unknown one is, so that the two
// take the same time and whether a call exists does not show (the
// Resolver does the same work for both).
func (c *conn) resolve(ctx context.Context, id string, fresh bool) (t Target, cached bool, ferr *frameError) {
	if !fresh {
		if t, ok := c.srv.targets.get(id); ok && c.visible(t) == nil {
			return t, true, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.srv.cfg.SubscribeTimeout)
	defer cancel()
	t, err := c.srv.cfg.Resolver.Resolve(ctx, id)
	switch {
	case err == nil:
		c.srv.targets.put(id, t)
		return t, false, c.visible(t)
	case errors.Is(err, ErrNotFound):
		return t, false, errCallNotFound
	}
	c.logger().Warn("resolve call failed", "err", err)
	return t, false, errUnavailable
}

// visible refuses a call the connection's org may not see, with exactly
// the answer for an unknown call: no existence leak.
func (c *conn) visible(t Target) *frameError {
	if !c.srv.sees(c.org(), t.Org) {
		return errCallNotFound
	}
	return nil
}

func (c *conn) subscribe(ctx context.Context, f frame) *frameError {
	ferr, stale := c.trySubscribe(ctx, f, false)
	if stale {
		// What this instance remembered of the call is out of date.
		c.srv.targets.forget(f.Call)
		ferr, _ = c.trySubscribe(ctx, f, true)
	}
	return ferr
}

// trySubscribe subscribes as f asks, resolving f.Call afresh if fresh.
// stale: the call was not found, but the resolution came from the cache.
func (c *conn) trySubscribe(ctx context.Context, f frame, fresh bool) (ferr *frameError, stale bool) {
	t, cached, ferr := c.resolve(ctx, f.Call, fresh)
	if ferr != nil {
		return ferr, false
	}
	if sub := c.byKey(t.Key); sub != nil {
		if !sub.revoked.Load() {
			// Already following this call, maybe by its other
			// identifier: events still arrive once.
			return c.resubscribe(ctx, f, sub), false
		}
		c.drop(ctx, sub)
	}
	if len(c.subs) >= c.srv.cfg.MaxSubscriptions {
		return &frameError{CodeTooManySubscriptions, "this connection follows the maximum number of calls; unsubscribe from one first"}, false
	}
	sctx, cancel := context.WithTimeout(ctx, c.srv.cfg.SubscribeTimeout)
	defer cancel()
	if err := c.srv.cfg.Bus.Subscribe(sctx, t.Channel); err != nil {
		c.logger().Warn("bus subscribe failed", "channel", t.Channel, "err", err)
		return errUnavailable, false
	}
	// The catch-up reads the record, and where a client that did not ask
	// to resume starts, after the subscription is confirmed: every later
	// event will arrive.
	req := &joinRequest{
		resume: f.Since >= 0, since: Position{f.Epoch, max(f.Since, 0)}, hasEpoch: f.HasEpoch,
		reply: func(read HistoryRead, from Position, recovered *bool) []byte {
			epoch, id := positionFields(from)
			return encode(subscribedFrame{Type: "subscribed", ID: f.ID, Call: read.Record, Epoch: epoch, EventID: id, Recovered: recovered})
		},
	}
	sub := &subscription{key: t.Key, channel: t.Channel, ids: []string{f.Call}}
	if err := c.srv.hub.join(sctx, t.Channel, t.Key, c, sub, req); err != nil {
		c.srv.unsubscribe(context.WithoutCancel(ctx), c, t.Channel)
		switch {
		case errors.Is(err, errConnClosed):
			return nil, false
		case errors.Is(err, errCallGone):
			return errCallNotFound, cached
		}
		c.logger().Warn("resume from history failed", "channel", t.Channel, "err", err)
		return errUnavailable, false
	}
	c.subs = append(c.subs, sub)
	c.srv.metrics.subscriptions.Add(1)
	return nil, false
}

// resubscribe answers a subscribe to a call the connection follows
// already, with the call's record as it is now and the connection's
// position in the call.
func (c *conn) resubscribe(ctx context.Context, f frame, sub *subscription) *frameError {
	ctx, cancel := context.WithTimeout(ctx, c.srv.cfg.SubscribeTimeout)
	defer cancel()
	read, err := c.srv.cfg.History.After(ctx, sub.key, Latest, 0)
	switch {
	case err != nil:
		c.logger().Warn("read call failed", "call", sub.key, "err", err)
		return errUnavailable
	case read.Record == nil:
		return errCallNotFound
	}
	if !slices.Contains(sub.ids, f.Call) {
		sub.ids = append(sub.ids, f.Call)
	}
	c.srv.hub.replyAt(sub.channel, c, func(at Position) []byte {
		epoch, id := positionFields(at)
		return encode(subscribedFrame{Type: "subscribed", ID: f.ID, Call: read.Record, Epoch: epoch, EventID: id})
	})
	return nil
}

func (c *conn) unsubscribe(ctx context.Context, f frame) *frameError {
	sub := c.byID(f.Call)
	if sub == nil {
		// The client may name the call by an identifier it did not
		// subscribe with (a conversation_id linked since).
		t, _, ferr := c.resolve(ctx, f.Call, false)
		if ferr != nil && ferr.Code != CodeCallNotFound {
			return ferr
		}
		if t.Key != "" {
			sub = c.byKey(t.Key)
		}
	}
	if sub == nil {
		return &frameError{CodeNotSubscribed, "this connection is not subscribed to that call"}
	}
	c.drop(ctx, sub)
	c.reply(unsubscribedFrame{Type: "unsubscribed", ID: f.ID, CallSID: sub.key})
	return nil
}

// drop ends subscription sub.
func (c *conn) drop(ctx context.Context, sub *subscription) {
	c.srv.hub.leave(sub.channel, c)
	c.subs = slices.DeleteFunc(c.subs, func(s *subscription) bool { return s == sub })
	c.srv.metrics.subscriptions.Add(-1)
	c.srv.unsubscribe(ctx, c, sub.channel)
}
