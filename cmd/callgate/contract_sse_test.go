package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/internal/redistest"
	"github.com/callgate/callgate/internal/spectest"
	"github.com/callgate/callgate/internal/wstest"
)

// The Server-Sent Events part of the contract test: /sse/… answers
// against openapi.yaml, stream events against asyncapi.yaml's callStream
// and topicStream channels.

// streamsServed is set by contractStreams: whether this build serves
// /sse/ at all. Until it does, what the documents say of streams is not
// asked for.
var streamsServed atomic.Bool

// isStreamItem reports whether a documented item is of the streams.
func isStreamItem(d string) bool {
	return strings.Contains(d, " /sse/") || strings.HasPrefix(d, "callStream ") || strings.HasPrefix(d, "topicStream ")
}

// servesStreams reports whether in serves /sse/.
func (in *instance) servesStreams() bool {
	in.t.Helper()
	resp, raw := in.send("GET", "/sse/calls", nil, nil)
	return !(resp.StatusCode == http.StatusNotFound && strings.Contains(string(raw), `"not_found"`))
}

// specStream is a Server-Sent Events stream whose every event, and its
// close event, is checked against asyncapi.yaml's channel.
type specStream struct {
	t       *testing.T
	channel string
	events  chan streamEvent
}

// streamEvent is one event of a stream.
type streamEvent struct {
	id, name string
	frame    wstest.Frame
}

// specStream opens the stream at path, checks its 200 answer against
// openapi.yaml, and reads its events in the background.
func (in *instance) specStream(op, path, channel string, header http.Header) *specStream {
	in.t.Helper()
	t := in.t.(*testing.T)
	req, err := http.NewRequest(http.MethodGet, in.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	spectest.OpenAPI(t).Check(t, spectest.Exchange{Op: op, Req: req, Resp: resp, CheckRequest: true})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream %s: %d", path, resp.StatusCode)
	}
	s := &specStream{t: t, channel: channel, events: make(chan streamEvent, 1024)}
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		var ev streamEvent
		var data strings.Builder
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if data.Len() > 0 || ev.name != "" {
					ev.frame.Raw = []byte(data.String())
					s.events <- ev
				}
				ev, data = streamEvent{}, strings.Builder{}
			case strings.HasPrefix(line, ":"), strings.HasPrefix(line, "retry: "):
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data.WriteString(strings.TrimPrefix(line, "data: "))
			default:
				ev.name = "<unexpected line " + line + ">"
			}
		}
	}()
	return s
}

// Next returns the next event, checked: its data against the channel's
// messages, its name against its frame.
func (s *specStream) Next() streamEvent {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			s.t.Fatal("the stream ended while waiting for an event")
		}
		typ := spectest.AsyncAPI(s.t).Check(s.t, s.channel, ev.frame.Raw)
		raw := ev.frame.Raw
		json.Unmarshal(raw, &ev.frame)
		ev.frame.Raw = raw
		want := typ
		if typ == "event" {
			want = ev.frame.Event
		}
		if ev.name != want {
			s.t.Errorf("event named %q carries %s", ev.name, raw)
		}
		return ev
	case <-time.After(wstest.Wait):
		s.t.Fatalf("no event within %s", wstest.Wait)
	}
	return streamEvent{}
}

// ExpectSeq reads events of frames of these types, in this order.
func (s *specStream) ExpectSeq(types ...string) {
	s.t.Helper()
	for _, typ := range types {
		s.Expect(typ)
	}
}

// Expect returns the next event and fails unless its frame's type is typ.
func (s *specStream) Expect(typ string) streamEvent {
	s.t.Helper()
	ev := s.Next()
	if ev.frame.Type != typ {
		s.t.Fatalf("got event %s %s, want a %s frame", ev.name, ev.frame.Raw, typ)
	}
	return ev
}

// ExpectClose reads events (of the allowed types) up to a close event with
// code, checks it against the channel's close codes, and that the stream
// ends after it.
func (s *specStream) ExpectClose(code int, allowed ...string) {
	s.t.Helper()
	for {
		ev := s.Next()
		if ev.frame.Type != "close" {
			if !slices.Contains(allowed, ev.frame.Type) {
				s.t.Errorf("event %s before the close, want only %v", ev.frame.Raw, allowed)
			}
			continue
		}
		var c struct {
			Code   int
			Reason string
		}
		json.Unmarshal(ev.frame.Raw, &c)
		if c.Code != code {
			s.t.Errorf("stream closed with %s, want %d", ev.frame.Raw, code)
		}
		spectest.AsyncAPI(s.t).CheckClose(s.t, s.channel, c.Code, c.Reason)
		select {
		case ev, ok := <-s.events:
			if ok {
				s.t.Errorf("event %s after the close event", ev.frame.Raw)
			}
		case <-time.After(wstest.Wait):
			s.t.Errorf("the stream did not end after its close event")
		}
		return
	}
}

func contractStreams(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	in := secureInstance(t, srv, prefix, func(c *config) {
		c.TopicOrgs = []string{"routes=acme"}
		c.TokenWarning = 2 * time.Hour // warned at once
		c.MaxSubscriptions = 2
		c.MaxConnsPerUser = 2
		c.AllowedOrigins = []string{"https://dash.example.com"}
	})
	if !in.servesStreams() {
		t.Skip("this build serves no /sse/ routes")
	}
	streamsServed.Store(true)
	const many, one, topic = "GET /sse/calls", "GET /sse/calls/{id}", "GET /sse/{topic}"
	tok := url.QueryEscape(token(t, "s1", ""))
	in.saveCall(calls.Update{CallSID: "EL_a", ConversationID: "conv_a", Status: calls.StatusInProgress})
	in.saveCall(calls.Update{CallSID: "EL_b"})
	in.refuse(
		refusal{one, "GET", "/sse/calls/EL_a", nil, nil, http.StatusUnauthorized, "token_required"},
		refusal{one, "GET", "/sse/calls/EL_a?token=nope", nil, nil, http.StatusUnauthorized, "invalid_token"},
		refusal{many, "GET", "/sse/calls?token=" + tok, nil, nil, http.StatusBadRequest, "missing_field"},
		refusal{one, "GET", "/sse/calls/EL_a?call=EL_b&token=" + tok, nil, nil, http.StatusBadRequest, "invalid_request"},
		refusal{many, "GET", "/sse/calls?call=EL_a&call=conv_a&token=" + tok, nil, nil, http.StatusBadRequest, "invalid_request"},
		refusal{one, "GET", "/sse/calls/EL_a?since=x&token=" + tok, nil, nil, http.StatusBadRequest, "invalid_since"},
		refusal{many, "GET", "/sse/calls?call=a&call=b&call=c&token=" + tok, nil, nil, http.StatusBadRequest, "too_many_subscriptions"},
		refusal{one, "GET", "/sse/calls/EL_nope?token=" + tok, nil, nil, http.StatusNotFound, "call_not_found"},
		refusal{one, "GET", "/sse/calls/EL_a?token=" + tok, nil, http.Header{"Origin": {"https://evil.example.com"}}, http.StatusForbidden, "origin_not_allowed"},
		refusal{many, "GET", "/sse/calls?call=EL_a&token=" + tok, nil, http.Header{"Origin": {"https://evil.example.com"}}, http.StatusForbidden, "origin_not_allowed"},
		refusal{topic, "GET", "/sse/routes?token=" + url.QueryEscape(token(t, "s2", "globex")), nil, nil, http.StatusForbidden, "forbidden"},
		refusal{topic, "GET", "/sse/nope?token=" + tok, nil, nil, http.StatusNotFound, "not_found"},
		refusal{topic, "GET", "/sse/workflows?token=nope", nil, nil, http.StatusUnauthorized, "invalid_token"},
		refusal{many, "GET", "/sse/calls?call=EL_a", nil, nil, http.StatusUnauthorized, "token_required"},
		refusal{many, "GET", "/sse/calls?call=EL_a&call=EL_nope&token=" + tok, nil, nil, http.StatusNotFound, "call_not_found"},
	)

	// Two calls: the welcome, each call's subscribed and events, the
	// warning; then an org set on a call ends the stream.
	s := in.specStream(many, "/sse/calls?call=EL_a&call=EL_b&since=0,&token="+tok, "callStream", nil)
	s.Expect("welcome")
	seen := map[string]int{}
	for seen["subscribed"] < 2 || seen["event"] < 1 || seen["token_expiring"] < 1 {
		seen[s.Next().frame.Type]++
	}
	in.saveCall(calls.Update{CallSID: "EL_b", Org: "acme"})
	s.Expect("unsubscribed")
	s.ExpectClose(4003)

	// The user's second connection, and a third.
	heavy := url.QueryEscape(token(t, "heavy", "acme"))
	r := in.specStream(topic, "/sse/routes?token="+heavy, "topicStream", nil)
	r.Expect("welcome")
	r.Expect("token_expiring")
	c := in.specStream(one, "/sse/calls/conv_a?token="+heavy, "callStream", nil)
	c.Expect("welcome")
	in.refuse(
		refusal{topic, "GET", "/sse/workflows?token=" + heavy, nil, nil, http.StatusTooManyRequests, "too_many_connections"},
		refusal{one, "GET", "/sse/calls/EL_a?token=" + heavy, nil, nil, http.StatusTooManyRequests, "too_many_connections"},
		refusal{many, "GET", "/sse/calls?call=EL_a&token=" + heavy, nil, nil, http.StatusTooManyRequests, "too_many_connections"},
	)

	// A topic's state, and a token that expires while the stream is open.
	in.putTopic("workflows", `{"v":1}`)
	soon := token(t, "s3", "", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(2 * time.Second).Unix() })
	w := in.specStream(topic, "/sse/workflows", "topicStream", http.Header{"Authorization": {"Bearer " + soon}})
	w.Expect("welcome")
	if ev := w.Expect("state"); !strings.Contains(ev.id, "-") {
		t.Errorf("state event without an <epoch>-<version> id: %q", ev.id)
	}
	w.ExpectClose(4002, "token_expiring")

	// A replay larger than the send queue: what fits, then 4008.
	small := startInstance(t, srv, prefix, "sse-small", func(c *config) { c.SendQueueBytes = 1200 })
	small.saveCall(calls.Update{CallSID: "EL_long", Status: calls.StatusInProgress})
	for i := 1; i <= 12; i++ {
		small.mustPublish("/webhooks/transcription", transcript("EL_long", strings.Repeat("words ", 20), i))
	}
	l := small.specStream(one, "/sse/calls/EL_long?since=0", "callStream", nil)
	l.Expect("welcome")
	l.ExpectClose(4008, "subscribed", "event")

	// Every kind of event, each checked as it arrives.
	small.saveCall(calls.Update{CallSID: fixtureSID})
	small.saveCall(calls.Update{CallSID: twilioSID})
	e := small.specStream(many, "/sse/calls?call="+fixtureSID+"&call="+twilioSID, "callStream", nil)
	e.ExpectSeq("welcome", "subscribed", "subscribed")
	postEveryEvent(t, small)
	names := map[string]bool{}
	for len(names) < 7 {
		names[e.Expect("event").frame.Event] = true
	}

	// Redis lost a followed call: reset.
	x := small.specStream(one, "/sse/calls/EL_long", "callStream", nil)
	x.Expect("welcome")
	x.Expect("subscribed")
	srv.Flush(t)
	small.saveCall(calls.Update{CallSID: "EL_long", Status: calls.StatusInProgress})
	x.Expect("reset")
	x.Expect("event")

	// Past --max-connections.
	full := startInstance(t, srv, prefix, "sse-full", func(c *config) { c.MaxConnections = 1 })
	f := full.specStream(topic, "/sse/workflows", "topicStream", nil)
	f.Expect("welcome")
	full.refuse(
		refusal{topic, "GET", "/sse/routes", nil, nil, http.StatusServiceUnavailable, "too_many_connections"},
		refusal{one, "GET", "/sse/calls/EL_long", nil, nil, http.StatusServiceUnavailable, "too_many_connections"},
		refusal{many, "GET", "/sse/calls?call=EL_long", nil, nil, http.StatusServiceUnavailable, "too_many_connections"},
	)
}

// openStreamsToDrain opens a call and a topic stream on in, when it
// serves streams, and returns what checks them once the gateway drains:
// the open ones get a close event 1001, new ones 503 shutting_down.
func openStreamsToDrain(t *testing.T, in *instance) func() {
	if !in.servesStreams() {
		return func() {}
	}
	in.saveCall(calls.Update{CallSID: "EL_drain"})
	c := in.specStream("GET /sse/calls/{id}", "/sse/calls/EL_drain", "callStream", nil)
	c.ExpectSeq("welcome", "subscribed")
	w := in.specStream("GET /sse/{topic}", "/sse/workflows", "topicStream", nil)
	w.Expect("welcome")
	return func() {
		c.ExpectClose(1001)
		w.ExpectClose(1001)
		in.refuse(
			refusal{"GET /sse/calls/{id}", "GET", "/sse/calls/EL_drain", nil, nil, http.StatusServiceUnavailable, "shutting_down"},
			refusal{"GET /sse/calls", "GET", "/sse/calls?call=EL_drain", nil, nil, http.StatusServiceUnavailable, "shutting_down"},
			refusal{"GET /sse/{topic}", "GET", "/sse/workflows", nil, nil, http.StatusServiceUnavailable, "shutting_down"},
		)
	}
}

// streamsWhileRedisDown: what stream requests get while Redis is down
// (the topic's channel is followed already).
func streamsWhileRedisDown(in *instance) {
	if !in.servesStreams() {
		return
	}
	in.refuse(
		refusal{"GET /sse/calls/{id}", "GET", "/sse/calls/EL_d", nil, nil, http.StatusServiceUnavailable, "unavailable"},
		refusal{"GET /sse/calls", "GET", "/sse/calls?call=EL_d", nil, nil, http.StatusServiceUnavailable, "unavailable"},
		refusal{"GET /sse/{topic}", "GET", "/sse/workflows", nil, nil, http.StatusServiceUnavailable, "unavailable"},
	)
}
