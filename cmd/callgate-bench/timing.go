package main

import (
	"sync/atomic"
	"time"
)

// eventTimes are the times of one call's events, by event_id, in Unix
// nanoseconds on this machine's clock, 0 until known: when the webhook
// that published the event started its HTTP call, when its 200 answer came
// back, and the event's publish time (the frame's "time", set by the
// gateway). A webhook writes the first two once answered, the first
// subscriber to receive the frame the third; subscribers read them. Every
// slot is an atomic, so the readers of many sockets share them without a
// lock.
//
// Slots come in chunks made on first use, so that a bound of millions of
// events costs only the chunk pointers until events come.
type eventTimes struct {
	chunks []atomic.Pointer[timesChunk]
}

// timesChunkLen is small enough for thousands of calls with a few events
// each, large enough that a million events of one call make 16k chunks.
const timesChunkLen = 64

type timesChunk [timesChunkLen]eventTime

type eventTime struct {
	start, answer, published atomic.Int64
}

// newEventTimes holds the times of event_ids 1..maxID.
func newEventTimes(maxID int64) *eventTimes {
	return &eventTimes{chunks: make([]atomic.Pointer[timesChunk], maxID/timesChunkLen+1)}
}

// at returns the slot of event id, making its chunk if create is set; nil
// if id is out of bounds, or its chunk is not made and create is not set.
func (t *eventTimes) at(id int64, create bool) *eventTime {
	if id <= 0 || id/timesChunkLen >= int64(len(t.chunks)) {
		return nil
	}
	p := &t.chunks[id/timesChunkLen]
	c := p.Load()
	if c == nil {
		if !create {
			return nil
		}
		p.CompareAndSwap(nil, new(timesChunk))
		c = p.Load()
	}
	return &c[id%timesChunkLen]
}

// each calls f for every slot with a start time.
func (t *eventTimes) each(f func(e *eventTime)) {
	for i := range t.chunks {
		c := t.chunks[i].Load()
		if c == nil {
			continue
		}
		for j := range c {
			if c[j].start.Load() != 0 {
				f(&c[j])
			}
		}
	}
}

// unknownEpoch is a call's epoch before its first webhook is answered.
const unknownEpoch = -1

// answered records the times of the event a webhook to c published,
// (epoch, id) by the gateway's answer. Events of an epoch other than the
// call's first are not timed: false.
func (c *callState) answered(id, epoch int64, start, answer time.Time) bool {
	if !c.epoch.CompareAndSwap(unknownEpoch, epoch) && c.epoch.Load() != epoch {
		return false
	}
	e := c.times.at(id, true)
	if e == nil {
		return false
	}
	e.start.Store(start.UnixNano())
	e.answer.Store(answer.UnixNano())
	return true
}

// pendingFrame is a transcript a socket received before the answer to its
// webhook came back: it is timed once every webhook has returned.
type pendingFrame struct {
	id, epoch, received, published int64
}

// timeDelivery records the latency from the webhook's start of a
// transcript received at now (Unix nanoseconds) and published at
// published; false if the webhook is not answered yet.
func (b *bench) timeDelivery(c *callState, f pendingFrame) bool {
	if c.epoch.Load() != f.epoch {
		return false
	}
	e := c.times.at(f.id, false)
	if e == nil {
		return false
	}
	start := e.start.Load()
	if start == 0 {
		return false
	}
	if e.published.Load() == 0 {
		e.published.Store(f.published)
	}
	b.fromStartH.Record(time.Duration(f.received - start))
	b.startToPublishH.Record(time.Duration(f.published - start))
	return true
}

// settle times the transcripts s received before their webhooks were
// answered, and counts those that still cannot be timed. Only once the
// socket's reader has returned and every webhook has.
func (s *sock) settle() {
	for _, f := range s.pending {
		if !s.b.timeDelivery(s.call, f) {
			s.b.untimed.Add(1)
		}
	}
	s.pending = nil
}

// webhookStages fills the histograms of the webhooks' stages from the
// times of every event of cs: from the start of the HTTP call to the 200
// answer, and, for the events whose publish time a subscriber saw, from
// the start to the publish time and from there to the answer.
func (b *bench) webhookStages(cs []*callState) {
	for _, c := range cs {
		c.times.each(func(e *eventTime) {
			start, answer, pub := e.start.Load(), e.answer.Load(), e.published.Load()
			if pub == 0 {
				return
			}
			b.callH.Record(time.Duration(answer - start))
			b.callToPublishH.Record(time.Duration(pub - start))
			b.publishToAnswerH.Record(time.Duration(answer - pub))
		})
	}
}
