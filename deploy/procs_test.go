package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/porttest"
)

// requireTools returns the paths of nginx and redis-server. Without them
// the test is skipped, unless CALLGATE_TEST_NGINX=1 asks for it to run
// (as CI does): then it fails.
func requireTools(t *testing.T) (nginx, redisServer string) {
	t.Helper()
	p := requireBins(t, "nginx", "redis-server")
	return p[0], p[1]
}

// requireBins returns the paths of the programs named, as requireTools
// does.
func requireBins(t *testing.T, names ...string) []string {
	t.Helper()
	required := os.Getenv("CALLGATE_TEST_NGINX") != "" && os.Getenv("CALLGATE_TEST_NGINX") != "0"
	if testing.Short() && !required {
		t.Skipf("-short: skipping the test with %s", strings.Join(names, " and "))
	}
	var missing, paths []string
	find := func(name string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		// Debian installs nginx in /usr/sbin, not on every PATH.
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
			if p := filepath.Join(dir, name); isExecutable(p) {
				return p
			}
		}
		missing = append(missing, name)
		return ""
	}
	for _, name := range names {
		paths = append(paths, find(name))
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("%s not found on PATH (Debian: apt-get install nginx redis-server)", strings.Join(missing, " and "))
		if required {
			t.Fatalf("CALLGATE_TEST_NGINX is set but %s", msg)
		}
		t.Skipf("%s; set CALLGATE_TEST_NGINX=1 to make this a failure", msg)
	}
	return paths
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// buildCallgate builds ./cmd/callgate into a temporary directory.
func buildCallgate(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "callgate")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/callgate")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/callgate: %v\n%s", err, out)
	}
	return bin
}

// freePort returns a loopback port for a server the test starts (see
// porttest).
func freePort(t *testing.T) int { return porttest.Free(t) }

// cleanEnv is this process's environment without CALLGATE_* variables,
// plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CALLGATE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// proc is a process started by a test.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string // its stdout and stderr
	done chan struct{}
	err  error // from Wait, once done is closed
}

// startProc starts a process whose output goes to a file in the test's
// temporary directory. When the test ends it is sent stop and, if it has
// not exited 10 s later, killed; if the test failed, its output is logged.
func startProc(t *testing.T, name string, stop syscall.Signal, argv []string, env []string, logs ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	out, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = out, out
	dieWithTest(p.cmd, stop)
	if err := p.cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		out.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Signal(stop)
			if !p.waitExit(10 * time.Second) {
				t.Logf("%s did not stop on %v: killing it", name, stop)
				p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			for _, f := range append([]string{p.log}, logs...) {
				b, _ := os.ReadFile(f)
				if len(b) > 8000 {
					b = append([]byte("…"), b[len(b)-8000:]...)
				}
				t.Logf("--- %s (%s):\n%s", name, filepath.Base(f), b)
			}
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitExit waits up to d for the process to exit.
func (p *proc) waitExit(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// waitHTTP waits until GET url answers 200, failing the test after
// timeout or if p exits first. It polls: a starting process gives no other
// sign that it is ready, and readiness is what a load balancer polls too.
func waitHTTP(t *testing.T, p *proc, url string, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if p != nil && p.exited() {
			b, _ := os.ReadFile(p.log)
			t.Fatalf("%s exited (%v) before %s answered:\n%s", p.name, p.err, url, b)
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond) // polling a starting process
	}
	t.Fatalf("GET %s: not 200 within %s (last: %s)", url, timeout, last)
}

// waitRedis waits until Redis on port answers PING, polling the starting
// process as waitHTTP does.
func waitRedis(t *testing.T, p *proc, port int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.exited() {
			b, _ := os.ReadFile(p.log)
			t.Fatalf("redis-server exited (%v):\n%s", p.err, b)
		}
		if redisPing(port) == nil {
			return
		}
		time.Sleep(50 * time.Millisecond) // polling a starting process
	}
	t.Fatalf("redis-server on port %d: no PONG within %s", port, timeout)
}

func redisPing(port int) error {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(buf[:n], []byte("+PONG")) {
		return errors.New("no PONG")
	}
	return nil
}
