package gateway_test

import (
	"bytes"
	"context"
	"net/http"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/callgate/callgate/gateway"
	"github.com/callgate/callgate/internal/wstest"
)

// gatewayGoroutines returns the stacks of the goroutines that run gateway
// code now, with funcs among their frames (any gateway code when funcs is
// empty). The line that names a goroutine's creator does not count: a
// goroutine that has returned from everything of the gateway is not the
// gateway's.
func gatewayGoroutines(funcs ...string) []string {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
	var out []string
	for _, g := range strings.Split(buf.String(), "\n\n") {
		for _, line := range strings.Split(g, "\n")[1:] {
			if !strings.HasPrefix(line, "github.com/callgate/callgate/gateway.") {
				continue // a file line, the creator, or not the gateway's
			}
			match := len(funcs) == 0
			for _, f := range funcs {
				match = match || strings.Contains(line, f)
			}
			if match {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// waitNoGatewayGoroutines waits until no goroutine runs gateway code. The
// goroutines that the server waits for have returned from its code when
// it stops waiting, but may not have ended yet.
func waitNoGatewayGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(wstest.Wait)
	for {
		gs := gatewayGoroutines()
		if len(gs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines still run gateway code:\n\n%s", len(gs), strings.Join(gs, "\n\n"))
		}
		time.Sleep(time.Millisecond)
	}
}

// heldHistory holds every history read, once armed, until its context
// ends and then until release.
type heldHistory struct {
	*memCalls
	armed     atomic.Bool
	entered   chan struct{}
	cancelled chan struct{}
	release   chan struct{}
}

func (h *heldHistory) After(ctx context.Context, key string, after gateway.Position, limit int) (gateway.HistoryRead, error) {
	if !h.armed.Load() {
		return h.memCalls.After(ctx, key, after, limit)
	}
	h.entered <- struct{}{}
	<-ctx.Done()
	h.cancelled <- struct{}{}
	<-h.release
	return gateway.HistoryRead{}, ctx.Err()
}

// TestShutdownLeavesNoGoroutine: Shutdown returns only once every
// goroutine of the server has left its code: connections, the pinger,
// the flusher, the handler workers, and catch-ups still reading history.
func TestShutdownLeavesNoGoroutine(t *testing.T) {
	waitNoGatewayGoroutines(t) // of the tests before
	mem = newMemCalls()
	hist := &heldHistory{memCalls: mem, entered: make(chan struct{}, 10),
		cancelled: make(chan struct{}, 10), release: make(chan struct{})}
	// History reads end when the server cancels them, not before.
	srv, _, url := startServerWith(t, gateway.Config{SubscribeTimeout: time.Hour}, hist)
	a := dial(t, url)
	a.MustSubscribe("1", "EL_1")
	hist.armed.Store(true)
	// A subscribe whose catch-up holds its handler, and a catch-up that
	// fills a gap.
	b := dial(t, url)
	b.Send(map[string]string{"type": "subscribe", "id": "2", "call": "EL_2"})
	mem.record("EL_1")
	mem.publish(srv, "EL_1")
	<-hist.entered
	<-hist.entered
	const (
		pinger  = "gateway.(*Server).pinger"
		flusher = "gateway.(*flusher).run"
		worker  = "gateway.(*handlerPool).work"
		catchUp = "gateway.(*hub).catchUp"
	)
	for _, f := range []string{pinger, flusher, worker, catchUp} {
		if len(gatewayGoroutines(f)) == 0 {
			t.Fatalf("no goroutine runs %s before Shutdown", f)
		}
	}

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wstest.Wait)
		defer cancel()
		stopped <- srv.Shutdown(ctx)
	}()
	<-hist.cancelled
	<-hist.cancelled
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) while catch-ups were still reading history", err)
	default:
	}
	close(hist.release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{pinger, flusher, worker, catchUp} {
		if gs := gatewayGoroutines(f); len(gs) > 0 {
			t.Errorf("after Shutdown, a goroutine still runs %s:\n\n%s", f, gs[0])
		}
	}
	for _, c := range []*wstest.Client{a, b} {
		c.Closed()
	}
	waitNoGatewayGoroutines(t)
}

// heldAuthenticator holds every token check until release.
type heldAuthenticator struct {
	entered chan struct{}
	release chan struct{}
}

func (a heldAuthenticator) Authenticate(string) (gateway.Identity, error) {
	a.entered <- struct{}{}
	<-a.release
	return gateway.Identity{User: "u"}, nil
}

// TestShutdownClosesWhatItsUpgradeOverlapped: a socket whose upgrade was
// under way when Shutdown closed the others is closed with 1001 too,
// rather than left open until Shutdown's deadline.
func TestShutdownClosesWhatItsUpgradeOverlapped(t *testing.T) {
	auth := heldAuthenticator{entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv, _, url := startServer(t, gateway.Config{Authenticator: auth})
	dialed := make(chan *wstest.Client, 1)
	go func() {
		c, err := wstest.TryDial(t, url, http.Header{"Authorization": {"Bearer token"}})
		if err != nil {
			t.Error(err)
		}
		dialed <- c
	}()
	<-auth.entered
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wstest.Wait)
		defer cancel()
		stopped <- srv.Shutdown(ctx)
	}()
	for !srv.Draining() {
		runtime.Gosched()
	}
	close(auth.release)
	c := <-dialed
	if c == nil {
		t.FailNow()
	}
	if code := wstest.CloseCode(c.Closed()); code != websocket.CloseGoingAway {
		t.Fatalf("close code %d, want 1001", code)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
