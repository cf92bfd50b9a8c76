package slots

import (
	"testing"
)

// TestSlotMatchesRedis checks slots against what CLUSTER KEYSLOT of Redis
// 7.0 answered for the same keys, hash-tag edge cases included.
func TestSlotMatchesRedis(t *testing.T) {
	for key, want := range map[string]int{
		"123456789":     12739, // the CRC-16/XMODEM check value 0x31C3
		"a:{x}":         16287,
		"}{x}":          16287,
		"{a}":           15495,
		"{b}":           3300,
		"foo{}{bar}":    8363, // empty tag: the whole key
		"foo{{bar}}zap": 4015, // tag "{bar"
		"foo{bar}{zap}": 5061, // the first tag only
		"{":             4092,
		"{0}":           13907,
		"{1}":           9842,
		"CA123":         12480,
	} {
		if got := Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestPartitionsSpreadOverTheSlotSpace(t *testing.T) {
	for _, n := range []int{1, 3, 64, 1000} {
		ps := NewPartitions(n)
		if ps.Len() != n {
			t.Fatalf("Len = %d, want %d", ps.Len(), n)
		}
		seen := map[int]bool{}
		for p := range n {
			s := Slot("k" + ps.TagOf(p))
			if seen[s] {
				t.Fatalf("n=%d: two partitions share slot %d", n, s)
			}
			seen[s] = true
			// Each partition's slot is in its own n-th of the space, so
			// contiguous slot ranges (one per master) get equal shares.
			if lo, hi := p*Count/n, (p+1)*Count/n; s < lo || s >= hi {
				t.Errorf("n=%d: partition %d is in slot %d, outside [%d, %d)", n, p, s, lo, hi)
			}
		}
	}
}

// TestPartitionsAreStable pins the mapping: instances of one deployment,
// and every version, must agree on it.
func TestPartitionsAreStable(t *testing.T) {
	ps := NewPartitions(64)
	for id, want := range map[string]string{"CA123": ps.TagOf(ps.Of("CA123"))} {
		if got := ps.Tag(id); got != want {
			t.Errorf("Tag(%q) = %q, want %q", id, got, want)
		}
	}
	for p, want := range map[int]string{0: "{3560}", 1: "{2464}", 63: "{49727}"} {
		if got := ps.TagOf(p); got != want {
			t.Errorf("TagOf(%d) = %q, want %q", p, got, want)
		}
	}
	for id, want := range map[string]int{"CA123": 39, "conv_abc": 56, "": 5} {
		if got := ps.Of(id); got != want {
			t.Errorf("Of(%q) = %d, want %d", id, got, want)
		}
	}
}

func TestPartitionsSpreadIDs(t *testing.T) {
	ps := NewPartitions(64)
	counts := make([]int, 64)
	for i := range 64_000 {
		counts[ps.Of("CA"+string(rune('a'+i%26))+itoa(i))]++
	}
	for p, c := range counts {
		if c < 700 || c > 1300 {
			t.Errorf("partition %d has %d of 64000 ids", p, c)
		}
	}
}

func itoa(i int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + i%10)}, b...)
		if i /= 10; i == 0 {
			return string(b)
		}
	}
}

func BenchmarkNewPartitions(b *testing.B) {
	for b.Loop() {
		NewPartitions(64)
	}
}
