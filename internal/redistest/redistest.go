// Package redistest starts the Redis server a test runs against: an
// in-process miniredis by default, or a real redis-server process when
// CALLGATE_TEST_REDIS=real. Both listen on loopback TCP, so several gateway
// instances in one test can share them.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Server is a running Redis server owned by one test.
type Server struct {
	// Addr is the server's host:port on loopback.
	Addr string
	// Real reports whether this is a real redis-server process.
	Real bool
	// Mini is the miniredis server, nil when Real.
	Mini *miniredis.Miniredis

	// The real server's command line and process.
	bin  string
	args []string
	dir  string
	cmd  *exec.Cmd
}

// URL returns a redis:// URL for the server.
func (s *Server) URL() string { return "redis://" + s.Addr }

// Client returns a go-redis client for the server, closed at test cleanup.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { c.Close() })
	return c
}

var prefixes atomic.Int64

// Prefix returns a key prefix that no other test in this process uses, so
// tests can share one server without seeing each other's keys.
func Prefix(t testing.TB) string {
	return fmt.Sprintf("cgtest%d-%d", os.Getpid(), prefixes.Add(1))
}

// Start starts a server for t and stops it when t ends. With
// CALLGATE_TEST_REDIS=real it requires redis-server on PATH and fails the
// test (never skips) when it is missing.
func Start(t testing.TB) *Server {
	t.Helper()
	switch mode := os.Getenv("CALLGATE_TEST_REDIS"); mode {
	case "", "mini", "miniredis":
		m := miniredis.RunT(t)
		return &Server{Addr: m.Addr(), Mini: m}
	case "real":
		return startReal(t)
	default:
		t.Fatalf("CALLGATE_TEST_REDIS=%q: want \"real\" or unset", mode)
		return nil
	}
}

func startReal(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("CALLGATE_TEST_REDIS=real but redis-server is not on PATH: %v", err)
	}
	dir := t.TempDir()
	port := freePort(t)
	s := &Server{
		Addr: fmt.Sprintf("127.0.0.1:%d", port),
		Real: true,
		bin:  bin,
		dir:  dir,
		args: []string{
			"--port", fmt.Sprint(port),
			"--bind", "127.0.0.1",
			"--save", "",
			"--appendonly", "no",
			"--dir", dir,
			"--logfile", filepath.Join(dir, "redis.log"),
		},
	}
	s.run(t)
	t.Cleanup(func() {
		if s.cmd != nil {
			_ = s.cmd.Process.Kill()
			_ = s.cmd.Wait()
		}
	})
	return s
}

// Stop stops the server, keeping its data for Restart.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if !s.Real {
		s.Mini.Close()
		return
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()
	// SHUTDOWN SAVE writes a snapshot even though --save is off; the
	// command's connection closes without a reply.
	_ = c.Do(context.Background(), "SHUTDOWN", "SAVE").Err()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart starts a stopped server again on the same address, with its
// data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if !s.Real {
		if err := s.Mini.Restart(); err != nil {
			t.Fatalf("restart miniredis: %v", err)
		}
		return
	}
	s.run(t)
}

// run starts the real server process and waits until it answers.
func (s *Server) run(t testing.TB) {
	t.Helper()
	s.cmd = exec.Command(s.bin, s.args...)
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	addr, dir := s.Addr, s.dir
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server on %s did not answer: %v\n%s", addr, err, tail(string(log)))
		}
		time.Sleep(20 * time.Millisecond) // polling a starting process, not synchronising test logic
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(s string) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
