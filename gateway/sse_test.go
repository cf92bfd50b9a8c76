package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callgate/callgate/gateway"
	"github.com/callgate/callgate/internal/membus"
	"github.com/callgate/callgate/internal/ssetest"
)

// startStreams starts a server on new test calls, with the stream routes
// as the command mounts them, and returns its http:// URL.
func startStreams(t *testing.T, cfg gateway.Config) (*gateway.Server, testBus, string) {
	t.Helper()
	mem = newMemCalls()
	bus := testBus{membus.New()}
	cfg.Bus, cfg.Resolver, cfg.History = bus, mem, mem
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
	mux := http.NewServeMux()
	mux.Handle("/ws/calls/transcriptions", srv)
	mux.HandleFunc("GET /sse/calls/{id}", func(w http.ResponseWriter, r *http.Request) {
		srv.ServeCallStream(w, r, r.PathValue("id"))
	})
	mux.HandleFunc("GET /sse/calls", func(w http.ResponseWriter, r *http.Request) { srv.ServeCallStream(w, r) })
	for _, tp := range cfg.Topics {
		mux.Handle("GET /sse/"+tp.Name, srv.TopicStreamHandler(tp.Name))
	}
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Close()
		bus.Close()
		<-ran
	})
	return srv, bus, hs.URL
}

// named is the extra part of a test event frame that names it.
const named = `,"event":"transcript"`

// of is named with the call_sid of call key.
func of(key string) string { return named + `,"call_sid":"` + key + `"` }

// expectEvent reads the next event and checks it is the call event of
// call and event_id id, with the stream id given.
func expectEvent(t *testing.T, s *ssetest.Stream, call, id, streamID string) ssetest.Event {
	t.Helper()
	ev := s.Next()
	if ev.Name != "transcript" || ev.Frame.Type != "event" || ev.Frame.EventID != id || ev.ID != streamID {
		t.Fatalf("got %q id %q: %s; want transcript %s of %s with id %q", ev.Name, ev.ID, ev.Data, id, call, streamID)
	}
	return ev
}

// expectSubscribed reads the subscribed event of a call.
func expectSubscribed(t *testing.T, s *ssetest.Stream, streamID string, recovered *bool) ssetest.Event {
	t.Helper()
	ev := s.Expect("subscribed")
	if ev.ID != streamID {
		t.Fatalf("subscribed: id %q, want %q: %s", ev.ID, streamID, ev.Data)
	}
	got := ev.Frame.Recovered
	if (got == nil) != (recovered == nil) || got != nil && *got != *recovered {
		t.Fatalf("subscribed: %s, want recovered %v", ev.Data, recovered)
	}
	return ev
}

func ptr(b bool) *bool { return &b }

// TestStreamFollowsACall: a stream gets the welcome, the call's
// subscribed event with the position it starts after, then every event,
// each with the id a client resumes from; resuming with Last-Event-ID or
// since gets exactly what follows, then live events.
func TestStreamFollowsACall(t *testing.T) {
	srv, bus, base := startStreams(t, gateway.Config{})
	mem.publish(srv, "EL_1", named) // before the stream: not sent
	s := ssetest.Dial(t, base+"/sse/calls/EL_1", nil)
	if h := s.Resp.Header; h.Get("Cache-Control") != "no-cache" || h.Get("X-Accel-Buffering") != "no" || s.Resp.TransferEncoding != nil || s.Resp.ContentLength != -1 {
		t.Fatalf("response head: %v, transfer encoding %v", h, s.Resp.TransferEncoding)
	}
	if w := s.Expect("welcome"); w.Frame.Type != "welcome" || w.ID != "" {
		t.Fatalf("welcome: %+v", w)
	}
	sub := expectSubscribed(t, s, "1-1", nil)
	if sub.Frame.EventID != "1" || sub.Frame.Epoch != "1" || !strings.Contains(string(sub.Frame.Call), `"call_sid":"EL_1"`) {
		t.Fatalf("subscribed: %s", sub.Data)
	}
	if r := s.Retry(); r < time.Second || r > 3*time.Second {
		t.Fatalf("retry %v, want 1 to 3 s", r)
	}
	for n := 2; n <= 4; n++ {
		mem.publish(srv, "EL_1", named)
		ev := expectEvent(t, s, "EL_1", itoa(n), "1-"+itoa(n))
		if stored := mem.events["EL_1"][n-1].Frame; ev.Data != string(stored) {
			t.Fatalf("data %s, want the socket's frame %s", ev.Data, stored)
		}
	}
	if st := srv.Stats(); st.Streams != 1 || st.Connections != 1 || st.Subscriptions != 1 {
		t.Fatalf("stats %+v", st)
	}
	s.Close()
	bus.waitRefs(t, 0)

	// What EventSource sends when it reconnects; then since, bare and
	// with its epoch.
	mem.publish(srv, "EL_1", named) // 5, while no one follows
	for _, tc := range []struct {
		url    string
		header http.Header
	}{
		{"/sse/calls/EL_1", http.Header{"Last-Event-ID": {"1-3"}}},
		{"/sse/calls/EL_1?since=3", nil},
		{"/sse/calls/conv_1?since=3&epoch=1", nil},
		{"/sse/calls/EL_1?since=1-1", http.Header{"Last-Event-ID": {"1-3"}}}, // the header wins
	} {
		r := ssetest.Dial(t, base+tc.url, tc.header)
		r.Expect("welcome")
		if sub := expectSubscribed(t, r, "1-3", ptr(true)); sub.Frame.EventID != "3" {
			t.Fatalf("%s: %s", tc.url, sub.Data)
		}
		expectEvent(t, r, "EL_1", "4", "1-4")
		expectEvent(t, r, "EL_1", "5", "1-5")
		r.Close()
	}
	bus.waitRefs(t, 0)
}

// TestStreamOfSeveralCalls: one stream follows the calls its URL names;
// its id holds each call's position, in the URL's order, and resuming
// with it resumes every call where it was.
func TestStreamOfSeveralCalls(t *testing.T) {
	srv, _, base := startStreams(t, gateway.Config{})
	s := ssetest.Dial(t, base+"/sse/calls?call=EL_1&call=EL_2", nil)
	s.Expect("welcome")
	expectSubscribed(t, s, "0-0,", nil)
	expectSubscribed(t, s, "0-0,0-0", nil)
	mem.publish(srv, "EL_1", of("EL_1"))
	expectEvent(t, s, "EL_1", "1", "1-1,0-0")
	mem.publish(srv, "EL_2", of("EL_2"))
	expectEvent(t, s, "EL_2", "1", "1-1,1-1")
	mem.publish(srv, "EL_2", of("EL_2"))
	expectEvent(t, s, "EL_2", "2", "1-1,1-2")
	s.Close()
	mem.publish(srv, "EL_1", of("EL_1"))
	mem.publish(srv, "EL_2", of("EL_2"))

	r := ssetest.Dial(t, base+"/sse/calls?call=EL_1&call=EL_2", http.Header{"Last-Event-ID": {"1-1,1-2"}})
	r.Expect("welcome")
	// Each call's subscribed event, then what it missed; the two calls'
	// events may interleave.
	got := byCall(r.Follow([]string{"EL_1", "EL_2"}, []string{"1-1", "1-2"}, 4))
	if want := map[string][]string{"EL_1": {"subscribed 1-1 true", "event 1-2"}, "EL_2": {"subscribed 1-2 true", "event 1-3"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("resumed: %v, want %v", got, want)
	}
	mem.publish(srv, "EL_1", of("EL_1"))
	expectEvent(t, r, "EL_1", "3", "1-3,1-3")

	// A position for one call only: the other starts now.
	q := ssetest.Dial(t, base+"/sse/calls?call=EL_2&call=EL_1&since=,1-2", nil)
	q.Expect("welcome")
	expectSubscribed(t, q, "1-3,1-2", nil)
	expectSubscribed(t, q, "1-3,1-2", ptr(true))
	expectEvent(t, q, "EL_1", "3", "1-3,1-3")
}

// byCall lists, per call, what the events of a stream of calls said:
// "subscribed <position> <recovered>" or "event <position>".
func byCall(evs []ssetest.Event) map[string][]string {
	out := map[string][]string{}
	for _, ev := range evs {
		call, pos, ok := ev.Position()
		if !ok {
			continue
		}
		what := ev.Frame.Type + " " + pos
		if r := ev.Frame.Recovered; r != nil {
			what += " " + strconv.FormatBool(*r)
		}
		out[call] = append(out[call], what)
	}
	return out
}

// fakeAuth accepts tokens "user" and "user@org"; any other is invalid.
type fakeAuth struct{}

func (fakeAuth) Authenticate(token string) (gateway.Identity, error) {
	if token == "" || strings.ContainsAny(token, " !") {
		return gateway.Identity{}, errors.New("invalid token")
	}
	user, org, _ := strings.Cut(token, "@")
	return gateway.Identity{User: user, Org: org}, nil
}

// memTopics is a TopicSource with one state per topic.
type memTopics struct {
	mu     sync.Mutex
	frames map[string][]byte
	vers   map[string]gateway.Position
}

func (m *memTopics) Current(_ context.Context, topic string) ([]byte, gateway.Position, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.frames[topic], m.vers[topic], nil
}

func stateFrame(topic string, v gateway.Position, data string) []byte {
	return []byte(fmt.Sprintf(`{"type":"state","topic":%q,"version":%d,"epoch":"%d","data":%s}`, topic, v.Seq, v.Epoch, data))
}

var testTopics = []gateway.Topic{
	{Name: "workflows", Channel: "topic:workflows", FramePrefix: `{"type":"state","topic":"workflows","version":`},
	{Name: "routes", Channel: "topic:routes", FramePrefix: `{"type":"state","topic":"routes","version":`, Org: "acme"},
}

// TestStreamRefusals: every refusal is an HTTP status with the API's
// error body, before anything of a stream is sent; a call of another org
// gets exactly what an unknown call gets.
func TestStreamRefusals(t *testing.T) {
	srv, bus, base := startStreams(t, gateway.Config{
		Authenticator: fakeAuth{}, Tenancy: true, MaxSubscriptions: 2, MaxConnectionsPerUser: 1,
		AllowedOrigins: []string{"https://dash.example.com"},
		Topics:         testTopics, TopicSource: &memTopics{},
	})
	mem.orgs["EL_2"] = "acme"
	tok := func(token string) string { return "token=" + url.QueryEscape(token) }
	_, unknownMsg := refusedBody(t, base+"/sse/calls/nope?"+tok("u"), nil)
	for _, tc := range []struct {
		name   string
		path   string
		header http.Header
		status int
		code   string
	}{
		{"no token", "/sse/calls/EL_1", nil, 401, "token_required"},
		{"invalid token", "/sse/calls/EL_1?" + tok("bad token"), nil, 401, "invalid_token"},
		{"invalid cookie", "/sse/calls/EL_1", http.Header{"Cookie": {"callgate_token=bad!"}}, 401, "invalid_token"},
		{"origin", "/sse/calls/EL_1?" + tok("u"), http.Header{"Origin": {"https://evil.example.com"}}, 403, "origin_not_allowed"},
		{"topic of another org", "/sse/routes?" + tok("u@globex"), nil, 403, "forbidden"},
		{"unknown call", "/sse/calls/nope?" + tok("u"), nil, 404, "call_not_found"},
		{"call of another org", "/sse/calls/EL_2?" + tok("u@globex"), nil, 404, "call_not_found"},
		{"anonymous to a call of an org", "/sse/calls/EL_2?" + tok("u"), nil, 404, "call_not_found"},
		{"one of several unknown", "/sse/calls?call=EL_1&call=nope&" + tok("u"), nil, 404, "call_not_found"},
		{"huge call id", "/sse/calls/" + strings.Repeat("x", 4000) + "?" + tok("u"), nil, 404, "call_not_found"},
		{"no call", "/sse/calls?" + tok("u"), nil, 400, "missing_field"},
		{"empty call", "/sse/calls?call=&" + tok("u"), nil, 400, "missing_field"},
		{"path and query", "/sse/calls/EL_1?call=conv_1&" + tok("u"), nil, 400, "invalid_request"},
		{"a call twice", "/sse/calls?call=EL_1&call=conv_1&" + tok("u"), nil, 400, "invalid_request"},
		{"too many calls", "/sse/calls?call=EL_1&call=EL_2&call=conv_1&" + tok("u"), nil, 400, "too_many_subscriptions"},
		{"since not a number", "/sse/calls/EL_1?since=abc&" + tok("u"), nil, 400, "invalid_since"},
		{"negative since", "/sse/calls/EL_1?since=-1&" + tok("u"), nil, 400, "invalid_since"},
		{"since with a leading zero", "/sse/calls/EL_1?since=01&" + tok("u"), nil, 400, "invalid_since"},
		{"since overflows", "/sse/calls/EL_1?since=99999999999999999999&" + tok("u"), nil, 400, "invalid_since"},
		{"bad epoch", "/sse/calls/EL_1?since=1&epoch=x&" + tok("u"), nil, 400, "invalid_since"},
		{"two positions for one call", "/sse/calls/EL_1?" + tok("u"), http.Header{"Last-Event-ID": {"1-1,1-2"}}, 400, "invalid_since"},
		{"huge Last-Event-ID", "/sse/calls/EL_1?" + tok("u"), http.Header{"Last-Event-ID": {strings.Repeat("1", 60000)}}, 400, "invalid_since"},
		{"odd Last-Event-ID", "/sse/calls/EL_1?" + tok("u"), http.Header{"Last-Event-ID": {"1-2-3"}}, 400, "invalid_since"},
	} {
		status, code := ssetest.Refused(t, base+tc.path, tc.header)
		if status != tc.status || code != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, status, code, tc.status, tc.code)
		}
	}
	if _, msg := refusedBody(t, base+"/sse/calls/EL_2?"+tok("u@globex"), nil); msg != unknownMsg {
		t.Errorf("another org's call: message %q, an unknown call's %q", msg, unknownMsg)
	}

	// The token in a cookie, and the origin allowed: credentials are
	// allowed for it.
	s := ssetest.Dial(t, base+"/sse/calls/EL_2", http.Header{"Cookie": {"callgate_token=heavy@acme"}, "Origin": {"https://dash.example.com"}})
	if h := s.Resp.Header; h.Get("Access-Control-Allow-Origin") != "https://dash.example.com" || h.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("CORS headers: %v", h)
	}
	s.Expect("welcome")
	s.Expect("subscribed")
	if status, code := ssetest.Refused(t, base+"/sse/calls/EL_1?"+tok("heavy"), nil); status != 429 || code != "too_many_connections" {
		t.Errorf("second stream of a user at the limit: %d %s", status, code)
	}
	bus.FailSubscribes(errors.New("bus down"))
	if status, code := ssetest.Refused(t, base+"/sse/calls/EL_1?"+tok("other"), nil); status != 503 || code != "unavailable" {
		t.Errorf("bus down: %d %s", status, code)
	}
	bus.FailSubscribes(nil)
	// Nothing refused holds a subscription or a user's place: the user
	// refused last has one stream now, the limit.
	s.Close()
	bus.waitRefs(t, 0)
	ok := ssetest.Dial(t, base+"/sse/calls/EL_1?"+tok("other"), nil)
	ok.Expect("welcome")
	ok.Expect("subscribed")
	if st := srv.Stats(); st.Subscriptions != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func refusedBody(t *testing.T, url string, header http.Header) (int, string) {
	t.Helper()
	_, status, body, err := ssetest.Request(t, url, header)
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Message string }
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%s: %q", url, body)
	}
	return status, e.Message
}

// TestStreamInstanceLimit: past MaxConnections (sockets and streams
// together) a stream gets 503.
func TestStreamInstanceLimit(t *testing.T) {
	_, _, base := startStreams(t, gateway.Config{MaxConnections: 1})
	s := ssetest.Dial(t, base+"/sse/calls/EL_1", nil)
	s.Expect("welcome")
	if status, code := ssetest.Refused(t, base+"/sse/calls/EL_1", nil); status != 503 || code != "too_many_connections" {
		t.Fatalf("past the limit: %d %s", status, code)
	}
}

// TestStreamTopic: a topic stream gets the current state at once, then
// every change, each with the version as its id.
func TestStreamTopic(t *testing.T) {
	v1 := gateway.Position{Epoch: 7, Seq: 1}
	src := &memTopics{frames: map[string][]byte{"workflows": stateFrame("workflows", v1, `{"a":1}`)},
		vers: map[string]gateway.Position{"workflows": v1}}
	srv, _, base := startStreams(t, gateway.Config{Topics: testTopics, TopicSource: src})
	s := ssetest.Dial(t, base+"/sse/workflows", http.Header{"Last-Event-ID": {"ignored"}})
	s.Expect("welcome")
	if ev := s.Expect("state"); ev.ID != "7-1" || !strings.Contains(ev.Data, `"data":{"a":1}`) {
		t.Fatalf("state: %+v", ev)
	}
	srv.Deliver("topic:workflows", stateFrame("workflows", gateway.Position{Epoch: 7, Seq: 2}, "[\n1,\r\n2]"))
	if ev := s.Expect("state"); ev.ID != "7-2" || !strings.HasSuffix(ev.Data, `"data":[`+"\n1,\n2]}") {
		t.Fatalf("state spanning lines: %+v", ev)
	}
}

// TestSlowStreamIsCutOff: a reader that stops reading is cut off as a
// slow socket is; what it finds when it reads again is whole events, in
// order, then the close event 4008, then the end.
func TestSlowStreamIsCutOff(t *testing.T) {
	srv, _, base := startStreams(t, gateway.Config{SendQueue: 8})
	u, _ := url.Parse(base)
	nc, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	fmt.Fprintf(nc, "GET /sse/calls/EL_1 HTTP/1.1\r\nHost: %s\r\n\r\n", u.Host)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("response %v %v", resp, err)
	}
	p := ssetest.NewParser(resp.Body)
	for _, want := range []string{"welcome", "subscribed"} {
		if ev, err := p.Next(); err != nil || ev.Name != want {
			t.Fatalf("got %+v %v, want %s", ev, err, want)
		}
	}
	// The reader stops; the socket buffers fill, then its queue.
	pad := `,"pad":"` + strings.Repeat("x", 64<<10) + `"`
	for n := 0; srv.Stats().Overflows == 0; n++ {
		if n == 2000 {
			t.Fatal("no overflow after 2000 events of 64 KiB")
		}
		mem.publish(srv, "EL_1", named+pad)
	}
	last := 0
	for {
		ev, err := p.Next()
		if err != nil {
			t.Fatalf("after event %d: %v, want the close event", last, err)
		}
		if ev.Name == "close" {
			id := "1-" + itoa(last)
			if last == 0 {
				id = "0-0" // the subscribed event's
			}
			if ev.Frame.Type != "close" || !strings.Contains(ev.Data, `"code":4008`) || ev.ID != id {
				t.Fatalf("close event %+v after event %d", ev, last)
			}
			break
		}
		if ev.Frame.EventID != itoa(last+1) || ev.ID != "1-"+itoa(last+1) {
			t.Fatalf("got event %s (id %s) after %d", ev.Frame.EventID, ev.ID, last)
		}
		last++
	}
	if _, err := p.Next(); err != io.EOF {
		t.Fatalf("after the close event: %v, want the end of the body", err)
	}
	t.Logf("%d events read before the cut", last)
}

// TestShutdownEndsStreams: Shutdown ends every stream with the close
// event 1001 after what was queued, then ends the body; the client
// resumes elsewhere.
func TestShutdownEndsStreams(t *testing.T) {
	srv, _, base := startStreams(t, gateway.Config{})
	s := follow(t, base+"/sse/calls/EL_1")
	mem.publish(srv, "EL_1", named)
	ctx, cancel := context.WithTimeout(context.Background(), ssetest.Wait)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	expectEvent(t, s, "EL_1", "1", "1-1")
	if ev := s.Expect("close"); !strings.Contains(ev.Data, `"code":1001`) {
		t.Fatalf("close event %s", ev.Data)
	}
	if err := s.Ended(); !ssetest.CleanEnd(err) {
		t.Fatalf("stream ended with %v", err)
	}
	if status, code := ssetest.Refused(t, base+"/sse/calls/EL_1", nil); status != 503 || code != "shutting_down" {
		t.Fatalf("after shutdown: %d %s", status, code)
	}
	waitNoGatewayGoroutines(t)
}

// TestStreamResumeBeyondRetention: a resume from a position the history
// no longer reaches gets recovered:false, then what is stored.
func TestStreamResumeBeyondRetention(t *testing.T) {
	srv, _, base := startStreams(t, gateway.Config{})
	for range 5 {
		mem.record("EL_1", named)
	}
	mem.mu.Lock()
	mem.events["EL_1"] = mem.events["EL_1"][3:] // 4 and 5 are left
	mem.mu.Unlock()
	s := ssetest.Dial(t, base+"/sse/calls/EL_1", http.Header{"Last-Event-ID": {"1-1"}})
	s.Expect("welcome")
	expectSubscribed(t, s, "1-1", ptr(false))
	expectEvent(t, s, "EL_1", "4", "1-4")
	expectEvent(t, s, "EL_1", "5", "1-5")
	mem.publish(srv, "EL_1", named)
	expectEvent(t, s, "EL_1", "6", "1-6")
}

// TestStreamReset: when the call's numbering goes back while a stream
// follows it, the stream gets a reset event whose id is the new epoch's
// start, then the events numbered again.
func TestStreamReset(t *testing.T) {
	srv, _, base := startStreams(t, gateway.Config{})
	s := follow(t, base+"/sse/calls/EL_1")
	mem.publish(srv, "EL_1", named)
	expectEvent(t, s, "EL_1", "1", "1-1")
	mem.restart("EL_1", false)
	mem.publish(srv, "EL_1", named)
	if ev := s.Expect("reset"); ev.ID != "2-0" || ev.Frame.Recovered == nil || *ev.Frame.Recovered {
		t.Fatalf("reset %+v", ev)
	}
	expectEvent(t, s, "EL_1", "1", "2-1")
}

// follow opens a stream of one call and reads its welcome and subscribed
// events.
func follow(t *testing.T, url string) *ssetest.Stream {
	t.Helper()
	s := ssetest.Dial(t, url, nil)
	s.Expect("welcome")
	s.Expect("subscribed")
	return s
}

// TestStreamKeepalive: an idle stream gets a comment every
// StreamKeepalive.
func TestStreamKeepalive(t *testing.T) {
	_, _, base := startStreams(t, gateway.Config{StreamKeepalive: 20 * time.Millisecond})
	s := follow(t, base+"/sse/calls/EL_1")
	if c := s.Comment(); c != " keepalive" {
		t.Fatalf("comment %q", c)
	}
}

// TestStreamOfACallHiddenLater: once the call's org no longer matches the
// stream's token, the stream gets unsubscribed, then the close event
// 4003, and ends.
func TestStreamOfACallHiddenLater(t *testing.T) {
	srv, bus, base := startStreams(t, gateway.Config{Authenticator: fakeAuth{}, Tenancy: true})
	s := follow(t, base+"/sse/calls/EL_2?token=u@globex")
	mem.mu.Lock()
	mem.orgs["EL_2"] = "acme"
	mem.mu.Unlock()
	srv.Deliver(testCalls["EL_2"].Channel, []byte(`{"type":"org","org":"acme"}`))
	if ev := s.Expect("unsubscribed"); ev.Frame.Reason != "forbidden" || ev.Frame.CallSID != "EL_2" {
		t.Fatalf("unsubscribed %+v", ev)
	}
	if ev := s.Expect("close"); !strings.Contains(ev.Data, `"code":4003`) {
		t.Fatalf("close %s", ev.Data)
	}
	if err := s.Ended(); !ssetest.CleanEnd(err) {
		t.Fatalf("ended with %v", err)
	}
	bus.waitRefs(t, 0)
}

// expiringAuth accepts any token for user u, expiring after ttl.
type expiringAuth struct{ ttl time.Duration }

func (a expiringAuth) Authenticate(string) (gateway.Identity, error) {
	return gateway.Identity{User: "u", Expires: time.Now().Add(a.ttl)}, nil
}

// TestStreamTokenExpires: a stream is warned before its token expires,
// and ends at expiry with the close event 4002; EventSource cannot
// refresh a token, so the client opens a new stream with a fresh one.
func TestStreamTokenExpires(t *testing.T) {
	_, _, base := startStreams(t, gateway.Config{Authenticator: expiringAuth{ttl: 2 * time.Second}, TokenWarning: 1900 * time.Millisecond})
	s := follow(t, base+"/sse/calls/EL_1?token=t")
	if ev := s.Expect("token_expiring"); ev.Frame.Type != "token_expiring" {
		t.Fatalf("token_expiring %+v", ev)
	}
	if ev := s.Expect("close"); !strings.Contains(ev.Data, `"code":4002`) {
		t.Fatalf("close %s", ev.Data)
	}
	if err := s.Ended(); !ssetest.CleanEnd(err) {
		t.Fatalf("ended with %v", err)
	}
}

// TestShutdownEndsWhatItsStreamOverlapped: a stream whose request was
// being checked when Shutdown closed the others starts, and ends at once
// with the close event 1001, rather than staying open until Shutdown's
// deadline.
func TestShutdownEndsWhatItsStreamOverlapped(t *testing.T) {
	auth := heldAuthenticator{entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv, _, base := startStreams(t, gateway.Config{Authenticator: auth})
	opened := make(chan *ssetest.Stream, 1)
	go func() {
		s, status, body, err := ssetest.Request(t, base+"/sse/calls/EL_1?token=t", nil)
		if err != nil || s == nil {
			t.Errorf("stream: %d %s %v", status, body, err)
		}
		opened <- s
	}()
	<-auth.entered
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), ssetest.Wait)
		defer cancel()
		stopped <- srv.Shutdown(ctx)
	}()
	for !srv.Draining() {
		runtime.Gosched()
	}
	close(auth.release)
	s := <-opened
	if s == nil {
		t.FailNow()
	}
	s.Expect("welcome")
	s.Expect("subscribed")
	if ev := s.Expect("close"); !strings.Contains(ev.Data, `"code":1001`) {
		t.Fatalf("close %s", ev.Data)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
