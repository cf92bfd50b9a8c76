package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// listenDebug listens on --debug-addr and returns the server of Go's
// pprof profiles, which serveDebug runs.
func listenDebug(addr string) (*http.Server, net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--debug-addr: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln, nil
}

// serveDebug serves the pprof profiles until stopDebug. It runs in its
// own goroutine, started by serve.
func (a *app) serveDebug() {
	defer close(a.debugDone)
	a.log.Warn("serving pprof profiles", "addr", a.debugLn.Addr().String())
	if err := a.debug.Serve(a.debugLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.log.Error("debug server stopped", "err", err)
	}
}

// stopDebug lets the profiles being taken finish until ctx ends, cuts
// them off then, and waits for serveDebug to return.
func (a *app) stopDebug(ctx context.Context) {
	if a.debug == nil {
		return
	}
	if err := a.debug.Shutdown(ctx); err != nil {
		_ = a.debug.Close()
	}
	select {
	case <-a.debugDone:
	case <-ctx.Done():
	}
}
