package gateway

import (
	"context"
	"errors"
	"hash/maphash"
	"strconv"
	"sync"

	"github.com/callgate/callgate/internal/wire"
)

// hubShards spreads channels over independently locked maps so that
// subscribes on one channel do not stall fan-out on another.
const hubShards = 64

// hub maps bus channels to the local connections that follow them, and
// makes sure each connection gets each event of a call once, in order,
// with no gap: across a resume from history, a lost Redis connection, a
// call followed by two identifiers, and numbering that went back (a new
// epoch), which a follower is told of with a reset frame.
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
	// org is the call's tenant, as the last catch-up read it or an org
	// notice on the channel announced it.
	org string
	// syncing: a catch-up is running; live frames wait in held.
	syncing bool
	// again: more catch-up was asked for while one ran.
	again bool
	// lost: the bus lost the channel's subscription; live frames wait in
	// held, and catch-ups wait for the subscription to be back (resync).
	lost bool
	held []heldFrame
}

type heldFrame struct {
	pos   Position
	frame []byte
}

// follower is one connection's subscription to a channel.
type follower struct {
	// pos is the position of the event last queued for the connection:
	// none before any; Latest while a subscribe that starts now waits
	// for its catch-up.
	pos Position
	// join is set until the first catch-up has answered the subscribe.
	join *joinRequest
	// sub is the connection's subscription, marked when the server ends
	// it.
	sub *subscription
}

// joinRequest is a subscribe waiting for its catch-up.
type joinRequest struct {
	// resume: the client asked to resume after since; its epoch is the
	// call's current one unless hasEpoch.
	resume   bool
	since    Position
	hasEpoch bool
	// reply builds the subscribed reply from the read and the position
	// the events that follow continue after.
	reply func(read HistoryRead, from Position, recovered *bool) []byte
	// org is the connection's; the catch-up refuses a call it may not
	// see.
	org  string
	done chan error
	// placed: start and recovered are known, from the first read (a
	// second read may be needed to reach back to start).
	placed    bool
	start     Position
	recovered *bool
}

// errCallGone: the call's record no longer exists, or the connection may
// no longer see it.
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

// join registers c's subscription sub on channel as req asks: resuming
// after a position, or starting with the events after the catch-up's read
// of the call. That catch-up then queues, in order: the reply, the stored
// events the resume needs, and then live events. join returns once that
// is done, or with the error that prevented it (c is then not
// registered); errCallGone if the call no longer exists, or if c may not
// see it.
func (h *hub) join(ctx context.Context, channel, key string, c *conn, sub *subscription, req *joinRequest) error {
	req.org = c.org()
	req.done = make(chan error, 1)
	pos := Latest
	switch {
	case req.resume && req.hasEpoch:
		pos = req.since
	case req.resume:
		// Read in the call's current epoch, which the read tells: read
		// everything, and start where it says.
		pos = none
	}
	s := h.shard(channel)
	s.mu.Lock()
	cs := s.chans[channel]
	if cs == nil {
		cs = &channelState{channel: channel, key: key, subs: make(map[*conn]*follower)}
		s.chans[channel] = cs
	}
	cs.subs[c] = &follower{pos: pos, join: req, sub: sub}
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
	h.locked(channel, func(s *hubShard, cs *channelState) {
		delete(cs.subs, c)
		h.forgetIfIdle(s, cs)
	})
}

// locked runs f with channel's shard locked, if the channel is followed.
func (h *hub) locked(channel string, f func(s *hubShard, cs *channelState)) {
	s := h.shard(channel)
	s.mu.Lock()
	defer s.mu.Unlock()
	if cs := s.chans[channel]; cs != nil {
		f(s, cs)
	}
}

// forgetIfIdle drops cs once nothing needs it. Called with s.mu held.
func (h *hub) forgetIfIdle(s *hubShard, cs *channelState) {
	if len(cs.subs) == 0 && !cs.syncing && s.chans[cs.channel] == cs {
		delete(s.chans, cs.channel)
	}
}

// deliver queues payload, shared and never modified, to every local
// connection on channel that has not had it. It never blocks. A frame
// that is not the next of a follower means events were missed, or the
// call's numbering went back: the channel then catches up from history,
// holding live frames meanwhile. An org notice on the channel makes the
// followers that may no longer see the call lose their subscriptions.
// It returns how many connections it queued payload for, and whether
// any local connection followed the channel.
func (h *hub) deliver(channel string, payload []byte) (n int, followed bool) {
	seq, epoch, ok := wire.Parse(payload)
	if !ok {
		if org, ok := wire.ParseOrgNotice(payload); ok {
			return 0, h.orgChanged(channel, org)
		}
		h.srv.log.Warn("bus message without an event_id dropped", "channel", channel)
		h.srv.metrics.dropped.Add(1)
		return 0, false
	}
	p := Position{epoch, seq}
	s := h.shard(channel)
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.chans[channel]
	if cs == nil {
		return 0, false
	}
	followed = len(cs.subs) > 0
	if cs.syncing || cs.lost {
		cs.held = append(cs.held, heldFrame{p, payload})
		return 0, followed
	}
	gap := false
	out := outFrame{data: payload, meta: &frameMeta{published: wire.PublishedAt(payload), call: cs.key, pos: p}}
	for c, f := range cs.subs {
		switch {
		case f.pos.Epoch == p.Epoch && p.Seq == f.pos.Seq+1, f.pos == none && p.Seq == 1:
			// The next event; or the first of a call that had none.
			f.pos = p
			ok, start := c.push(out)
			if ok {
				n++
			}
			if start {
				s.starts = append(s.starts, c)
			}
		case !f.pos.Less(p):
			// Already queued: replayed, or a repeat.
		default:
			// Missed events, or a new epoch: history says which.
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
		cs.held = append(cs.held, heldFrame{p, payload})
		h.requestCatchUp(cs)
	}
	return n, followed
}

// orgChanged handles an org notice on channel: the call now belongs to
// org. It reports whether the channel had followers.
func (h *hub) orgChanged(channel, org string) (followed bool) {
	h.locked(channel, func(_ *hubShard, cs *channelState) {
		followed = len(cs.subs) > 0
		cs.org = org
		h.checkOrgs(cs)
	})
	return followed
}

// checkOrgs ends the subscriptions of the followers of cs that may not
// see the call any more. Called with the shard's mu held.
func (h *hub) checkOrgs(cs *channelState) {
	for c, f := range cs.subs {
		if f.join == nil && !h.srv.sees(c.org(), cs.org) {
			h.revoke(cs, c, f)
		}
	}
}

// recheck ends c's subscription to channel if c may not see the call any
// more (its identity changed).
func (h *hub) recheck(channel string, c *conn) {
	h.locked(channel, func(_ *hubShard, cs *channelState) {
		if f := cs.subs[c]; f != nil && f.join == nil && !h.srv.sees(c.org(), cs.org) {
			h.revoke(cs, c, f)
		}
	})
}

// revoke ends c's subscription to cs from the server's side: c receives
// nothing more of the call, and is told. The connection releases its bus
// reference when it next looks at the subscription. Called with the
// shard's mu held.
func (h *hub) revoke(cs *channelState, c *conn, f *follower) {
	delete(cs.subs, c)
	f.sub.revoked.Store(true)
	c.enqueue(encode(unsubscribedFrame{Type: "unsubscribed", CallSID: cs.key, Reason: reasonForbidden}))
	c.logger().Info("subscription ended: the call is not visible to this connection any more", "call", cs.key)
	if c.stream != nil {
		// A stream is the calls its URL names: it cannot go on as asked,
		// and the same URL would now get 404.
		c.closeWith(CloseForbidden, "a call of this stream is not visible to this token any more")
	}
}

// replyAt queues to c the reply that build makes from c's position in
// channel, in order with the events queued to c.
func (h *hub) replyAt(channel string, c *conn, build func(Position) []byte) {
	done := false
	h.locked(channel, func(_ *hubShard, cs *channelState) {
		if f := cs.subs[c]; f != nil {
			c.enqueue(build(f.pos))
			done = true
		}
	})
	if !done {
		// The server has just ended the subscription; its frame says
		// so after this one.
		c.enqueue(build(none))
	}
}

// lost marks channels whose bus subscription failed: their live frames
// are held until the subscription is back and a catch-up has read what
// was published meanwhile (see resync).
func (h *hub) lost(channels []string) {
	for _, ch := range channels {
		h.locked(ch, func(_ *hubShard, cs *channelState) { cs.lost = true })
	}
}

// resync catches channels up from history once their bus subscription is
// back: events published while it was down were not received.
func (h *hub) resync(channels []string) {
	for _, ch := range channels {
		h.locked(ch, func(_ *hubShard, cs *channelState) {
			cs.lost = false
			h.requestCatchUp(cs)
		})
	}
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

// positionFields returns p as the strings of a frame's epoch and
// event_id.
func positionFields(p Position) (epoch, eventID string) {
	return strconv.FormatInt(p.Epoch, 10), strconv.FormatInt(p.Seq, 10)
}

// resetFor is the reset frame that tells a follower of call the events
// that follow continue after p.
func resetFor(call string, p Position) outFrame {
	epoch, id := positionFields(p)
	return outFrame{data: encode(resetFrame{Type: "reset", CallSID: call, Epoch: epoch, EventID: id}), meta: &frameMeta{call: call, pos: p}}
}
