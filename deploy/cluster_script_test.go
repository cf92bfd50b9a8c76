package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
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

// TestLocalClusterScript starts the no-Docker cluster with
// deploy/local/cluster.sh on free ports, uses it through nginx, and stops
// it.
func TestLocalClusterScript(t *testing.T) {
	nginx, redis := requireTools(t)
	state := t.TempDir()
	httpPort := freePort(t)
	ports := []string{strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))}
	env := cleanEnv(
		"CALLGATE_STATE_DIR="+state,
		fmt.Sprintf("CALLGATE_HTTP_PORT=%d", httpPort),
		"CALLGATE_INSTANCE_PORTS="+strings.Join(ports, " "),
		fmt.Sprintf("CALLGATE_REDIS_PORT=%d", freePort(t)),
		"CALLGATE_WEBHOOK_SECRET=cluster-webhook-secret",
		"CALLGATE_API_KEY=cluster-api-key",
		"CALLGATE_SHUTDOWN_TIMEOUT=5s",
		"CALLGATE_LOG_LEVEL=warn",
		"NGINX_BIN="+nginx,
		"REDIS_SERVER_BIN="+redis,
	)
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"logs/gateway-1.log", "logs/redis.log", "nginx/error.log"} {
				b, _ := os.ReadFile(filepath.Join(state, f))
				t.Logf("--- %s:\n%s", f, b)
			}
		}
		clusterScript(t, env, "stop")
		// Whatever stop left behind.
		for _, pid := range pidsIn(t, state) {
			if p, err := os.FindProcess(pid); err == nil && running(pid) {
				p.Kill()
			}
		}
	})

	out, code := clusterScript(t, env, "start")
	if code != 0 {
		t.Fatalf("cluster.sh start: exit %d\n%s", code, out)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	for _, want := range []string{url, "ws://127.0.0.1:" + strconv.Itoa(httpPort) + "/ws/calls/transcriptions", "http://127.0.0.1:" + ports[2]} {
		if !strings.Contains(out, want) {
			t.Errorf("cluster.sh start does not print %s:\n%s", want, out)
		}
	}
	pids := pidsIn(t, state)
	for _, name := range []string{"redis.pid", "gateway-1.pid", "gateway-2.pid", "gateway-3.pid", "nginx.pid"} {
		if pid, ok := pids[name]; !ok || !running(pid) {
			t.Errorf("%s: no running process (%v)", name, pids)
		}
	}
	if fi, err := os.Stat(filepath.Join(state, "redis", "appendonlydir")); err != nil || !fi.IsDir() {
		t.Errorf("redis-server does not write an append-only file in the state directory: %v", err)
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
