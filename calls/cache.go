package calls

import (
	"sync"
	"time"

	"github.com/callgate/callgate/internal/expiring"
)

// callCache remembers, for a short time, which call_sid each
// conversation_id that live webhooks name is linked to, so that an event
// addressed by conversation_id costs one Redis round trip (the publish)
// instead of two. Everything else about a call is read in the publishing
// step itself. A link never changes once made, so what the cache holds is
// never wrong; it is short-lived only to bound its size.
type callCache struct {
	mu sync.Mutex
	m  *expiring.Map[string] // call_sid by conversation_id
}

// maxCachedCalls bounds the cache; past it, expired entries go, and if
// that is not enough, all of them.
const maxCachedCalls = 100_000

func newCallCache(ttl time.Duration) *callCache {
	return &callCache{m: expiring.New[string](ttl, maxCachedCalls)}
}

// sid returns the call_sid conv is linked to, if it is cached and fresh.
func (c *callCache) sid(conv string) (string, bool) {
	if c == nil {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m.Get(conv)
}

// put remembers the link of call, if it has one.
func (c *callCache) put(call Call) {
	if c == nil || call.ConversationID == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m.Set(call.ConversationID, call.CallSID)
}
