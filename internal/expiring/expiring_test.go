package expiring

import (
	"testing"
	"time"
)

func TestMap(t *testing.T) {
	now := time.Unix(1000, 0)
	m := New[int](2*time.Second, 3)
	m.Now = func() time.Time { return now }
	has := func(k string, want int) {
		t.Helper()
		v, ok := m.Get(k)
		if ok != (want != 0) || v != want {
			t.Fatalf("Get(%q) = %d, %v; want %d", k, v, ok, want)
		}
	}

	m.Set("a", 1)
	m.Set("b", 2)
	has("a", 1)
	has("c", 0)
	now = now.Add(2 * time.Second)
	has("a", 1) // expires after ttl, not at it
	now = now.Add(time.Millisecond)
	has("a", 0)

	// At the bound, expired entries make room first.
	m.Set("c", 3)
	m.Set("d", 4)
	if m.Len() != 2 {
		t.Fatalf("%d entries after a, b expired; want 2 (c, d)", m.Len())
	}
	has("c", 3)
	m.Set("e", 5)
	// None expired: all go.
	m.Set("f", 6)
	if m.Len() != 1 {
		t.Fatalf("%d entries; want 1 (f)", m.Len())
	}
	has("c", 0)
	has("f", 6)
	// Replacing an entry never makes room.
	m.Set("g", 7)
	m.Set("h", 8)
	m.Set("h", 9)
	if m.Len() != 3 {
		t.Fatalf("%d entries; want 3", m.Len())
	}
	has("h", 9)

	m.Delete("h")
	has("h", 0)
}
