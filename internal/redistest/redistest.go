// Package redistest starts the Redis deployment a test runs against, chosen
// by CALLGATE_TEST_REDIS:
//
//   - unset or "mini": an in-process miniredis;
//   - "real": one redis-server process;
//   - "cluster": a Redis Cluster of six redis-server processes, three
//     masters with one replica each;
//   - "sentinel": a primary, a replica and three Sentinels watching them.
//
// Everything listens on loopback TCP, so several gateway instances in one
// test (or in child processes) can share a deployment. A Server hides the
// mode: URL and Flag are what callgate's command line takes, Client is a
// go-redis client of the right kind. Fault helpers (KillMaster, Failover,
// MigrateSlot, KillPrimary, Stop, …) return only once Redis itself confirms
// that the fault has taken effect and the deployment is usable again.
//
// Start gives a test its own deployment, which it may break. Shared gives
// every test of a test binary the same one, for tests that only need their
// own keys (Prefix); the package's TestMain must then call Main.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Mode is the kind of Redis deployment a test runs against.
type Mode string

// The values of CALLGATE_TEST_REDIS ("" and "miniredis" mean ModeMini).
const (
	ModeMini     Mode = "mini"
	ModeReal     Mode = "real"
	ModeCluster  Mode = "cluster"
	ModeSentinel Mode = "sentinel"
)

// EnvMode is the variable that selects the mode.
const EnvMode = "CALLGATE_TEST_REDIS"

// SentinelMaster is the name the Sentinels monitor the primary under.
const SentinelMaster = "callgate-test"

// How long a deployment may take to come up, and a fault helper to see the
// deployment usable again. Generous: the machine may be busy with other
// tests.
const (
	startTimeout = 60 * time.Second
	faultTimeout = 60 * time.Second
)

// pollInterval is how often the state of Redis is read again while waiting
// for a change that Redis announces nowhere (a process answering, the
// cluster's view converging, a replication link coming up).
const pollInterval = 20 * time.Millisecond

// Server is a running Redis deployment.
type Server struct {
	// Addr is the host:port in URL(): the server, the first cluster node,
	// or the first Sentinel.
	Addr string
	// Real reports whether the deployment is made of redis-server
	// processes (every mode but ModeMini).
	Real bool
	// Mini is the miniredis server, nil unless ModeMini.
	Mini *miniredis.Miniredis

	mode   Mode
	url    string
	shared bool

	// mu serialises the fault helpers and guards the processes they
	// replace.
	mu       sync.Mutex
	single   *node // ModeReal
	cluster  *cluster
	sentinel *sentinelSet
	killed   []*node // by KillMaster or KillPrimary, until RestartKilled
}

// Mode returns the deployment's mode.
func (s *Server) Mode() Mode { return s.mode }

// URL returns what callgate's Flag takes for this deployment:
// redis://host:port for one server; for a cluster, a URL with every node
// as go-redis's ParseClusterURL reads it (redis://node1?addr=node2&addr=…);
// for Sentinel, one with every Sentinel and the master name as
// ParseFailoverURL reads it (redis://s1?master_name=…&addr=s2&addr=s3).
func (s *Server) URL() string { return s.url }

// Flag returns the callgate flag that takes URL: --redis-url,
// --redis-cluster or --redis-sentinel.
func (s *Server) Flag() string {
	switch s.mode {
	case ModeCluster:
		return "--redis-cluster"
	case ModeSentinel:
		return "--redis-sentinel"
	default:
		return "--redis-url"
	}
}

// Client returns a go-redis client for the deployment, built from URL and
// closed at test cleanup: a *redis.ClusterClient for a cluster, a failover
// *redis.Client for Sentinel, a *redis.Client otherwise.
func (s *Server) Client(t testing.TB) redis.UniversalClient {
	return s.ClientAs(t, "", "")
}

// ClientAs is Client, logged in to the data nodes as an ACL user (the
// default user when user is empty).
func (s *Server) ClientAs(t testing.TB, user, password string) redis.UniversalClient {
	t.Helper()
	c, err := newClient(s.mode, s.url, user, password)
	if err != nil {
		t.Fatalf("redistest: client for %s: %v", s.url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newClient(mode Mode, u, user, password string) (redis.UniversalClient, error) {
	switch mode {
	case ModeCluster:
		o, err := redis.ParseClusterURL(u)
		if err != nil {
			return nil, err
		}
		if user != "" {
			o.Username, o.Password = user, password
		}
		return redis.NewClusterClient(o), nil
	case ModeSentinel:
		o, err := redis.ParseFailoverURL(u)
		if err != nil {
			return nil, err
		}
		if user != "" {
			o.Username, o.Password = user, password
		}
		return redis.NewFailoverClient(o), nil
	default:
		o, err := redis.ParseURL(u)
		if err != nil {
			return nil, err
		}
		if user != "" {
			o.Username, o.Password = user, password
		}
		return redis.NewClient(o), nil
	}
}

var prefixes atomic.Int64

// Prefix returns a key prefix that no other test in this process uses, so
// tests can share one deployment without seeing each other's keys.
func Prefix(t testing.TB) string {
	return fmt.Sprintf("cgtest%d-%d", os.Getpid(), prefixes.Add(1))
}

// modeFromEnv reads CALLGATE_TEST_REDIS.
func modeFromEnv() (Mode, error) {
	switch v := os.Getenv(EnvMode); v {
	case "", "mini", "miniredis":
		return ModeMini, nil
	case string(ModeReal), string(ModeCluster), string(ModeSentinel):
		return Mode(v), nil
	default:
		return "", fmt.Errorf("%s=%q: want one of real, cluster, sentinel, or mini (or unset) for miniredis", EnvMode, v)
	}
}

// Start starts a deployment in the mode CALLGATE_TEST_REDIS selects, for
// t alone, and stops it when t ends. Use it for tests that inject faults.
// In the real, cluster and sentinel modes it requires redis-server (and
// redis-cli for a cluster) on PATH and fails the test, never skips it,
// when they are missing.
func Start(t testing.TB) *Server {
	t.Helper()
	mode, err := modeFromEnv()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	var s *Server
	if mode == ModeMini {
		s = newMini(miniredis.RunT(t))
	} else {
		began := time.Now()
		s, err = start(mode)
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		t.Cleanup(s.close)
		t.Logf("redistest: %s deployment up in %s", mode, time.Since(began).Round(time.Millisecond))
	}
	return s
}

func newMini(m *miniredis.Miniredis) *Server {
	return &Server{Addr: m.Addr(), Mini: m, mode: ModeMini, url: "redis://" + m.Addr()}
}

// start starts a deployment of processes. It is not tied to a test, so
// that Shared can keep it past the test that asked first.
func start(mode Mode) (*Server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	switch mode {
	case ModeReal:
		return startSingle(ctx)
	case ModeCluster:
		return startCluster(ctx)
	case ModeSentinel:
		return startSentinel(ctx)
	}
	return nil, fmt.Errorf("no deployment for mode %q", mode)
}

// close stops every process of the deployment and removes its files.
func (s *Server) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.Mini != nil:
		s.Mini.Close()
	case s.single != nil:
		s.single.remove()
	case s.cluster != nil:
		removeAll(s.cluster.nodes)
	case s.sentinel != nil:
		removeAll(slices.Concat(s.sentinel.sentinels, s.sentinel.data))
	}
}

// The deployments Shared hands out, one per mode, and whether Main will
// stop them.
var shared struct {
	mu      sync.Mutex
	servers map[Mode]*sharedServer
	main    bool
}

type sharedServer struct {
	srv *Server
	err error // why it did not start; every later caller fails with it
}

// Shared returns the deployment in the mode CALLGATE_TEST_REDIS selects
// that every test of this test binary shares, starting it on first use.
// Tests that use it keep to their own keys (Prefix) and must not break
// it: the fault helpers refuse a shared deployment.
//
// The deployment lives until the test binary ends, which only TestMain
// sees: the package must have
//
//	func TestMain(m *testing.M) { redistest.Main(m) }
//
// (Stopping it when a reference count of its tests fell to zero, from
// t.Cleanup, would stop and start it again between every two tests that
// run one after the other, which is most of them.)
func Shared(t testing.TB) *Server {
	t.Helper()
	mode, err := modeFromEnv()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		t.Fatalf("redistest.Shared: the package's TestMain must call redistest.Main(m), which stops the shared deployment when the tests end")
	}
	e := shared.servers[mode]
	if e == nil {
		e = &sharedServer{}
		began := time.Now()
		if mode == ModeMini {
			var m *miniredis.Miniredis
			if m, e.err = miniredis.Run(); e.err == nil {
				e.srv = newMini(m)
			}
		} else {
			e.srv, e.err = start(mode)
		}
		if e.srv != nil {
			e.srv.shared = true
			t.Logf("redistest: shared %s deployment up in %s", mode, time.Since(began).Round(time.Millisecond))
		}
		if shared.servers == nil {
			shared.servers = map[Mode]*sharedServer{}
		}
		shared.servers[mode] = e
	}
	if e.err != nil {
		t.Fatalf("redistest: shared %s deployment: %v", mode, e.err)
	}
	return e.srv
}

// Main runs the package's tests, then stops the deployments Shared
// started, and exits. Call it from TestMain.
func Main(m *testing.M) {
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	for _, e := range shared.servers {
		if e.srv != nil {
			e.srv.close()
		}
	}
	shared.servers = nil
	shared.mu.Unlock()
	os.Exit(code)
}

// lock starts a helper that applies to modes (any mode when none is
// given): it fails the test in another mode, and holds s.mu until the
// returned func runs.
func (s *Server) lock(t testing.TB, helper string, modes ...Mode) func() {
	t.Helper()
	if len(modes) > 0 && !contains(modes, s.mode) {
		t.Fatalf("redistest: %s works in %s mode only; this deployment is %s (%s=%q)", helper, joinModes(modes), s.mode, EnvMode, os.Getenv(EnvMode))
	}
	s.mu.Lock()
	return s.mu.Unlock
}

// lockFault is lock for a helper that breaks the deployment, which it
// refuses to do to the shared one.
func (s *Server) lockFault(t testing.TB, helper string, modes ...Mode) func() {
	t.Helper()
	if s.shared {
		t.Fatalf("redistest: %s on the shared deployment would disturb other tests; use redistest.Start", helper)
	}
	return s.lock(t, helper, modes...)
}

func contains(modes []Mode, m Mode) bool {
	for _, x := range modes {
		if x == m {
			return true
		}
	}
	return false
}

func joinModes(modes []Mode) string {
	var s []string
	for _, m := range modes {
		s = append(s, string(m))
	}
	return strings.Join(s, " or ")
}

// Stop stops every Redis server of the deployment, keeping their data for
// Restart: the whole of Redis is unreachable until then. (Sentinels keep
// running; replicas stop before their primary, so nothing fails over.)
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	defer s.lockFault(t, "Stop")()
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	var err error
	switch s.mode {
	case ModeMini:
		s.Mini.Close()
	case ModeReal:
		err = s.single.shutdown(ctx)
	case ModeCluster:
		err = s.cluster.stop(ctx)
	case ModeSentinel:
		err = s.sentinel.stop(ctx)
	}
	if err != nil {
		t.Fatalf("redistest: stop: %v", err)
	}
}

// Restart starts what Stop stopped, on the same addresses and with the
// same data, and returns once the deployment is usable again.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	defer s.lockFault(t, "Restart")()
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	began := time.Now()
	var err error
	switch s.mode {
	case ModeMini:
		err = s.Mini.Restart()
	case ModeReal:
		err = s.single.start(ctx)
	case ModeCluster:
		err = s.cluster.restart(ctx)
	case ModeSentinel:
		err = s.sentinel.restart(ctx)
	}
	if err != nil {
		t.Fatalf("redistest: restart: %v", err)
	}
	t.Logf("redistest: %s deployment back in %s", s.mode, time.Since(began).Round(time.Millisecond))
}

// Flush deletes every key of the deployment (FLUSHALL on every master),
// as a restart without persistence would, but keeps connections open.
func (s *Server) Flush(t testing.TB) {
	t.Helper()
	defer s.lockFault(t, "Flush")()
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	var err error
	switch s.mode {
	case ModeMini:
		s.Mini.FlushAll()
	case ModeReal:
		err = s.single.c.FlushAll(ctx).Err()
	case ModeCluster:
		err = s.cluster.flush(ctx)
	case ModeSentinel:
		err = s.sentinel.flush(ctx)
	}
	if err != nil {
		t.Fatalf("redistest: flush: %v", err)
	}
}

// KillClients closes the client connections of one kind ("normal" or
// "pubsub", as CLIENT KILL TYPE takes) on every Redis server of the
// deployment; replication links are left alone. miniredis cannot kill by
// kind: it drops every connection instead.
func (s *Server) KillClients(t testing.TB, kind string) {
	t.Helper()
	defer s.lockFault(t, "KillClients")()
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	var nodes []*node
	switch s.mode {
	case ModeMini:
		s.Mini.Close()
		if err := s.Mini.Restart(); err != nil {
			t.Fatalf("redistest: restart miniredis: %v", err)
		}
		return
	case ModeReal:
		nodes = []*node{s.single}
	case ModeCluster:
		nodes = s.cluster.nodes
	case ModeSentinel:
		nodes = s.sentinel.data
	}
	var errs []error
	for _, n := range nodes {
		if n.running() {
			if err := n.c.Do(ctx, "CLIENT", "KILL", "TYPE", kind).Err(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", n, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("redistest: CLIENT KILL TYPE %s: %v", kind, err)
	}
}

// RestartKilled starts the servers KillMaster or KillPrimary killed again,
// on their addresses and without their data, and returns once each is a
// replica in sync with its new master and the deployment is usable.
func (s *Server) RestartKilled(t testing.TB) {
	t.Helper()
	defer s.lockFault(t, "RestartKilled", ModeCluster, ModeSentinel)()
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	if len(s.killed) == 0 {
		t.Fatalf("redistest: RestartKilled: nothing was killed")
	}
	began := time.Now()
	back := s.killed
	if err := startAll(ctx, back, nil); err != nil {
		t.Fatalf("redistest: RestartKilled: %v", err)
	}
	s.killed = nil
	var err error
	if s.mode == ModeCluster {
		err = s.cluster.rejoined(ctx, back)
	} else {
		err = s.sentinel.settle(ctx)
	}
	var names []string
	for _, n := range back {
		names = append(names, n.String())
	}
	if err != nil {
		t.Fatalf("redistest: RestartKilled %s: %v", strings.Join(names, ", "), err)
	}
	t.Logf("redistest: %s back as replicas in %s", strings.Join(names, ", "), time.Since(began).Round(time.Millisecond))
}

// addrsURL writes redis://<first address>?[<lead>&]addr=<second>&addr=…,
// the way go-redis's ParseClusterURL and ParseFailoverURL read a list of
// addresses. Loopback addresses need no escaping.
func addrsURL(addrs []string, lead string) string {
	var b strings.Builder
	b.WriteString("redis://" + addrs[0])
	sep := "?"
	if lead != "" {
		b.WriteString(sep + lead)
		sep = "&"
	}
	for _, a := range addrs[1:] {
		b.WriteString(sep + "addr=" + a)
		sep = "&"
	}
	return b.String()
}

func lookBins(mode Mode, names ...string) (map[string]string, error) {
	bins := map[string]string{}
	for _, name := range names {
		p, err := exec.LookPath(name)
		if err != nil {
			return nil, fmt.Errorf("%s=%s needs %s on PATH (Debian: apt-get install redis-server): %w", EnvMode, mode, name, err)
		}
		bins[name] = p
	}
	return bins, nil
}

// CommandCalls returns how many times the Redis rdb talks to ran command
// (lower case, as INFO commandstats names it). Only a real Redis counts
// commands: call it in ModeReal only.
func CommandCalls(t testing.TB, rdb redis.UniversalClient, command string) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+command+":calls="); ok {
			v, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
			return v
		}
	}
	return 0
}
