package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/callgate/callgate/gateway"
	"github.com/callgate/callgate/internal/membus"
	"github.com/callgate/callgate/internal/wstest"
)

// testBus is the in-memory bus of internal/membus, which the suite of
// internal/bustest holds to the Redis bus's behaviours, with the waits the
// tests need. Tests deliver messages through the server directly.
type testBus struct{ *membus.Bus }

func (b testBus) total() int { return b.Total() }

// waitRefs waits until the bus holds n references in all.
func (b testBus) waitRefs(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(wstest.Wait)
	for {
		changed := b.Changed()
		if b.Total() == n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("bus holds %d references, want %d", b.Total(), n)
		}
	}
}

// calls known to the test resolver: both identifiers of each.
var testCalls = map[string]gateway.Target{
	"EL_1": {Key: "EL_1", Channel: "ch:EL_1"},
	"EL_2": {Key: "EL_2", Channel: "ch:EL_2"},
}

// testRecords are the records of the test calls, by key.
var testRecords = map[string]json.RawMessage{
	"EL_1": json.RawMessage(`{"call_sid":"EL_1","conversation_id":"conv_1"}`),
	"EL_2": json.RawMessage(`{"call_sid":"EL_2"}`),
}

func init() {
	testCalls["conv_1"] = testCalls["EL_1"]
}

// memCalls resolves the test calls and keeps their published events, as
// the call store and the bus's history do.
type memCalls struct {
	mu     sync.Mutex
	events map[string][]gateway.Event  // by call key; may be trimmed
	last   map[string]gateway.Position // last position by call key
	fail   error                       // History fails with it when set
	gone   map[string]bool             // calls whose record History no longer finds
	moved  map[string]gateway.Target   // identifiers that now name another call
	orgs   map[string]string           // calls' orgs, by key
	// resolves counts calls to Resolve.
	resolves int
}

func newMemCalls() *memCalls {
	return &memCalls{events: map[string][]gateway.Event{}, last: map[string]gateway.Position{},
		gone: map[string]bool{}, moved: map[string]gateway.Target{}, orgs: map[string]string{}}
}

func (m *memCalls) Resolve(ctx context.Context, id string) (gateway.Target, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.resolves++
	t, ok := m.moved[id]
	if !ok {
		t, ok = testCalls[id]
	}
	if !ok {
		return gateway.Target{}, gateway.ErrNotFound
	}
	t.Org = m.orgs[t.Key]
	return t, nil
}

func (m *memCalls) After(ctx context.Context, key string, after gateway.Position, limit int) (gateway.HistoryRead, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return gateway.HistoryRead{}, m.fail
	}
	read := gateway.HistoryRead{Last: m.last[key], Org: m.orgs[key]}
	for _, e := range m.events[key] {
		if after.Less(e.Position) && (limit == 0 || len(read.Events) < limit) {
			read.Events = append(read.Events, e)
		}
	}
	if rec, ok := testRecords[key]; ok && !m.gone[key] {
		read.Record = rec
	}
	return read, nil
}

// record numbers and stores an event of call key without delivering it,
// as when the bus misses it; extra goes into the frame after the epoch.
func (m *memCalls) record(key string, extra ...string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.last[key]
	if p.Epoch == 0 {
		p.Epoch = 1
	}
	p.Seq++
	m.last[key] = p
	frame := []byte(`{"type":"event","event_id":"` + strconv.FormatInt(p.Seq, 10) + `","epoch":"` +
		strconv.FormatInt(p.Epoch, 10) + `"` + strings.Join(extra, "") + `}`)
	m.events[key] = append(m.events[key], gateway.Event{Position: p, Frame: frame})
	return frame
}

// restart makes the store lose call key's numbering, as Redis does when it
// loses state: the next event starts a new epoch at 1. With keep, the
// events stored so far stay in history.
func (m *memCalls) restart(key string, keep bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.last[key] = gateway.Position{Epoch: m.last[key].Epoch + 1}
	if !keep {
		m.events[key] = nil
	}
}

// publish records an event and delivers it, as a webhook does through
// Redis.
func (m *memCalls) publish(srv *gateway.Server, key string, extra ...string) {
	srv.Deliver(testCalls[key].Channel, m.record(key, extra...))
}

// mem is the current test's calls.
var mem *memCalls

func startServer(t *testing.T, cfg gateway.Config) (*gateway.Server, testBus, string) {
	t.Helper()
	mem = newMemCalls()
	return startServerWith(t, cfg, mem)
}

// startServerWith starts a server on mem's calls with history h.
func startServerWith(t *testing.T, cfg gateway.Config, h gateway.History) (*gateway.Server, testBus, string) {
	t.Helper()
	bus := testBus{membus.New()}
	cfg.Bus, cfg.Resolver, cfg.History = bus, mem, h
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv := gateway.NewServer(cfg)
	bus.OnLost = srv.Lost
	bus.OnReconnect = srv.Resync
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		bus.Run(context.Background(), srv.Deliver)
	}()
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Close()
		bus.Close()
		<-ran
	})
	return srv, bus, "ws" + strings.TrimPrefix(hs.URL, "http")
}

func dial(t *testing.T, url string) *wstest.Client {
	t.Helper()
	c := wstest.Dial(t, url)
	c.Welcome()
	return c
}

// alive proves the connection still works after an error.
func alive(t *testing.T, c *wstest.Client) {
	t.Helper()
	c.Send(map[string]string{"type": "ping", "id": "alive"})
	if f := c.Expect("pong"); f.ID != "alive" {
		t.Fatalf("pong %s", f.Raw)
	}
}

func TestBadFramesGetErrorsAndKeepTheConnection(t *testing.T) {
	_, bus, url := startServer(t, gateway.Config{})
	c := dial(t, url)
	nested := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	for _, tc := range []struct {
		name   string
		binary bool
		frame  string
		id     string
		code   string
	}{
		{name: "not JSON", frame: `{"type":`, code: gateway.CodeInvalidJSON},
		{name: "deeply nested", frame: nested, code: gateway.CodeInvalidJSON},
		{name: "array", frame: `[1,2]`, code: gateway.CodeInvalidFrame},
		{name: "null", frame: `null`, code: gateway.CodeInvalidFrame},
		{name: "no type", frame: `{"id":"r1"}`, id: "r1", code: gateway.CodeInvalidFrame},
		{name: "type not a string", frame: `{"id":"r2","type":7}`, id: "r2", code: gateway.CodeInvalidFrame},
		{name: "id not a string", frame: `{"id":3,"type":"ping"}`, code: gateway.CodeInvalidFrame},
		{name: "unknown type", frame: `{"id":"r3","type":"dance"}`, id: "r3", code: gateway.CodeUnknownType},
		{name: "invalid UTF-8", frame: "{\"id\":\"r4\",\"type\":\"\xff\xfe\"}", id: "r4", code: gateway.CodeUnknownType},
		{name: "subscribe without call", frame: `{"id":"r5","type":"subscribe"}`, id: "r5", code: gateway.CodeMissingField},
		{name: "subscribe to blank call", frame: `{"id":"r6","type":"subscribe","call":"  "}`, id: "r6", code: gateway.CodeMissingField},
		{name: "call not a string", frame: `{"id":"r7","type":"subscribe","call":{"a":1}}`, id: "r7", code: gateway.CodeInvalidFrame},
		{name: "unknown call", frame: `{"id":"r8","type":"subscribe","call":"EL_nope"}`, id: "r8", code: gateway.CodeCallNotFound},
		{name: "unsubscribe not subscribed", frame: `{"id":"r9","type":"unsubscribe","call":"EL_1"}`, id: "r9", code: gateway.CodeNotSubscribed},
		{name: "unsubscribe unknown", frame: `{"id":"r10","type":"unsubscribe","call":"EL_nope"}`, id: "r10", code: gateway.CodeNotSubscribed},
		{name: "binary frame", binary: true, frame: `{"type":"ping"}`, code: gateway.CodeInvalidFrame},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typ := websocket.TextMessage
			if tc.binary {
				typ = websocket.BinaryMessage
			}
			c.SendRaw(typ, []byte(tc.frame))
			f := c.Expect("error")
			if f.Code != tc.code || f.ID != tc.id || f.Message == "" {
				t.Fatalf("got %s, want code %q id %q", f.Raw, tc.code, tc.id)
			}
			alive(t, c)
		})
	}
	if n := bus.total(); n != 0 {
		t.Fatalf("bad frames left %d bus subscriptions", n)
	}
}

func TestOversizedFrameClosesWith1009(t *testing.T) {
	srv, _, url := startServer(t, gateway.Config{MaxFrameBytes: 1024})
	other := dial(t, url)
	other.MustSubscribe("o", "EL_1")
	c := dial(t, url)
	c.SendRaw(websocket.TextMessage, []byte(`{"type":"ping","pad":"`+strings.Repeat("x", 2000)+`"}`))
	if code := wstest.CloseCode(c.Closed()); code != websocket.CloseMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
	// Another client is unaffected.
	mem.publish(srv, "EL_1", "")
	if f := other.Expect("event"); f.EventID != "1" {
		t.Fatalf("other client got %s", f.Raw)
	}
}

func TestSubscribeDeliverUnsubscribe(t *testing.T) {
	srv, bus, url := startServer(t, gateway.Config{})
	c := dial(t, url)
	f := c.MustSubscribe("a", "EL_1")
	if string(f.Call) != string(testRecords["EL_1"]) {
		t.Fatalf("subscribed call %s", f.Call)
	}
	// The same call by its other identifier: one subscription, events once.
	c.MustSubscribe("b", "conv_1")
	if n := bus.total(); n != 1 {
		t.Fatalf("bus references %d, want 1", n)
	}
	mem.publish(srv, "EL_1", "")
	mem.publish(srv, "EL_1", "")
	for _, want := range []string{"1", "2"} {
		if f := c.Expect("event"); f.EventID != want {
			t.Fatalf("got %s, want event %s", f.Raw, want)
		}
	}
	// Unsubscribing by the other identifier ends the subscription.
	c.Send(map[string]string{"type": "unsubscribe", "id": "u", "call": "EL_1"})
	if f := c.Expect("unsubscribed"); f.ID != "u" || f.CallSID != "EL_1" {
		t.Fatalf("got %s", f.Raw)
	}
	bus.waitRefs(t, 0)
	mem.publish(srv, "EL_1", "")
	alive(t, c) // the pong comes next, not event 3
}

func TestSubscriptionLimit(t *testing.T) {
	_, _, url := startServer(t, gateway.Config{MaxSubscriptions: 1})
	c := dial(t, url)
	c.MustSubscribe("a", "EL_1")
	if f := c.Subscribe("b", "EL_2"); f.Code != gateway.CodeTooManySubscriptions || f.ID != "b" {
		t.Fatalf("got %s", f.Raw)
	}
	// Re-subscribing to a followed call is not a new subscription.
	c.MustSubscribe("c", "conv_1")
	alive(t, c)
}

func TestBusFailureIsUnavailable(t *testing.T) {
	_, bus, url := startServer(t, gateway.Config{})
	bus.FailSubscribes(errors.New("redis down"))
	c := dial(t, url)
	if f := c.Subscribe("a", "EL_1"); f.Code != gateway.CodeUnavailable || f.ID != "a" {
		t.Fatalf("got %s", f.Raw)
	}
	alive(t, c)
}

// TestCallGoneWhileSubscribing: the call's record disappears (it expired)
// between the resolve and the read that follows the confirmed
// subscription. The client gets call_not_found, nothing stays
// subscribed, and the connection goes on.
func TestCallGoneWhileSubscribing(t *testing.T) {
	srv, bus, url := startServer(t, gateway.Config{})
	mem.mu.Lock()
	mem.gone["EL_1"] = true
	mem.mu.Unlock()
	c := dial(t, url)
	c.Send(map[string]string{"type": "subscribe", "id": "s", "call": "EL_1"})
	if f := c.Expect("error"); f.Code != gateway.CodeCallNotFound || f.ID != "s" {
		t.Fatalf("got %s", f.Raw)
	}
	bus.waitRefs(t, 0)
	if n := srv.Stats().Subscriptions; n != 0 {
		t.Fatalf("%d subscriptions left", n)
	}
	alive(t, c)
}

// TestResolutionsAreReusedUntilProvedWrong: a server resolves an
// identifier once for many subscribes, and resolves it again when the
// catch-up finds that the call it remembered no longer exists.
func TestResolutionsAreReusedUntilProvedWrong(t *testing.T) {
	srv, _, url := startServer(t, gateway.Config{})
	resolves := func() int {
		mem.mu.Lock()
		defer mem.mu.Unlock()
		return mem.resolves
	}
	for i := range 3 {
		c := dial(t, url)
		if f := c.MustSubscribe("s", "conv_1"); string(f.Call) != string(testRecords["EL_1"]) {
			t.Fatalf("subscribe %d: %s", i, f.Raw)
		}
	}
	if n := resolves(); n != 1 {
		t.Fatalf("3 subscribes resolved conv_1 %d times, want 1", n)
	}

	// The call expired, and its conversation_id now names another call.
	mem.mu.Lock()
	mem.gone["EL_1"] = true
	mem.moved["conv_1"] = testCalls["EL_2"]
	mem.mu.Unlock()
	c := dial(t, url)
	if f := c.MustSubscribe("s", "conv_1"); string(f.Call) != string(testRecords["EL_2"]) {
		t.Fatalf("subscribe after the move: %s", f.Raw)
	}
	if n := resolves(); n != 2 {
		t.Fatalf("conv_1 resolved %d times in all, want 2", n)
	}
	mem.publish(srv, "EL_2")
	c.Expect("event")
}

func TestClosedConnectionLeavesEverySubscription(t *testing.T) {
	srv, bus, url := startServer(t, gateway.Config{})
	c := dial(t, url)
	c.MustSubscribe("a", "EL_1")
	c.MustSubscribe("b", "EL_2")
	c.Conn.NetConn().Close() // no close handshake
	bus.waitRefs(t, 0)
	if s := srv.Stats(); s.Subscriptions != 0 || s.Channels != 0 {
		t.Fatalf("stats after close: %+v", s)
	}
}

// TestSlowClientIsDisconnected stalls one client until its send queue
// overflows; the other client keeps receiving every message meanwhile.
func TestSlowClientIsDisconnected(t *testing.T) {
	srv, _, url := startServer(t, gateway.Config{SendQueue: 8})
	fast := dial(t, url)
	fast.MustSubscribe("f", "EL_1")

	ws := rawSubscriber(t, url, "EL_1")
	// The slow client now stops reading. Socket buffers absorb some
	// megabytes; then its queue fills.
	pad := strings.Repeat("x", 64<<10)
	sent := 0
	for srv.Stats().Overflows == 0 {
		if sent == 2000 {
			t.Fatal("no overflow after 2000 messages of 64 KiB")
		}
		sent++
		mem.publish(srv, "EL_1", `,"pad":"`+pad+`"`)
		if f := fast.Expect("event"); f.EventID != itoa(sent) {
			t.Fatalf("fast client got %s, want %d", f.EventID, sent)
		}
	}
	// Reading again, the slow client finds the close frame after what was
	// already buffered.
	var last string
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			if code := wstest.CloseCode(err); code != gateway.CloseSendQueueOverflow {
				t.Fatalf("slow client ended with %v, want close %d", err, gateway.CloseSendQueueOverflow)
			}
			break
		}
		last = string(data[:min(len(data), 40)])
	}
	t.Logf("slow client: %d messages sent before overflow; last frame read began %q", sent, last)
}

func itoa(n int) string { return strconv.Itoa(n) }

// rawSubscriber returns a plain gorilla client subscribed to call, past
// its welcome and subscribed frames, that reads only when the test does.
func rawSubscriber(t *testing.T, url, call string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	sub, _ := json.Marshal(map[string]string{"type": "subscribe", "id": "s", "call": call})
	if err := ws.WriteMessage(websocket.TextMessage, sub); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"welcome", "subscribed"} {
		if _, data, err := ws.ReadMessage(); err != nil || !strings.Contains(string(data), `"`+want+`"`) {
			t.Fatalf("subscriber: %s, %v", data, err)
		}
	}
	return ws
}

func TestShutdownClosesWith1001(t *testing.T) {
	srv, bus, url := startServer(t, gateway.Config{})
	c := dial(t, url)
	c.MustSubscribe("a", "EL_1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code := wstest.CloseCode(c.Closed()); code != websocket.CloseGoingAway {
		t.Fatalf("close code %d, want 1001", code)
	}
	bus.waitRefs(t, 0)
	if _, err := wstest.TryDial(t, url, nil); err == nil {
		t.Fatal("a draining server accepted a connection")
	}
}

func TestHandshakeErrorsAreJSON(t *testing.T) {
	_, _, url := startServer(t, gateway.Config{AllowedOrigins: []string{"https://dash.example.com"}})
	httpURL := "http" + strings.TrimPrefix(url, "ws")
	resp, err := http.Get(httpURL)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]string
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || body["code"] != "bad_handshake" {
		t.Fatalf("plain GET: %d %v", resp.StatusCode, body)
	}
	if _, err := wstest.TryDial(t, url, http.Header{"Origin": {"https://evil.example.com"}}); err == nil {
		t.Fatal("a foreign origin connected")
	}
	c, err := wstest.TryDial(t, url, http.Header{"Origin": {"https://dash.example.com"}})
	if err != nil {
		t.Fatalf("allowed origin: %v", err)
	}
	c.Welcome()
}

// TestUpgradeCarriesTheRequestID: the 101 answer carries the X-Request-Id
// that the HTTP stack set on the response, as every other answer does.
func TestUpgradeCarriesTheRequestID(t *testing.T) {
	srv, _, _ := startServer(t, gateway.Config{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "req-42")
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("X-Request-Id") != "req-42" {
		t.Fatalf("upgrade: %d, X-Request-Id %q; want 101 with req-42", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
}

// TestFrameSizes sends events across the frame header's length encodings
// (7-bit, 16-bit and 64-bit) in one batch and checks the client gets them
// intact.
func TestFrameSizes(t *testing.T) {
	srv, _, url := startServer(t, gateway.Config{})
	c := dial(t, url)
	c.MustSubscribe("s", "EL_1")
	base := len(`{"type":"event","event_id":"1","epoch":"1","pad":""}`)
	sizes := []int{base, 125, 126, 127, 65535, 65536, 70000, 1 << 20}
	for _, size := range sizes {
		mem.publish(srv, "EL_1", `,"pad":"`+strings.Repeat("x", size-base)+`"`)
	}
	for i, size := range sizes {
		f := c.Expect("event")
		if len(f.Raw) != size || f.EventID != strconv.Itoa(i+1) {
			t.Fatalf("frame %d: %d bytes, event %s; want %d bytes", i, len(f.Raw), f.EventID, size)
		}
	}
}

// TestStalledClientGetsEveryFrameIntact fills a client's socket while it
// does not read, so that writes stop part-way through frames of every
// header size, and has the client ping meanwhile, so that pongs join the
// stream. Once it reads again, every event must arrive whole and in order,
// with the default WriteWait. The client sends no frame while it reads: on
// a loaded machine that can take longer than the default PongWait, after
// which the server would take it for a dead client.
func TestStalledClientGetsEveryFrameIntact(t *testing.T) {
	srv, _, url := startServer(t, gateway.Config{SendQueue: 4096, SendQueueBytes: 1 << 30, PongWait: time.Hour})
	ws := rawSubscriber(t, url, "EL_1")
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{10, 125, 126, 200, 65535, 65536, 70000, 1 << 20}
	const n = 200
	pads := make([]int, n)
	total := 0
	for i := range pads {
		pads[i] = sizes[rng.IntN(len(sizes))] + rng.IntN(3)
		total += pads[i]
		mem.publish(srv, "EL_1", `,"pad":"`+strings.Repeat(string(rune('a'+i%26)), pads[i])+`"`)
		if i%20 == 0 {
			if err := ws.WriteControl(websocket.PingMessage, []byte(itoa(i)), time.Now().Add(time.Second)); err != nil {
				t.Fatal(err)
			}
		}
	}
	pongs := 0
	ws.SetPongHandler(func(string) error { pongs++; return nil })
	for i := range n {
		_, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("event %d: %v", i+1, err)
		}
		var f struct {
			EventID string `json:"event_id"`
			Pad     string `json:"pad"`
		}
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatalf("event %d: %v", i+1, err)
		}
		want := strings.Repeat(string(rune('a'+i%26)), pads[i])
		if f.EventID != itoa(i+1) || f.Pad != want {
			t.Fatalf("frame %d: event_id %s with %d pad bytes, want %d with %d", i+1, f.EventID, len(f.Pad), i+1, pads[i])
		}
	}
	// A pong to the protocol's ping comes after those to every control
	// ping, which the client sent first.
	ping, _ := json.Marshal(map[string]string{"type": "ping", "id": "last"})
	if err := ws.WriteMessage(websocket.TextMessage, ping); err != nil {
		t.Fatal(err)
	}
	if _, data, err := ws.ReadMessage(); err != nil || !strings.Contains(string(data), `"pong"`) {
		t.Fatalf("%s, %v", data, err)
	}
	if pongs != n/20 {
		t.Fatalf("%d pongs, want %d", pongs, n/20)
	}
	t.Logf("%d events, %d MiB, %d pongs, all intact", n, total>>20, pongs)
}

// TestClientCloseDropsTheBacklog: a client that closes while frames wait
// for it gets the close echo next, not after the frames it no longer
// wants.
func TestClientCloseDropsTheBacklog(t *testing.T) {
	srv, _, url := startServer(t, gateway.Config{SendQueue: 4096, SendQueueBytes: 1 << 30, WriteWait: time.Hour})
	ws := rawSubscriber(t, url, "EL_1")
	// A first event larger than the socket buffers: its write is under
	// way, and stays so, once the client has read its first bytes.
	mem.publish(srv, "EL_1", `,"pad":"`+strings.Repeat("x", 32<<20)+`"`)
	_, first, err := ws.NextReader()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(first, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	// Everything published now waits in the queue behind it.
	const n = 400
	pad := strings.Repeat("x", 64<<10)
	for range n {
		mem.publish(srv, "EL_1", `,"pad":"`+pad+`"`)
	}
	if err := ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, first); err != nil {
		t.Fatal(err)
	}
	_, data, err := ws.ReadMessage()
	if code := wstest.CloseCode(err); code != websocket.CloseNormalClosure {
		t.Fatalf("after the first event: %.60s, %v; want the echo of 1000", data, err)
	}
}

// TestBusMessagesCounted: every bus message is counted, and those on a
// channel a local connection follows apart.
func TestBusMessagesCounted(t *testing.T) {
	srv, bus, url := startServer(t, gateway.Config{})
	c := dial(t, url)
	c.MustSubscribe("a", "EL_1")
	mem.publish(srv, "EL_1", "")
	mem.publish(srv, "EL_2", "") // nobody follows EL_2 here
	mem.publish(srv, "EL_1", "")
	for _, want := range []string{"1", "2"} {
		if f := c.Expect("event"); f.EventID != want {
			t.Fatalf("got %s, want event %s", f.Raw, want)
		}
	}
	c.Send(map[string]string{"type": "unsubscribe", "id": "u", "call": "EL_1"})
	c.Expect("unsubscribed")
	bus.waitRefs(t, 0)
	mem.publish(srv, "EL_1", "") // left: received, not needed
	if s := srv.Stats(); s.BusMessages != 4 || s.BusFollowed != 2 {
		t.Fatalf("bus messages %d, followed %d; want 4 and 2", s.BusMessages, s.BusFollowed)
	}
}
