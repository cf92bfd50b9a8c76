package main

import (
	"net/http"
	"net/http/pprof"
	"time"
)

// serveDebug serves pprof profiles on --debug-addr until the process ends.
func (a *app) serveDebug() {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	srv := &http.Server{Addr: a.cfg.DebugAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	a.log.Warn("serving pprof profiles", "addr", a.cfg.DebugAddr)
	if err := srv.ListenAndServe(); err != nil {
		a.log.Error("debug server stopped", "err", err)
	}
}
