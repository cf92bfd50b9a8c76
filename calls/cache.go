package calls

import (
	"sync"
	"time"

	"github.com/callgate/callgate/internal/expiring"
)

// callCache remembers, for a short time, the calls that live webhooks
// name, so that each event of a running call costs one Redis round trip
// (the publish) instead of two.
//
// It holds only calls in progress. What it can get wrong is bounded by
// its ttl and harmless: a call's identifiers and org never change once
// set, and every save on this instance refreshes the entry. A status
// changed on another instance (the call ended) is seen up to ttl late,
// which only affects how long the history of an event published in that
// window is kept; a conversation_id linked on another instance is seen
// at the next event that carries it, since that event links it here too.
type callCache struct {
	mu sync.Mutex
	m  *expiring.Map[Call] // by call_sid and by conversation_id
}

// maxCachedCalls bounds the cache; past it, expired entries go, and if
// that is not enough, all of them.
const maxCachedCalls = 100_000

func newCallCache(ttl time.Duration) *callCache {
	return &callCache{m: expiring.New[Call](ttl, maxCachedCalls)}
}

// get returns the call id names, if it is cached and fresh.
func (c *callCache) get(id string) (Call, bool) {
	if c == nil {
		return Call{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m.Get(id)
}

// remember caches call as what Resolve(id) returned.
func (c *callCache) remember(id string, call Call) { c.store(call, id) }

// put refreshes the entries of call after it was saved on this instance.
func (c *callCache) put(call Call) { c.store(call, "") }

// store caches call while it is in progress, else forgets it. A
// call_sid resolves to its own call whatever else exists, so the call is
// cached under its call_sid; under another identifier only when
// resolvedBy it, or to refresh a fresh entry that was.
func (c *callCache) store(call Call, resolvedBy string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if call.Status != StatusInProgress {
		c.forget(call)
		return
	}
	c.m.Set(call.CallSID, call)
	if resolvedBy != "" {
		c.m.Set(resolvedBy, call)
	}
	if old, ok := c.m.Get(call.ConversationID); ok && old.CallSID == call.CallSID {
		c.m.Set(call.ConversationID, call)
	}
}

// forget drops the entries of call. Called with mu held.
func (c *callCache) forget(call Call) {
	for _, id := range []string{call.CallSID, call.ConversationID} {
		if old, ok := c.m.Get(id); ok && old.CallSID == call.CallSID {
			c.m.Delete(id)
		}
	}
}
