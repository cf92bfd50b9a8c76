package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/gateway"
	"github.com/callgate/callgate/internal/redistest"
	"github.com/callgate/callgate/internal/ssetest"
	"github.com/callgate/callgate/internal/wstest"
)

// token signs a client token with the test secret.
func token(t *testing.T, sub, org string, mut ...func(jwt.MapClaims)) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub, "org": org, "name": "Test " + sub, "aud": "callgate", "exp": time.Now().Add(time.Hour).Unix()}
	for _, m := range mut {
		m(c)
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testJWTSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// secureInstance starts an instance that requires tokens, as production
// does.
func secureInstance(t *testing.T, srv *redistest.Server, prefix string, mutate ...func(*config)) *instance {
	return startInstance(t, srv, prefix, "secure", append([]func(*config){func(c *config) {
		c.AllowAnonymous = false
		c.JWTAudience = "callgate"
		c.AuthTimeout = 500 * time.Millisecond
		c.MaxConnsPerUser = 3
	}}, mutate...)...)
}

func (in *instance) wsURL(path string) string {
	return strings.Replace(in.url, "http://", "ws://", 1) + path
}

// dialWith connects with a token, in the Authorization header or, with
// query set, in ?token=, and returns the client after its welcome, or the
// handshake's status and error code.
func (in *instance) dialWith(tok string, query ...bool) (*wstest.Client, int, string) {
	in.t.Helper()
	u, h := in.wsURL("/ws/calls/transcriptions"), http.Header{}
	switch {
	case len(query) > 0 && query[0]:
		u += "?token=" + url.QueryEscape(tok)
	case tok != "":
		h.Set("Authorization", "Bearer "+tok)
	}
	c, status, body, err := wstest.DialStatus(in.t, u, h)
	if err != nil {
		if status == 0 {
			in.t.Fatal(err)
		}
		var out map[string]string
		json.Unmarshal(body, &out)
		return nil, status, out["code"]
	}
	c.Welcome()
	return c, 101, ""
}

// TestHostileInput sends every kind of hostile input and checks the exact
// answer, that the gateway still serves a bystander, and that the
// bystander lost no event.
func TestHostileInput(t *testing.T) {
	srv := redistest.Start(t)
	in := secureInstance(t, srv, redistest.Prefix(t))
	in.saveCall(calls.Update{CallSID: "EL_acme", ConversationID: "conv_acme", Org: "acme", Status: calls.StatusInProgress})
	by, _, _ := in.dialWith(token(t, "bystander", "acme"), true) // as browsers do
	by.Send(map[string]string{"type": "subscribe", "id": "b", "call": "EL_acme", "since": "0"})
	by.Expect("subscribed")
	published := 0
	publish := func() {
		published++
		in.mustPublish("/webhooks/transcription", interruption("EL_acme", published))
	}

	// Tokens refused at the handshake.
	for name, tok := range map[string]string{
		"expired":         token(t, "u", "acme", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }),
		"wrong signature": strings.TrimSuffix(token(t, "u", "acme"), "A") + "B" + "x",
		"alg none": func() string {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "u", "aud": "callgate", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
			return s
		}(),
		"wrong aud": token(t, "u", "acme", func(c jwt.MapClaims) { c["aud"] = "someone-else" }),
		"no exp":    token(t, "u", "acme", func(c jwt.MapClaims) { delete(c, "exp") }),
		"exp as a string": token(t, "u", "acme", func(c jwt.MapClaims) {
			c["exp"] = strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
		}),
	} {
		if _, status, code := in.dialWith(tok); status != http.StatusUnauthorized || code != "invalid_token" {
			t.Errorf("%s token: %d %s, want 401 invalid_token", name, status, code)
		}
		publish()
	}

	// Without a token the first frame must be a valid auth frame, in time.
	for _, tc := range []struct {
		name  string
		first any
		code  int
	}{
		{"frame before auth", map[string]string{"type": "subscribe", "call": "EL_acme"}, gateway.CloseAuthFailed},
		{"invalid token in auth frame", map[string]string{"type": "auth", "token": "nope"}, gateway.CloseAuthFailed},
		{"nothing sent", nil, gateway.CloseAuthFailed},
	} {
		c := wstest.Dial(t, in.wsURL("/ws/calls/transcriptions"))
		if tc.first != nil {
			c.Send(tc.first)
		}
		if code := wstest.CloseCode(c.Closed()); code != tc.code {
			t.Errorf("%s: close %d, want %d", tc.name, code, tc.code)
		}
		publish()
	}

	// Another org's token gets exactly what an unknown call gets, by
	// either identifier; the right org's token, sent in an auth frame, is
	// admitted.
	other, _, _ := in.dialWith(token(t, "intruder", "globex"))
	for _, id := range []string{"EL_acme", "conv_acme", "EL_unknown"} {
		if f := other.Subscribe("x", id); f.Code != gateway.CodeCallNotFound || f.Message != "no call has that call_sid or conversation_id" {
			t.Errorf("other org subscribing to %s: %s", id, f.Raw)
		}
	}
	framed := wstest.Dial(t, in.wsURL("/ws/calls/transcriptions"))
	framed.Send(map[string]string{"type": "auth", "token": token(t, "u2", "acme")})
	if f := framed.Expect("authenticated"); !strings.Contains(string(f.Raw), `"user":"u2"`) {
		t.Fatalf("authenticated: %s", f.Raw)
	}
	framed.Welcome()
	framed.MustSubscribe("ok", "conv_acme")
	publish()
	framed.Expect("event")

	// Hostile frames from an authenticated socket.
	c, _, _ := in.dialWith(token(t, "u3", "acme"))
	c.SendRaw(websocket.TextMessage, []byte("{\"type\":\"\xff\xfe\",\"id\":\"u\"}"))
	if f := c.Expect("error"); f.Code != gateway.CodeUnknownType || f.ID != "u" {
		t.Errorf("invalid UTF-8: %s", f.Raw)
	}
	_ = c.Conn.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("[", 100000)+strings.Repeat("]", 100000)))
	if code := wstest.CloseCode(c.Closed()); code != websocket.CloseMessageTooBig {
		t.Errorf("200 KB nested frame: close %d, want 1009", code)
	}
	c, _, _ = in.dialWith(token(t, "u3", "acme"))
	c.SendRaw(websocket.TextMessage, []byte(strings.Repeat("[", 20000)+strings.Repeat("]", 20000)))
	if f := c.Expect("error"); f.Code != gateway.CodeInvalidJSON {
		t.Errorf("deeply nested JSON: %s", f.Raw)
	}
	big, _, _ := in.dialWith(token(t, "u4", "acme"))
	// The server stops reading at the limit and closes while the rest is
	// still being sent; the client's write may fail, its reader sees 1009.
	_ = big.Conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","pad":"`+strings.Repeat("x", 10<<20)+`"}`))
	if code := wstest.CloseCode(big.Closed()); code != websocket.CloseMessageTooBig {
		t.Errorf("10 MB frame: close %d, want 1009", code)
	}
	publish()
	flood, _, _ := in.dialWith(token(t, "u5", "acme"))
	for range 500 {
		if err := flood.Conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
			break
		}
	}
	if code := wstest.CloseCode(flood.Closed()); code != gateway.CloseRateLimited {
		t.Errorf("frame flood: close %d, want %d", code, gateway.CloseRateLimited)
	}
	publish()

	// Per-user connections: the fourth of one user is refused.
	var mine []*wstest.Client
	for range 3 {
		cl, status, _ := in.dialWith(token(t, "heavy", "acme"))
		if status != 101 {
			t.Fatalf("connection of heavy user: %d", status)
		}
		mine = append(mine, cl)
	}
	if _, status, code := in.dialWith(token(t, "heavy", "acme")); status != http.StatusTooManyRequests || code != "too_many_connections" {
		t.Errorf("fourth connection of one user: %d %s", status, code)
	}
	for _, cl := range mine {
		cl.Conn.Close()
	}

	// A webhook replayed with a changed body is refused.
	body := liveBody("call_sid", "EL_acme", json.RawMessage(`{"type":"interruption","interruption_event":{"event_id":999}}`))
	sig := calls.Sign([]byte(testSecret), time.Now(), body)
	changed := []byte(strings.Replace(string(body), "999", "998", 1))
	if status, out := in.do("POST", "/webhooks/transcription", changed, http.Header{calls.SignatureHeader: {sig}}); status != 401 || out["code"] != "bad_signature" {
		t.Errorf("replayed signature, changed body: %d %v", status, out)
	}

	// The bystander has every event, once, in order; status first.
	for n := 1; n <= published+1; n++ {
		if f := by.Expect("event"); f.EventID != strconv.Itoa(n) {
			t.Fatalf("bystander: got event %s, want %d", f.EventID, n)
		}
	}
	alive := by.Subscribe("p", "EL_acme")
	if alive.Type != "subscribed" {
		t.Fatalf("bystander after everything: %s", alive.Raw)
	}
}

// TestSubscriptionFlood sends 1000 subscribe requests on one socket: the
// first 100 existing calls are followed, further existing ones are refused
// with too_many_subscriptions, unknown ones get call_not_found. The client
// reads the answers only after sending every request, so the send queue
// holds all of them (with the default 256 frames, a busy machine whose
// flusher falls behind closes the socket with 4008, as it should).
func TestSubscriptionFlood(t *testing.T) {
	srv := redistest.Start(t)
	in := secureInstance(t, srv, redistest.Prefix(t), func(c *config) {
		c.MaxFrameRate, c.MaxFrameBurst = 100000, 2000
		c.SendQueue = 2000
	})
	for i := range 150 {
		in.saveCall(calls.Update{CallSID: fmt.Sprintf("EL_f%03d", i)})
	}
	c, _, _ := in.dialWith(token(t, "f", ""))
	for i := range 1000 {
		c.Send(map[string]string{"type": "subscribe", "id": strconv.Itoa(i), "call": fmt.Sprintf("EL_f%03d", i)})
	}
	for i := range 1000 {
		f := c.Next()
		want := "subscribed"
		switch {
		case i >= 150:
			want = gateway.CodeCallNotFound
		case i >= 100:
			want = gateway.CodeTooManySubscriptions
		}
		got := f.Type
		if got == "error" {
			got = f.Code
		}
		if got != want || f.ID != strconv.Itoa(i) {
			t.Fatalf("request %d: %s, want %s", i, f.Raw, want)
		}
	}
}

// TestTokenRefresh: a socket is warned before its token expires; a fresh
// token keeps it open, and one that is not refreshed is closed with 4002.
func TestTokenRefresh(t *testing.T) {
	srv := redistest.Start(t)
	in := secureInstance(t, srv, redistest.Prefix(t), func(c *config) { c.TokenWarning = 1500 * time.Millisecond })
	short := func() string {
		// exp has whole seconds: this expires 2 to 3 seconds from now.
		return token(t, "r", "", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(3 * time.Second).Unix() })
	}
	c, _, _ := in.dialWith(short())
	c.Expect("token_expiring")
	c.Send(map[string]string{"type": "auth", "token": token(t, "r", "")})
	c.Expect("authenticated")
	other := short()
	d, _, _ := in.dialWith(other)
	d.Expect("token_expiring")
	if code := wstest.CloseCode(d.Closed()); code != gateway.CloseTokenExpired {
		t.Fatalf("unrefreshed: close %d, want %d", code, gateway.CloseTokenExpired)
	}
	// The refreshed socket outlived its first token.
	c.Send(map[string]string{"type": "ping", "id": "still"})
	if f := c.Expect("pong"); f.ID != "still" {
		t.Fatalf("refreshed socket: %s", f.Raw)
	}
	// A fresh token for another user is refused.
	c.Send(map[string]string{"type": "auth", "token": token(t, "someone-else", "")})
	if code := wstest.CloseCode(c.Closed()); code != gateway.CloseForbidden {
		t.Fatalf("token of another user: close %d, want %d", code, gateway.CloseForbidden)
	}
}

// TestSlowlorisIsCut: a client that never finishes its headers is
// disconnected after --http-read-header-timeout.
func TestSlowlorisIsCut(t *testing.T) {
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "a", func(c *config) { c.HTTPReadHeaderTimeout = 300 * time.Millisecond })
	conn, err := net.Dial("tcp", strings.TrimPrefix(in.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %s", time.Since(start))
	}
}

// TestOrgSetLaterHidesTheCall: a call saved without an org is everyone's.
// Once its org is set, other orgs' connections get call_not_found by
// either identifier, on an instance that resolved the call before too.
func TestOrgSetLaterHidesTheCall(t *testing.T) {
	srv := redistest.Start(t)
	in := secureInstance(t, srv, redistest.Prefix(t))
	in.saveCall(calls.Update{CallSID: "EL_late", ConversationID: "conv_late", Status: calls.StatusInProgress})
	early, _, _ := in.dialWith(token(t, "early", "globex"))
	early.MustSubscribe("1", "EL_late")
	early.MustSubscribe("2", "conv_late")

	in.saveCall(calls.Update{CallSID: "EL_late", Org: "acme"})
	other, _, _ := in.dialWith(token(t, "late", "globex"))
	for _, id := range []string{"EL_late", "conv_late"} {
		if f := other.Subscribe("x", id); f.Code != gateway.CodeCallNotFound {
			t.Errorf("other org subscribing to %s after the org was set: %s", id, f.Raw)
		}
	}
	mine, _, _ := in.dialWith(token(t, "owner", "acme"))
	if f := mine.MustSubscribe("y", "conv_late"); !strings.Contains(string(f.Call), `"org":"acme"`) {
		t.Errorf("owner's subscribe: %s", f.Raw)
	}
}

// TestHostileStreamInput sends hostile stream requests: bad tokens in the
// query and the cookie, other orgs, odd call ids and positions, too many
// calls, too many streams. Each gets its documented refusal before any
// stream starts, and a bystander's stream loses nothing meanwhile.
func TestHostileStreamInput(t *testing.T) {
	srv := redistest.Start(t)
	in := secureInstance(t, srv, redistest.Prefix(t))
	in.saveCall(calls.Update{CallSID: "EL_acme", ConversationID: "conv_acme", Org: "acme", Status: calls.StatusInProgress})
	by := ssetest.Dial(t, in.url+"/sse/calls/conv_acme?since=0&token="+token(t, "bystander", "acme"), nil)
	by.Expect("welcome")
	by.Expect("subscribed")
	published := 0
	publish := func() {
		published++
		in.mustPublish("/webhooks/transcription", interruption("EL_acme", published))
	}
	acme := "token=" + token(t, "u", "acme")
	calls101 := make([]string, 101)
	for i := range calls101 {
		calls101[i] = "call=EL_x" + strconv.Itoa(i)
	}
	for _, tc := range []struct {
		name   string
		path   string
		header http.Header
		status int
		code   string
	}{
		{"no token", "/sse/calls/EL_acme", nil, 401, "token_required"},
		{"expired token", "/sse/calls/EL_acme?token=" + token(t, "u", "acme", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), nil, 401, "invalid_token"},
		{"wrong audience", "/sse/calls/EL_acme?token=" + token(t, "u", "acme", func(c jwt.MapClaims) { c["aud"] = "x" }), nil, 401, "invalid_token"},
		{"garbage token", "/sse/calls/EL_acme?token=%00%FF", nil, 401, "invalid_token"},
		{"garbage cookie", "/sse/calls/EL_acme", http.Header{"Cookie": {"callgate_token=abc.def.ghi"}}, 401, "invalid_token"},
		{"other org", "/sse/calls/EL_acme?token=" + token(t, "u", "globex"), nil, 404, "call_not_found"},
		{"other org by conversation", "/sse/calls/conv_acme?token=" + token(t, "u", "globex"), nil, 404, "call_not_found"},
		{"unknown call", "/sse/calls/EL_nope?" + acme, nil, 404, "call_not_found"},
		{"huge call id", "/sse/calls/" + strings.Repeat("A", 6000) + "?" + acme, nil, 404, "call_not_found"},
		{"NUL and invalid UTF-8 in the id", "/sse/calls/%00%FF%FE?" + acme, nil, 404, "call_not_found"},
		{"traversal in the id", "/sse/calls/..%2F..%2Fapi%2Fcalls?" + acme, nil, 404, "call_not_found"},
		{"blank call", "/sse/calls?call=%20&" + acme, nil, 400, "missing_field"},
		{"too many calls", "/sse/calls?" + strings.Join(calls101, "&") + "&" + acme, nil, 400, "too_many_subscriptions"},
		{"huge Last-Event-ID", "/sse/calls/EL_acme?" + acme, http.Header{"Last-Event-ID": {strings.Repeat("9", 100000)}}, 400, "invalid_since"},
		{"Last-Event-ID of another stream", "/sse/calls/EL_acme?" + acme, http.Header{"Last-Event-ID": {"1-1,1-2"}}, 400, "invalid_since"},
		{"signed Last-Event-ID", "/sse/calls/EL_acme?" + acme, http.Header{"Last-Event-ID": {"+1"}}, 400, "invalid_since"},
		{"Arabic digits", "/sse/calls/EL_acme?" + acme, http.Header{"Last-Event-ID": {"١-٢"}}, 400, "invalid_since"},
		{"dash only", "/sse/calls/EL_acme?since=-&" + acme, nil, 400, "invalid_since"},
		{"epoch overflows", "/sse/calls/EL_acme?since=1&epoch=99999999999999999999&" + acme, nil, 400, "invalid_since"},
	} {
		status, code := ssetest.Refused(t, in.url+tc.path, tc.header)
		if status != tc.status || code != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, status, code, tc.status, tc.code)
		}
		publish()
	}
	// Unknown topics and other methods are no routes.
	if status, out := in.do(http.MethodGet, "/sse/nope", nil, nil); status != 404 || out["code"] != "not_found" {
		t.Errorf("unknown topic: %d %v", status, out)
	}
	if status, out := in.do(http.MethodPost, "/sse/calls/EL_acme", nil, nil); status != 405 || out["code"] != "method_not_allowed" {
		t.Errorf("POST: %d %v", status, out)
	}
	// Per-user streams: the fourth of one user is refused.
	heavy := "token=" + token(t, "heavy", "acme")
	for range 3 {
		s := ssetest.Dial(t, in.url+"/sse/calls/EL_acme?"+heavy, nil)
		s.Expect("welcome")
	}
	if status, code := ssetest.Refused(t, in.url+"/sse/calls/EL_acme?"+heavy, nil); status != 429 || code != "too_many_connections" {
		t.Errorf("fourth stream of one user: %d %s", status, code)
	}
	publish()

	// The bystander has every event, once, in order: the status first.
	for n := 1; n <= published+1; n++ {
		if ev := by.Next(); ev.Frame.EventID != strconv.Itoa(n) {
			t.Fatalf("bystander: got %s, want event %d", ev.Data, n)
		}
	}
}
