package gateway

import (
	"sync"
	"time"
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
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[string]cachedTarget
}

type cachedTarget struct {
	t     Target
	until time.Time
}

const (
	// targetTTL is how long a resolution is reused.
	targetTTL = time.Minute
	// maxTargets bounds the cache; past it, expired entries go, and if
	// that is not enough, all of them.
	maxTargets = 100_000
)

func newTargets(ttl time.Duration) *targets {
	return &targets{ttl: ttl, now: time.Now, m: make(map[string]cachedTarget)}
}

// get returns what id resolved to, if that is fresh.
func (ts *targets) get(id string) (Target, bool) {
	now := ts.now()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	e, ok := ts.m[id]
	if !ok || now.After(e.until) {
		return Target{}, false
	}
	return e.t, true
}

// put remembers that id resolved to t.
func (ts *targets) put(id string, t Target) {
	now := ts.now()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.m) >= maxTargets {
		for k, e := range ts.m {
			if now.After(e.until) {
				delete(ts.m, k)
			}
		}
		if len(ts.m) >= maxTargets {
			clear(ts.m)
		}
	}
	ts.m[id] = cachedTarget{t: t, until: now.Add(ts.ttl)}
}

// forget drops what id resolved to.
func (ts *targets) forget(id string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	delete(ts.m, id)
}
