package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/redistest"
)

// TestDebugServerStopsWithTheInstance: --debug-addr serves pprof while the
// instance runs, and shutdown stops it and waits for it.
func TestDebugServerStopsWithTheInstance(t *testing.T) {
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "debug", func(c *config) { c.DebugAddr = "127.0.0.1:0" })
	url := "http://" + in.app.debugLn.Addr().String() + "/debug/pprof/cmdline"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Fatalf("pprof: %d %q", resp.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := in.app.shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-in.app.debugDone:
	default:
		t.Fatal("shutdown returned before the debug server stopped")
	}
	if _, err := http.Get(url); err == nil {
		t.Fatal("the debug server still answers after shutdown")
	}
}

// TestDebugAddrInUseStopsTheStart: an address that cannot be listened on
// fails the start, as --addr does, rather than being logged later.
func TestDebugAddrInUseStopsTheStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	srv := redistest.Start(t)
	cfg, err := parseConfig([]string{"--dev", "--addr", "127.0.0.1:0", srv.Flag(), srv.URL(),
		"--debug-addr", taken.Addr().String()}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(context.Background(), cfg, newLogger(cfg, io.Discard))
	if err == nil {
		a.shutdown(context.Background())
		t.Fatal("started with --debug-addr in use")
	}
	if !strings.Contains(err.Error(), "--debug-addr") {
		t.Fatalf("error %q does not name --debug-addr", err)
	}
}
