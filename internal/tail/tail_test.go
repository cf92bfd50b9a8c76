package tail_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/callgate/callgate/internal/tail"
	"github.com/callgate/callgate/internal/tail/tailtest"
)

// fakeGateway is a scripted gateway: the test plays the server's side of
// each connection the tail opens.
type fakeGateway struct {
	t     *testing.T
	url   string
	conns chan *peer
	// refuse, if set, answers the next handshakes with this status and
	// body instead of upgrading.
	refuse chan [2]string
}

// peer is the server's end of one connection.
type peer struct {
	t   *testing.T
	ws  *websocket.Conn
	req *http.Request
}

func newFakeGateway(t *testing.T) *fakeGateway {
	g := &fakeGateway{t: t, conns: make(chan *peer, 16), refuse: make(chan [2]string, 1)}
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case answer := <-g.refuse:
			w.Header().Set("Content-Type", "application/json")
			code := map[string]int{"404": 404, "403": 403, "503": 503}[answer[0]]
			w.WriteHeader(code)
			w.Write([]byte(answer[1]))
			return
		default:
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		t.Cleanup(func() { ws.Close() })
		g.conns <- &peer{t: t, ws: ws, req: r}
	}))
	t.Cleanup(srv.Close)
	g.url = "ws" + strings.TrimPrefix(srv.URL, "http")
	return g
}

// accept returns the next connection the tail opened.
func (g *fakeGateway) accept() *peer {
	g.t.Helper()
	select {
	case p := <-g.conns:
		return p
	case <-time.After(tailtest.Wait):
		g.t.Fatal("the tail did not connect")
	}
	return nil
}

// reconnect closes p as an instance that shuts down does, and returns
// the tail's next connection and the subscribe it sent there.
func (g *fakeGateway) reconnect(r *tailtest.Run, p *peer) (*peer, map[string]string) {
	g.t.Helper()
	p.close(websocket.CloseGoingAway, "server shutting down")
	want(g.t, r.Out, "-- connection to "+g.url+" closed (1001: server shutting down); reconnecting to "+g.url+" in 0s")
	p = g.accept()
	return p, p.read()
}

// read returns the next client frame that is not a keepalive ping.
func (p *peer) read() map[string]string {
	p.t.Helper()
	for {
		p.ws.SetReadDeadline(time.Now().Add(tailtest.Wait))
		_, b, err := p.ws.ReadMessage()
		if err != nil {
			p.t.Fatalf("server read: %v", err)
		}
		var f map[string]string
		if err := json.Unmarshal(b, &f); err != nil {
			p.t.Fatalf("client frame %s: %v", b, err)
		}
		if f["type"] != "ping" {
			return f
		}
	}
}

func (p *peer) send(frames ...string) {
	p.t.Helper()
	for _, f := range frames {
		if err := p.ws.WriteMessage(websocket.TextMessage, []byte(f)); err != nil {
			p.t.Fatalf("server write: %v", err)
		}
	}
}

func (p *peer) close(code int, text string) {
	p.t.Helper()
	msg := websocket.FormatCloseMessage(code, text)
	if err := p.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)); err != nil {
		p.t.Fatalf("server close: %v", err)
	}
}

// closeCode waits for the client's close frame and returns its code.
func (p *peer) closeCode() int {
	p.t.Helper()
	for {
		p.ws.SetReadDeadline(time.Now().Add(tailtest.Wait))
		_, _, err := p.ws.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		if err != nil {
			p.t.Fatalf("connection ended without a close frame: %v", err)
		}
	}
}

func ev(epoch, id, event, data string) string {
	e := ""
	if epoch != "" {
		e = `,"epoch":"` + epoch + `"`
	}
	return `{"type":"event","event_id":"` + id + `"` + e + `,"event":"` + event +
		`","call_sid":"CA1","time":"2026-11-30T01:02:03.456789Z","data":` + data + `}`
}

const (
	welcome = `{"type":"welcome","connection_id":"c","instance_id":"gw-1","user":"anonymous"}`
	record  = `{"call_sid":"CA1","conversation_id":"conv1","status":"in-progress","created_at":"2026-11-30T01:00:00Z","updated_at":"2026-11-30T01:00:00Z"}`
)

func subscribed(extra string) string {
	return `{"type":"subscribed","id":"1","call":` + record + extra + `}`
}

func config(g *fakeGateway) tail.Config {
	return tail.Config{URLs: []string{g.url}, Call: "CA1", MaxBackoff: 50 * time.Millisecond}
}

// want checks that the next line has prefix, after the time column.
func want(t *testing.T, l *tailtest.Lines, prefix string) {
	t.Helper()
	line := l.Next()
	got := line
	if !strings.HasPrefix(prefix, "-- ") && len(line) > 13 {
		got = line[13:] // "01:02:03.456 "
	}
	if !strings.HasPrefix(got, prefix) {
		t.Fatalf("got line %q, want one starting with %q", line, prefix)
	}
}

// TestEpochsResetAndResume plays the epoch protocol: the epoch is shown on
// the first line and when it changes; a reset frame is noted; a reconnect
// after a 1001 resumes from the last event written, with its epoch; Ctrl-C
// closes with 1000 and says where to resume.
func TestEpochsResetAndResume(t *testing.T) {
	g := newFakeGateway(t)
	r := tailtest.Start(t, config(g), true)
	p := g.accept()
	if f := p.read(); f["type"] != "subscribe" || f["call"] != "CA1" || f["since"] != "" || f["epoch"] != "" {
		t.Fatalf("first subscribe: %v", f)
	}
	p.send(welcome, subscribed(`,"epoch":"100","event_id":"3"`),
		ev("100", "4", "status", `{"status":"in-progress"}`),
		ev("100", "5", "transcript", `{"role":"agent","text":"Hi","final":true}`))
	want(t, r.Out, "-- following CA1 (conversation conv1), status in-progress, on "+g.url+" (instance gw-1)")
	want(t, r.Out, "#100:4 status in-progress")
	want(t, r.Out, "#5 transcript agent: Hi")

	p.send(`{"type":"reset","call_sid":"CA1","epoch":"200","event_id":"0","recovered":false}`,
		ev("200", "1", "status", `{"status":"in-progress"}`),
		ev("200", "2", "transcript", `{"role":"user","text":"Hello?","final":false}`))
	want(t, r.Out, "-- reset: the gateway lost the event numbering of CA1 (Redis lost its state or failed over); events after #100:5 may be missing; numbering restarts at #200:1")
	want(t, r.Out, "#200:1 status in-progress")
	want(t, r.Out, "#2 transcript user (tentative): Hello?")

	p, f := g.reconnect(r, p)
	if f["since"] != "2" || f["epoch"] != "200" {
		t.Fatalf("resume: %v", f)
	}
	p.send(welcome, subscribed(`,"epoch":"200","event_id":"2","recovered":true`),
		ev("200", "3", "interruption", `{"source_event_id":4}`))
	want(t, r.Out, "-- resumed CA1 after #200:2 on "+g.url+" (instance gw-1), nothing missed")
	want(t, r.Out, "#3 interruption")

	stopped := make(chan int, 1)
	go func() { stopped <- p.closeCode() }()
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if code := <-stopped; code != websocket.CloseNormalClosure {
		t.Fatalf("closed with %d, want 1000", code)
	}
	want(t, r.Out, "-- stopped after #200:3; to resume after it: --since 200:3")
}

// TestLiveResumesFromSubscribed: a tail that started live and wrote no
// event resumes from the event_id and epoch of its subscribed frame; one
// whose subscribed frame named none asks for everything.
func TestLiveResumesFromSubscribed(t *testing.T) {
	for _, c := range []struct {
		name, extra, since, epoch string
	}{
		{"position given", `,"epoch":"9","event_id":"7"`, "7", "9"},
		{"call without events", ``, "0", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newFakeGateway(t)
			r := tailtest.Start(t, config(g), true)
			p := g.accept()
			p.read()
			p.send(welcome, subscribed(c.extra))
			want(t, r.Out, "-- following CA1")
			p.ws.Close() // a connection that died: 1006
			want(t, r.Out, "-- connection to "+g.url+" closed (1006")
			p = g.accept()
			if f := p.read(); f["since"] != c.since || f["epoch"] != c.epoch {
				t.Fatalf("resume: %v", f)
			}
		})
	}
}

// TestGapsRepeatsAndRestarts: what is missing is noted, an event written
// already is not written again, a gateway without epochs that numbers
// again from 1 is followed, and after recovered:false an event below the
// position is the call's next.
func TestGapsRepeatsAndRestarts(t *testing.T) {
	g := newFakeGateway(t)
	cfg := config(g)
	cfg.Since = &tail.Position{EventID: 2}
	r := tailtest.Start(t, cfg, true)
	p := g.accept()
	if f := p.read(); f["since"] != "2" || f["epoch"] != "" {
		t.Fatalf("subscribe: %v", f)
	}
	p.send(welcome, subscribed(`,"recovered":false`),
		ev("", "5", "interruption", `{}`),
		ev("", "7", "interruption", `{}`),
		ev("", "2", "status", `{"status":"done"}`))
	want(t, r.Out, "-- following CA1 (conversation conv1), status in-progress, after #2, on")
	want(t, r.Out, "-- recovered:false: the gateway no longer has every event of CA1 after #2; what it still has follows")
	want(t, r.Out, "-- #3 to #4 are missing")
	want(t, r.Out, "#5 interruption")
	want(t, r.Out, "-- #6 is missing")
	want(t, r.Out, "#7 interruption")
	want(t, r.Out, "-- event_id went back from #7 to #2")
	want(t, r.Out, "#2 status done")

	p.send(ev("7", "1", "status", `{"status":"in-progress"}`),
		ev("7", "1", "status", `{"status":"in-progress"}`),
		ev("7", "2", "audio_available", `{"audio_bytes":114}`))
	want(t, r.Out, "#7:1 status in-progress")
	want(t, r.Out, "-- skipped #1, written already")
	want(t, r.Out, "#2 audio_available 114 bytes")

	// Resumed from an older epoch: the next epoch's events follow, the
	// first trimmed from its history.
	p, f := g.reconnect(r, p)
	if f["since"] != "2" || f["epoch"] != "7" {
		t.Fatalf("resume: %v", f)
	}
	p.send(subscribed(`,"epoch":"7","event_id":"2","recovered":false`), ev("9", "3", "interruption", `{}`))
	want(t, r.Out, "-- resumed CA1 after #7:2 on")
	want(t, r.Out, "-- recovered:false: the gateway no longer has every event of CA1 after #7:2; what it still has follows")
	want(t, r.Out, "-- #9:1 to #9:2 are missing")
	want(t, r.Out, "#9:3 interruption")
}

// TestRefusals: answers that the gateway would give again end the tail
// with an error that says why; the others are retried.
func TestRefusals(t *testing.T) {
	type script func(g *fakeGateway, p *peer)
	closeWith := func(code int, text string) script {
		return func(g *fakeGateway, p *peer) { p.read(); p.close(code, text) }
	}
	subscribeError := func(code string) script {
		return func(g *fakeGateway, p *peer) {
			p.read()
			p.send(welcome, `{"type":"error","id":"1","code":"`+code+`","message":"m"}`)
		}
	}
	for _, c := range []struct {
		name   string
		token  string
		script script
		want   string
	}{
		{"forbidden", "tok", closeWith(4003, "a fresh token must be for the same user"), "the gateway refused this token here (close 4003: a fresh token must be for the same user)"},
		{"no token", "", closeWith(4001, "authentication required: …"), "the gateway requires a token (close 4001: authentication required: …); give one with --token or CALLGATE_TOKEN"},
		{"bad token", "tok", closeWith(4001, "invalid token"), "the gateway refused the token (close 4001: invalid token)"},
		{"expired token", "tok", closeWith(4002, "token expired: x"), "the token expired (close 4002: token expired: x)"},
		{"unknown call", "", subscribeError("call_not_found"), `no call has the call_sid or conversation_id "CA1" (call_not_found)`},
		{"bad subscribe", "", subscribeError("invalid_frame"), "the gateway refused the subscribe (invalid_frame: m)"},
		{"org changed", "tok", func(g *fakeGateway, p *peer) {
			p.read()
			p.send(welcome, subscribed(`,"epoch":"1","event_id":"0"`), `{"type":"unsubscribed","call_sid":"CA1","reason":"forbidden"}`)
		}, "the gateway ended the subscription to CA1 (forbidden: the call's org and the token's no longer match)"},
		{"not a gateway", "", nil, "answered 404 Not Found (not_found: no such route): is " /* the URL */},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newFakeGateway(t)
			cfg := config(g)
			cfg.Token = c.token
			if c.script == nil {
				g.refuse <- [2]string{"404", `{"code":"not_found","message":"no such route"}`}
			}
			r := tailtest.Start(t, cfg, false)
			if c.script != nil {
				c.script(g, g.accept())
			}
			err := r.Wait()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Run returned %v, want an error with %q", err, c.want)
			}
		})
	}
	for _, c := range []struct {
		name   string
		script script
	}{
		{"rate limited", closeWith(4029, "too many frames: slow down")},
		{"too many connections", closeWith(4030, "too many connections for this user")},
		{"bus unavailable", closeWith(1013, "event bus unavailable; reconnect later")},
		{"send queue overflow", closeWith(4008, "send queue overflow")},
		{"redis unavailable", subscribeError("unavailable")},
		{"shutting down", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newFakeGateway(t)
			if c.script == nil {
				g.refuse <- [2]string{"503", `{"code":"shutting_down","message":"the instance is shutting down"}`}
			}
			r := tailtest.Start(t, config(g), true)
			if c.script != nil {
				c.script(g, g.accept())
			}
			want(t, r.Out, "-- ")
			if f := g.accept().read(); f["type"] != "subscribe" {
				t.Fatalf("after reconnecting: %v", f)
			}
		})
	}
}

// TestToken: the token goes in the first frame, never in the URL or a
// header; a gateway that checks none says so once.
func TestToken(t *testing.T) {
	g := newFakeGateway(t)
	cfg := config(g)
	cfg.Token = "secret-token"
	r := tailtest.Start(t, cfg, true)
	p := g.accept()
	if p.req.URL.RawQuery != "" || p.req.Header.Get("Authorization") != "" {
		t.Fatalf("handshake %s carries credentials", p.req.URL)
	}
	if f := p.read(); f["type"] != "auth" || f["token"] != "secret-token" {
		t.Fatalf("first frame %v, want auth", f)
	}
	if f := p.read(); f["type"] != "subscribe" {
		t.Fatalf("second frame %v, want subscribe", f)
	}
	p.send(`{"type":"error","id":"auth","code":"auth_not_needed","message":"this gateway does not check tokens"}`, welcome, subscribed(""))
	want(t, r.Out, "-- the gateway checks no tokens; the token is not needed")
	want(t, r.Out, "-- following CA1")
}

// TestJSONAndTopics: with JSON the lines are the frames as sent, but for
// pongs and a state written before the reconnect; a topic's readable
// lines are its versions.
func TestJSONAndTopics(t *testing.T) {
	state := func(v, data string) string {
		return `{"type":"state","topic":"routes","version":` + v + `,"epoch":"5","data":` + data + `}`
	}
	// A state of a new epoch: the gateway's Redis lost the topic.
	reborn := `{"type":"state","topic":"routes","version":1,"epoch":"6","data":["r9"]}`
	for _, asJSON := range []bool{false, true} {
		g := newFakeGateway(t)
		cfg := tail.Config{URLs: []string{g.url + "/"}, Topic: "routes", JSON: asJSON, MaxBackoff: 50 * time.Millisecond, PingPeriod: 20 * time.Millisecond}
		r := tailtest.Start(t, cfg, false)
		p := g.accept()
		if p.req.URL.Path != "/ws/routes" {
			t.Fatalf("topic socket at %s", p.req.URL.Path)
		}
		// A topic tail sends nothing but its keepalive pings.
		if _, b, err := p.ws.ReadMessage(); err != nil || string(b) != `{"type":"ping","id":"keepalive"}` {
			t.Fatalf("first frame %s (%v), want a keepalive ping", b, err)
		}
		p.send(welcome, state("1", `["r1"]`), `{"type":"pong","id":"keepalive"}`, state("2", `["r1","r2"]`))
		p.close(websocket.CloseGoingAway, "server shutting down")
		p = g.accept()
		p.send(welcome, state("2", `["r1","r2"]`), state("3", `[]`), reborn)
		wantLines := []string{welcome, state("1", `["r1"]`), state("2", `["r1","r2"]`), welcome, state("3", `[]`), reborn}
		if !asJSON {
			wantLines = []string{`version 1: ["r1"]`, `version 2: ["r1","r2"]`, `version 3: []`, `version 1: ["r9"]`}
		}
		var lines []string
		for range wantLines {
			lines = append(lines, r.Out.Next())
		}
		if strings.Join(lines, "\n") != strings.Join(wantLines, "\n") {
			t.Fatalf("JSON %v: lines\n%s\nwant\n%s", asJSON, strings.Join(lines, "\n"), strings.Join(wantLines, "\n"))
		}
		want(t, r.Notes, "-- following topic routes on "+g.url+"/ (instance gw-1)")
		r.Notes.Until("-- resumed topic routes")
		want(t, r.Notes, "-- the gateway lost the topic's state; its versions count again, in epoch 6")
	}
}

func TestParsePosition(t *testing.T) {
	for in, want := range map[string]tail.Position{
		"57":                     {EventID: 57},
		"#57":                    {EventID: 57},
		"0":                      {},
		"1764466799123:57":       {Epoch: "1764466799123", EventID: 57},
		"#1764466799123:0":       {Epoch: "1764466799123"},
		"18446744073709551616:1": {Epoch: "18446744073709551616", EventID: 1},
	} {
		got, err := tail.ParsePosition(in)
		if err != nil || got != want {
			t.Errorf("ParsePosition(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if s := got.String(); s != strings.TrimPrefix(in, "#") {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), in)
		}
	}
	for _, in := range []string{"", "-1", "x", "1:", ":1", "1:2:3", "1.5", "+3", "a:1"} {
		if _, err := tail.ParsePosition(in); err == nil {
			t.Errorf("ParsePosition(%q) accepted", in)
		}
	}
}
