package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
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
	"github.com/callgate/callgate/internal/porttest"
	"github.com/callgate/callgate/internal/redistest"
	"github.com/callgate/callgate/internal/slots"
)

// process is a callgate instance run as a separate process, so that a test
// can kill -9 it. Its output, across restarts, goes to a file.
type process struct {
	t       *testing.T
	bin     string
	args    []string
	addr    string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{} // closed once the process has exited and been reaped
	// stopping is set while the test itself stops the process.
	stopping bool
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

// freeAddr returns a loopback address for an instance the test starts
// as a process (see porttest).
func freeAddr(t *testing.T) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(porttest.Free(t))
}

// start starts the process and returns once it is ready.
func (p *process) start() {
	p.t.Helper()
	if p.logPath == "" {
		p.logPath = filepath.Join(p.t.TempDir(), "callgate.log")
	}
	log, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	defer log.Close() // the child has its own descriptor
	fmt.Fprintf(log, "--- start at %s\n", time.Now().Format(time.RFC3339Nano))
	p.cmd = exec.Command(p.bin, append(p.args, "--addr", p.addr)...)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.stopping = false
	exited, cmd := make(chan struct{}), p.cmd
	p.exited = exited
	go func() { _ = cmd.Wait(); close(exited) }()
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := hc.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-exited:
			p.t.Fatalf("instance %s exited while starting:\n%s", p.addr, p.tail(40))
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("instance %s not ready: %v\n%s", p.addr, err, p.tail(40))
		}
		time.Sleep(20 * time.Millisecond) // polling a starting process
	}
}

func (p *process) kill9() {
	p.stopping = true
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func (p *process) stop() {
	p.stopping = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.kill9()
	}
}

// died reports whether the process exited without the test stopping it.
func (p *process) died() bool {
	select {
	case <-p.exited:
		return !p.stopping
	default:
		return false
	}
}

// tail returns the last n lines of the process's output.
func (p *process) tail(n int) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// chaosReadTimeout bounds a client's wait for its next frame, and the
// writes of its subscribes. Past it the client reconnects: a call can be
// quiet for seconds while Redis fails over.
const chaosReadTimeout = 10 * time.Second

// chaosClient follows calls across reconnects, resuming each after the
// last position it has, as docs/PROTOCOL.md says a client does: since and
// epoch of the last event received, or the position a subscribed or reset
// frame set. It records every frame of its calls.
type chaosClient struct {
	name  string
	calls []string
	rng   *rand.Rand // used by run's goroutine only
	// slow makes it read slowly until the server cuts it off.
	slow atomic.Bool
	mu   sync.Mutex
	// byCall holds what it saw of each call; guarded by mu.
	byCall map[string]*chaosTrack
	// Written by run's goroutine; read once it has returned.
	reconnects int
	cutOff     bool // was closed with 4008
	errors     []string
}

// chaosTrack is one call as a client follows it.
type chaosTrack struct {
	pos   chaosPos // where to resume after
	seen  []chaosSeen
	ended bool // its end marker arrived
}

func newChaosClient(name string, rng *rand.Rand, calls ...string) *chaosClient {
	c := &chaosClient{name: name, calls: calls, rng: rng, byCall: map[string]*chaosTrack{}}
	for _, call := range calls {
		c.byCall[call] = &chaosTrack{}
	}
	return c
}

// done reports whether every call's end marker has arrived.
func (c *chaosClient) done() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tr := range c.byCall {
		if !tr.ended {
			return false
		}
	}
	return true
}

// run keeps the client connected until stop is closed or every call's end
// marker has arrived. Every hop goes to a random instance.
func (c *chaosClient) run(addrs []string, stop <-chan struct{}) {
	hopEvery := 40 + c.rng.IntN(120)
	for !c.done() {
		select {
		case <-stop:
			return
		default:
		}
		addr := addrs[c.rng.IntN(len(addrs))]
		dialer := websocket.Dialer{HandshakeTimeout: 2 * time.Second}
		if c.slow.Load() {
			// A small receive buffer: the server's queue fills soon.
			dialer.NetDialContext = smallBufferDial
		}
		var overflows float64
		if c.slow.Load() {
			overflows = overflowsOf(addr)
		}
		ws, _, err := dialer.Dial("ws://"+addr+"/ws/calls/transcriptions", nil)
		if err != nil {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(10+c.rng.IntN(40)) * time.Millisecond): // reconnect backoff
			}
			continue
		}
		c.reconnects++
		c.session(ws, addr, overflows, hopEvery, stop)
	}
}

// overflowsOf reads how many sockets the instance at addr has cut off
// because their send queue overflowed (-1 if it does not answer).
func overflowsOf(addr string) float64 {
	hc := http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "callgate_send_queue_overflows_total "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return n
		}
	}
	return -1
}

// chaosFrame is what the client reads of a server frame.
type chaosFrame struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	CallSID   string `json:"call_sid"`
	Epoch     string `json:"epoch"`
	EventID   string `json:"event_id"`
	Event     string `json:"event"`
	Recovered *bool  `json:"recovered"`
	Code      string `json:"code"`
	Data      struct {
		Text string `json:"text"`
	} `json:"data"`
}

// session follows the calls on one connection to the instance at addr
// until it fails, the client hops, or stop is closed. A slow client reads
// slowly until the instance has cut a socket off (its overflow count
// passed overflows), then fast, to reach the close frame: with the slow
// reads the kernel's buffers ahead of it could take longer to drain than
// the instance waits to write it.
func (c *chaosClient) session(ws *websocket.Conn, addr string, overflows float64, hopEvery int, stop <-chan struct{}) {
	over := make(chan struct{})
	defer close(over)
	defer ws.Close()
	go func() {
		select {
		case <-stop:
			ws.Close() // ends a read in progress
		case <-over:
		}
	}()
	var drain atomic.Bool
	if c.slow.Load() {
		go func() {
			tick := time.NewTicker(50 * time.Millisecond) // polling the instance's metric
			defer tick.Stop()
			for {
				select {
				case <-over:
					return
				case <-tick.C:
					if n := overflowsOf(addr); overflows >= 0 && n > overflows {
						drain.Store(true)
						return
					}
				}
			}
		}()
	}
	ws.SetWriteDeadline(time.Now().Add(chaosReadTimeout))
	c.mu.Lock()
	var subs [][]byte
	for _, call := range c.calls {
		p := c.byCall[call].pos
		sub, _ := json.Marshal(map[string]string{"type": "subscribe", "id": call, "call": call,
			"since": strconv.FormatInt(p.seq, 10), "epoch": strconv.FormatInt(p.epoch, 10)})
		subs = append(subs, sub)
	}
	c.mu.Unlock()
	for _, sub := range subs {
		if ws.WriteMessage(websocket.TextMessage, sub) != nil {
			return
		}
	}
	n := 0
	for {
		ws.SetReadDeadline(time.Now().Add(chaosReadTimeout))
		_, data, err := ws.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); ok && ce.Code == gateway.CloseSendQueueOverflow {
				c.cutOff = true
				c.slow.Store(false)
			}
			return
		}
		var f chaosFrame
		if err := json.Unmarshal(data, &f); err != nil {
			c.errors = append(c.errors, fmt.Sprintf("unreadable frame %q", data))
			return
		}
		switch f.Type {
		case "subscribed", "reset":
			if !c.record(f) {
				return
			}
		case "event":
			if !c.record(f) {
				return
			}
			if c.slow.Load() && !drain.Load() {
				time.Sleep(10 * time.Millisecond) // the slow reader
			}
			n++
			if !c.slow.Load() && len(c.calls) == 1 && n >= hopEvery || c.done() {
				return // hop to another instance
			}
		case "error":
			return // e.g. unavailable while Redis fails over: reconnect
		case "unsubscribed":
			c.errors = append(c.errors, fmt.Sprintf("unexpected %s", data))
			return
		}
	}
}

// record notes a subscribed, reset or event frame of one of the calls,
// and makes the position it gives the call's: the last event's, or the
// position a subscribed or reset frame sets. It reports false for a frame
// it cannot read.
func (c *chaosClient) record(f chaosFrame) bool {
	s := chaosSeen{kind: seenEvent}
	call := f.CallSID
	switch f.Type {
	case "subscribed":
		s.kind, call = seenSubscribed, f.ID
		if f.Recovered != nil && !*f.Recovered {
			s.kind = seenNotRecovered
		}
	case "reset":
		s.kind = seenReset
	case "event":
		s.marker = chaosMarker(f.Event, f.Data.Text)
	}
	p, err := parseChaosPos(f.Epoch, f.EventID)
	c.mu.Lock()
	defer c.mu.Unlock()
	tr := c.byCall[call]
	if err != nil || tr == nil {
		c.errors = append(c.errors, fmt.Sprintf("%s of %q: %v", f.Type, call, err))
		return false
	}
	if s.kind != seenEvent {
		s.before = tr.pos
	}
	s.pos, tr.pos = p, p
	tr.seen = append(tr.seen, s)
	if s.kind == seenEvent && s.marker == endMarker(call) {
		tr.ended = true
	}
	return true
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

// eventMarker is the marker in the text of a call's n-th posted event; it
// names the event wherever it is seen.
func eventMarker(call string, n int) string { return fmt.Sprintf("mk %s %d", call, n) }

// endMarker is the marker of a call's last event, posted once every fault
// is over; a client is done with the call when it arrives.
func endMarker(call string) string { return "mk " + call + " end" }

// chaosCounter counts published events and lets the test wait for a
// count.
type chaosCounter struct {
	mu      sync.Mutex
	n       int64
	waiters map[int64][]chan struct{}
}

func (c *chaosCounter) add() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	for _, ch := range c.waiters[c.n] {
		close(ch)
	}
	delete(c.waiters, c.n)
	return c.n
}

func (c *chaosCounter) load() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// reached returns a channel closed once the count is at least n.
func (c *chaosCounter) reached(n int64) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan struct{})
	if c.n >= n {
		close(ch)
		return ch
	}
	if c.waiters == nil {
		c.waiters = map[int64][]chan struct{}{}
	}
	c.waiters[n] = append(c.waiters[n], ch)
	return ch
}

// chaosFault is a fault the test injects once at events have been
// published.
type chaosFault struct {
	at   int64
	name string
}

// chaosSchedule is the faults of a mode, in order. Besides the instances'
// and the Redis connections' faults of every mode: on a cluster, kill -9
// of a master (its replica is promoted, the master comes back as a
// replica), CLUSTER FAILOVER, and a slot migration; on Sentinel, kill -9
// of the primary.
func chaosSchedule(mode redistest.Mode) []chaosFault {
	switch mode {
	case redistest.ModeCluster:
		return []chaosFault{{1000, "pubsub"}, {2000, "kill-master"}, {3500, "kill"}, {4500, "failover"},
			{5500, "normal"}, {6500, "migrate"}, {7500, "pubsub"}, {8500, "term"}}
	case redistest.ModeSentinel:
		return []chaosFault{{1500, "pubsub"}, {3000, "kill-primary"}, {4500, "kill"}, {6000, "normal"},
			{7500, "pubsub"}, {8500, "term"}}
	}
	return []chaosFault{{2000, "pubsub"}, {4000, "kill"}, {6000, "normal"}, {8000, "pubsub"}, {9000, "term"}}
}

// envChaosWaitReplicas, when set, runs the instances with
// --redis-wait-replicas of its value (cluster and sentinel modes), to
// compare acknowledged writes Redis lost, and webhook latency, with and
// without WAIT.
const envChaosWaitReplicas = "CALLGATE_CHAOS_WAIT_REPLICAS"

// envChaosSeed sets the seed of the test's random choices (which instance
// each request and connection goes to, when clients hop); a run prints the
// seed it used.
const envChaosSeed = "CALLGATE_CHAOS_SEED"

// TestChaos streams events for many calls through three instances while
// clients hop between instances, an instance is killed with -9 and
// restarted, another is stopped with SIGTERM and restarted, the
// instances' Redis connections are killed, one client reads so slowly
// that it is cut off, and, past one Redis, masters are killed, failed
// over and slots migrated (see chaosSchedule). Every event acknowledged
// with 2xx must reach every client of its call once and in order, or,
// where Redis itself dropped it, the client must have been told
// (recovered:false or a reset).
func TestChaos(t *testing.T) {
	const nCalls, perCall = 50, 200 // 10,000 live events
	// The last rounds of events wait until every fault is over, so that
	// events flow during each of them.
	const heldRounds = 10
	holdAt := int64(nCalls * (perCall - heldRounds))

	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(envChaosSeed); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", envChaosSeed, v, err)
		}
	}
	srv := redistest.Start(t)
	mode := srv.Mode()
	wait := 0
	if v := os.Getenv(envChaosWaitReplicas); v != "" {
		var err error
		if wait, err = strconv.Atoi(v); err != nil || wait < 0 {
			t.Fatalf("%s=%q: want a number of replicas", envChaosWaitReplicas, v)
		}
		if wait > 0 && mode != redistest.ModeCluster && mode != redistest.ModeSentinel {
			t.Fatalf("%s=%d: this %s deployment has no replicas to wait for", envChaosWaitReplicas, wait, mode)
		}
	}
	t.Logf("chaos: seed %d (%s=%d reproduces the random choices), mode %s, --redis-wait-replicas %d", seed, envChaosSeed, seed, mode, wait)
	schedule := chaosSchedule(mode)
	for _, f := range schedule {
		if f.at >= holdAt {
			t.Fatalf("fault %s at %d events: events past %d wait for the faults", f.name, f.at, holdAt)
		}
	}

	const partitions = 64
	prefix := redistest.Prefix(t)
	keys := calls.Keys{Prefix: prefix}
	bin := buildBinary(t)
	args := []string{
		srv.Flag(), srv.URL(), "--redis-prefix", prefix,
		"--webhook-secret", testSecret, "--api-key", testAPIKey, "--allow-anonymous",
		"--log-level", "warn", "--send-queue", "32", "--shutdown-timeout", "5s",
		"--redis-wait-replicas", strconv.Itoa(wait),
	}
	if mode == redistest.ModeCluster {
		ps := slots.NewPartitions(partitions)
		keys.Partitions = &ps
		args = append(args, "--redis-cluster-partitions", strconv.Itoa(partitions))
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
		var wg sync.WaitGroup
		for _, p := range procs {
			wg.Go(p.stop)
		}
		wg.Wait()
		if t.Failed() {
			for i, p := range procs {
				t.Logf("--- instance chaos-%d (%s), last lines:\n%s", i, p.addr, p.tail(60))
			}
		}
	})
	httpc := &http.Client{Timeout: 5 * time.Second}
	// quit ends the publishers' retries and the clients when the test
	// ends before they are done.
	quit := make(chan struct{})
	var quitOnce sync.Once
	end := func() { quitOnce.Do(func() { close(quit) }) }
	// faultPhase is odd while a fault runs, and counts faults: a request
	// that saw it unchanged and even ran while none did.
	var faultPhase atomic.Int64

	// post sends a request to a random instance until one answers 2xx.
	post := func(rng *rand.Rand, path string, body []byte, header http.Header) (out map[string]any, a chaosAck, err error) {
		began := time.Now()
		phase := faultPhase.Load()
		deadline := began.Add(60 * time.Second)
		for attempt := 0; ; attempt++ {
			req, _ := http.NewRequest(http.MethodPost, "http://"+addrs[rng.IntN(len(addrs))]+path, bytes.NewReader(body))
			for k, v := range header {
				req.Header[k] = v
			}
			if strings.HasPrefix(path, "/webhooks/") {
				req.Header.Set(calls.SignatureHeader, calls.Sign([]byte(testSecret), time.Now(), body))
			}
			sent := time.Now()
			resp, err := httpc.Do(req)
			if err == nil {
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					now := time.Now()
					a = chaosAck{retried: attempt > 0, took: now.Sub(sent), total: now.Sub(began),
						quiet: phase%2 == 0 && faultPhase.Load() == phase}
					return out, a, json.Unmarshal(raw, &out)
				}
				if resp.StatusCode < 500 {
					return nil, a, fmt.Errorf("%s: %d %s", path, resp.StatusCode, raw)
				}
				err = fmt.Errorf("%d %s", resp.StatusCode, raw)
			}
			if time.Now().After(deadline) {
				return nil, a, fmt.Errorf("%s: no instance accepted it within 60s (last: %v)", path, err)
			}
			select {
			case <-quit:
				return nil, a, fmt.Errorf("%s: the test ended (last: %v)", path, err)
			case <-time.After(time.Duration(5+rng.IntN(20)) * time.Millisecond): // sender's retry backoff
			}
		}
	}
	var acksMu sync.Mutex
	var acks []chaosAck
	// publish posts a call's live event with marker in its text, and
	// records the answer.
	publish := func(rng *rand.Rand, i, n int, marker string) error {
		sid := fmt.Sprintf("EL_chaos_%02d", i)
		idField, id := "call_sid", sid
		if n%2 == 0 {
			idField, id = "conversation_id", "conv_chaos_"+strconv.Itoa(i)
		}
		ev := json.RawMessage(fmt.Sprintf(`{"type":"agent_response","agent_response_event":{"agent_response":"%s %s","event_id":%d}}`, marker, chaosPad, n))
		out, a, err := post(rng, "/webhooks/transcription", liveBody(idField, id, ev), nil)
		if err != nil {
			return err
		}
		epoch, _ := out["epoch"].(string)
		eventID, _ := out["event_id"].(string)
		if a.pos, err = parseChaosPos(epoch, eventID); err != nil {
			return fmt.Errorf("%s: answer %v: %w", marker, out, err)
		}
		a.call, a.marker, a.hasPos, a.duplicate = sid, marker, true, out["status"] == "duplicate"
		acksMu.Lock()
		acks = append(acks, a)
		acksMu.Unlock()
		return nil
	}

	var clients []*chaosClient
	var all []string
	for i := range nCalls {
		sid := fmt.Sprintf("EL_chaos_%02d", i)
		b, _ := json.Marshal(calls.Update{CallSID: sid, ConversationID: "conv_chaos_" + strconv.Itoa(i), Status: calls.StatusInProgress})
		_, a, err := post(rand.New(rand.NewPCG(seed, 1000+uint64(i))), "/api/calls", b, apiHeader())
		if err != nil {
			t.Fatal(err)
		}
		// The status set at registration is the call's first event.
		a.call, a.marker = sid, "status"
		acks = append(acks, a)
		clients = append(clients, newChaosClient(fmt.Sprintf("client-%02d", i), rand.New(rand.NewPCG(seed, 2000+uint64(i))), sid))
		all = append(all, sid)
	}
	// One more client follows every call and reads slowly.
	slow := newChaosClient("slow", rand.New(rand.NewPCG(seed, 3000)), all...)
	slow.slow.Store(true)
	clients = append(clients, slow)

	var cwg sync.WaitGroup
	for _, c := range clients {
		cwg.Add(1)
		go func() { defer cwg.Done(); c.run(addrs, quit) }()
	}
	clientsDone := make(chan struct{})
	go func() { cwg.Wait(); close(clientsDone) }()

	// Publishers: one goroutine per five calls; events of a call in order.
	var published chaosCounter
	faultsDone := make(chan struct{})
	var pwg sync.WaitGroup
	errs := make(chan error, nCalls)
	for w := range nCalls / 5 {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for n := 1; n <= perCall; n++ {
				if n == perCall-heldRounds+1 {
					select {
					case <-faultsDone:
					case <-quit:
						return
					}
				}
				for i := w * 5; i < w*5+5; i++ {
					if err := publish(rng, i, n, eventMarker(fmt.Sprintf("EL_chaos_%02d", i), n)); err != nil {
						errs <- err
						return
					}
					published.add()
				}
			}
		}()
	}
	pubDone := make(chan struct{})
	go func() { pwg.Wait(); close(pubDone) }()
	// Whatever ends the test, publishers and clients end before the
	// instances stop (cleanups run after deferred calls).
	defer func() { end(); <-pubDone; <-clientsDone }()

	// limit bounds every wait of the test on the events' progress, well
	// within go test's -timeout: a stuck run then fails with its
	// instances' logs, not a dump of goroutines.
	limitAfter := 8 * time.Minute
	if d, ok := t.Deadline(); ok {
		// Room for the clients' last wait and the instances' shutdown.
		left := time.Until(d)
		limitAfter = min(limitAfter, max(left/2, left-2*time.Minute))
	}
	limit := time.NewTimer(limitAfter)
	defer limit.Stop()
	waitFor := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case err := <-errs:
			t.Fatal(err)
		case <-limit.C:
			t.Fatalf("chaos: gave up waiting for %s (%d events published)", what, published.load())
		}
	}

	// callOn returns a call whose slot is served by a master not in
	// avoid (any call if there is none), and that master.
	callOn := func(avoid ...string) (string, string) {
		for _, sid := range all {
			if owner := srv.SlotOwner(t, keys.Record(sid)); !contains(avoid, owner) {
				return sid, owner
			}
		}
		return all[0], srv.SlotOwner(t, keys.Record(all[0]))
	}
	// touched are the masters the cluster's faults made: each fault hits
	// a master none before did.
	var touched []string
	var faultLog []string
	start := time.Now()
	for _, f := range schedule {
		waitFor(fmt.Sprintf("%d events before %s", f.at, f.name), published.reached(f.at))
		began := time.Now()
		faultPhase.Add(1)
		what := f.name
		switch f.name {
		case "pubsub", "normal":
			srv.KillClients(t, f.name)
		case "kill":
			procs[2].kill9()
			// The instance stays down while some events are published.
			waitFor("events while an instance is down", published.reached(min(published.load()+100, holdAt)))
			procs[2].start()
		case "term":
			// A graceful restart: sockets are closed with 1001.
			procs[1].stop()
			procs[1].start()
		case "kill-master":
			sid, owner := callOn(touched...)
			promoted := srv.KillMaster(t, keys.Record(sid))
			srv.RestartKilled(t)
			touched = append(touched, promoted)
			what = fmt.Sprintf("kill-master %s (slot %d of %s; replica %s promoted; restarted as a replica)", owner, slots.Slot(keys.Record(sid)), sid, promoted)
		case "failover":
			sid, owner := callOn(touched...)
			to := srv.Failover(t, keys.Record(sid))
			touched = append(touched, to)
			what = fmt.Sprintf("failover of %s to %s (slot %d of %s)", owner, to, slots.Slot(keys.Record(sid)), sid)
		case "migrate":
			// Two busy slots of a shard no fault has touched yet.
			sid, owner := callOn(touched...)
			picked := []string{sid}
			for _, other := range all {
				if len(picked) == 2 {
					break
				}
				if slots.Slot(keys.Record(other)) != slots.Slot(keys.Record(sid)) && srv.SlotOwner(t, keys.Record(other)) == owner {
					picked = append(picked, other)
				}
			}
			var moved []string
			for _, m := range picked {
				to := srv.MigrateSlot(t, keys.Record(m))
				moved = append(moved, fmt.Sprintf("slot %d of %s to %s", slots.Slot(keys.Record(m)), m, to))
			}
			what = fmt.Sprintf("migrate from %s: %s", owner, strings.Join(moved, ", "))
		case "kill-primary":
			promoted := srv.KillPrimary(t)
			srv.RestartKilled(t)
			what = fmt.Sprintf("kill-primary (%s promoted, the old primary restarted as its replica)", promoted)
		}
		faultPhase.Add(1)
		faultLog = append(faultLog, fmt.Sprintf("%s at %s for %s", what, began.Sub(start).Round(time.Millisecond), time.Since(began).Round(time.Millisecond)))
	}
	close(faultsDone)
	waitFor("the publishers", pubDone)
	pubTime := time.Since(start)

	// Every fault is over: each call's end marker tells its clients they
	// have everything.
	endRng := rand.New(rand.NewPCG(seed, 4000))
	for i := range nCalls {
		sid := fmt.Sprintf("EL_chaos_%02d", i)
		if err := publish(endRng, i, perCall+1, endMarker(sid)); err != nil {
			t.Fatal(err)
		}
	}

	select {
	case <-clientsDone:
	case <-time.After(90 * time.Second):
		t.Errorf("chaos: clients still missing end markers 90s after the last was posted; stopping them")
		end()
		<-clientsDone
	}

	// The final history of every call, as Redis holds it.
	rdb := srv.Client(t)
	hist := chaosHistory{}
	epochs := 0
	for _, sid := range all {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		entries, err := rdb.XRange(ctx, keys.History(sid), "-", "+").Result()
		cancel()
		if err != nil {
			t.Fatalf("history of %s: %v", sid, err)
		}
		hist[sid] = map[chaosPos]string{}
		seenEpochs := map[int64]bool{}
		for _, e := range entries {
			e0, n, _ := strings.Cut(e.ID, "-")
			p, err := parseChaosPos(e0, n)
			if err != nil {
				t.Fatalf("history of %s: entry %s: %v", sid, e.ID, err)
			}
			var f chaosFrame
			raw, _ := e.Values["p"].(string)
			if err := json.Unmarshal([]byte(raw), &f); err != nil {
				t.Fatalf("history of %s: entry %s: %v", sid, e.ID, err)
			}
			hist[sid][p] = chaosMarker(f.Event, f.Data.Text)
			seenEpochs[p.epoch] = true
		}
		epochs += len(seenEpochs) - 1
	}

	var followers []chaosFollower
	reconnects := 0
	for _, c := range clients {
		reconnects += c.reconnects
		for _, e := range c.errors {
			t.Errorf("%s: %s", c.name, e)
		}
		for _, call := range c.calls {
			followers = append(followers, chaosFollower{client: c.name, call: call, seen: c.byCall[call].seen})
		}
	}
	fig := analyseChaos(followers, acks, hist)

	var took, total, quiet []time.Duration
	retried, dup := 0, 0
	for _, a := range acks {
		if !a.hasPos {
			continue // the registrations
		}
		took, total = append(took, a.took), append(total, a.total)
		if a.quiet {
			quiet = append(quiet, a.took)
		}
		if a.retried {
			retried++
		}
		if a.duplicate {
			dup++
		}
	}
	nPosts := len(took)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }
	t.Logf("chaos: %d calls, %d events published in %s, %d deliveries, %d reconnects, faults %v, slow client cut off: %v",
		nCalls, published.load(), pubTime.Round(time.Millisecond), fig.deliveries, reconnects, faultLog, slow.cutOff)
	t.Logf("chaos: lost = %d, duplicated = %d, out of order = %d", fig.lost, fig.duplicated, fig.outOfOrder)
	t.Logf("chaos: lost stored events = %d, lost untold = %d, gaps without recovered:false or reset = %d, events not posted to their call = %d, acknowledged positions holding another event = %d",
		fig.lostStored, fig.lostUntold, fig.gaps, fig.foreign, fig.misplaced)
	t.Logf("chaos: numbering restarts (new epochs in the final histories) = %d; acknowledged writes Redis lost = %d (received before the loss by %d clients; the %d clients that missed one were told), clients told recovered:false = %d, resets received = %d, conservative (nothing acknowledged was missed across them) = %d of %d",
		epochs, fig.redisLost, fig.redisLostSeen, fig.told, fig.notRecovered, fig.resets, fig.conservative, fig.notRecovered+fig.resets)
	t.Logf("chaos: published twice = %d events (a publication whose answer never came, dropped by Redis in a failover, then published again by the sender's retry: never acknowledged twice), received both times by %d clients",
		fig.twice, fig.twiceSeen)
	t.Logf("chaos: webhooks (--redis-wait-replicas %d): %d answered 2xx, %d after a failed attempt (%d of them \"duplicate\"); answered attempt p50 = %s, p99 = %s; with no fault running (%d) p50 = %s, p99 = %s; from the first attempt p50 = %s, p99 = %s, max = %s",
		wait, nPosts, retried, dup, ms(percentile(took, 50)), ms(percentile(took, 99)),
		len(quiet), ms(percentile(quiet, 50)), ms(percentile(quiet, 99)),
		ms(percentile(total, 50)), ms(percentile(total, 99)), ms(percentile(total, 100)))
	for _, p := range fig.problems {
		t.Log("chaos: " + p)
	}
	for i, p := range procs {
		if p.died() {
			t.Errorf("instance chaos-%d exited on its own", i)
		}
	}
	if fig.lost != 0 || fig.duplicated != 0 || fig.outOfOrder != 0 || fig.gaps != 0 || fig.foreign != 0 || fig.misplaced != 0 {
		t.Fatalf("lost %d, duplicated %d, out of order %d, gaps %d, not posted %d, misplaced %d",
			fig.lost, fig.duplicated, fig.outOfOrder, fig.gaps, fig.foreign, fig.misplaced)
	}
	if !slow.cutOff {
		t.Errorf("the slow client was never cut off")
	}
}

// chaosPad makes events large enough for the slow client's queue to fill.
var chaosPad = strings.Repeat("lorem ipsum ", 150)

func clone(s []string) []string { return append([]string(nil), s...) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
