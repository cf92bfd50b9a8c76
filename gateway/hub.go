package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"hash/maphash"
	"math"
	"sync"
	"time"

	"github.com/callgate/callgate/internal/wire"
)

// hubShards spreads channels over independently locked maps so that
// subscribes on one channel do not stall fan-out on another.
const hubShards = 64

// hub maps bus channels to the local connections that follow them, and
// makes sure each connection gets each event of a call once, in order,
// with no gap: across a resume from history, a lost Redis connection, or
// a call followed by two identifiers.
type hub struct {
	srv    *Server
	seed   maphash.Seed
	shards [hubShards]hubShard
}

type hubShard struct {
	// mu guards the fields below and the channels' states; frames are
	// queued under it (see doc.go for the lock order).
	mu    sync.Mutex
	chans map[string]*channelState
	// starts collects, during one delivery, the connections to hand to
	// the flusher.
	starts []*conn
}

// channelState is one followed call on this instance. channel and key
// never change; the rest, followers included, is guarded by its shard's
// mu.
type channelState struct {
	channel string
	key     string // the call, for History
	subs    map[*conn]*follower
	// syncing: a catch-up is reading history; live frames wait in held.
	syncing bool
	// again: more catch-up was asked for while one ran.
	again bool
	held  []heldFrame
}

type heldFrame struct {
	seq   int64
	frame []byte
}

// follower is one connection's subscription to a channel.
type follower struct {
	// last is the event_id last queued for the connection.
	last int64
	// join is set until the first catch-up has answered the subscribe.
	join *joinRequest
}

// joinRequest is a subscribe waiting for its catch-up.
type joinRequest struct {
	// since is the event_id the client asked to resume after; -1 if it
	// did not ask.
	since int64
	// reply builds the subscribed reply from the call's record.
	reply func(record json.RawMessage, recovered *bool) []byte
	// org is the connection's; the catch-up refuses a call it may not
	// see.
	org  string
	done chan error
}

// startNow is the last event_id of a follower that starts with the events
// after the catch-up's read: it needs no history.
const startNow = math.MaxInt64

// errCallGone: the call's record no longer exists.
var errCallGone = errors.New("gateway: call no longer exists")

func newHub(s *Server) *hub {
	h := &hub{srv: s, seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].chans = make(map[string]*channelState)
	}
	return h
}

func (h *hub) shard(channel string) *hubShard {
	return &h.shards[maphash.String(h.seed, channel)%hubShards]
}

// join registers c on channel, resuming after the event since, or when
// since < 0 starting with the events after the catch-up's read of the
// call. That catch-up then queues, in order: the reply (built from the
// record it read, and given whether the resume was complete when since >=
// 0), every stored event after since, and then live events. join returns
// once that is done, or with the error that prevented it (c is then not
// registered); errCallGone if the call no longer exists, or if c may not
// see it.
func (h *hub) join(ctx context.Context, channel, key string, c *conn, since int64, reply func(json.RawMessage, *bool) []byte) error {
	req := &joinRequest{since: since, reply: reply, org: c.org(), done: make(chan error, 1)}
	after := since
	if since < 0 {
		after = startNow
	}
	s := h.shard(channel)
	s.mu.Lock()
	cs := s.chans[channel]
	if cs == nil {
		cs = &channelState{channel: channel, key: key, subs: make(map[*conn]*follower)}
		s.chans[channel] = cs
	}
	cs.subs[c] = &follower{last: after, join: req}
	h.requestCatchUp(cs)
	s.mu.Unlock()
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
	case <-c.done:
	}
	h.leave(channel, c)
	// If the catch-up answered before leave, its reply may be queued
	// already; the error frame that follows it is the final answer.
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errConnClosed
}

// leave unregisters c from channel; c receives nothing more from it.
func (h *hub) leave(channel string, c *conn) {
	s := h.shard(channel)
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.chans[channel]
	if cs == nil {
		return
	}
	delete(cs.subs, c)
	if len(cs.subs) == 0 && !cs.syncing {
		delete(s.chans, channel)
	}
}

// requestCatchUp starts a catch-up of cs, or asks the running one to go
// again. Called with the shard's mu held.
func (h *hub) requestCatchUp(cs *channelState) {
	if cs.syncing {
		cs.again = true
		return
	}
	cs.syncing = true
	if !h.srv.bg.Go(func() { h.catchUp(cs) }) {
		cs.syncing = false // shut down
	}
}

// deliver queues payload, shared and never modified, to every local
// connection on channel that has not had it. It never blocks. A frame
// beyond a follower's next event means events were missed (a Redis
// reconnect): the channel then catches up from history, holding live
// frames meanwhile.
func (h *hub) deliver(channel string, payload []byte) int {
	seq, _, ok := wire.Parse(payload)
	if !ok {
		h.srv.log.Warn("bus message without an event_id dropped", "channel", channel)
		h.srv.metrics.dropped.Add(1)
		return 0
	}
	s := h.shard(channel)
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.chans[channel]
	if cs == nil {
		return 0
	}
	if cs.syncing {
		cs.held = append(cs.held, heldFrame{seq, payload})
		return 0
	}
	n, gap := 0, false
	out := outFrame{data: payload, published: wire.PublishedAt(payload)}
	for c, f := range cs.subs {
		switch {
		case seq <= f.last:
			// Already queued: replayed, or a repeat.
		case seq == f.last+1:
			f.last = seq
			ok, start := c.push(out)
			if ok {
				n++
			}
			if start {
				s.starts = append(s.starts, c)
			}
		default:
			gap = true
		}
	}
	if len(s.starts) > 0 {
		// One hand-over for the whole delivery.
		h.srv.flusher.add(s.starts...)
		clear(s.starts)
		s.starts = s.starts[:0]
	}
	if gap {
		cs.held = append(cs.held, heldFrame{seq, payload})
		h.requestCatchUp(cs)
	}
	return n
}

// resyncAll catches every followed channel up from history: after the bus
// reconnected, events published meanwhile were not received.
func (h *hub) resyncAll() {
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		for _, cs := range s.chans {
			h.requestCatchUp(cs)
		}
		s.mu.Unlock()
	}
}

// catchUp reads the history of cs after the oldest event any follower
// still needs, and queues to each follower what it has not had: replies
// to joins first, then stored events, then the live frames held
// meanwhile. It runs in its own goroutine, one per channel at a time, and
// retries while Redis fails; joins fail at once instead.
func (h *hub) catchUp(cs *channelState) {
	s := h.shard(cs.channel)
	backoff := 50 * time.Millisecond
	for {
		s.mu.Lock()
		after := int64(math.MaxInt64 - 1)
		for _, f := range cs.subs {
			after = min(after, f.last)
		}
		key := cs.key
		s.mu.Unlock()

		ctx, cancel := context.WithTimeout(h.srv.ctx, h.srv.cfg.SubscribeTimeout)
		read, err := h.srv.cfg.History.After(ctx, key, after)
		cancel()

		s.mu.Lock()
		if err != nil {
			h.failJoins(cs, err)
		} else {
			if read.Record == nil {
				h.failJoins(cs, errCallGone)
			}
			h.apply(cs, read, after)
			// Every held frame was published before the next read of
			// history, if there is one, so none is needed beyond here.
			cs.held = nil
		}
		if err == nil && !cs.again || len(cs.subs) == 0 || h.srv.ctx.Err() != nil {
			cs.syncing, cs.again = false, false
			if len(cs.subs) == 0 {
				delete(s.chans, cs.channel)
			}
			s.mu.Unlock()
			return
		}
		cs.again = false
		s.mu.Unlock()
		if err != nil {
			h.srv.log.Warn("catch-up from history failed; retrying", "channel", cs.channel, "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-h.srv.ctx.Done():
			}
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// failJoins answers every waiting join of cs with err and drops it.
// Called with the shard's mu held.
func (h *hub) failJoins(cs *channelState, err error) {
	for c, f := range cs.subs {
		if f.join != nil {
			f.join.done <- err
			delete(cs.subs, c)
		}
	}
}

// apply queues history and held frames to the followers of cs; the read
// holds the events after the event after. Followers that joined since
// that read began and need older events are left for the next round.
// Called with the shard's mu held.
func (h *hub) apply(cs *channelState, read HistoryRead, after int64) {
	events, last := read.Events, read.Last
	delivered := 0
	for c, f := range cs.subs {
		if f.last < after {
			continue
		}
		if j := f.join; j != nil {
			if !h.srv.sees(j.org, read.Org) {
				// The call's org was set since it was resolved.
				j.done <- errCallGone
				delete(cs.subs, c)
				continue
			}
			f.join = nil
			var recovered *bool
			if j.since >= 0 {
				ok := j.since == last || len(events) > 0 && events[0].Seq <= j.since+1 && j.since < last
				recovered = &ok
			}
			if f.last > last {
				// Starting now; or the client knows more than the store
				// does: the call's history was lost and numbering started
				// again.
				f.last = last
			}
			c.enqueue(j.reply(read.Record, recovered))
			j.done <- nil
		}
		var batch [][]byte
		for _, e := range events {
			if e.Seq > f.last {
				batch = append(batch, e.Frame)
				f.last = e.Seq
			}
		}
		for _, hf := range cs.held {
			if hf.seq > f.last {
				batch = append(batch, hf.frame)
				f.last = hf.seq
			}
		}
		c.enqueueReplay(batch)
		delivered += len(batch)
	}
	h.srv.metrics.delivered.Add(int64(delivered))
}

// channels returns the number of channels with local connections.
func (h *hub) channels() int {
	n := 0
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		n += len(s.chans)
		s.mu.Unlock()
	}
	return n
}
