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
	cmd := exec.Command(bin,
		"--port", fmt.Sprint(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"),
	)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
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
	return &Server{Addr: addr, Real: true}
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
