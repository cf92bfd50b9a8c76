package calls

import (
	"sync"
	"time"
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
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[string]cachedCall // by call_sid and by conversation_id
}

type cachedCall struct {
	call  Call
	until time.Time
}

// maxCachedCalls bounds the cache; past it, expired entries go, and if
// that is not enough, all of them.
const maxCachedCalls = 100_000

func newCallCache(ttl time.Duration) *callCache {
	return &callCache{ttl: ttl, now: time.Now, m: make(map[string]cachedCall)}
}

// get returns the call id names, if it is cached and fresh.
func (c *callCache) get(id string) (Call, bool) {
	if c == nil {
		return Call{}, false
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok || now.After(e.until) {
		return Call{}, false
	}
	return e.call, true
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
	c.makeRoom()
	now := c.now()
	e := cachedCall{call: call, until: now.Add(c.ttl)}
	c.m[call.CallSID] = e
	if resolvedBy != "" {
		c.m[resolvedBy] = e
	}
	if old, ok := c.m[call.ConversationID]; ok && old.call.CallSID == call.CallSID && !now.After(old.until) {
		c.m[call.ConversationID] = e
	}
}

// forget drops the entries of call. Called with mu held.
func (c *callCache) forget(call Call) {
	for _, id := range []string{call.CallSID, call.ConversationID} {
		if e, ok := c.m[id]; ok && e.call.CallSID == call.CallSID {
			delete(c.m, id)
		}
	}
}

// makeRoom keeps the cache under maxCachedCalls. Called with mu held.
func (c *callCache) makeRoom() {
	if len(c.m) < maxCachedCalls {
		return
	}
	now := c.now()
	for id, e := range c.m {
		if now.After(e.until) {
			delete(c.m, id)
		}
	}
	if len(c.m) >= maxCachedCalls {
		clear(c.m)
	}
}
