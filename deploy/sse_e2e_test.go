package deploy

import (
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/ssetest"
)

// registerCall registers call sid through nginx with status in-progress:
// its event 1.
func (c *e2eCluster) registerCall(sid string) {
	c.t.Helper()
	body, _ := json.Marshal(map[string]string{"call_sid": sid, "status": "in-progress"})
	status, _, out := c.do(http.MethodPost, "/api/calls", body,
		http.Header{"Authorization": {"Bearer " + e2eAPIKey}, "Content-Type": {"application/json"}})
	if status != http.StatusCreated {
		c.t.Fatalf("POST /api/calls: %d %v", status, out)
	}
}

// streamHolder reads a stream's welcome and returns the instance that
// serves it.
func (c *e2eCluster) streamHolder(s *ssetest.Stream) string {
	c.t.Helper()
	w := s.Expect("welcome")
	var welcome struct {
		InstanceID string `json:"instance_id"`
	}
	if err := json.Unmarshal([]byte(w.Data), &welcome); err != nil || c.instances[welcome.InstanceID] == nil {
		c.t.Fatalf("welcome %s: want the instance_id of one of %v", w.Data, c.addrs)
	}
	return welcome.InstanceID
}

// TestNginxStreams follows a call over Server-Sent Events through nginx
// with the shared configuration: each event arrives before the next is
// published (nothing is buffered on the way); then the serving instance
// is stopped with SIGTERM while webhooks keep coming, the stream ends
// with its close event, and the client resumes through nginx with the
// Last-Event-ID EventSource would send, on another instance, with every
// event once, in order.
func TestNginxStreams(t *testing.T) {
	c := startE2ECluster(t)
	const sid = "EL_sse_e2e"
	c.registerCall(sid)
	token := e2eToken(t)

	s := ssetest.Dial(t, c.url+"/sse/calls/"+sid+"?since=0&token="+token, nil)
	if ct := s.Resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type through nginx: %q", ct)
	}
	holder := c.streamHolder(s)
	if sub := s.Expect("subscribed"); sub.Frame.Recovered == nil || !*sub.Frame.Recovered {
		t.Fatalf("subscribed %s", sub.Data)
	}
	next := 1 // the next event_id expected
	last := ""
	expect := func(s *ssetest.Stream) {
		t.Helper()
		ev := s.Next()
		if ev.Frame.Type != "event" || ev.Frame.EventID != strconv.Itoa(next) || !strings.HasSuffix(ev.ID, "-"+strconv.Itoa(next)) {
			t.Fatalf("got %q id %q: %s, want event %d", ev.Name, ev.ID, ev.Data, next)
		}
		next++
		last = ev.ID
	}
	expect(s) // the status
	for n := 1; n <= 5; n++ {
		if _, err := c.webhook("/webhooks/transcription", liveWebhook(sid, n), nil); err != nil {
			t.Fatal(err)
		}
		expect(s) // before the next is published: not held in a buffer
	}

	const more = 20
	var wg sync.WaitGroup
	errs := make(chan error, more)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 6; n < 6+more; n++ {
			if _, err := c.webhook("/webhooks/transcription", liveWebhook(sid, n), nil); err != nil {
				errs <- err
			}
			time.Sleep(10 * time.Millisecond) // spread over the restart
		}
	}()
	victim := c.instances[holder]
	if err := victim.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		ev := s.Next()
		if ev.Name == "close" {
			if !strings.Contains(ev.Data, `"code":1001`) {
				t.Fatalf("close event %s, want 1001", ev.Data)
			}
			break
		}
		if ev.Frame.EventID != strconv.Itoa(next) {
			t.Fatalf("before the close: %s, want event %d", ev.Data, next)
		}
		next++
		last = ev.ID
	}
	if err := s.Ended(); !ssetest.CleanEnd(err) {
		t.Fatalf("stream through nginx ended with %v, want the end of the body", err)
	}

	r := ssetest.Dial(t, c.url+"/sse/calls/"+sid+"?since=0&token="+token, http.Header{"Last-Event-ID": {last}})
	if h := c.streamHolder(r); h == holder {
		t.Fatalf("resumed on %s, which was stopped", h)
	}
	if sub := r.Expect("subscribed"); sub.Frame.Recovered == nil || !*sub.Frame.Recovered || sub.ID != last {
		t.Fatalf("resume after %s: %+v", last, sub)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for next <= 1+5+more {
		expect(r)
	}
	if log, err := os.ReadFile(c.accessLog); err != nil || strings.Contains(string(log), token) {
		t.Errorf("nginx's access log holds the stream's token (or cannot be read: %v)", err)
	} else if !strings.Contains(string(log), "GET /sse/calls/"+sid+" ") {
		t.Errorf("nginx's access log has no line of the stream")
	}
}
