// Package expiring is a bounded map whose entries expire: the store of
// the caches that remember what Redis said for a short while. It does no
// locking; its users hold their own lock around it.
package expiring

import "time"

// Map maps strings to values that expire ttl after they were set. At
// most max entries are kept: past that, expired entries go first, and
// if that is not enough, all of them.
type Map[V any] struct {
	ttl time.Duration
	max int
	// Now returns the current time; time.Now unless a test sets it.
	Now func() time.Time
	m   map[string]entry[V]
}

type entry[V any] struct {
	v     V
	until time.Time
}

// New returns an empty Map.
func New[V any](ttl time.Duration, max int) *Map[V] {
	return &Map[V]{ttl: ttl, max: max, Now: time.Now, m: make(map[string]entry[V])}
}

// Get returns the value at k, if it is there and has not expired.
func (m *Map[V]) Get(k string) (V, bool) {
	e, ok := m.m[k]
	if !ok || m.Now().After(e.until) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// Set stores v at k until ttl from now.
func (m *Map[V]) Set(k string, v V) {
	now := m.Now()
	if _, ok := m.m[k]; !ok && len(m.m) >= m.max {
		for k, e := range m.m {
			if now.After(e.until) {
				delete(m.m, k)
			}
		}
		if len(m.m) >= m.max {
			clear(m.m)
		}
	}
	m.m[k] = entry[V]{v: v, until: now.Add(m.ttl)}
}

// Delete drops k.
func (m *Map[V]) Delete(k string) { delete(m.m, k) }

// Len returns the number of entries, expired ones included.
func (m *Map[V]) Len() int { return len(m.m) }
