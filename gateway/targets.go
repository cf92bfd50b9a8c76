package gateway

import (
	"sync"
	"time"

	"github.com/callgate/callgate/internal/expiring"
)

// targets remembers what call identifiers resolved to, so that a
// subscribe to a call this instance resolved lately skips the Resolver's
// round trip: many dashboards following the same calls, or thousands of
// clients reconnecting after a failover, resolve each call once.
//
// What it holds cannot go wrong in a way that matters. A call's
// identifiers are set once, and every subscribe is followed by a
// catch-up that reads the call's record: a call that no longer exists,
// or one now hidden from the connection's org, is found out there (the
// entry is then dropped and the identifier resolved afresh). Only calls
// that exist are remembered.
type targets struct {
	mu sync.Mutex // guards m; a leaf
	m  *expiring.Map[Target]
}

const (
	// targetTTL is how long a resolution is reused.
	targetTTL = time.Minute
	// maxTargets bounds the cache; past it, expired entries go, and if
	// that is not enough, all of them.
	maxTargets = 100_000
)

func newTargets(ttl time.Duration) *targets {
	return &targets{m: expiring.New[Target](ttl, maxTargets)}
}

// get returns what id resolved to, if that is fresh.
func (ts *targets) get(id string) (Target, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.m.Get(id)
}

// put remembers that id resolved to t.
func (ts *targets) put(id string, t Target) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.m.Set(id, t)
}

// forget drops what id resolved to.
func (ts *targets) forget(id string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.m.Delete(id)
}
