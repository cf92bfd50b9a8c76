package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/callgate/callgate/gateway"
	"github.com/callgate/callgate/internal/wstest"
)

// TestStalledClientIsCutOff: a client that stops reading while megabytes
// wait for it is disconnected once a write to it makes no progress for
// WriteWait, long before its send queue would overflow.
func TestStalledClientIsCutOff(t *testing.T) {
	srv, bus, url := startServer(t, gateway.Config{SendQueue: 4096, SendQueueBytes: 1 << 30, WriteWait: 100 * time.Millisecond})
	ws := rawSubscriber(t, url, "EL_1")
	// The client reads nothing more. 32 MiB is more than the socket
	// buffers of both ends hold, so a write blocks.
	pad := `,"pad":"` + strings.Repeat("x", 1<<20) + `"`
	for range 32 {
		mem.publish(srv, "EL_1", pad)
	}
	bus.waitRefs(t, 0) // the connection ended and left its subscription
	if s := srv.Stats(); s.Overflows != 0 {
		t.Fatalf("stats %+v: want no queue overflow", s)
	}
	// What reached the client ends without a close frame: gorilla
	// reports 1006.
	for {
		_, _, err := ws.ReadMessage()
		if err != nil {
			if code := wstest.CloseCode(err); code != websocket.CloseAbnormalClosure {
				t.Fatalf("the client's read ended with %v, want the connection dropped (1006)", err)
			}
			break
		}
	}
}

// TestWritesAfterABlockedWriteLongAgo: a connection whose write once had to
// wait for the client still takes frames after WriteWait has passed: the
// deadline of that write does not outlive it.
func TestWritesAfterABlockedWriteLongAgo(t *testing.T) {
	const writeWait = time.Second
	srv, _, url := startServer(t, gateway.Config{WriteWait: writeWait, PongWait: time.Hour})
	ws := rawSubscriber(t, url, "EL_1")
	// More than the socket buffers hold: the write waits for the client.
	mem.publish(srv, "EL_1", `,"pad":"`+strings.Repeat("x", 16<<20)+`"`)
	if _, _, err := ws.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	// The scenario, not a synchronisation: the connection stays quiet for
	// longer than WriteWait.
	time.Sleep(writeWait + writeWait/2)
	mem.publish(srv, "EL_1", "")
	if _, data, err := ws.ReadMessage(); err != nil || !strings.Contains(string(data), `"event_id":"2"`) {
		t.Fatalf("after a quiet while: %.60s, %v", data, err)
	}
}
