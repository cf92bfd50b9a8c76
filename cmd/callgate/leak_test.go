package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/internal/redistest"
)

// settle collects garbage until the heap stops shrinking and returns the
// goroutine count and heap in use.
//
// The goroutines of an in-process miniredis, two per client connection,
// are not counted: they belong to the test's Redis, and the number of
// connections the gateway's Redis pool keeps open depends on how many
// requests once overlapped (bounded by the pool size).
func settle(srv *redistest.Server) (int, uint64) {
	var m runtime.MemStats
	for range 4 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	n := runtime.NumGoroutine()
	if srv.Mini != nil {
		n -= 2 * srv.Mini.CurrentConnectionCount()
	}
	return n, m.HeapInuse
}

// TestNoLeakAfterManyConnections holds a few thousand idle and slow
// connections open, with events flowing, then closes them all: goroutines
// and heap must return to their baseline.
func TestNoLeakAfterManyConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("opens thousands of sockets")
	}
	const idle, slow, calls = 2000, 200, 20
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "leak")
	for i := range calls {
		in.saveCall(callsUpdate(i))
	}
	dial := func(call string) *websocket.Conn {
		ws, _, err := websocket.DefaultDialer.Dial(in.wsURL("/ws/calls/transcriptions"), nil)
		if err != nil {
			t.Fatal(err)
		}
		sub, _ := json.Marshal(map[string]string{"type": "subscribe", "id": "s", "call": call})
		if err := ws.WriteMessage(websocket.TextMessage, sub); err != nil {
			t.Fatal(err)
		}
		return ws
	}
	// Warm up what grows once to its bound and stays (buffer pools) with
	// a first, smaller round.
	var warm []*websocket.Conn
	for i := range 500 {
		ws := dial(fmt.Sprintf("EL_leak_%02d", i%calls))
		ws.ReadMessage()
		warm = append(warm, ws)
	}
	waitFor(t, "warm-up sockets to subscribe", func() bool { return in.app.gw.Stats().Subscriptions == 500 })
	for _, ws := range warm {
		ws.Close()
	}
	waitFor(t, "warm-up sockets to close", func() bool { return in.app.gw.Stats().Connections == 0 })
	baseG, baseHeap := settle(srv)

	var conns []*websocket.Conn
	for i := range idle {
		ws := dial(fmt.Sprintf("EL_leak_%02d", i%calls))
		for range 2 { // welcome, subscribed
			if _, _, err := ws.ReadMessage(); err != nil {
				t.Fatal(err)
			}
		}
		conns = append(conns, ws)
	}
	for range slow {
		conns = append(conns, dial("EL_leak_00")) // never read
	}
	waitFor(t, "every socket to subscribe", func() bool {
		return in.app.gw.Stats().Subscriptions == idle+slow
	})
	peakG, peakHeap := settle(srv)
	pad := strings.Repeat("x", 2000)
	for n := 1; n <= 50; n++ {
		ev := json.RawMessage(fmt.Sprintf(`{"type":"agent_response","agent_response_event":{"agent_response":"%s","event_id":%d}}`, pad, n))
		in.mustPublish("/webhooks/transcription", liveBody("call_sid", "EL_leak_00", ev))
	}
	for _, ws := range conns {
		ws.Close()
	}
	waitFor(t, "every socket to close", func() bool {
		s := in.app.gw.Stats()
		return s.Connections == 0 && s.Subscriptions == 0 && in.app.bus.Channels() == 0
	})
	var endG int
	var endHeap uint64
	deadline := time.Now().Add(20 * time.Second)
	for {
		endG, endHeap = settle(srv)
		if endG <= baseG+5 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d before, %d after\n%s", baseG, endG, buf[:n])
		}
		time.Sleep(50 * time.Millisecond) // polling: goroutines ending have no event to wait on
	}
	t.Logf("goroutines: %d before, %d with %d sockets, %d after; heap in use: %.1f MiB before, %.1f MiB with sockets, %.1f MiB after",
		baseG, peakG, idle+slow, endG, mib(baseHeap), mib(peakHeap), mib(endHeap))
	if endHeap > baseHeap+8<<20 {
		t.Fatalf("heap in use grew from %.1f to %.1f MiB", mib(baseHeap), mib(endHeap))
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func callsUpdate(i int) calls.Update {
	return calls.Update{CallSID: fmt.Sprintf("EL_leak_%02d", i), Status: calls.StatusInProgress}
}

// waitFor polls cond, which has no event to wait on, for up to 20s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
