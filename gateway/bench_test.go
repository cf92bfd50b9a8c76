package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/callgate/callgate/gateway"
	"github.com/callgate/callgate/internal/wire"
)

// benchChannel is the one call the fan-out benchmark publishes to.
const benchChannel = "bench:events:sid:CA_bench"

// benchBus follows every channel at once: the benchmark delivers to the
// server directly.
type benchBus struct{}

func (benchBus) Subscribe(context.Context, string) error   { return nil }
func (benchBus) Unsubscribe(context.Context, string) error { return nil }

// benchCall resolves every identifier to the benchmark's call and holds no
// history: subscribers start after the last event delivered.
type benchCall struct{ last atomic.Int64 }

func (c *benchCall) Resolve(ctx context.Context, id string) (gateway.Target, error) {
	return gateway.Target{Key: "CA_bench", Channel: benchChannel}, nil
}

func (c *benchCall) After(ctx context.Context, key string, after gateway.Position, limit int) (gateway.HistoryRead, error) {
	return gateway.HistoryRead{
		Last:   gateway.Position{Seq: c.last.Load()},
		Record: json.RawMessage(`{"call_sid":"CA_bench","status":"in-progress"}`),
	}, nil
}

// fanoutWindow bounds how far delivery runs ahead of the slowest client,
// below the send queue (256), so that no client is cut off as slow.
const fanoutWindow = 128

// fanoutFixture is a server with n subscribed clients that read
// continuously. It lives across the rounds of one sub-benchmark, so its
// event ids go on counting.
type fanoutFixture struct {
	srv   *gateway.Server
	hs    *httptest.Server
	call  *benchCall
	conns []*websocket.Conn
	// last[i] is the event_id client i received last.
	last    []atomic.Int64
	readers sync.WaitGroup
	failed  atomic.Value // error of a reader
	// progress wakes awaitProgress after a client received an event or
	// stopped, while waiting is set.
	progress chan struct{}
	waiting  atomic.Bool
}

func newFanoutFixture(b *testing.B, n int) *fanoutFixture {
	f := &fanoutFixture{call: &benchCall{}, last: make([]atomic.Int64, n), conns: make([]*websocket.Conn, n),
		progress: make(chan struct{}, 1)}
	f.srv = gateway.NewServer(gateway.Config{
		Bus: benchBus{}, Resolver: f.call, History: f.call,
		Logger:         slog.New(slog.DiscardHandler),
		MaxConnections: n + 10,
	})
	f.hs = httptest.NewServer(f.srv)
	url := "ws" + strings.TrimPrefix(f.hs.URL, "http")
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ws, err := subscribeBenchClient(url)
			if err != nil {
				errs <- err
				return
			}
			f.conns[i] = ws
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		f.close()
		b.Fatal(err)
	}
	for i, ws := range f.conns {
		f.readers.Go(func() { f.read(ws, &f.last[i]) })
	}
	return f
}

// subscribeBenchClient connects and subscribes to the call.
func subscribeBenchClient(url string) (*websocket.Conn, error) {
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		return nil, err
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := ws.ReadMessage(); err != nil { // welcome
		ws.Close()
		return nil, err
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","id":"1","call":"CA_bench"}`)); err != nil {
		ws.Close()
		return nil, err
	}
	_, msg, err := ws.ReadMessage()
	if err == nil && !strings.Contains(string(msg), `"subscribed"`) {
		err = fmt.Errorf("subscribe answered %s", msg)
	}
	if err != nil {
		ws.Close()
		return nil, err
	}
	_ = ws.SetReadDeadline(time.Time{})
	return ws, nil
}

// read keeps the last event_id received in last until the socket closes;
// a socket closed before the fixture is done fails the benchmark.
func (f *fanoutFixture) read(ws *websocket.Conn, last *atomic.Int64) {
	defer f.wake()
	buf := make([]byte, 0, 512)
	for {
		_, r, err := ws.NextReader()
		if err != nil {
			f.failed.CompareAndSwap(nil, fmt.Errorf("a client stopped reading: %w", err))
			return
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err == io.EOF {
				break
			}
			if err != nil {
				f.failed.CompareAndSwap(nil, fmt.Errorf("a client stopped reading: %w", err))
				return
			}
		}
		id, _, ok := wire.Parse(buf)
		if !ok {
			f.failed.CompareAndSwap(nil, fmt.Errorf("unexpected frame %.100s", buf))
			continue
		}
		if id != last.Load()+1 {
			f.failed.CompareAndSwap(nil, fmt.Errorf("event %d after %d", id, last.Load()))
		}
		last.Store(id)
		f.wake()
	}
}

// wake tells awaitProgress that a client moved on. The check of waiting
// comes after the client's store, and awaitProgress sets waiting before
// it checks the clients: one of the two sees the other.
func (f *fanoutFixture) wake() {
	if f.waiting.Load() {
		select {
		case f.progress <- struct{}{}:
		default:
		}
	}
}

// awaitProgress returns once done reports true, checking it again each
// time a client receives an event, or with an error if a client failed
// or was cut off.
func (f *fanoutFixture) awaitProgress(done func() bool) error {
	f.waiting.Store(true)
	defer f.waiting.Store(false)
	for !done() {
		if err, _ := f.failed.Load().(error); err != nil {
			return err
		}
		if f.srv.Stats().Overflows > 0 {
			return errors.New("a client was cut off as too slow")
		}
		<-f.progress
	}
	return nil
}

// slowest is the last event_id every client has received.
func (f *fanoutFixture) slowest() int64 {
	m := f.last[0].Load()
	for i := range f.last {
		m = min(m, f.last[i].Load())
	}
	return m
}

// run delivers b.N events and waits until every client received them.
func (f *fanoutFixture) run(b *testing.B) {
	first := f.call.last.Load() + 1
	tail := wire.AppendTail(nil, wire.Tail{Event: "transcript", CallSID: "CA_bench", Time: time.Now(),
		Data: []byte(`{"role":"agent","text":"hello","final":true}`)})
	frames := make([][]byte, b.N)
	for i := range frames {
		frames[i] = wire.Build(first+int64(i), 0, tail)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i, frame := range frames {
		id := first + int64(i)
		if i%16 == 0 && id-f.slowest() > fanoutWindow {
			if err := f.awaitProgress(func() bool { return id-f.slowest() <= fanoutWindow }); err != nil {
				b.Fatal(err)
			}
		}
		f.call.last.Store(id)
		f.srv.Deliver(benchChannel, frame)
	}
	end := first + int64(b.N) - 1
	if err := f.awaitProgress(func() bool { return f.slowest() >= end }); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if err, _ := f.failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)*float64(len(f.conns))/b.Elapsed().Seconds(), "deliveries/s")
}

func (f *fanoutFixture) close() {
	for _, ws := range f.conns {
		if ws != nil {
			ws.Close()
		}
	}
	f.readers.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = f.srv.Shutdown(ctx)
	f.hs.Close()
}

// BenchmarkFanout measures the local fan-out path: one event handed to the
// server (as the bus does), queued to every subscribed socket, written, and
// read by clients in the same process. One op is one event to every
// subscriber; deliveries/s counts the frames clients received.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{100, 1000} {
		// One fixture serves every round of the sub-benchmark.
		var f *fanoutFixture
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			if f == nil {
				f = newFanoutFixture(b, n)
			}
			f.run(b)
		})
		if f != nil {
			f.close()
		}
	}
}
