// Command callgate-healthcheck asks the callgate instance in the same
// container whether it is ready, for container health checks in images
// that have no shell, curl or wget (distroless, scratch).
//
//	callgate-healthcheck            GET /readyz, exit 0 on 200, 1 otherwise
//	callgate-healthcheck -path /healthz
//
// It finds the port in CALLGATE_ADDR (default :8080), the same variable the
// gateway listens on, and connects to the loopback address unless the
// gateway listens on one specific host.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	path := flag.String("path", "/readyz", "path to ask: /readyz (ready for traffic) or /healthz (alive)")
	timeout := flag.Duration("timeout", 3*time.Second, "give up after this long")
	flag.Parse()
	if err := check(os.Getenv("CALLGATE_ADDR"), *path, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "callgate-healthcheck:", err)
		os.Exit(1)
	}
}

// target is the URL to ask, from the gateway's listen address.
func target(addr, path string) (string, error) {
	if addr == "" {
		addr = ":8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("CALLGATE_ADDR %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

// check returns nil when the gateway at addr answers path with 200.
func check(addr, path string, timeout time.Duration) error {
	url, err := target(addr, path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return nil
}
