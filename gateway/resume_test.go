package gateway_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/callgate/callgate/gateway"
	"github.com/callgate/callgate/internal/wstest"
)

// expectEvents reads the next frames and checks they are events from..to.
func expectEvents(t *testing.T, c *wstest.Client, from, to int) {
	t.Helper()
	for n := from; n <= to; n++ {
		if f := c.Expect("event"); f.EventID != strconv.Itoa(n) {
			t.Fatalf("got %s, want event %d", f.Raw, n)
		}
	}
}

func subscribeSince(c *wstest.Client, id, call, since string) wstest.Frame {
	c.Send(map[string]string{"type": "subscribe", "id": id, "call": call, "since": since})
	return c.Next()
}

func recovered(t *testing.T, f wstest.Frame) bool {
	t.Helper()
	if f.Type != "subscribed" || f.Recovered == nil {
		t.Fatalf("want a subscribed frame with recovered, got %s", f.Raw)
	}
	return *f.Recovered
}

func TestResumeReplaysThenContinuesLive(t *testing.T) {
	srv, _, url := startServer(t, gateway.Config{})
	for range 5 {
		mem.publish(srv, "EL_1", "")
	}
	c := dial(t, url)
	if !recovered(t, subscribeSince(c, "r", "conv_1", "2")) {
		t.Fatal("recovered false with full history")
	}
	expectEvents(t, c, 3, 5)
	mem.publish(srv, "EL_1", "")
	expectEvents(t, c, 6, 6)

	// From the start, by history:true.
	all := dial(t, url)
	all.Send(map[string]any{"type": "subscribe", "id": "h", "call": "EL_1", "history": true})
	if !recovered(t, all.Next()) {
		t.Fatal("history:true not recovered")
	}
	expectEvents(t, all, 1, 6)

	// Without since: nothing old, then live.
	live := dial(t, url)
	if f := live.MustSubscribe("l", "EL_1"); f.Recovered != nil {
		t.Fatalf("recovered without since: %s", f.Raw)
	}
	mem.publish(srv, "EL_1", "")
	expectEvents(t, live, 7, 7)
}

// gatedHistory blocks After until released, so a test can publish while a
// replay is in progress.
type gatedHistory struct {
	*memCalls
	entered chan struct{}
	release chan struct{}
}

func (g *gatedHistory) After(ctx context.Context, key string, after gateway.Position, limit int) (gateway.HistoryRead, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.memCalls.After(ctx, key, after, limit)
}

// TestResumeSeam publishes events while the replay is being read: the
// client gets every event once, in order, across the seam.
func TestResumeSeam(t *testing.T) {
	mem = newMemCalls()
	gate := &gatedHistory{memCalls: mem, entered: make(chan struct{}, 10), release: make(chan struct{})}
	srv, _, url := startServerWith(t, gateway.Config{}, gate)
	for range 3 {
		mem.publish(srv, "EL_1", "")
	}
	c := dial(t, url)
	c.Send(map[string]string{"type": "subscribe", "id": "r", "call": "EL_1", "since": "1"})
	<-gate.entered
	// Published while the history read is under way: 4 and 5 are both
	// in the history read and live.
	mem.publish(srv, "EL_1", "")
	mem.publish(srv, "EL_1", "")
	close(gate.release)
	if !recovered(t, c.Next()) {
		t.Fatal("not recovered")
	}
	mem.publish(srv, "EL_1", "")
	expectEvents(t, c, 2, 6)
	alive(t, c) // and nothing else
}

func TestResumeBeyondRetention(t *testing.T) {
	srv, _, url := startServer(t, gateway.Config{})
	for range 10 {
		mem.publish(srv, "EL_1", "")
	}
	// The history keeps only events 6..10.
	mem.mu.Lock()
	mem.events["EL_1"] = mem.events["EL_1"][5:]
	mem.mu.Unlock()
	c := dial(t, url)
	if recovered(t, subscribeSince(c, "r", "EL_1", "2")) {
		t.Fatal("recovered true beyond retention")
	}
	expectEvents(t, c, 6, 10)
	// Within retention it is complete.
	d := dial(t, url)
	if !recovered(t, subscribeSince(d, "r", "EL_1", "5")) {
		t.Fatal("recovered false within retention")
	}
	expectEvents(t, d, 6, 10)
	// An event_id the call never reached (its history was lost): not
	// recovered, and live events still arrive.
	e := dial(t, url)
	if recovered(t, subscribeSince(e, "r", "EL_1", "99")) {
		t.Fatal("recovered true for a future event_id")
	}
	mem.publish(srv, "EL_1", "")
	expectEvents(t, e, 11, 11)
}

// TestLiveGapIsFilledFromHistory: an event that never arrived live (as
// while the bus reconnects) is filled in from history, in order, when the
// next one shows the gap, or when the server resyncs.
func TestLiveGapIsFilledFromHistory(t *testing.T) {
	srv, _, url := startServer(t, gateway.Config{})
	c := dial(t, url)
	c.MustSubscribe("s", "EL_1")
	mem.publish(srv, "EL_1", "")
	mem.record("EL_1") // 2 is stored but never delivered
	mem.publish(srv, "EL_1", "")
	expectEvents(t, c, 1, 3)

	mem.record("EL_1") // 4 is missed, and nothing follows it
	srv.Resync(context.Background(), []string{testCalls["EL_1"].Channel})
	expectEvents(t, c, 4, 4)
	alive(t, c)
}

func TestResumeFailsCleanlyWhenHistoryIsDown(t *testing.T) {
	srv, bus, url := startServer(t, gateway.Config{})
	mem.publish(srv, "EL_1", "")
	mem.fail = errors.New("redis down")
	c := dial(t, url)
	if f := subscribeSince(c, "r", "EL_1", "0"); f.Code != gateway.CodeUnavailable || f.ID != "r" {
		t.Fatalf("got %s", f.Raw)
	}
	bus.waitRefs(t, 0)
	alive(t, c)
	mem.fail = nil
	if !recovered(t, subscribeSince(c, "r2", "EL_1", "0")) {
		t.Fatal("not recovered once history is back")
	}
	expectEvents(t, c, 1, 1)
}

func TestBadSince(t *testing.T) {
	_, _, url := startServer(t, gateway.Config{})
	c := dial(t, url)
	for _, since := range []any{"-1", "abc", "01", 1.5, true, "9999999999999999999999"} {
		c.Send(map[string]any{"type": "subscribe", "id": "x", "call": "EL_1", "since": since})
		if f := c.Expect("error"); f.Code != gateway.CodeInvalidFrame {
			t.Fatalf("since %v: %s", since, f.Raw)
		}
	}
	c.Send(map[string]any{"type": "subscribe", "id": "x", "call": "EL_1", "since": 0})
	if !recovered(t, c.Next()) {
		t.Fatal("numeric since 0 not accepted")
	}
}
