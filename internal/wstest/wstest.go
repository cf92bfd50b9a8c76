// Package wstest is a WebSocket client for tests of the gateway protocol:
// it reads every frame in the background and hands them out in order.
package wstest

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Wait bounds every wait for a frame. Generous: it only matters when a test
// is about to fail.
const Wait = 10 * time.Second

// Frame is a decoded server frame; Raw keeps its bytes.
type Frame struct {
	Type      string          `json:"type"`
	ID        string          `json:"id"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
	Event     string          `json:"event"`
	EventID   string          `json:"event_id"`
	Epoch     string          `json:"epoch"`
	Reason    string          `json:"reason"`
	CallSID   string          `json:"call_sid"`
	ConvID    string          `json:"conversation_id"`
	Call      json.RawMessage `json:"call"`
	Recovered *bool           `json:"recovered"`
	Data      json.RawMessage `json:"data"`
	Raw       []byte          `json:"-"`
}

// Client is a test WebSocket client.
type Client struct {
	t      testing.TB
	Conn   *websocket.Conn
	frames chan Frame
	// closed receives the close error once the connection ends.
	closed chan error
}

// Dial connects to url (ws://…) and fails the test on error.
func Dial(t testing.TB, url string) *Client {
	t.Helper()
	c, err := TryDial(t, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	return c
}

// TryDial connects to url with header, returning the error.
func TryDial(t testing.TB, url string, header http.Header) (*Client, error) {
	c, _, _, err := DialStatus(t, url, header)
	return c, err
}

// DialStatus connects to url with header. When the handshake is refused
// it returns the HTTP status and body of the answer with the error.
func DialStatus(t testing.TB, url string, header http.Header) (*Client, int, []byte, error) {
	url = strings.Replace(url, "http://", "ws://", 1)
	ws, resp, err := websocket.DefaultDialer.Dial(url, header)
	if err != nil {
		if resp == nil {
			return nil, 0, nil, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, resp.StatusCode, body, err
	}
	c := &Client{t: t, Conn: ws, frames: make(chan Frame, 4096), closed: make(chan error, 1)}
	go c.read()
	t.Cleanup(func() { ws.Close() })
	return c, 0, nil, nil
}

func (c *Client) read() {
	for {
		_, data, err := c.Conn.ReadMessage()
		if err != nil {
			c.closed <- err
			close(c.frames)
			return
		}
		var f Frame
		if err := json.Unmarshal(data, &f); err != nil {
			f = Frame{Type: "<invalid json>"}
		}
		f.Raw = data
		c.frames <- f
	}
}

// Send writes v as a JSON text frame.
func (c *Client) Send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.SendRaw(websocket.TextMessage, b)
}

// SendRaw writes one frame of type typ.
func (c *Client) SendRaw(typ int, b []byte) {
	c.t.Helper()
	if err := c.Conn.WriteMessage(typ, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Next returns the next frame, failing the test if none comes within Wait
// or the connection closed.
func (c *Client) Next() Frame {
	c.t.Helper()
	select {
	case f, ok := <-c.frames:
		if !ok {
			c.t.Fatalf("connection closed while waiting for a frame: %v", c.CloseErr())
		}
		return f
	case <-time.After(Wait):
		c.t.Fatalf("no frame within %s", Wait)
	}
	return Frame{}
}

// NextOrClosed returns the next frame, or ok=false once the connection has
// ended and every frame before its end was read.
func (c *Client) NextOrClosed() (f Frame, ok bool) {
	c.t.Helper()
	select {
	case f, ok := <-c.frames:
		return f, ok
	case <-time.After(Wait):
		c.t.Fatalf("no frame within %s", Wait)
	}
	return Frame{}, false
}

// Expect returns the next frame and fails unless its type is typ.
func (c *Client) Expect(typ string) Frame {
	c.t.Helper()
	f := c.Next()
	if f.Type != typ {
		c.t.Fatalf("got frame %s, want type %q", f.Raw, typ)
	}
	return f
}

// Welcome consumes the welcome frame sent on connect.
func (c *Client) Welcome() Frame {
	c.t.Helper()
	return c.Expect("welcome")
}

// Subscribe subscribes to call and returns the reply (subscribed or error).
func (c *Client) Subscribe(id, call string) Frame {
	c.t.Helper()
	c.Send(map[string]string{"type": "subscribe", "id": id, "call": call})
	return c.Next()
}

// MustSubscribe subscribes and fails unless the reply is subscribed.
func (c *Client) MustSubscribe(id, call string) Frame {
	c.t.Helper()
	f := c.Subscribe(id, call)
	if f.Type != "subscribed" || f.ID != id {
		c.t.Fatalf("subscribe %q: got %s", call, f.Raw)
	}
	return f
}

// Closed waits for the connection to end and returns its close error
// (a *websocket.CloseError when the server sent a close frame).
func (c *Client) Closed() error {
	c.t.Helper()
	deadline := time.After(Wait)
	for {
		select {
		case _, ok := <-c.frames:
			if !ok {
				return c.CloseErr()
			}
		case <-deadline:
			c.t.Fatalf("connection still open after %s", Wait)
			return nil
		}
	}
}

// CloseErr returns the error that ended the read loop, if it ended.
func (c *Client) CloseErr() error {
	select {
	case err := <-c.closed:
		c.closed <- err
		return err
	default:
		return nil
	}
}

// CloseCode returns the close code of err, or -1.
func CloseCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}
