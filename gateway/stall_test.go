package gateway_test

import (
	"bytes"
	"io"
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

// TestSlowReaderOutlastsWriteWait: a client that keeps reading, slowly, is
// not cut off although its backlog takes longer than WriteWait to send:
// the deadline covers each chunk of a write, not the whole backlog.
func TestSlowReaderOutlastsWriteWait(t *testing.T) {
	const (
		writeWait = 2 * time.Second
		frames    = 24
		size      = 1 << 20
		piece     = 32 << 10
		pause     = 5 * time.Millisecond
	)
	// The client reads piece bytes, then pauses: the 24 MiB take at least
	// 768 pauses, more than WriteWait even for what the socket buffers do
	// not hold, while the 8 pauses of a 256 KiB chunk take 1/50 of it,
	// which leaves room for a loaded machine's late wake-ups.
	srv, _, url := startServer(t, gateway.Config{SendQueue: 4096, WriteWait: writeWait, PongWait: time.Hour})
	ws := rawSubscriber(t, url, "EL_1")
	pad := strings.Repeat("y", size)
	for range frames {
		mem.publish(srv, "EL_1", `,"pad":"`+pad+`"`)
	}
	start := time.Now()
	buf := make([]byte, piece)
	for i := range frames {
		_, r, err := ws.NextReader()
		if err != nil {
			t.Fatalf("event %d after %s: %v", i+1, time.Since(start).Round(time.Millisecond), err)
		}
		var got bytes.Buffer
		for {
			n, err := io.ReadFull(r, buf)
			got.Write(buf[:n])
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				t.Fatalf("event %d after %s: %v", i+1, time.Since(start).Round(time.Millisecond), err)
			}
			time.Sleep(pause) // the slow reader, not a synchronisation
		}
		want := `{"type":"event","event_id":"` + itoa(i+1) + `","pad":"` + pad + `"}`
		if got.String() != want {
			t.Fatalf("event %d: %d bytes, not the %d published", i+1, got.Len(), len(want))
		}
	}
	t.Logf("%d MiB read in %s with WriteWait %s", frames*size>>20, time.Since(start).Round(time.Millisecond), writeWait)
}
