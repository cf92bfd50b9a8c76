package main

import (
	"fmt"
	"io"
	"net"
)

// printDevBanner says loudly that nothing is protected, and shows how to
// try the gateway.
func printDevBanner(w io.Writer, cfg config, a *app) {
	host := a.addr()
	if h, p, err := net.SplitHostPort(host); err == nil && (h == "::" || h == "0.0.0.0" || h == "" || h == "127.0.0.1") {
		host = "localhost:" + p
	}
	a.log.Warn("DEVELOPMENT MODE: not for production", "addr", a.addr(),
		"embedded_redis", a.mini != nil,
		"webhooks_signed", len(cfg.WebhookSecrets) > 0,
		"api_key_required", len(cfg.APIKeys) > 0)
	fmt.Fprintf(w, `
==================================================================
 callgate DEVELOPMENT MODE -- do not expose this instance.
 Redis: %s.  Webhook signatures: %s.  API key: %s.
 Socket tokens: %[5]s.
 Listening on %[6]s: %[7]s.
------------------------------------------------------------------
 1. Register a call:
    curl -s -X POST http://%[4]s/api/calls \
      -d '{"call_sid":"EL_demo","conversation_id":"conv_demo"}'

 2. Follow it, in another terminal (with a built binary: callgate tail …):
    go run ./cmd/callgate tail%[8]s EL_demo

 3. Post a live transcript event:
    curl -s -X POST http://%[4]s/webhooks/transcription \
      -d '{"call_sid":"EL_demo","event":{"type":"user_transcript","user_transcription_event":{"user_transcript":"Hello!","event_id":1}}}'
%[9]s==================================================================

`, describeRedis(a), onOff(len(cfg.WebhookSecrets) > 0, "checked", "NOT checked"),
		onOff(len(cfg.APIKeys) > 0, "required", "NOT required"), host,
		socketAuth(cfg), a.addr(), reach(a.addr()), tailURL(host), viewerLine(cfg, host))
}

// reach says who can reach an instance listening on addr.
func reach(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(h); err == nil && ip != nil && ip.IsLoopback() {
		return "this machine only (--addr :PORT listens on every interface)"
	}
	return "NOT only this machine: anyone who reaches this address can use the open API"
}

// tailURL is the --url that callgate tail needs to reach host, none for
// its default.
func tailURL(host string) string {
	if host == "localhost:8080" {
		return ""
	}
	return " --url ws://" + host
}

// viewerLine points to the live viewer, when it is served.
func viewerLine(cfg config, host string) string {
	if !cfg.Viewer {
		return ""
	}
	return fmt.Sprintf("\n Watch it in a browser: http://%s%s?call=EL_demo\n", host, viewerPath)
}

// socketAuth says how sockets authenticate under cfg.
func socketAuth(cfg config) string {
	switch {
	case !cfg.hasTokenVerifier():
		return "NOT checked: every socket is anonymous"
	case cfg.AllowAnonymous:
		return "verified when given; sockets without one are anonymous"
	}
	return "required"
}

func describeRedis(a *app) string {
	if a.mini != nil {
		return "embedded (in memory, lost on exit)"
	}
	return "external"
}

func onOff(b bool, on, off string) string {
	if b {
		return on
	}
	return off
}
