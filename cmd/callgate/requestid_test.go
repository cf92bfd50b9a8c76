package main

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/callgate/callgate/internal/redistest"
	"github.com/callgate/callgate/internal/wstest"
)

// lockedBuffer collects log lines written from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRequestIDIsShortAndSafe: a request id of at most 128 visible ASCII
// characters is kept, on HTTP answers and on sockets; anything else is
// replaced by a new id, and is neither echoed nor logged.
func TestRequestIDIsShortAndSafe(t *testing.T) {
	srv := redistest.Start(t)
	logs := &lockedBuffer{}
	in := startInstanceLogging(t, srv, redistest.Prefix(t), "a", logs, func(c *config) { c.LogLevel = slog.LevelInfo })
	huge := strings.Repeat("x", 512<<10)
	for _, tc := range []struct {
		name, id string
		kept     bool
	}{
		{"uuid", "0b7c5a4e-3f1d-4f6a-9c1e-2d3b4a5c6d7e", true},
		{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true},
		{"aws trace", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1", true},
		{"128 bytes", strings.Repeat("a", 128), true},
		{"129 bytes", strings.Repeat("a", 129), false},
		{"half a megabyte", huge, false},
		{"space", "req 1", false},
		{"non-ASCII", "réq-1", false},
	} {
		req, _ := http.NewRequest(http.MethodGet, in.url+"/healthz", nil)
		req.Header.Set("X-Request-Id", tc.id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := resp.Header.Get("X-Request-Id")
		if tc.kept && got != tc.id {
			t.Errorf("%s: answer's X-Request-Id %q, want it kept", tc.name, got)
		}
		if !tc.kept {
			if _, err := uuid.Parse(got); err != nil || got == tc.id {
				t.Errorf("%s: answer's X-Request-Id %.40q, want a new UUID", tc.name, got)
			}
		}
	}

	// A socket keeps and logs the id of its upgrade request, under the
	// same rule.
	kept := "sock-ok-1"
	for _, id := range []string{huge, kept} {
		c, status, _, err := wstest.DialStatus(t, in.wsURL("/ws/calls/transcriptions"), http.Header{"X-Request-Id": {id}})
		if err != nil {
			t.Fatalf("dial: %d %v", status, err)
		}
		c.Welcome() // "connection opened" is logged before the welcome
		c.Conn.Close()
	}
	out := logs.String()
	if strings.Contains(out, huge[:1024]) {
		t.Errorf("the half-megabyte id was logged (%d bytes of logs)", len(out))
	}
	if !strings.Contains(out, `"request_id":"`+kept+`"`) {
		t.Errorf("the socket's valid request id %q is not in its log lines:\n%s", kept, out)
	}
	if len(out) > 64<<10 {
		t.Errorf("%d bytes of logs for a few requests and two sockets", len(out))
	}
}
