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
	if h, p, err := net.SplitHostPort(host); err == nil && (h == "::" || h == "0.0.0.0" || h == "") {
		host = "localhost:" + p
	}
	a.log.Warn("DEVELOPMENT MODE: not for production",
		"embedded_redis", a.mini != nil,
		"webhooks_signed", len(cfg.WebhookSecrets) > 0,
		"api_key_required", len(cfg.APIKeys) > 0)
	fmt.Fprintf(w, `
==================================================================
 callgate DEVELOPMENT MODE -- do not expose this instance.
 Redis: %s.  Webhook signatures: %s.  API key: %s.
 Socket tokens: %[5]s.
------------------------------------------------------------------
 1. Register a call:
    curl -s -X POST http://%[4]s/api/calls \
      -d '{"call_sid":"EL_demo","conversation_id":"conv_demo"}'

 2. Subscribe (in another terminal; any WebSocket client):
    websocat ws://%[4]s/ws/calls/transcriptions
    {"type":"subscribe","id":"1","call":"EL_demo"}

 3. Post a live transcript event:
    curl -s -X POST http://%[4]s/webhooks/transcription \
      -d '{"call_sid":"EL_demo","event":{"type":"user_transcript","user_transcription_event":{"user_transcript":"Hello!","event_id":1}}}'
%[6]s==================================================================

`, describeRedis(a), onOff(len(cfg.WebhookSecrets) > 0, "checked", "NOT checked"),
		onOff(len(cfg.APIKeys) > 0, "required", "NOT required"), host,
		socketAuth(cfg), viewerLine(cfg, host))
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
