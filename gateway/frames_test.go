package gateway_test

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/callgate/callgate/gateway"
	"github.com/callgate/callgate/internal/wstest"
)

// First bytes of client frames: FIN and opcode.
const (
	fin          = 0x80
	textFrame    = fin | websocket.TextMessage
	closeFrame   = fin | websocket.CloseMessage
	pingFrame    = fin | websocket.PingMessage
	pongFrame    = fin | websocket.PongMessage
	textFragment = websocket.TextMessage // the first of a fragmented text message
	continuation = 0
	lastFragment = fin | continuation
)

// rawClient connects to url and reads the welcome. The test writes raw
// frames to the socket it returns, and reads with the client.
func rawClient(t *testing.T, url string) (*websocket.Conn, net.Conn) {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	// Gorilla's client answers a ping itself: not while the test writes.
	ws.SetPingHandler(func(string) error { return nil })
	expectFrame(t, ws, "welcome")
	return ws, ws.UnderlyingConn()
}

// expectFrame reads the next message and checks that it has "type":want.
func expectFrame(t *testing.T, ws *websocket.Conn, want string) []byte {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(wstest.Wait))
	_, data, err := ws.ReadMessage()
	if err != nil || !strings.Contains(string(data), `"type":"`+want+`"`) {
		t.Fatalf("got %s, %v; want a %s frame", data, err, want)
	}
	return data
}

// expectClose reads until the server's close frame and returns its code
// and text.
func expectClose(t *testing.T, ws *websocket.Conn) (int, string) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(wstest.Wait))
	for {
		_, data, err := ws.ReadMessage()
		if ce, ok := err.(*websocket.CloseError); ok {
			return ce.Code, ce.Text
		}
		if err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		t.Logf("before the close: %s", data)
	}
}

func write(t *testing.T, nc net.Conn, frames ...[]byte) {
	t.Helper()
	if _, err := nc.Write(bytes.Join(frames, nil)); err != nil {
		t.Fatal(err)
	}
}

// TestFramesAgainstTheProtocolClose1002: every frame RFC 6455 tells a
// server to fail the connection on gets a close with 1002, and the
// instance goes on serving others.
func TestFramesAgainstTheProtocolClose1002(t *testing.T) {
	srv, _, url := startServer(t, gateway.Config{})
	other := dial(t, url)
	other.MustSubscribe("o", "EL_1")
	code := func(c uint16, text string) string { return string([]byte{byte(c >> 8), byte(c)}) + text }
	for _, tc := range []struct {
		name  string
		bytes [][]byte
	}{
		{"not masked", [][]byte{{textFrame, 2, '{', '}'}}},
		{"a reserved bit", [][]byte{gateway.ClientFrame(textFrame|0x40, "{}")}},
		{"a reserved opcode", [][]byte{gateway.ClientFrame(fin|3, "{}")}},
		{"a fragmented ping", [][]byte{gateway.ClientFrame(websocket.PingMessage, "p")}},
		{"a ping of 126 bytes", [][]byte{gateway.ClientFrame(pingFrame, strings.Repeat("p", 126))}},
		{"a continuation of nothing", [][]byte{gateway.ClientFrame(lastFragment, "{}")}},
		{"a message inside a message", [][]byte{gateway.ClientFrame(textFragment, "{"), gateway.ClientFrame(textFrame, "{}")}},
		{"a close of one byte", [][]byte{gateway.ClientFrame(closeFrame, "\x03")}},
		{"close code 1005", [][]byte{gateway.ClientFrame(closeFrame, code(1005, ""))}},
		{"close code 5000", [][]byte{gateway.ClientFrame(closeFrame, code(5000, ""))}},
		{"a close reason not in UTF-8", [][]byte{gateway.ClientFrame(closeFrame, code(1000, "\xff"))}},
		{"a length with its top bit set", [][]byte{{textFrame, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 2, 1, 2, 3, 4}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, nc := rawClient(t, url)
			write(t, nc, tc.bytes...)
			if code, text := expectClose(t, ws); code != websocket.CloseProtocolError {
				t.Fatalf("close %d %q, want 1002", code, text)
			}
		})
	}
	mem.publish(srv, "EL_1", "")
	if f := other.Expect("event"); f.EventID != "1" {
		t.Fatalf("other client got %s", f.Raw)
	}
}

// TestFragmentsWithControlFramesBetween: a message in fragments, with a
// ping and a pong between them, is read whole, and the ping answered
// before the reply to the message.
func TestFragmentsWithControlFramesBetween(t *testing.T) {
	_, _, url := startServer(t, gateway.Config{})
	ws, nc := rawClient(t, url)
	var pongs []string
	ws.SetPongHandler(func(p string) error { pongs = append(pongs, p); return nil })
	write(t, nc,
		gateway.ClientFrame(textFragment, `{"type":"ping",`),
		gateway.ClientFrame(pingFrame, "hello"),
		gateway.ClientFrame(continuation, `"id":`),
		gateway.ClientFrame(pongFrame, ""),
		gateway.ClientFrame(lastFragment, `"frag"}`))
	if f := expectFrame(t, ws, "pong"); !strings.Contains(string(f), `"id":"frag"`) {
		t.Fatalf("reply %s", f)
	}
	if len(pongs) != 1 || pongs[0] != "hello" {
		t.Fatalf("pongs %q, want the ping's payload once", pongs)
	}
}

// TestFrameArrivingInPieces: a frame that arrives a byte at a time is
// read whole once its last byte comes.
func TestFrameArrivingInPieces(t *testing.T) {
	_, _, url := startServer(t, gateway.Config{})
	ws, nc := rawClient(t, url)
	for _, b := range gateway.ClientFrame(textFrame, `{"type":"subscribe","id":"s","call":"EL_1"}`) {
		write(t, nc, []byte{b})
	}
	expectFrame(t, ws, "subscribed")
}

// TestFramesSentWithTheAuthFrame: frames that come in the same packet as
// the auth frame are read once it is handled: nothing waits for more
// input while a frame is already buffered.
func TestFramesSentWithTheAuthFrame(t *testing.T) {
	_, _, url := startServer(t, gateway.Config{Authenticator: fakeAuth{}})
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	write(t, ws.UnderlyingConn(),
		gateway.ClientFrame(textFrame, `{"type":"auth","token":"u"}`),
		gateway.ClientFrame(textFrame, `{"type":"subscribe","id":"s","call":"EL_1"}`),
		gateway.ClientFrame(textFrame, `{"type":"ping","id":"p"}`))
	for _, want := range []string{"authenticated", "welcome", "subscribed", "pong"} {
		expectFrame(t, ws, want)
	}
}

// TestMessageOverTheLimitInFragments: the size limit holds for a whole
// message, whatever the size of its fragments.
func TestMessageOverTheLimitInFragments(t *testing.T) {
	_, _, url := startServer(t, gateway.Config{MaxFrameBytes: 1024})
	ws, nc := rawClient(t, url)
	part := strings.Repeat("x", 400)
	write(t, nc,
		gateway.ClientFrame(textFragment, part),
		gateway.ClientFrame(continuation, part),
		gateway.ClientFrame(lastFragment, part))
	if code, text := expectClose(t, ws); code != websocket.CloseMessageTooBig {
		t.Fatalf("close %d %q, want 1009", code, text)
	}
}

// TestClientCloseIsEchoed: the server answers a client's close with the
// client's code, or with an empty close frame to an empty one.
func TestClientCloseIsEchoed(t *testing.T) {
	_, _, url := startServer(t, gateway.Config{})
	for _, tc := range []struct {
		payload string
		want    int
	}{
		{"\x0f\xa0bye", 4000},
		{"", websocket.CloseNoStatusReceived}, // what gorilla reports for an empty close frame
	} {
		ws, nc := rawClient(t, url)
		write(t, nc, gateway.ClientFrame(closeFrame, tc.payload))
		if code, text := expectClose(t, ws); code != tc.want {
			t.Fatalf("close %d %q, want %d", code, text, tc.want)
		}
	}
}

// TestSilentClientIsClosed: a client that answers no ping and sends
// nothing is closed with 1001 once PongWait has passed, so that it
// reconnects.
func TestSilentClientIsClosed(t *testing.T) {
	_, _, url := startServer(t, gateway.Config{PongWait: 300 * time.Millisecond})
	ws, _ := rawClient(t, url)
	if code, text := expectClose(t, ws); code != websocket.CloseGoingAway || text != "no pong within the timeout" {
		t.Fatalf("close %d %q, want 1001", code, text)
	}
}
