package gateway

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// readLimit is the message size limit of the reader tests.
const readLimit = 300

// clientFrame is the wire form of a masked client frame; b0 is its first
// byte (FIN, reserved bits, opcode).
func clientFrame(b0 byte, payload string) []byte {
	f := ws.NewFrame(ws.OpCode(b0&0x0f), b0&0x80 != 0, []byte(payload))
	f.Header.Rsv = b0 >> 4 & 0x07
	return ws.MustCompileFrame(ws.MaskFrameInPlaceWith(f, [4]byte{0x12, 0x34, 0x56, 0x78}))
}

// readResult is what a reader made of a client's bytes: what it handed
// on, in order, and how reading ended.
type readResult struct {
	events []string
	end    string // "eof", "close", "protocol" or "too large"
	err    error
}

// readOurs reads input with frameReader, and checks that it hands on
// nothing over its limits.
func readOurs(t *testing.T, input []byte) readResult {
	r := frameReader{br: bufio.NewReaderSize(bytes.NewReader(input), 64)}
	defer func() {
		if r.msg != nil {
			putFrameBuffer(r.msg)
		}
	}()
	var res readResult
	for {
		f, err := r.next(readLimit)
		var pe ws.ProtocolError
		switch {
		case errors.As(err, &pe):
			res.end, res.err = "protocol", err
			return res
		case errors.Is(err, errTooLarge):
			res.end, res.err = "too large", err
			return res
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			res.end, res.err = "eof", err
			return res
		case err != nil:
			panic(err) // a bytes.Reader fails in no other way
		}
		if f.msg != nil && f.msg.Len() > readLimit || len(f.payload) > ws.MaxControlFramePayloadSize {
			t.Fatalf("%q: a message of %d bytes, a control payload of %d", input, f.msg.Len(), len(f.payload))
		}
		switch f.op {
		case ws.OpText, ws.OpBinary:
			res.events = append(res.events, fmt.Sprintf("%d %q", f.op, f.msg.Bytes()))
			putFrameBuffer(f.msg)
		case ws.OpPing:
			res.events = append(res.events, fmt.Sprintf("ping %q", f.payload))
		case ws.OpPong:
			res.events = append(res.events, fmt.Sprintf("pong %q", f.payload))
		case ws.OpClose:
			text := ""
			if len(f.payload) > 2 {
				text = string(f.payload[2:])
			}
			res.events = append(res.events, fmt.Sprintf("close %d %q", closeCode(f.payload), text))
			res.end = "close"
			return res
		}
	}
}

// byteConn is a socket whose client sends input and then nothing more.
type byteConn struct {
	net.Conn
	r io.Reader
}

func (c byteConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c byteConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c byteConn) SetDeadline(time.Time) error      { return nil }
func (c byteConn) SetWriteDeadline(time.Time) error { return nil }
func (c byteConn) Close() error                     { return nil }

// hijackRecorder hands a byteConn to gorilla's upgrader.
type hijackRecorder struct {
	*httptest.ResponseRecorder
	conn net.Conn
}

func (h hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.conn, bufio.NewReadWriter(bufio.NewReader(h.conn), bufio.NewWriter(io.Discard)), nil
}

// readGorilla reads input with gorilla's server-side reader, which read
// client frames before frameReader did.
func readGorilla(t *testing.T, input []byte) readResult {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	up := websocket.Upgrader{WriteBufferPool: &sync.Pool{}}
	c, err := up.Upgrade(hijackRecorder{httptest.NewRecorder(), byteConn{r: bytes.NewReader(input)}}, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(readLimit)
	var res readResult
	c.SetPingHandler(func(p string) error {
		res.events = append(res.events, fmt.Sprintf("ping %q", p))
		return nil
	})
	c.SetPongHandler(func(p string) error {
		res.events = append(res.events, fmt.Sprintf("pong %q", p))
		return nil
	})
	c.SetCloseHandler(func(code int, text string) error {
		res.events = append(res.events, fmt.Sprintf("close %d %q", code, text))
		return nil
	})
	for {
		typ, r, err := c.NextReader()
		var data []byte
		if err == nil {
			data, err = io.ReadAll(r)
		}
		var ce *websocket.CloseError
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
			errors.As(err, &ce) && ce.Code == websocket.CloseAbnormalClosure: // gorilla's name for an EOF
			res.end = "eof"
		case errors.As(err, &ce):
			res.end = "close"
		case errors.Is(err, websocket.ErrReadLimit):
			res.end = "too large"
		case err != nil:
			res.end = "protocol"
		default:
			res.events = append(res.events, fmt.Sprintf("%d %q", typ, data))
			continue
		}
		res.err = err
		return res
	}
}

// excused reports whether ours and gorilla's differ only where frameReader
// follows RFC 6455 more closely, as intended, or checks a header in
// another order.
func excused(ours, theirs readResult) bool {
	errText := func(r readResult) string {
		if r.err == nil {
			return ""
		}
		return r.err.Error()
	}
	sameEvents := slices.Equal(ours.events, theirs.events)
	lastOurs := ""
	if len(ours.events) > 0 {
		lastOurs = ours.events[len(ours.events)-1]
	}
	return false ||
		// A close frame with a one-byte payload breaks the protocol;
		// gorilla takes it for a close without a code.
		strings.Contains(errText(ours), "one-byte payload") && theirs.end == "close" &&
			slices.Equal(append(slices.Clip(ours.events), `close 1005 ""`), theirs.events) ||
		// 1014 (bad gateway) is registered; gorilla does not know it.
		strings.Contains(errText(theirs), "bad close code 1014") && ours.end == "close" &&
			strings.HasPrefix(lastOurs, "close 1014 ") && slices.Equal(ours.events[:len(ours.events)-1], theirs.events) ||
		// A 64-bit length with its top bit set: gorilla calls it too
		// large.
		strings.Contains(errText(ours), "most significant bit") && theirs.end == "too large" && sameEvents ||
		// A control frame whose length of at most 125 is written in 16
		// or 64 bits: gorilla refuses it on its 7-bit length field.
		strings.Contains(errText(theirs), "len > 125 for control") &&
			len(ours.events) >= len(theirs.events) && slices.Equal(ours.events[:len(theirs.events)], theirs.events) ||
		// Gorilla judges the first bytes of a header before it reads the
		// rest (its two first bytes, a length with its top bit set);
		// frameReader reads the whole header first, and here it ended.
		ours.end == "eof" && (theirs.end == "protocol" || theirs.end == "too large") && sameEvents
}

// FuzzFrameReader reads any client bytes with frameReader and with
// gorilla's reader, which read them before, and checks that both see the
// same messages, control frames and end (but where excused says), and
// that nothing frameReader hands on breaks its limits.
func FuzzFrameReader(f *testing.F) {
	const (
		fin    = 0x80
		textF  = fin | byte(ws.OpText)
		binF   = fin | byte(ws.OpBinary)
		pingF  = fin | byte(ws.OpPing)
		pongF  = fin | byte(ws.OpPong)
		closeF = fin | byte(ws.OpClose)
	)
	cat := func(frames ...[]byte) []byte { return bytes.Join(frames, nil) }
	code := func(c uint16, reason string) string { return string(binary.BigEndian.AppendUint16(nil, c)) + reason }
	for _, seed := range [][]byte{
		clientFrame(textF, `{"type":"ping"}`),
		cat(clientFrame(textF, "a"), clientFrame(binF, "b"), clientFrame(pingF, "p"), clientFrame(pongF, "q")),
		// Fragments, with control frames between them.
		cat(clientFrame(byte(ws.OpText), `{"type":`), clientFrame(pingF, "x"), clientFrame(0, `"ping"`),
			clientFrame(pongF, ""), clientFrame(fin, `}`)),
		cat(clientFrame(byte(ws.OpText), "a"), clientFrame(textF, "b")), // a new message before the end
		clientFrame(fin, "a"),                                // a continuation of nothing
		clientFrame(textF, strings.Repeat("x", readLimit)),   // at the limit
		clientFrame(textF, strings.Repeat("x", readLimit+1)), // over it
		cat(clientFrame(byte(ws.OpText), strings.Repeat("x", 200)), clientFrame(fin, strings.Repeat("y", 200))), // over it in pieces
		clientFrame(textF, strings.Repeat("z", 70000)),                                                          // a 64-bit length
		{textF, 5, 'h', 'e', 'l', 'l', 'o'},                                                                     // not masked
		clientFrame(textF|0x40, "a"),                                                                            // RSV1
		clientFrame(fin|3, "a"),                                                                                 // a reserved opcode
		clientFrame(byte(ws.OpPing), "a"),                                                                       // a fragmented ping
		clientFrame(pingF, strings.Repeat("p", 126)),                                                            // a long ping
		clientFrame(closeF, ""),
		clientFrame(closeF, code(1000, "bye")),
		clientFrame(closeF, code(4000, "")),
		clientFrame(closeF, "\x03"),
		clientFrame(closeF, code(1005, "")),
		clientFrame(closeF, code(1014, "")),
		clientFrame(closeF, code(999, "")),
		clientFrame(closeF, code(5000, "")),
		clientFrame(closeF, code(1000, "\xff")),
		{textF, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}, // length's top bit set
		{pingF, 0xFE, 0, 3, 1, 2, 3, 4, 'a', 'b', 'c'},       // a short ping in a 16-bit length
		{textF | 0x40, 0xFE},                                 // a bad header cut short
		clientFrame(textF, "abc")[:5],
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		ours, theirs := readOurs(t, input), readGorilla(t, input)
		if (ours.end != theirs.end || !slices.Equal(ours.events, theirs.events)) && !excused(ours, theirs) {
			t.Fatalf("%q:\nframeReader: %q, %s (%v)\ngorilla:     %q, %s (%v)", input, ours.events, ours.end, ours.err, theirs.events, theirs.end, theirs.err)
		}
	})
}

// readDeadlineConn counts the read deadlines set on it.
type readDeadlineConn struct {
	byteConn
	deadlines int
}

func (c *readDeadlineConn) SetReadDeadline(time.Time) error {
	c.deadlines++
	return nil
}

// TestPongPushesTheReadDeadlineOnceLive: a pong gives the client PongWait
// more once the connection is past authentication, and not before: pongs
// must not keep open a connection that never authenticates.
func TestPongPushesTheReadDeadlineOnceLive(t *testing.T) {
	for _, live := range []bool{false, true} {
		nc := &readDeadlineConn{byteConn: byteConn{r: bytes.NewReader(clientFrame(0x80|byte(ws.OpPong), "x"))}}
		c := &conn{srv: &Server{cfg: Config{PongWait: time.Minute, MaxFrameBytes: readLimit}}, nc: nc}
		if err := c.readInput(live, nil); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{false: 0, true: 1}[live]; nc.deadlines != want {
			t.Errorf("live %v: %d read deadlines set, want %d", live, nc.deadlines, want)
		}
		if c.rd != nil {
			t.Errorf("live %v: the reader is kept with nothing buffered", live)
		}
	}
}
