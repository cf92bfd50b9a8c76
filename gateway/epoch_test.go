package gateway_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/callgate/callgate/gateway"
	"github.com/callgate/callgate/internal/wstest"
)

// expectAt reads the next event and checks its position.
func expectAt(t *testing.T, c *wstest.Client, epoch, id string) {
	t.Helper()
	if f := c.Expect("event"); f.Epoch != epoch || f.EventID != id {
		t.Fatalf("got %s, want event %s of epoch %s", f.Raw, id, epoch)
	}
}

// TestNewEpochWhileFollowing: when the store loses a call's numbering (a
// Redis restart without persistence) while a client follows it, the events
// numbered again from 1 in a new epoch all reach the client, after a reset
// frame, and none is taken for one it had.
func TestNewEpochWhileFollowing(t *testing.T) {
	srv, _, url := startServer(t, gateway.Config{})
	c := dial(t, url)
	c.MustSubscribe("s", "EL_1")
	for range 3 {
		mem.publish(srv, "EL_1", "")
	}
	for _, id := range []string{"1", "2", "3"} {
		expectAt(t, c, "1", id)
	}
	mem.restart("EL_1", false)
	mem.publish(srv, "EL_1", "")
	mem.publish(srv, "EL_1", "")
	if f := c.Expect("reset"); f.Epoch != "2" || f.EventID != "0" || f.CallSID != "EL_1" || f.Recovered == nil || *f.Recovered {
		t.Fatalf("got %s, want a reset to epoch 2", f.Raw)
	}
	expectAt(t, c, "2", "1")
	expectAt(t, c, "2", "2")

	// A resume from the old epoch is told that events may be lost, and
	// gets what the store has after its position.
	d := dial(t, url)
	d.Send(map[string]string{"type": "subscribe", "id": "r", "call": "EL_1", "since": "3", "epoch": "1"})
	f := d.Next()
	if recovered(t, f) || f.Epoch != "1" || f.EventID != "3" {
		t.Fatalf("resume from an older epoch: %s", f.Raw)
	}
	expectAt(t, d, "2", "1")
	expectAt(t, d, "2", "2")
	alive(t, d)
}

// TestResumeAcrossEpochsKeepsWhatIsStored: a resume from an older epoch
// whose tail is still stored gets that tail, then the newer epoch, and is
// told that events may have been lost at the change.
func TestResumeAcrossEpochsKeepsWhatIsStored(t *testing.T) {
	srv, _, url := startServer(t, gateway.Config{})
	for range 4 {
		mem.publish(srv, "EL_1", "")
	}
	mem.restart("EL_1", true)
	mem.publish(srv, "EL_1", "")
	c := dial(t, url)
	c.Send(map[string]string{"type": "subscribe", "id": "r", "call": "EL_1", "since": "2", "epoch": "1"})
	if recovered(t, c.Next()) {
		t.Fatal("recovered true across a new epoch")
	}
	expectAt(t, c, "1", "3")
	expectAt(t, c, "1", "4")
	expectAt(t, c, "2", "1")

	// Within the current epoch it is complete; since without epoch is
	// read in it.
	d := dial(t, url)
	mem.publish(srv, "EL_1", "")
	if !recovered(t, subscribeSince(d, "r", "EL_1", "1")) {
		t.Fatal("recovered false within the current epoch")
	}
	expectAt(t, d, "2", "2")

	// An epoch the store never had (it lost everything since): what it
	// holds is news.
	e := dial(t, url)
	e.Send(map[string]string{"type": "subscribe", "id": "r", "call": "EL_1", "since": "7", "epoch": "9"})
	if f := e.Next(); recovered(t, f) || f.Epoch != "0" || f.EventID != "0" {
		t.Fatalf("resume from an unknown epoch: %s", f.Raw)
	}
	for _, id := range []string{"1", "2", "3", "4"} {
		expectAt(t, e, "1", id)
	}
	expectAt(t, e, "2", "1")
	expectAt(t, e, "2", "2")
}

// TestStoreBehindTheFollowerIsTold: a store that lost the last events of
// an epoch and numbers on from its last (a Redis whose process id the
// publisher cannot read) is found out at the catch-up, and the follower
// told: the events numbered after the store's last reach it. (One already
// numbered again when the catch-up read is among those the reset says may
// be lost.)
func TestStoreBehindTheFollowerIsTold(t *testing.T) {
	srv, _, url := startServer(t, gateway.Config{})
	c := dial(t, url)
	c.MustSubscribe("s", "EL_1")
	for range 4 {
		mem.publish(srv, "EL_1", "")
	}
	for _, id := range []string{"1", "2", "3", "4"} {
		expectAt(t, c, "1", id)
	}
	mem.mu.Lock()
	mem.last["EL_1"] = gateway.Position{Epoch: 1, Seq: 2}
	mem.events["EL_1"] = mem.events["EL_1"][:2]
	mem.mu.Unlock()
	srv.Lost([]string{testCalls["EL_1"].Channel})
	srv.Resync(context.Background(), []string{testCalls["EL_1"].Channel})
	if f := c.Expect("reset"); f.Epoch != "1" || f.EventID != "2" {
		t.Fatalf("got %s, want a reset to event 2 of epoch 1", f.Raw)
	}
	mem.publish(srv, "EL_1", "")
	expectAt(t, c, "1", "3")
}

// TestLostChannelsHoldLiveEvents: between the bus losing a channel and
// the catch-up after it is back, a live event must not overtake the ones
// published while the bus was away.
func TestLostChannelsHoldLiveEvents(t *testing.T) {
	srv, _, url := startServer(t, gateway.Config{})
	c := dial(t, url)
	c.MustSubscribe("s", "EL_2") // a call with no event yet
	srv.Lost([]string{testCalls["EL_2"].Channel})
	mem.record("EL_2")           // 1: published while away, not received
	mem.publish(srv, "EL_2", "") // 2: received before the catch-up
	srv.Resync(context.Background(), []string{testCalls["EL_2"].Channel})
	expectAt(t, c, "1", "1")
	expectAt(t, c, "1", "2")
}

// TestOrgSetOnAFollowedCallEndsForeignSubscriptions: an org notice on the
// call's channel ends the subscriptions of connections that may not see
// it any more, with an unsubscribed frame, and nothing more of the call
// reaches them; a new subscribe is refused as for an unknown call.
func TestOrgSetOnAFollowedCallEndsForeignSubscriptions(t *testing.T) {
	srv, bus, url := startServer(t, gateway.Config{Tenancy: true})
	c := dial(t, url)
	c.MustSubscribe("s", "EL_2")
	mem.publish(srv, "EL_2", "")
	expectAt(t, c, "1", "1")
	mem.mu.Lock()
	mem.orgs["EL_2"] = "acme"
	mem.mu.Unlock()
	srv.Deliver(testCalls["EL_2"].Channel, []byte(`{"type":"org","org":"acme"}`))
	if f := c.Expect("unsubscribed"); f.CallSID != "EL_2" || f.Reason != "forbidden" || f.ID != "" {
		t.Fatalf("got %s", f.Raw)
	}
	mem.publish(srv, "EL_2", "")
	alive(t, c)
	if f := c.Subscribe("again", "EL_2"); f.Type != "error" || f.Code != gateway.CodeCallNotFound {
		t.Fatalf("subscribe again: %s", f.Raw)
	}
	c.Send(map[string]string{"type": "unsubscribe", "id": "u", "call": "EL_2"})
	if f := c.Next(); f.Type != "error" || f.Code != gateway.CodeNotSubscribed {
		t.Fatalf("unsubscribe after the server ended it: %s", f.Raw)
	}
	bus.waitRefs(t, 0)
}

// TestSendQueueBoundInBytes: a slow client is cut off once the bytes
// waiting for it pass SendQueueBytes, however few frames they are.
func TestSendQueueBoundInBytes(t *testing.T) {
	srv, _, url := startServer(t, gateway.Config{SendQueueBytes: 1 << 20})
	ws := rawSubscriber(t, url, "EL_1")
	big := `,"pad":"` + strings.Repeat("x", 256<<10) + `"`
	for range 64 { // 16 MiB, more than the socket buffers take
		mem.publish(srv, "EL_1", big)
	}
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, gateway.CloseSendQueueOverflow) {
				t.Fatalf("got %v, want close %d", err, gateway.CloseSendQueueOverflow)
			}
			return
		}
	}
}

// TestLargeReplayGoesOutInPieces: a resume whose replay is larger than
// SendQueueBytes gets as much as fits, then 4008; resuming from the last
// event received, each time, gets the whole history, once, in order.
func TestLargeReplayGoesOutInPieces(t *testing.T) {
	srv, _, url := startServer(t, gateway.Config{SendQueueBytes: 1 << 20})
	big := `,"pad":"` + strings.Repeat("y", 200<<10) + `"`
	const n = 20 // 4 MiB
	for range n {
		mem.publish(srv, "EL_1", big)
	}
	last, pieces := 0, 0
	for last < n {
		pieces++
		if pieces > n {
			t.Fatalf("%d pieces for %d events", pieces, n)
		}
		c := dial(t, url)
		subscribeSince(c, "r", "EL_1", itoa(last))
		for {
			f, ok := c.NextOrClosed()
			if !ok {
				var ce *websocket.CloseError
				if err := c.CloseErr(); !errors.As(err, &ce) || ce.Code != gateway.CloseSendQueueOverflow {
					t.Fatalf("piece %d ended with %v, want close %d", pieces, err, gateway.CloseSendQueueOverflow)
				}
				break
			}
			if f.EventID != itoa(last+1) {
				t.Fatalf("piece %d: got event %s after %d", pieces, f.EventID, last)
			}
			if last++; last == n {
				break
			}
		}
	}
	if pieces < 2 {
		t.Fatalf("a %d-event replay of 200 KiB each went out in %d piece(s) with a 1 MiB queue", n, pieces)
	}
	t.Logf("%d events of 200 KiB in %d pieces", n, pieces)
}
