// Package porttest hands out loopback TCP ports for the servers that tests
// start as processes, which must be told their port before they bind it.
//
// A port found free by listening on port 0 and closing comes from the
// kernel's ephemeral range, the same range outgoing connections take their
// local ports from: on a busy machine one of them can take the port before
// the server binds it (bind: address already in use). Free picks ports
// below that range when the range leaves room, so only other listeners
// compete for them.
package porttest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
)

// The ports Free picks from when the ephemeral range starts at 32768 or
// above (Linux's default): a Redis Cluster node on port p also listens on
// p + 10000, and both stay below the range.
const (
	low  = 10000
	high = 22767
)

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Free returns a TCP port on 127.0.0.1 that was free a moment ago and that
// no other call in this process returned. A port p is never returned
// after p - 10000 or p + 10000 was (a Redis Cluster node's bus port).
func Free(t testing.TB) int {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	below := ephemeralLow() > high+10000
	for range 10000 {
		addr := "127.0.0.1:0"
		if below {
			addr = fmt.Sprintf("127.0.0.1:%d", low+rand.IntN(high-low+1))
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !given[p] && !given[p-10000] && !given[p+10000] {
			given[p] = true
			return p
		}
	}
	t.Fatal("porttest: no free port found")
	return 0
}

// ephemeralLow is the lowest port of the kernel's ephemeral range, or 0
// when it cannot be read (not Linux).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		return 0
	}
	return lo
}
