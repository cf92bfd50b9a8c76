package gateway_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/callgate/callgate/gateway"
	"github.com/callgate/callgate/internal/wstest"
)

// TestProtocolErrorSendsOneClose: after a frame that breaks RFC 6455 the
// client gets one close frame, 1002, and nothing after it. The client here
// reads the wire itself, so that a second close frame could not hide in a
// WebSocket library.
func TestProtocolErrorSendsOneClose(t *testing.T) {
	_, _, url := startServer(t, gateway.Config{})
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		// Client frames are masked (mask 1 2 3 4, or 0 0 0 0 to
		// leave the payload as it is) unless the case is the mask.
		{"reserved bit without an extension", []byte{0xc1, 0x80, 1, 2, 3, 4}},
		{"unknown opcode", []byte{0x83, 0x80, 1, 2, 3, 4}},
		{"unmasked frame", []byte{0x81, 0x00}},
		{"close code 1005, which is never sent", []byte{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, br := rawUpgrade(t, url)
			if _, err := nc.Write(tc.frame); err != nil {
				t.Fatal(err)
			}
			var closes []int
			for {
				op, payload, err := nextServerFrame(br)
				if err != nil {
					if !errors.Is(err, io.EOF) {
						t.Logf("read after the close: %v", err)
					}
					break
				}
				if op != websocket.CloseMessage {
					t.Fatalf("frame of opcode %d after the protocol error: %q", op, payload)
				}
				if len(payload) < 2 {
					t.Fatalf("close frame without a code: %q", payload)
				}
				closes = append(closes, int(binary.BigEndian.Uint16(payload)))
			}
			if len(closes) != 1 || closes[0] != websocket.CloseProtocolError {
				t.Fatalf("close frames %v, want one: 1002", closes)
			}
		})
	}
}

// rawUpgrade opens a socket on url over plain TCP, past its welcome.
func rawUpgrade(t *testing.T, url string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", strings.TrimPrefix(url, "ws://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(wstest.Wait)) // a failing server must not hang the test
	_, err = io.WriteString(nc, "GET / HTTP/1.1\r\nHost: gateway\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	if op, payload := readServerFrame(t, br); op != websocket.TextMessage || !strings.Contains(string(payload), `"welcome"`) {
		t.Fatalf("first frame: opcode %d %q, want the welcome", op, payload)
	}
	return nc, br
}

func readServerFrame(t *testing.T, br *bufio.Reader) (int, []byte) {
	t.Helper()
	op, payload, err := nextServerFrame(br)
	if err != nil {
		t.Fatal(err)
	}
	return op, payload
}

// nextServerFrame reads one whole, unfragmented frame from the server,
// whose frames are not masked.
func nextServerFrame(br *bufio.Reader) (op int, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(br, payload); err != nil {
		return 0, nil, err
	}
	return int(h[0] & 0x0f), payload, nil
}
