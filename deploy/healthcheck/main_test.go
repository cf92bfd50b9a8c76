package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestTarget(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"", "http://127.0.0.1:8080/readyz"},
		{":9000", "http://127.0.0.1:9000/readyz"},
		{"0.0.0.0:9000", "http://127.0.0.1:9000/readyz"},
		{"[::]:9000", "http://127.0.0.1:9000/readyz"},
		{"127.0.0.2:9000", "http://127.0.0.2:9000/readyz"},
		{"[::1]:9000", "http://[::1]:9000/readyz"},
	} {
		got, err := target(tc.addr, "/readyz")
		if err != nil || got != tc.want {
			t.Errorf("target(%q) = %q, %v; want %q", tc.addr, got, err, tc.want)
		}
	}
	if _, err := target("8080", "/readyz"); err == nil {
		t.Error("target(\"8080\"): want an error for an address without a port separator")
	}
}

func TestCheck(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz":
			w.Write([]byte(`{"status":"ok"}`))
		case r.URL.Path == "/readyz" && ready.Load():
			w.Write([]byte(`{"status":"ready"}`))
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"status":"draining"}`))
		}
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	addr := ":" + port

	if err := check(addr, "/readyz", time.Second); err != nil {
		t.Fatalf("ready instance: %v", err)
	}
	ready.Store(false)
	err := check(addr, "/readyz", time.Second)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("draining instance: got %v, want a 503 error", err)
	}
	if err := check(addr, "/healthz", time.Second); err != nil {
		t.Fatalf("live instance: %v", err)
	}
	srv.Close()
	if err := check(addr, "/healthz", time.Second); err == nil {
		t.Fatal("stopped instance: want an error")
	}
}
