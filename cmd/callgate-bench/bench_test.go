package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/redistest"
)

// Credentials of the gateway the tests start: every check is on, so the
// runs sign webhooks, send the API key and mint tokens.
const (
	testAPIKey  = "bench-api-key"
	testWebhook = "bench-webhook-secret"
	testJWT     = "bench-jwt-secret"
)

// gatewayProcess is a callgate --dev instance run as a process, on the
// Redis deployment CALLGATE_TEST_REDIS selects.
type gatewayProcess struct {
	url string
	cmd *exec.Cmd
	log *bytes.Buffer
	// redis is the address runs give --redis: set for a deployment of
	// redis-server processes (miniredis does not report its CPU time).
	redis string
}

func startGateway(t *testing.T) *gatewayProcess {
	t.Helper()
	srv := redistest.Start(t)
	bin := filepath.Join(t.TempDir(), "callgate")
	if out, err := exec.Command("go", "build", "-o", bin, "../callgate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	g := &gatewayProcess{url: "http://" + addr, log: &bytes.Buffer{}}
	if srv.Real {
		g.redis = srv.Addr
	}
	g.cmd = exec.Command(bin, "--dev", srv.Flag(), srv.URL(), "--redis-prefix", redistest.Prefix(t),
		"--addr", addr, "--log-level", "warn",
		"--api-key", testAPIKey, "--webhook-secret", testWebhook, "--jwt-secret", testJWT)
	g.cmd.Stdout, g.cmd.Stderr = g.log, g.log
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = g.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = g.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", g.log)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(g.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return g
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not ready: %v\n%s", err, g.log)
		}
		time.Sleep(20 * time.Millisecond) // polling a starting process: it gives no other sign of being ready
	}
}

// benchRun parses args as the command line would and runs them against g.
func benchRun(t *testing.T, g *gatewayProcess, args ...string) *Result {
	t.Helper()
	// The drain ends as soon as every delivery has arrived; its length
	// only matters when one is lost.
	base := []string{
		"--targets", g.url, "--api-key", testAPIKey, "--webhook-secret", testWebhook,
		"--jwt-secret", testJWT, "--pids", strconv.Itoa(g.cmd.Process.Pid), "--progress", "0",
		"--drain", "30s",
	}
	if g.redis != "" {
		base = append(base, "--redis", g.redis)
	}
	cfg, err := parseConfig(append(base, args...), io.Discard)
	if err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := run(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	var text, js bytes.Buffer
	if err := writeText(&text, res); err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(&js, res); err != nil || !json.Valid(js.Bytes()) {
		t.Fatalf("JSON summary: %v\n%s", err, js.String())
	}
	t.Logf("%s", text.String())
	if res.Errors != 0 {
		t.Errorf("%s: %d errors: %v", cfg.Scenario, res.Errors, res.ErrorSamples)
	}
	if len(res.Processes) != 1 || res.Processes[0].Error != "" || res.Processes[0].RSSAfterKB <= 0 {
		t.Errorf("%s: process figures %+v", cfg.Scenario, res.Processes)
	}
	return res
}

func checkDeliveries(t *testing.T, res *Result, events, want int64) {
	t.Helper()
	w, d := res.Webhooks, res.Deliveries
	if w == nil || d == nil {
		t.Fatalf("%s: no webhook or delivery figures", res.Scenario)
	}
	if w.Published != events || w.Failed != 0 {
		t.Errorf("%s: %d webhooks published, %d failed; want %d, 0", res.Scenario, w.Published, w.Failed, events)
	}
	if d.Expected != want || d.Delivered != want || d.Lost != 0 || d.Duplicated != 0 || d.Reordered != 0 {
		t.Errorf("%s: deliveries %+v; want %d expected and delivered, none lost, duplicated or reordered", res.Scenario, d, want)
	}
	if d.Latency.Count != uint64(want) {
		t.Errorf("%s: %d latencies for %d deliveries", res.Scenario, d.Latency.Count, want)
	}
	checkTimings(t, res, want)
}

// checkTimings checks that every delivery and webhook was timed from the
// start of its HTTP call, and that the figures agree: a time from the
// start is never below the part of it that follows the publish, and the
// stages' shares add up to the whole.
func checkTimings(t *testing.T, res *Result, deliveries int64) {
	t.Helper()
	w, d := res.Webhooks, res.Deliveries
	if d.Untimed != 0 || d.FromHTTPStart.Count != uint64(deliveries) {
		t.Errorf("%s: %d deliveries timed from the HTTP start, %d untimed; want %d and 0", res.Scenario, d.FromHTTPStart.Count, d.Untimed, deliveries)
	}
	atLeast(t, "from http start", d.FromHTTPStart, "from publish", d.Latency)
	checkStages(t, "deliveries", d.FromHTTPStart, d.Stages)
	if w.HTTPCall.Count != uint64(w.Published) {
		t.Errorf("%s: %d webhooks timed, %d published", res.Scenario, w.HTTPCall.Count, w.Published)
	}
	checkStages(t, "webhooks", w.HTTPCall, w.Stages)
	for _, st := range w.Stages {
		atLeast(t, "http call", w.HTTPCall, st.Name, st.Latency)
	}
	if b := res.Bus; b == nil || b.Error != "" || b.Followed < w.Published || b.Received < b.Followed || b.PerFollowed < 1 {
		t.Errorf("%s: bus figures %+v for %d webhooks", res.Scenario, b, w.Published)
	}
	checkRedis(t, res, "webhook")
}

// atLeast checks that every quantile of a is at least b's.
func atLeast(t *testing.T, an string, a Latency, bn string, b Latency) {
	t.Helper()
	if a.P50 < b.P50 || a.P90 < b.P90 || a.P99 < b.P99 || a.Max < b.Max || a.Mean < b.Mean {
		t.Errorf("%s %+v below %s %+v", an, a, bn, b)
	}
}

func checkStages(t *testing.T, what string, whole Latency, st []Stage) {
	t.Helper()
	if len(st) != 2 {
		t.Fatalf("%s: stages %+v, want two", what, st)
	}
	sum := 0.0
	for _, s := range st {
		if s.Latency.Count != whole.Count {
			t.Errorf("%s: stage %q has %d times, the whole %d", what, s.Name, s.Latency.Count, whole.Count)
		}
		sum += s.SharePercent
	}
	if sum < 99 || sum > 101 {
		t.Errorf("%s: shares of %+v add up to %.1f%%", what, st, sum)
	}
}

// checkRedis checks Redis's CPU time per unit, when the run had --redis.
func checkRedis(t *testing.T, res *Result, unit string) {
	t.Helper()
	if res.Redis == nil {
		return
	}
	r := res.Redis
	masters := 0
	for _, n := range r.Nodes {
		if n.Role == "master" {
			masters++
		}
	}
	if r.Error != "" || masters == 0 || r.MasterCPUSeconds <= 0 || r.MasterMicrosPer <= 0 || r.Per != unit {
		t.Errorf("%s: Redis figures %+v, want the masters' CPU time per %s", res.Scenario, r, unit)
	}
	if r.Cluster && masters != 3 {
		t.Errorf("%s: %d masters in the cluster, want 3", res.Scenario, masters)
	}
}

func TestScenariosAgainstAGateway(t *testing.T) {
	g := startGateway(t)

	t.Run("fanout", func(t *testing.T) {
		res := benchRun(t, g, "--scenario", "fanout", "--subscribers", "20", "--max-events", "50",
			"--duration", "20s", "--publishers", "4", "--payload-bytes", "200")
		checkDeliveries(t, res, 50, 50*20)
		if res.Connections.Subscribed != 20 || res.Connections.OpenAtEnd != 20 {
			t.Errorf("connections %+v; want 20 subscribed and open at the end", res.Connections)
		}
	})

	t.Run("calls", func(t *testing.T) {
		res := benchRun(t, g, "--scenario", "calls", "--calls", "10", "--subscribers", "2",
			"--max-events", "50", "--duration", "20s", "--rate", "200")
		checkDeliveries(t, res, 50, 50*2)
		if res.Connections.Subscribed != 20 {
			t.Errorf("%d subscribed, want 20", res.Connections.Subscribed)
		}
	})

	t.Run("calls, first event", func(t *testing.T) {
		// One webhook per call: the run ends after 12, long before 20s.
		res := benchRun(t, g, "--scenario", "calls", "--first-event", "--calls", "12", "--subscribers", "2",
			"--duration", "20s", "--rate", "200")
		checkDeliveries(t, res, 12, 12*2)
		if !res.Settings.FirstEvent || res.Deliveries.StatusEvents != 12*2 {
			t.Errorf("first event %v, %d status events; want each subscriber to get its call's", res.Settings.FirstEvent, res.Deliveries.StatusEvents)
		}
	})

	t.Run("idle", func(t *testing.T) {
		res := benchRun(t, g, "--scenario", "idle", "--connections", "20", "--duration", "500ms")
		if c := res.Connections; c.Opened != 20 || c.Subscribed != 20 || c.OpenAtEnd != 20 || c.Failed != 0 {
			t.Errorf("connections %+v; want 20 opened, subscribed and open at the end", c)
		}
		if res.RSSPerConnectionKB == 0 && res.Processes[0].RSSAfterKB != res.Processes[0].RSSBeforeKB {
			t.Errorf("no memory per connection reported: %+v", res.Processes)
		}
	})

	t.Run("churn", func(t *testing.T) {
		res := benchRun(t, g, "--scenario", "churn", "--connections", "5", "--calls", "3", "--duration", "1s")
		ch := res.Churn
		if ch == nil || ch.Pairs <= 0 || ch.Errors != 0 {
			t.Fatalf("churn %+v; want pairs and no errors", ch)
		}
		if ch.Subscribe.Count != uint64(ch.Pairs) || ch.Unsubscribe.Count != uint64(ch.Pairs) {
			t.Errorf("latencies %d/%d for %d pairs", ch.Subscribe.Count, ch.Unsubscribe.Count, ch.Pairs)
		}
		checkRedis(t, res, "pair")
	})

	t.Run("wrong API key fails setup", func(t *testing.T) {
		cfg, err := parseConfig([]string{"--targets", g.url, "--api-key", "wrong", "--scenario", "calls",
			"--calls", "2", "--progress", "0"}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		_, err = run(context.Background(), cfg, io.Discard)
		if !errors.Is(err, errSetup) || !strings.Contains(err.Error(), "401") {
			t.Fatalf("run = %v, want a setup error naming 401", err)
		}
	})
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"--scenario", "fanout", "--help"}, {"-h"}} {
		var out bytes.Buffer
		_, err := parseConfig(args, &out)
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%v: err %v, want flag.ErrHelp", args, err)
		}
		for _, want := range []string{"--scenario", "-source-ips", "-pids", "-first-event", "-redis", "Examples", "fanout"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%v: help lacks %q", args, want)
			}
		}
	}
	var out bytes.Buffer
	parseConfig([]string{"--help"}, &out)
	for _, s := range scenarios {
		if !strings.Contains(out.String(), s+": ") {
			t.Errorf("--help does not describe %s", s)
		}
	}
}

func TestBadCommandLines(t *testing.T) {
	for _, args := range [][]string{
		{"--scenario", "storm"},
		{"--duration", "11m"},
		{"--duration", "0s"},
		{"--max-events", "0"},
		{"--targets", "ftp://x"},
		{"--source-ips", "127.0.0.9-127.0.0.1"},
		{"--pids", "12a"},
		{"--token", "a", "--jwt-secret", "b"},
		{"--first-event"},
		{"--scenario", "churn", "--first-event"},
		{"--redis", "http://127.0.0.1:6379"},
		{"stray"},
	} {
		if _, err := parseConfig(args, io.Discard); err == nil || errors.Is(err, flag.ErrHelp) {
			t.Errorf("%v accepted", args)
		}
	}
	cfg, err := parseConfig([]string{"--scenario", "calls", "--source-ips", "127.0.0.1-127.0.0.3,127.0.1.1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.SourceIPs) != 4 || cfg.SourceIPs[2].String() != "127.0.0.3" || cfg.Calls != 100 || cfg.Subscribers != 2 {
		t.Errorf("config %+v", cfg)
	}
}

func TestHistogram(t *testing.T) {
	var h hist
	for i := 1; i <= 100000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := q * 100000 * float64(time.Microsecond)
		got := float64(h.Quantile(q))
		if got < want*0.98 || got > want*1.02 {
			t.Errorf("quantile %v = %v, want about %v", q, time.Duration(got), time.Duration(want))
		}
	}
	if h.Max() != 100*time.Millisecond || h.Count() != 100000 {
		t.Errorf("max %v count %d", h.Max(), h.Count())
	}
	for v := uint64(0); v < 1<<20; v += 7 {
		i := histIndex(v)
		if lo := histLow(i); v < lo || v >= lo+histWidth(i) {
			t.Fatalf("%d in bucket %d [%d, +%d)", v, i, lo, histWidth(i))
		}
	}
	if i := histIndex(1<<63 - 1); i >= histBuckets {
		t.Fatalf("largest value in bucket %d of %d", i, histBuckets)
	}
}

func TestTrackCountsGapsRepeatsAndLateEvents(t *testing.T) {
	b := &bench{}
	s := &sock{b: b}
	for _, id := range []int64{1, 2, 5, 9, 3, 2, 7, 10, 4} {
		s.track(id)
	}
	// Received 1 2 3 4 5 7 9 10; 2 twice; 3, 4, 7 late; 6 and 8 missing.
	if b.missing.Load() != 2 || b.reordered.Load() != 3 {
		t.Errorf("missing %d reordered %d, want 2 and 3", b.missing.Load(), b.reordered.Load())
	}
	for id := int64(1); id <= 11; id++ {
		want := id != 6 && id != 8 && id != 11
		if s.received(id) != want {
			t.Errorf("received(%d) = %v", id, !want)
		}
	}
	if s.track(2) || s.track(9) || !s.track(6) {
		t.Error("repeats accepted or a late event refused")
	}
}

func TestParseCPUTimes(t *testing.T) {
	stat := "cpu  100 5 50 800 10 1 4 30 7 0\ncpu0 50 2 25 400 5 0 2 15 3 0\ncpu1 50 3 25 400 5 1 2 15 4 0\nintr 123\n"
	got, err := parseCPUTimes(stat)
	if err != nil {
		t.Fatal(err)
	}
	// total: the first eight fields; busy: without idle and iowait.
	want := cpuTimes{total: 1000, busy: 190, steal: 30, cpus: 2}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if _, err := parseCPUTimes("intr 1\n"); err == nil {
		t.Fatal("no cpu line: no error")
	}
}

func TestCPUProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench.pprof")
	stop, err := startCPUProfile(path)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A profile is gzipped protobuf.
	if len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
		t.Fatalf("profile of %d bytes is not gzipped", len(data))
	}
	if _, err := startCPUProfile(filepath.Join(path, "not-a-dir", "x")); err == nil || !strings.Contains(err.Error(), "--cpuprofile") {
		t.Fatalf("profile into a missing directory: %v", err)
	}
}

func TestEventTimes(t *testing.T) {
	far := int64(2*timesChunkLen + 5)
	et := newEventTimes(3 * timesChunkLen)
	if et.at(0, true) != nil || et.at(-1, true) != nil || et.at(5*timesChunkLen, true) != nil {
		t.Fatal("a slot out of bounds")
	}
	if et.at(far, false) != nil {
		t.Fatal("a slot in a chunk not made yet")
	}
	et.at(far, true).start.Store(1)
	et.at(7, true).start.Store(2)
	et.at(8, true) // made, never started
	if et.at(far, false).start.Load() != 1 {
		t.Fatal("a far slot not kept")
	}
	var starts []int64
	et.each(func(e *eventTime) { starts = append(starts, e.start.Load()) })
	if len(starts) != 2 || starts[0] != 2 || starts[1] != 1 {
		t.Fatalf("each saw starts %v, want [2 1]", starts)
	}
}

func TestInfoField(t *testing.T) {
	info := "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:0.25\r\nused_cpu_sys_children:9\r\n"
	if got := infoField(info, "used_cpu_sys"); got != "1.500000" {
		t.Errorf("used_cpu_sys = %q", got)
	}
	if got := infoField(info, "used_cpu_user"); got != "0.25" {
		t.Errorf("used_cpu_user = %q", got)
	}
	if got := infoField(info, "missing"); got != "" {
		t.Errorf("missing = %q", got)
	}
}

// TestDrainEndsWithTheLastDelivery: the drain returns once the expected
// deliveries have arrived, however long it may last.
func TestDrainEndsWithTheLastDelivery(t *testing.T) {
	b := newBench(config{}, io.Discard)
	const want = 50
	go func() {
		for range want {
			b.delivered.Add(1)
			b.delivery()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.awaitDeliveries(ctx, func() int64 { return want }, time.Hour)
	if ctx.Err() != nil || b.delivered.Load() != want {
		t.Fatalf("drain ended with %d of %d deliveries (%v)", b.delivered.Load(), want, ctx.Err())
	}
}
