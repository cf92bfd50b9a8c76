package gateway

import (
	"hash/maphash"
	"sync"
)

// hubShards spreads channels over independently locked maps so that
// subscribes on one channel do not stall fan-out on another.
const hubShards = 64

// hub maps bus channels to the local connections that follow them.
type hub struct {
	seed   maphash.Seed
	shards [hubShards]hubShard
}

type hubShard struct {
	mu   sync.RWMutex
	subs map[string]map[*conn]struct{}
}

func newHub() *hub {
	h := &hub{seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].subs = make(map[string]map[*conn]struct{})
	}
	return h
}

func (h *hub) shard(channel string) *hubShard {
	return &h.shards[maphash.String(h.seed, channel)%hubShards]
}

// add registers c on channel and queues reply to c in the same critical
// section, so c receives reply before any message delivered on channel.
func (h *hub) add(channel string, c *conn, reply []byte) {
	s := h.shard(channel)
	s.mu.Lock()
	set := s.subs[channel]
	if set == nil {
		set = make(map[*conn]struct{})
		s.subs[channel] = set
	}
	set[c] = struct{}{}
	c.enqueue(reply)
	s.mu.Unlock()
}

// remove unregisters c from channel; c receives nothing more from it.
func (h *hub) remove(channel string, c *conn) {
	s := h.shard(channel)
	s.mu.Lock()
	if set := s.subs[channel]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(s.subs, channel)
		}
	}
	s.mu.Unlock()
}

// deliver queues payload, shared and never modified, to every local
// connection on channel. It never blocks: enqueue drops a connection whose
// queue is full rather than wait for it.
func (h *hub) deliver(channel string, payload []byte) int {
	s := h.shard(channel)
	s.mu.RLock()
	n := 0
	for c := range s.subs[channel] {
		if c.enqueue(payload) {
			n++
		}
	}
	s.mu.RUnlock()
	return n
}

// channels returns the number of channels with local connections.
func (h *hub) channels() int {
	n := 0
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.RLock()
		n += len(s.subs)
		s.mu.RUnlock()
	}
	return n
}
