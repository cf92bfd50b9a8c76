package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/gateway"
	"github.com/callgate/callgate/internal/redistest"
)

// process is a callgate instance run as a separate process, so that a test
// can kill -9 it.
type process struct {
	t    *testing.T
	bin  string
	args []string
	addr string
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "callgate")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (p *process) start() {
	p.t.Helper()
	p.log = &bytes.Buffer{}
	p.cmd = exec.Command(p.bin, append(p.args, "--addr", p.addr)...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("instance %s not ready: %v\n%s", p.addr, err, p.log)
		}
		time.Sleep(20 * time.Millisecond) // polling a starting process
	}
}

func (p *process) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		p.kill9()
	}
}

// chaosClient follows calls across reconnects, always resuming each after
// the last event it received, and records everything it receives.
type chaosClient struct {
	calls []string
	// slow makes it read slowly until the server cuts it off.
	slow       atomic.Bool
	mu         sync.Mutex
	received   map[string][]int64 // by call_sid
	last       map[string]int64
	reconnects int
	cutOff     bool // was closed with 4008
}

func newChaosClient(calls ...string) *chaosClient {
	return &chaosClient{calls: calls, received: map[string][]int64{}, last: map[string]int64{}}
}

// done reports whether every call has reached want.
func (c *chaosClient) done(want int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, call := range c.calls {
		if c.last[call] < want {
			return false
		}
	}
	return true
}

// run keeps the client connected until stop is closed or it has want
// events of every call. Every hop goes to a random instance.
func (c *chaosClient) run(addrs []string, want int64, stop <-chan struct{}) {
	hopEvery := 40 + rand.IntN(120)
	for !c.done(want) {
		select {
		case <-stop:
			return
		default:
		}
		addr := addrs[rand.IntN(len(addrs))]
		dialer := websocket.Dialer{HandshakeTimeout: 2 * time.Second}
		if c.slow.Load() {
			// A small receive buffer: the server's queue fills soon.
			dialer.NetDialContext = smallBufferDial
		}
		ws, _, err := dialer.Dial("ws://"+addr+"/ws/calls/transcriptions", nil)
		if err != nil {
			time.Sleep(time.Duration(10+rand.IntN(40)) * time.Millisecond) // reconnect backoff
			continue
		}
		c.reconnects++
		c.mu.Lock()
		for _, call := range c.calls {
			sub, _ := json.Marshal(map[string]string{"type": "subscribe", "id": call, "call": call, "since": strconv.FormatInt(c.last[call], 10)})
			ws.WriteMessage(websocket.TextMessage, sub)
		}
		c.mu.Unlock()
		n := 0
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				if ce, ok := err.(*websocket.CloseError); ok && ce.Code == gateway.CloseSendQueueOverflow {
					c.cutOff = true
					c.slow.Store(false)
				}
				break
			}
			var f struct {
				Type    string `json:"type"`
				EventID string `json:"event_id"`
				CallSID string `json:"call_sid"`
			}
			json.Unmarshal(data, &f)
			if f.Type == "error" {
				break // e.g. unavailable while Redis is down: reconnect
			}
			if f.Type != "event" {
				continue
			}
			id, _ := strconv.ParseInt(f.EventID, 10, 64)
			c.mu.Lock()
			c.received[f.CallSID] = append(c.received[f.CallSID], id)
			c.last[f.CallSID] = max(c.last[f.CallSID], id)
			c.mu.Unlock()
			if c.slow.Load() {
				time.Sleep(10 * time.Millisecond) // the slow reader
			}
			n++
			if !c.slow.Load() && len(c.calls) == 1 && n >= hopEvery || c.done(want) {
				break // hop to another instance
			}
		}
		ws.Close()
	}
}

func smallBufferDial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return d.DialContext(ctx, network, addr)
}

// TestChaos streams events for many calls through three instances while
// clients hop between instances, an instance is killed with -9 and
// restarted, another is stopped with SIGTERM and restarted, the
// instances' Redis connections are killed, and one client reads so slowly
// that it is cut off. Every client must end with the
// complete, ordered, duplicate-free sequence of its call.
func TestChaos(t *testing.T) {
	const nCalls, perCall = 50, 200 // 10,000 live events
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	bin := buildBinary(t)
	args := []string{
		srv.Flag(), srv.URL(), "--redis-prefix", prefix,
		"--webhook-secret", testSecret, "--api-key", testAPIKey, "--allow-anonymous",
		"--log-level", "error", "--send-queue", "32", "--shutdown-timeout", "5s",
	}
	var procs []*process
	var addrs []string
	for i := range 3 {
		p := &process{t: t, bin: bin, addr: freeAddr(t), args: append(clone(args), "--instance-id", fmt.Sprintf("chaos-%d", i))}
		p.start()
		procs = append(procs, p)
		addrs = append(addrs, p.addr)
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.stop()
		}
	})
	httpc := &http.Client{Timeout: 5 * time.Second}

	// post sends a request to a random instance until one answers 2xx.
	post := func(path string, body []byte, header http.Header) (map[string]any, error) {
		deadline := time.Now().Add(60 * time.Second)
		for attempt := 0; ; attempt++ {
			req, _ := http.NewRequest(http.MethodPost, "http://"+addrs[rand.IntN(len(addrs))]+path, bytes.NewReader(body))
			for k, v := range header {
				req.Header[k] = v
			}
			if strings.HasPrefix(path, "/webhooks/") {
				req.Header.Set(calls.SignatureHeader, calls.Sign([]byte(testSecret), time.Now(), body))
			}
			resp, err := httpc.Do(req)
			if err == nil {
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					var out map[string]any
					return out, json.Unmarshal(raw, &out)
				}
				if resp.StatusCode < 500 {
					return nil, fmt.Errorf("%s: %d %s", path, resp.StatusCode, raw)
				}
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%s: no instance accepted it within 60s (last: %v)", path, err)
			}
			time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond) // sender's retry backoff
		}
	}

	var clients []*chaosClient
	var all []string
	for i := range nCalls {
		sid := fmt.Sprintf("EL_chaos_%02d", i)
		b, _ := json.Marshal(calls.Update{CallSID: sid, ConversationID: "conv_chaos_" + strconv.Itoa(i), Status: calls.StatusInProgress})
		if _, err := post("/api/calls", b, apiHeader()); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, newChaosClient(sid))
		all = append(all, sid)
	}
	// One more client follows every call and reads slowly.
	slow := newChaosClient(all...)
	slow.slow.Store(true)
	clients = append(clients, slow)
	want := int64(perCall + 1) // the status set at registration is event 1

	stop := make(chan struct{})
	var cwg sync.WaitGroup
	for _, c := range clients {
		cwg.Add(1)
		go func() { defer cwg.Done(); c.run(addrs, want, stop) }()
	}

	// Publishers: one goroutine per five calls; events of a call in order.
	var published atomic.Int64
	faults := make(chan string, 10)
	pad := strings.Repeat("lorem ipsum ", 150)
	var pwg sync.WaitGroup
	errs := make(chan error, nCalls)
	for w := range nCalls / 5 {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for n := 1; n <= perCall; n++ {
				for i := w * 5; i < w*5+5; i++ {
					idField, id := "call_sid", fmt.Sprintf("EL_chaos_%02d", i)
					if n%2 == 0 {
						idField, id = "conversation_id", "conv_chaos_"+strconv.Itoa(i)
					}
					ev := json.RawMessage(fmt.Sprintf(`{"type":"agent_response","agent_response_event":{"agent_response":"turn %d %s","event_id":%d}}`, n, pad, n))
					if _, err := post("/webhooks/transcription", liveBody(idField, id, ev), nil); err != nil {
						errs <- err
						return
					}
					switch published.Add(1) {
					case 2000:
						faults <- "pubsub"
					case 4000:
						faults <- "kill"
					case 6000:
						faults <- "normal"
					case 8000:
						faults <- "pubsub"
					case 9000:
						faults <- "term"
					}
				}
			}
		}()
	}
	pubDone := make(chan struct{})
	go func() { pwg.Wait(); close(pubDone) }()

	rdb := srv.Client(t)
	var faultLog []string
	kill := func(kind string) {
		if srv.Real {
			if err := rdb.Do(context.Background(), "CLIENT", "KILL", "TYPE", kind).Err(); err != nil {
				t.Errorf("CLIENT KILL TYPE %s: %v", kind, err)
			}
			return
		}
		// miniredis cannot kill by type: drop every connection instead.
		srv.Mini.Close()
		if err := srv.Mini.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
loop:
	for {
		select {
		case f := <-faults:
			faultLog = append(faultLog, fmt.Sprintf("%s at %s", f, time.Since(start).Round(time.Millisecond)))
			switch f {
			case "pubsub", "normal":
				kill(f)
			case "kill":
				procs[2].kill9()
				time.Sleep(300 * time.Millisecond) // the instance stays down a moment
				procs[2].start()
			case "term":
				// A graceful restart: sockets are closed with 1001.
				procs[1].stop()
				procs[1].start()
			}
		case err := <-errs:
			t.Fatal(err)
		case <-pubDone:
			break loop
		}
	}
	pubTime := time.Since(start)

	finished := make(chan struct{})
	go func() { cwg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(90 * time.Second):
		close(stop)
		<-finished
	}

	var lost, duplicated, outOfOrder, reconnects, total int
	for _, c := range clients {
		reconnects += c.reconnects
		for _, call := range c.calls {
			received := c.received[call]
			total += len(received)
			seen := map[int64]bool{}
			var prev int64
			for _, id := range received {
				if seen[id] {
					duplicated++
					continue
				}
				seen[id] = true
				if id != prev+1 {
					outOfOrder++
				}
				prev = id
			}
			for id := int64(1); id <= want; id++ {
				if !seen[id] {
					lost++
				}
			}
		}
	}
	t.Logf("chaos: %d calls, %d events published in %s, %d deliveries, %d reconnects, faults %v, slow client cut off: %v",
		nCalls, published.Load(), pubTime.Round(time.Millisecond), total, reconnects, faultLog, slow.cutOff)
	t.Logf("chaos: lost = %d, duplicated = %d, out of order = %d", lost, duplicated, outOfOrder)
	if lost != 0 || duplicated != 0 || outOfOrder != 0 {
		t.Fatalf("lost %d, duplicated %d, out of order %d", lost, duplicated, outOfOrder)
	}
	if !slow.cutOff {
		t.Errorf("the slow client was never cut off")
	}
}

func clone(s []string) []string { return append([]string(nil), s...) }
