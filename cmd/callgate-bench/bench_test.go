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
)

// Credentials of the gateway the tests start: every check is on, so the
// runs sign webhooks, send the API key and mint tokens.
const (
	testAPIKey  = "bench-api-key"
	testWebhook = "bench-webhook-secret"
	testJWT     = "bench-jwt-secret"
)

// gatewayProcess is a callgate --dev instance run as a process, with an
// embedded Redis.
type gatewayProcess struct {
	url string
	cmd *exec.Cmd
	log *bytes.Buffer
}

func startGateway(t *testing.T) *gatewayProcess {
	t.Helper()
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
	g.cmd = exec.Command(bin, "--dev", "--addr", addr, "--log-level", "warn",
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
		time.Sleep(20 * time.Millisecond) // polling a starting process
	}
}

// benchRun parses args as the command line would and runs them against g.
func benchRun(t *testing.T, g *gatewayProcess, args ...string) *Result {
	t.Helper()
	base := []string{
		"--targets", g.url, "--api-key", testAPIKey, "--webhook-secret", testWebhook,
		"--jwt-secret", testJWT, "--pids", strconv.Itoa(g.cmd.Process.Pid), "--progress", "0",
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
		for _, want := range []string{"--scenario", "-source-ips", "-pids", "Examples", "fanout"} {
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
