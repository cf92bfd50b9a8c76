package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/internal/wstest"
)

// clusterScript runs deploy/local/cluster.sh with env and returns its
// output and exit code. Its output goes to a file, not a pipe: the
// processes it leaves running must not hold the test up.
func clusterScript(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), "cluster-*.out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join("local", "cluster.sh")}, args...)...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	b, _ := os.ReadFile(out.Name())
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("cluster.sh %v: %v\n%s", args, err, b)
		}
		code = ee.ExitCode()
	}
	return string(b), code
}

// pidsIn returns the pids in the pid files of a cluster's state directory.
func pidsIn(t *testing.T, state string) map[string]int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(state, "run", "*.pid"))
	files = append(files, filepath.Join(state, "nginx", "nginx.pid"))
	pids := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			pids[filepath.Base(f)] = pid
		}
	}
	return pids
}

// running reports whether pid is a live process (not a zombie).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndex(s, ") "); i >= 0 && len(s) > i+2 {
		return s[i+2] != 'Z'
	}
	return true
}

// gatewayRedisModes are the Redis modes TestLocalClusterScript runs the
// whole local cluster in: every mode callgate takes.
var gatewayRedisModes = []string{"single", "cluster", "sentinel"}

// localRedis is what cluster.sh --redis MODE starts, on free ports.
type localRedis struct {
	mode     string
	env      []string // the variables that choose its ports
	pids     []string // its pid files in run/
	data     []string // directories that hold an append-only file
	variable string   // the variable the instances get
}

func newLocalRedis(t *testing.T, mode, state string) localRedis {
	t.Helper()
	r := localRedis{mode: mode}
	switch mode {
	case "single":
		port := freePort(t)
		r.env = []string{fmt.Sprintf("CALLGATE_REDIS_PORT=%d", port)}
		r.pids = []string{"redis.pid"}
		r.data = []string{filepath.Join(state, "redis")}
		r.variable = "CALLGATE_REDIS_URL"
	case "cluster":
		var ports []string
		for _, p := range clusterPorts(t, 6) {
			ports = append(ports, strconv.Itoa(p))
			r.pids = append(r.pids, fmt.Sprintf("redis-%d.pid", p))
			r.data = append(r.data, filepath.Join(state, "redis-cluster", strconv.Itoa(p)))
		}
		r.env = []string{"CALLGATE_REDIS_CLUSTER_PORTS=" + strings.Join(ports, " ")}
		r.variable = "CALLGATE_REDIS_CLUSTER"
	case "sentinel":
		primary, replica := freePort(t), freePort(t)
		sentinels := []string{strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))}
		r.env = []string{
			fmt.Sprintf("CALLGATE_REDIS_PORT=%d", primary),
			fmt.Sprintf("CALLGATE_REDIS_REPLICA_PORT=%d", replica),
			"CALLGATE_SENTINEL_PORTS=" + strings.Join(sentinels, " "),
		}
		for _, p := range []int{primary, replica} {
			r.pids = append(r.pids, fmt.Sprintf("redis-%d.pid", p))
			r.data = append(r.data, filepath.Join(state, fmt.Sprintf("redis-%d", p)))
		}
		for _, p := range sentinels {
			r.pids = append(r.pids, "sentinel-"+p+".pid")
		}
		r.variable = "CALLGATE_REDIS_SENTINEL"
	default:
		t.Fatalf("no Redis mode %q", mode)
	}
	return r
}

// clusterPorts returns n free ports whose cluster bus ports (port + 10000)
// are free too.
func clusterPorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for len(ports) < n {
		p := freePort(t)
		if p+10000 > 65535 {
			continue
		}
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+10000)); err == nil {
			l.Close()
			ports = append(ports, p)
		}
	}
	return ports
}

// stopLocal stops what cluster.sh started in state when the test ends,
// killing whatever stop leaves behind, and logs the logs if it failed.
func stopLocal(t *testing.T, env []string, state string) {
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(state, "logs", "*.log"))
			for _, f := range append(logs, filepath.Join(state, "nginx", "error.log")) {
				if b, err := os.ReadFile(f); err == nil {
					t.Logf("--- %s:\n%s", filepath.Base(f), b)
				}
			}
		}
		clusterScript(t, env, "stop")
		for _, pid := range pidsIn(t, state) {
			if p, err := os.FindProcess(pid); err == nil && running(pid) {
				p.Kill()
			}
		}
	})
}

// checkRunning checks that each pid file in names names a running process.
func checkRunning(t *testing.T, state string, names []string) map[string]int {
	t.Helper()
	pids := pidsIn(t, state)
	for _, name := range names {
		if pid, ok := pids[name]; !ok || !running(pid) {
			t.Errorf("%s: no running process (%v)", name, pids)
		}
	}
	return pids
}

// TestLocalClusterScript starts the no-Docker cluster with
// deploy/local/cluster.sh on free ports, in each mode of
// gatewayRedisModes, uses it through nginx, and stops it.
func TestLocalClusterScript(t *testing.T) {
	for _, mode := range gatewayRedisModes {
		t.Run(mode, func(t *testing.T) { testLocalCluster(t, mode) })
	}
}

func testLocalCluster(t *testing.T, mode string) {
	nginx, redisServer := requireTools(t)
	state := t.TempDir()
	httpPort := freePort(t)
	ports := []string{strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))}
	r := newLocalRedis(t, mode, state)
	env := cleanEnv(append(r.env,
		"CALLGATE_STATE_DIR="+state,
		fmt.Sprintf("CALLGATE_HTTP_PORT=%d", httpPort),
		"CALLGATE_INSTANCE_PORTS="+strings.Join(ports, " "),
		"CALLGATE_WEBHOOK_SECRET=cluster-webhook-secret",
		"CALLGATE_API_KEY=cluster-api-key",
		"CALLGATE_SHUTDOWN_TIMEOUT=5s",
		"CALLGATE_LOG_LEVEL=warn",
		"NGINX_BIN="+nginx,
		"REDIS_SERVER_BIN="+redisServer,
	)...)
	stopLocal(t, env, state)

	out, code := clusterScript(t, env, "--redis", mode, "start")
	if code != 0 {
		t.Fatalf("cluster.sh --redis %s start: exit %d\n%s", mode, code, out)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	for _, want := range []string{url, "ws://127.0.0.1:" + strconv.Itoa(httpPort) + "/ws/calls/transcriptions", "http://127.0.0.1:" + ports[2], r.variable + "="} {
		if !strings.Contains(out, want) {
			t.Errorf("cluster.sh start does not print %s:\n%s", want, out)
		}
	}
	pids := checkRunning(t, state, append(slices.Clone(r.pids), "gateway-1.pid", "gateway-2.pid", "gateway-3.pid", "nginx.pid"))
	for _, dir := range r.data {
		if fi, err := os.Stat(filepath.Join(dir, "appendonlydir")); err != nil || !fi.IsDir() {
			t.Errorf("redis-server does not write an append-only file in %s: %v", dir, err)
		}
	}

	out, code = clusterScript(t, env, "status")
	if code != 0 || strings.Count(out, "/readyz: 200") != 4 {
		t.Errorf("cluster.sh status: exit %d, want every instance and nginx ready:\n%s", code, out)
	}
	if out, code := clusterScript(t, env, "start"); code == 0 || !strings.Contains(out, "already running") {
		t.Errorf("a second start: exit %d, want a refusal:\n%s", code, out)
	}

	// Through nginx: a call, a socket (anonymous, as the script allows on
	// loopback), a webhook delivered to it.
	b, _ := json.Marshal(map[string]string{"call_sid": "EL_local", "conversation_id": "conv_local", "status": "in-progress"})
	req, _ := http.NewRequest(http.MethodPost, url+"/api/calls", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer cluster-api-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/calls through nginx: %v %v", resp, err)
	}
	resp.Body.Close()
	ws := wstest.Dial(t, strings.Replace(url, "http://", "ws://", 1)+"/ws/calls/transcriptions")
	ws.Welcome()
	ws.Send(map[string]string{"type": "subscribe", "id": "s", "call": "EL_local", "since": "0"})
	ws.Expect("subscribed")
	if f := ws.Expect("event"); f.EventID != "1" || !bytes.Contains(f.Raw, []byte(`"status"`)) {
		t.Fatalf("first event %s, want the call's status", f.Raw)
	}
	body := liveWebhook("EL_local", 1)
	req, _ = http.NewRequest(http.MethodPost, url+"/webhooks/transcription", bytes.NewReader(body))
	req.Header.Set(calls.SignatureHeader, calls.Sign([]byte("cluster-webhook-secret"), time.Now(), body))
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook through nginx: %v %v", resp, err)
	}
	resp.Body.Close()
	if f := ws.Expect("event"); f.EventID != "2" || !bytes.Contains(f.Raw, []byte(`"utterance-1"`)) {
		t.Fatalf("event %s, want the webhook's", f.Raw)
	}

	out, code = clusterScript(t, env, "stop")
	if code != 0 {
		t.Fatalf("cluster.sh stop: exit %d\n%s", code, out)
	}
	if err := ws.Closed(); wstest.CloseCode(err) != 1001 {
		t.Errorf("socket after stop: %v, want closed with 1001", err)
	}
	for name, pid := range pids {
		if running(pid) {
			t.Errorf("%s (pid %d) still running after stop", name, pid)
		}
	}
	if out, code := clusterScript(t, env, "status"); code == 0 || strings.Contains(out, "running") {
		t.Errorf("cluster.sh status after stop: exit %d, want 1 and nothing running:\n%s", code, out)
	}
}

var redisVariableLine = regexp.MustCompile(`(?m)^(CALLGATE_REDIS_[A-Z]+)=(\S+)$`)

// TestLocalRedisScript starts Redis alone with cluster.sh --redis cluster
// and --redis sentinel redis, uses it with the URL the script prints, and
// stops and starts it again: the data is kept.
func TestLocalRedisScript(t *testing.T) {
	for _, mode := range []string{"cluster", "sentinel"} {
		t.Run(mode, func(t *testing.T) {
			bins := requireBins(t, "redis-server", "redis-cli")
			state := t.TempDir()
			r := newLocalRedis(t, mode, state)
			env := cleanEnv(append(r.env,
				"CALLGATE_STATE_DIR="+state,
				"REDIS_SERVER_BIN="+bins[0],
				"REDIS_CLI_BIN="+bins[1],
			)...)
			stopLocal(t, env, state)
			ctx := context.Background()
			for round := range 2 {
				began := time.Now()
				out, code := clusterScript(t, env, "--redis", mode, "redis")
				if code != 0 {
					t.Fatalf("cluster.sh --redis %s redis: exit %d\n%s", mode, code, out)
				}
				t.Logf("%s up in %s", mode, time.Since(began).Round(time.Millisecond))
				m := redisVariableLine.FindStringSubmatch(out)
				if m == nil || m[1] != r.variable || !strings.Contains(out, "'"+m[2]+"'") {
					t.Fatalf("cluster.sh does not print %s=… and the flag:\n%s", r.variable, out)
				}
				pids := checkRunning(t, state, r.pids)
				rdb := localRedisClient(t, mode, m[2])
				if round == 0 {
					if err := rdb.Set(ctx, "local-check", "kept", 0).Err(); err != nil {
						t.Fatal(err)
					}
					if out, code := clusterScript(t, env, "status"); code != 0 || strings.Count(out, " running ") != len(r.pids) {
						t.Errorf("cluster.sh status: exit %d, want %d running:\n%s", code, len(r.pids), out)
					}
					if out, code := clusterScript(t, env, "--redis", mode, "redis"); code == 0 || !strings.Contains(out, "already running") {
						t.Errorf("a second start: exit %d, want a refusal:\n%s", code, out)
					}
				} else if v, err := rdb.Get(ctx, "local-check").Result(); v != "kept" {
					t.Errorf("after a restart: %q %v, want the value written before", v, err)
				}
				rdb.Close()
				if out, code := clusterScript(t, env, "stop"); code != 0 {
					t.Fatalf("cluster.sh stop: exit %d\n%s", code, out)
				}
				for name, pid := range pids {
					if running(pid) {
						t.Errorf("%s (pid %d) still running after stop", name, pid)
					}
				}
			}
			if out, code := clusterScript(t, env, "status"); code == 0 || strings.Contains(out, "running") {
				t.Errorf("cluster.sh status after stop: exit %d, want 1 and nothing running:\n%s", code, out)
			}
		})
	}
}

// localRedisClient connects to what the script printed, and checks the
// deployment's shape: three masters with a replica each, or a primary
// with one replica watched by three Sentinels.
func localRedisClient(t *testing.T, mode, url string) redis.UniversalClient {
	t.Helper()
	ctx := context.Background()
	if mode == "cluster" {
		o, err := redis.ParseClusterURL(url)
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClusterClient(o)
		nodes, err := c.ClusterNodes(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		roles := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
			if f := strings.Fields(line); len(f) >= 8 && f[7] == "connected" {
				roles[strings.TrimPrefix(f[2], "myself,")]++
			}
		}
		if roles["master"] != 3 || roles["slave"] != 3 || len(roles) != 2 {
			t.Errorf("CLUSTER NODES: %v connected, want 3 masters and 3 replicas:\n%s", roles, nodes)
		}
		return c
	}
	o, err := redis.ParseFailoverURL(url)
	if err != nil {
		t.Fatal(err)
	}
	s := redis.NewSentinelClient(&redis.Options{Addr: o.SentinelAddrs[0]})
	defer s.Close()
	m, err := s.Master(ctx, o.MasterName).Result()
	if err != nil {
		t.Fatal(err)
	}
	if m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" || m["flags"] != "master" {
		t.Errorf("Sentinel sees %v; want the primary, one replica and two other Sentinels", m)
	}
	return redis.NewFailoverClient(o)
}
