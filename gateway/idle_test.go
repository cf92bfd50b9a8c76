//go:build !race

package gateway_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/callgate/callgate/gateway"
)

// TestIdleSocketStack holds sockets that each subscribed to a call and
// sent a ping, and checks that their goroutines keep the smallest stack
// (2 KiB) while they wait: the wait for input must stay shallow (see
// read.go). Reading through gorilla's reader, as before, took 4 KiB. The
// race detector's larger stack guard grows every stack; not run there.
func TestIdleSocketStack(t *testing.T) {
	const n = 500
	srv, _, url := startServer(t, gateway.Config{})
	stacks := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.StackInuse
	}
	before := stacks()
	for i := range n {
		ws := rawSubscriber(t, url, fmt.Sprintf("EL_%d", 1+i%2))
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":"p"}`)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ws.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.Stats().Subscriptions; got != n {
		t.Fatalf("%d subscriptions, want %d", got, n)
	}
	per := float64(stacks()-before) / n
	t.Logf("%.0f bytes of stack per idle socket", per)
	if per > 3<<10 {
		t.Fatalf("%.0f bytes of stack per idle socket, want 2 KiB", per)
	}
}
