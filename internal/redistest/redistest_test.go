package redistest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callgate/callgate/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// recorder is a testing.TB that records a failure or a skip instead of
// ending the test, so that a test can check how a helper fails.
type recorder struct {
	testing.TB
	fatal   string
	skipped bool
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatal(args ...any) {
	r.fatal = fmt.Sprint(args...)
	runtime.Goexit()
}

func (r *recorder) FailNow() {
	r.fatal = "FailNow"
	runtime.Goexit()
}

func (r *recorder) Skipf(string, ...any) { r.skipped = true; runtime.Goexit() }
func (r *recorder) Skip(...any)          { r.skipped = true; runtime.Goexit() }
func (r *recorder) SkipNow()             { r.skipped = true; runtime.Goexit() }

// record runs f with a recorder in its own goroutine, since a failure ends
// that goroutine.
func record(t *testing.T, f func(testing.TB)) *recorder {
	t.Helper()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

func modeFromEnv() redistest.Mode {
	switch m := os.Getenv(redistest.EnvMode); m {
	case "", "miniredis":
		return redistest.ModeMini
	default:
		return redistest.Mode(m)
	}
}

// only skips t unless CALLGATE_TEST_REDIS selects mode.
func only(t *testing.T, mode redistest.Mode) {
	t.Helper()
	if modeFromEnv() != mode {
		t.Skipf("runs with %s=%s", redistest.EnvMode, mode)
	}
}

func TestUnknownModeFails(t *testing.T) {
	t.Setenv(redistest.EnvMode, "clustr")
	for name, f := range map[string]func(testing.TB){
		"Start":  func(tb testing.TB) { redistest.Start(tb) },
		"Shared": func(tb testing.TB) { redistest.Shared(tb) },
	} {
		r := record(t, f)
		if r.skipped || r.fatal == "" {
			t.Fatalf("%s with an unknown mode: skipped %v, failure %q; want a failure", name, r.skipped, r.fatal)
		}
		for _, want := range []string{`"clustr"`, "real", "cluster", "sentinel", "mini"} {
			if !strings.Contains(r.fatal, want) {
				t.Errorf("%s: %q does not mention %s", name, r.fatal, want)
			}
		}
	}
}

func TestMissingRedisServerFails(t *testing.T) {
	for _, mode := range []redistest.Mode{redistest.ModeReal, redistest.ModeCluster, redistest.ModeSentinel} {
		t.Run(string(mode), func(t *testing.T) {
			t.Setenv(redistest.EnvMode, string(mode))
			t.Setenv("PATH", t.TempDir())
			r := record(t, func(tb testing.TB) { redistest.Start(tb) })
			if r.skipped || !strings.Contains(r.fatal, "redis-server") {
				t.Fatalf("without redis-server: skipped %v, failure %q; want a failure naming redis-server", r.skipped, r.fatal)
			}
		})
	}
}

// TestStart: the deployment answers through Client, and URL is what the
// parser of Flag's mode reads.
func TestStart(t *testing.T) {
	srv := redistest.Start(t)
	mode := modeFromEnv()
	if srv.Mode() != mode {
		t.Fatalf("Mode() = %s, want %s", srv.Mode(), mode)
	}
	if srv.Real != (mode != redistest.ModeMini) || (srv.Mini != nil) != (mode == redistest.ModeMini) {
		t.Errorf("Real %v, Mini %v in mode %s", srv.Real, srv.Mini, mode)
	}
	ctx := context.Background()
	rdb := srv.Client(t)
	switch flag := srv.Flag(); mode {
	case redistest.ModeMini, redistest.ModeReal:
		o, err := redis.ParseURL(srv.URL())
		if err != nil || o.Addr != srv.Addr || flag != "--redis-url" {
			t.Fatalf("%s %s: %v %v", flag, srv.URL(), o, err)
		}
		if _, ok := rdb.(*redis.Client); !ok {
			t.Errorf("Client() is a %T", rdb)
		}
	case redistest.ModeCluster:
		o, err := redis.ParseClusterURL(srv.URL())
		if err != nil || len(o.Addrs) != 6 || o.Addrs[0] != srv.Addr || flag != "--redis-cluster" {
			t.Fatalf("%s %s: %v %v", flag, srv.URL(), o, err)
		}
		cc, ok := rdb.(*redis.ClusterClient)
		if !ok {
			t.Fatalf("Client() is a %T", rdb)
		}
		var masters atomic.Int32
		if err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			masters.Add(1)
			return c.Ping(ctx).Err()
		}); err != nil || masters.Load() != 3 {
			t.Fatalf("%d masters answer (%v), want 3", masters.Load(), err)
		}
	case redistest.ModeSentinel:
		o, err := redis.ParseFailoverURL(srv.URL())
		if err != nil || len(o.SentinelAddrs) != 3 || o.SentinelAddrs[0] != srv.Addr || o.MasterName != redistest.SentinelMaster || flag != "--redis-sentinel" {
			t.Fatalf("%s %s: %v %v", flag, srv.URL(), o, err)
		}
		if role, err := rdb.Do(ctx, "ROLE").Slice(); err != nil || role[0] != "master" {
			t.Fatalf("the failover client reaches %v (%v), want the primary", role, err)
		}
	}
	t.Logf("%s %s", srv.Flag(), srv.URL())
	key := redistest.Prefix(t) + ":k"
	if err := rdb.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := rdb.Get(ctx, key).Result(); v != "v" {
		t.Fatalf("GET %s: %q %v", key, v, err)
	}
}

// TestShared: one deployment for the whole test binary, which the fault
// helpers refuse to break.
func TestShared(t *testing.T) {
	a := redistest.Shared(t)
	var b *redistest.Server
	t.Run("again", func(t *testing.T) { b = redistest.Shared(t) })
	if a != b {
		t.Fatal("Shared returned two deployments")
	}
	ctx := context.Background()
	if err := a.Client(t).Set(ctx, redistest.Prefix(t)+":shared", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r := record(t, func(tb testing.TB) { a.Flush(tb) })
	if !strings.Contains(r.fatal, "shared") {
		t.Fatalf("Flush on the shared deployment: %q, want a refusal", r.fatal)
	}
}

// TestHelpersCheckTheMode: a helper of another mode fails and says which
// mode it needs.
func TestHelpersCheckTheMode(t *testing.T) {
	srv := redistest.Start(t)
	checks := map[redistest.Mode]func(testing.TB){
		redistest.ModeCluster:  func(tb testing.TB) { srv.KillMaster(tb, "k") },
		redistest.ModeSentinel: func(tb testing.TB) { srv.KillPrimary(tb) },
	}
	for mode, f := range checks {
		if mode == srv.Mode() {
			continue
		}
		r := record(t, f)
		if !strings.Contains(r.fatal, string(mode)+" mode only") {
			t.Errorf("a %s helper in %s mode: %q", mode, srv.Mode(), r.fatal)
		}
	}
}

// TestStopRestart: while stopped nothing answers; after Restart the data
// is back.
func TestStopRestart(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	key := redistest.Prefix(t) + ":kept"
	if err := rdb.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	srv.Stop(t)
	stopped := time.Since(began)
	down, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := rdb.Ping(down).Err(); err == nil {
		t.Fatal("PING answered while stopped")
	}
	began = time.Now()
	srv.Restart(t)
	t.Logf("Stop took %s, Restart %s", stopped.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	if v, err := srv.Client(t).Get(ctx, key).Result(); v != "v" {
		t.Fatalf("after Restart: %q %v", v, err)
	}
}

func TestFlush(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	keys := []string{redistest.Prefix(t) + ":{a}", redistest.Prefix(t) + ":{b}", redistest.Prefix(t) + ":{c}"}
	for _, k := range keys {
		if err := rdb.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	srv.Flush(t)
	for _, k := range keys {
		if err := rdb.Get(ctx, k).Err(); !errors.Is(err, redis.Nil) {
			t.Fatalf("GET %s after Flush: %v", k, err)
		}
	}
}

// TestKillClients: a subscriber's connection is closed.
func TestKillClients(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ps := srv.Client(t).Subscribe(ctx, redistest.Prefix(t)+":ch")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	srv.KillClients(t, "pubsub")
	if m, err := ps.Receive(ctx); err == nil {
		t.Fatalf("the subscriber received %v after KillClients, want its connection closed", m)
	}
}
