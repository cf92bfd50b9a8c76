package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/internal/redistest"
)

// What Redis losing state must not do: each test here failed before
// numbering had epochs and the publish step wrote nothing before the step
// that can fail.

// transcript is a live user_transcript of call with text, and an event_id
// unless id is 0.
func transcript(call, text string, id int) []byte {
	e := map[string]any{"user_transcript": text}
	if id != 0 {
		e["event_id"] = id
	}
	ev, _ := json.Marshal(map[string]any{"type": "user_transcript", "user_transcription_event": e})
	return liveBody("call_sid", call, ev)
}

// TestRedisLosesEverythingWhileFollowed: Redis restarted without
// persistence while a client stays subscribed. The events posted after it
// (the call registered again) are numbered from 1 in a new epoch and all
// reach the subscriber, after a reset frame; a resume from before says
// recovered:false, with or without the epoch.
func TestRedisLosesEverythingWhileFollowed(t *testing.T) {
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "a")
	const sid = "EL_lost"
	in.saveCall(calls.Update{CallSID: sid, Status: calls.StatusInProgress})
	c := in.ws()
	f := c.MustSubscribe("s", sid)
	oldEpoch := f.Epoch
	for i := 1; i <= 5; i++ {
		in.mustPublish("/webhooks/transcription", transcript(sid, "before "+strconv.Itoa(i), i))
		c.Expect("event")
	}
	srv.Flush(t)
	in.saveCall(calls.Update{CallSID: sid, Status: calls.StatusInProgress})
	// The registration published a status event: 1 of the new epoch.
	r := c.Expect("reset")
	if r.Epoch == oldEpoch || r.EventID != "0" || r.Recovered == nil || *r.Recovered {
		t.Fatalf("got %s after Redis lost the call (old epoch %s)", r.Raw, oldEpoch)
	}
	if e := c.Expect("event"); e.Epoch != r.Epoch || e.EventID != "1" || e.Event != "status" {
		t.Fatalf("got %s", e.Raw)
	}
	for i := 1; i <= 5; i++ {
		id := in.mustPublish("/webhooks/transcription", transcript(sid, "after "+strconv.Itoa(i), 100+i))
		if e := c.Expect("event"); e.EventID != id || e.Epoch != r.Epoch {
			t.Fatalf("event %d after the loss: got %s, webhook answered %s", i, e.Raw, id)
		}
	}
	// A since without its epoch is read in the current epoch, where "5"
	// is a real position: only the epoch tells it from the old one.
	d := in.ws()
	d.Send(map[string]string{"type": "subscribe", "id": "r", "call": sid, "since": "5", "epoch": oldEpoch})
	if f := d.Expect("subscribed"); f.Recovered == nil || *f.Recovered || f.Epoch != oldEpoch || f.EventID != "5" {
		t.Fatalf("resume from before the loss: %s", f.Raw)
	}
	for i := 1; i <= 6; i++ {
		if e := d.Expect("event"); e.EventID != strconv.Itoa(i) || e.Epoch != r.Epoch {
			t.Fatalf("replay after the loss: got %s", e.Raw)
		}
	}
}

// TestLostCounterContinuesFromHistory: the call's counter lost while its
// history survives: its record (which holds the counter) evicted, as
// volatile-lru did to 6 of 150 calls in a trial, and the call registered
// again. The next event is numbered after the history's last, answered
// 200 and delivered; its retry is a duplicate of it.
func TestLostCounterContinuesFromHistory(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	in := startInstance(t, srv, redistest.Prefix(t), "a")
	const sid = "EL_evicted"
	in.saveCall(calls.Update{CallSID: sid, Status: calls.StatusInProgress})
	c := in.ws()
	c.MustSubscribe("s", sid)
	for i := 1; i <= 3; i++ {
		in.mustPublish("/webhooks/transcription", transcript(sid, "t", i))
		c.Expect("event")
	}
	if err := rdb.Del(context.Background(), in.app.keys.Record(sid)).Err(); err != nil {
		t.Fatal(err)
	}
	// Registered again: the record is new, so its status event is
	// published, numbered after the history's last event (4).
	in.saveCall(calls.Update{CallSID: sid, Status: calls.StatusInProgress})
	if e := c.Expect("event"); e.EventID != "5" || e.Event != "status" {
		t.Fatalf("the new registration's status event: %s", e.Raw)
	}
	body := transcript(sid, "after the eviction", 4)
	status, out := in.webhook("/webhooks/transcription", body)
	if status != http.StatusOK || out["status"] != "published" || out["event_id"] != "6" {
		t.Fatalf("after the counter was lost: %d %v", status, out)
	}
	if e := c.Expect("event"); e.EventID != "6" || e.Epoch != out["epoch"] {
		t.Fatalf("got %s", e.Raw)
	}
	status, again := in.webhook("/webhooks/transcription", body)
	if status != http.StatusOK || again["status"] != "duplicate" || again["event_id"] != "6" || again["epoch"] != out["epoch"] {
		t.Fatalf("the retry: %d %v", status, again)
	}
	n, err := rdb.XLen(context.Background(), in.app.keys.History(sid)).Result()
	if err != nil || n != 6 {
		t.Fatalf("history holds %d events (%v), want 6", n, err)
	}
}

// TestRetriesPublishOnce: a live event without an event_id, delivered
// again with the same body (and a new signature), is published once; so
// is one whose first attempt lost its connection to Redis between the
// script and its reply.
func TestRetriesPublishOnce(t *testing.T) {
	srv := redistest.Start(t)
	if srv.Mode() != redistest.ModeReal && srv.Mode() != redistest.ModeMini {
		t.Skip("the proxy stands between the instance and one Redis server")
	}
	proxy := newCuttingProxy(t, srv.Addr)
	in := startInstance(t, srv, redistest.Prefix(t), "a", func(c *config) { c.RedisURL = "redis://" + proxy.addr })
	rdb := srv.Client(t)
	const sid = "EL_retried"
	in.saveCall(calls.Update{CallSID: sid, Status: calls.StatusInProgress})
	c := in.ws()
	c.MustSubscribe("s", sid)

	body := transcript(sid, "no event_id", 0)
	first := in.mustPublish("/webhooks/transcription", body)
	c.Expect("event")
	status, out := in.webhook("/webhooks/transcription", body)
	if status != http.StatusOK || out["status"] != "duplicate" || out["event_id"] != first {
		t.Fatalf("same body again: %d %v", status, out)
	}

	// The connection dies after Redis ran the script and before its
	// reply arrives: the sender is answered 503, or the client retries
	// the script; either way the event is stored and delivered once.
	body = transcript(sid, "cut off", 0)
	proxy.cutNextReply()
	status, out = in.webhook("/webhooks/transcription", body)
	if status == http.StatusServiceUnavailable {
		status, out = in.webhook("/webhooks/transcription", body) // the sender's retry
	}
	if status != http.StatusOK || (out["status"] != "published" && out["status"] != "duplicate") {
		t.Fatalf("after the cut: %d %v", status, out)
	}
	if e := c.Expect("event"); e.EventID != out["event_id"] {
		t.Fatalf("got %s, answered %v", e.Raw, out)
	}
	if !proxy.didCut() {
		t.Fatal("the proxy cut nothing")
	}
	in.mustPublish("/webhooks/transcription", transcript(sid, "next", 0))
	if e := c.Expect("event"); e.Event != "transcript" {
		t.Fatalf("got %s", e.Raw)
	}
	entries, err := rdb.XRange(context.Background(), in.app.keys.History(sid), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range entries {
		var f struct {
			Data struct{ Text string } `json:"data"`
		}
		json.Unmarshal([]byte(e.Values["p"].(string)), &f)
		seen[f.Data.Text]++
	}
	if seen["no event_id"] != 1 || seen["cut off"] != 1 {
		t.Fatalf("history holds %v", seen)
	}
}

// cuttingProxy forwards TCP to Redis and, when told, closes the
// connection that next carries a reply instead of forwarding it.
type cuttingProxy struct {
	addr  string
	armed atomic.Bool
	cut   atomic.Bool
}

func newCuttingProxy(t *testing.T, target string) *cuttingProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{addr: l.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			client, err := l.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			wg.Go(func() { io.Copy(server, client); server.Close() })
			wg.Go(func() { p.replies(client, server) })
		}
	})
	return p
}

// replies forwards server's replies to client, but for the first one after
// cutNextReply, which closes both.
func (p *cuttingProxy) replies(client, server net.Conn) {
	defer client.Close()
	defer server.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 && isScriptReply(buf[:n]) && p.armed.CompareAndSwap(true, false) {
			p.cut.Store(true)
			return
		}
		if n > 0 {
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// isScriptReply tells the publish script's reply ({"ok", …}, an array
// whose first element is the bulk string "ok") from the other replies.
func isScriptReply(b []byte) bool { return bytes.Contains(b, []byte("$2\r\nok\r\n")) }

func (p *cuttingProxy) cutNextReply() { p.armed.Store(true) }
func (p *cuttingProxy) didCut() bool  { return p.cut.Load() }

// TestStatusFirstUnderConcurrentFirstEvents: the first live events of a
// call reaching two instances at once: the in-progress status event is
// numbered first every time (3 of 30 calls broke that before).
func TestStatusFirstUnderConcurrentFirstEvents(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	a := startInstance(t, srv, prefix, "a")
	b := startInstance(t, srv, prefix, "b")
	rdb := srv.Client(t)
	const n = 30
	for i := range n {
		sid := fmt.Sprintf("EL_first_%d", i)
		a.saveCall(calls.Update{CallSID: sid})
		var wg sync.WaitGroup
		for j, in := range []*instance{a, b} {
			wg.Go(func() {
				body := transcript(sid, "first", j+1)
				if status, out := in.webhook("/webhooks/transcription", body); status != http.StatusOK {
					t.Errorf("%s: %d %v", sid, status, out)
				}
			})
		}
		wg.Wait()
		entries, err := rdb.XRange(context.Background(), a.app.keys.History(sid), "-", "+").Result()
		if err != nil || len(entries) != 3 {
			t.Fatalf("%s: %d events (%v), want status and two transcripts", sid, len(entries), err)
		}
		var first struct {
			Event   string `json:"event"`
			EventID string `json:"event_id"`
		}
		json.Unmarshal([]byte(entries[0].Values["p"].(string)), &first)
		if first.Event != "status" || first.EventID != "1" {
			t.Fatalf("%s: first event %s %s", sid, first.EventID, first.Event)
		}
	}
}

// TestHalfMadeLinkIsRepaired: linking a conversation writes its link, then
// the call's record, two keys in different slots on a cluster. An instance
// that dies between the two leaves a link whose call does not point back:
// lookups ignore it, the same call completes it at once, and another call
// takes it over once it is older than the grace period (before that the
// sender is told to retry: 503).
func TestHalfMadeLinkIsRepaired(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	prefix := redistest.Prefix(t)
	in := startInstance(t, srv, prefix, "a")
	ctx := context.Background()
	in.saveCall(calls.Update{CallSID: "EL_dead"})
	in.saveCall(calls.Update{CallSID: "EL_other"})
	link := prefix + ":conv:conv_half"
	// The first step of a link EL_dead's instance made just before dying.
	if err := rdb.Set(ctx, link, "EL_dead", 7*24*time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if status, out := in.do(http.MethodGet, "/api/calls/conv_half", nil, apiHeader()); status != http.StatusNotFound {
		t.Fatalf("lookup by a half-made link: %d %v", status, out)
	}
	body, _ := json.Marshal(calls.Update{CallSID: "EL_other", ConversationID: "conv_half"})
	if status, out := in.do(http.MethodPost, "/api/calls", body, apiHeader()); status != http.StatusServiceUnavailable || out["code"] != "unavailable" {
		t.Fatalf("another call while the link is young: %d %v", status, out)
	}
	// Older than the grace period: taken over.
	if err := rdb.Set(ctx, link, "EL_dead", 7*24*time.Hour-time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	out := in.saveCall(calls.Update{CallSID: "EL_other", ConversationID: "conv_half"})
	if out["conversation_id"] != "conv_half" {
		t.Fatalf("take over: %v", out)
	}
	if status, got := in.do(http.MethodGet, "/api/calls/conv_half", nil, apiHeader()); status != http.StatusOK || got["call_sid"] != "EL_other" {
		t.Fatalf("lookup after the take over: %d %v", status, got)
	}
	// The same call retrying completes its own half-made link at once.
	if err := rdb.Set(ctx, prefix+":conv:conv_mine", "EL_dead", 7*24*time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if out := in.saveCall(calls.Update{CallSID: "EL_dead", ConversationID: "conv_mine"}); out["conversation_id"] != "conv_mine" {
		t.Fatalf("the same call again: %v", out)
	}
}
