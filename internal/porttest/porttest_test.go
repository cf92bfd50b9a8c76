package porttest

import (
	"net"
	"strconv"
	"testing"
)

func TestFreePortsAreDistinctAndBindable(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p := Free(t)
		if seen[p] || seen[p-10000] || seen[p+10000] {
			t.Fatalf("port %d given twice (or its bus port)", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		l.Close()
		if lo := ephemeralLow(); lo > high+10000 && (p < low || p > high) {
			t.Fatalf("port %d outside %d–%d though the ephemeral range starts at %d", p, low, high, lo)
		}
	}
}
