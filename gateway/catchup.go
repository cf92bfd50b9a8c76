package gateway

import (
	"context"
	"time"
)

// requestCatchUp starts a catch-up of cs, or asks the running one to go
// again. While the channel's bus subscription is lost, the catch-up waits
// for resync. Called with the shard's mu held.
func (h *hub) requestCatchUp(cs *channelState) {
	if cs.syncing {
		cs.again = true
		return
	}
	if cs.lost {
		return
	}
	cs.syncing = true
	if !h.srv.bg.Go(func() { h.catchUp(cs) }) {
		cs.syncing = false // shut down
	}
}

// catchUp reads the history of cs after the oldest position any follower
// still needs, and queues to each follower what it has not had: replies
// to joins first, then stored events, then the live frames held
// meanwhile. It runs in its own goroutine, one per channel at a time, and
// retries while Redis fails; joins fail at once instead.
func (h *hub) catchUp(cs *channelState) {
	s := h.shard(cs.channel)
	backoff := 50 * time.Millisecond
	for {
		s.mu.Lock()
		after := Latest
		for _, f := range cs.subs {
			if f.pos.Less(after) {
				after = f.pos
			}
		}
		key := cs.key
		s.mu.Unlock()

		ctx, cancel := context.WithTimeout(h.srv.ctx, h.srv.cfg.SubscribeTimeout)
		read, err := h.srv.cfg.History.After(ctx, key, after, 0)
		cancel()

		s.mu.Lock()
		if err != nil {
			h.failJoins(cs, err)
		} else {
			if read.Record == nil {
				h.failJoins(cs, errCallGone)
			}
			h.apply(cs, read, after)
		}
		if err == nil && !cs.again || len(cs.subs) == 0 || cs.lost || h.srv.ctx.Err() != nil {
			// Done; or the subscription is lost again, and resync will
			// ask for the next round.
			cs.syncing, cs.again = false, false
			if !cs.lost {
				// Every held frame was published before the last read,
				// or applied after it.
				cs.held = nil
			}
			h.forgetIfIdle(s, cs)
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

// apply queues history and held frames to the followers of cs; read holds
// the events after the position after. Followers that joined since the
// read began and need older events are left for the next round. Called
// with the shard's mu held.
func (h *hub) apply(cs *channelState, read HistoryRead, after Position) {
	cs.org = read.Org
	last := read.Last
	delivered := 0
	// What the writers know of each frame, shared by every follower it
	// is queued to: the stored events, then the held ones.
	metas := make([]frameMeta, len(read.Events)+len(cs.held))
	for i, e := range read.Events {
		metas[i] = frameMeta{call: cs.key, pos: e.Position}
	}
	for i, hf := range cs.held {
		metas[len(read.Events)+i] = frameMeta{call: cs.key, pos: hf.pos}
	}
	for c, f := range cs.subs {
		if f.pos.Less(after) {
			continue
		}
		quiet := f.join != nil // a join's reply says whether it lost events
		if j := f.join; j != nil {
			if !h.srv.sees(j.org, read.Org) {
				// The call's org was set since it was resolved.
				j.done <- errCallGone
				delete(cs.subs, c)
				continue
			}
			if !j.placed {
				j.placed = true
				j.start, j.recovered = placeJoin(j, read)
				if j.start.Less(after) {
					// The replay starts before what this read holds (a
					// position the store does not know): read again.
					f.pos = j.start
					cs.again = true
					continue
				}
			}
			f.join, f.pos = nil, j.start
			c.enqueueFrame(outFrame{data: j.reply(read, f.pos, j.recovered), meta: &frameMeta{call: cs.key, pos: f.pos}})
			j.done <- nil
		} else if !h.srv.sees(c.org(), read.Org) {
			h.revoke(cs, c, f)
			continue
		} else if f.pos.Epoch == last.Epoch && last.Less(f.pos) {
			// The store lost the last events this follower had, and
			// numbering goes on from its last: tell the follower.
			f.pos = last
			c.enqueueFrame(resetFor(cs.key, last))
		}
		var batch []outFrame
		queue := func(frame []byte, m *frameMeta) {
			p := m.pos
			if !f.pos.Less(p) {
				return
			}
			if p.Epoch != f.pos.Epoch && f.pos != none && !quiet {
				// Numbering went back: a new epoch.
				batch = append(batch, resetFor(cs.key, Position{p.Epoch, p.Seq - 1}))
			}
			batch = append(batch, outFrame{data: frame, meta: m})
			f.pos = p
		}
		for i, e := range read.Events {
			queue(e.Frame, &metas[i])
		}
		for i, hf := range cs.held {
			queue(hf.frame, &metas[len(read.Events)+i])
		}
		c.enqueueReplay(batch)
		delivered += len(batch)
	}
	h.srv.metrics.delivered.Add(int64(delivered))
}

// placeJoin returns where the events a join gets begin (after which
// position), and for a resume whether they are every event after its
// since.
func placeJoin(j *joinRequest, read HistoryRead) (start Position, recovered *bool) {
	last := read.Last
	if !j.resume {
		return last, nil
	}
	from := j.since
	if !j.hasEpoch && from != none {
		from.Epoch = last.Epoch
	}
	ok := complete(from, read.Events, last)
	switch {
	case last.Epoch < from.Epoch:
		// A position the store does not know: everything it holds is
		// news to the client.
		return none, &ok
	case from.Epoch < last.Epoch || !last.Less(from):
		return from, &ok
	}
	// The store is behind the client in its epoch (it lost the last
	// events): the events that follow continue after its last.
	return last, &ok
}

// complete reports whether events, what the store holds after some
// position, hold every event after from up to last: the first after from
// is the next one (the first of the call when from is none), and no new
// epoch starts among them (a new epoch means events may have been lost
// before it).
func complete(from Position, events []Event, last Position) bool {
	if from == last {
		return true
	}
	if last.Less(from) {
		return false
	}
	var epoch int64
	first := true
	for _, e := range events {
		if !from.Less(e.Position) {
			continue
		}
		if first {
			if from == none && e.Seq != 1 || from != none && e.Position != (Position{from.Epoch, from.Seq + 1}) {
				return false
			}
			epoch, first = e.Epoch, false
		} else if e.Epoch != epoch {
			return false
		}
	}
	return !first
}
