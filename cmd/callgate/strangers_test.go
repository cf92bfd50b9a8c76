package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/internal/redistest"
)

// rawPost opens a connection and sends the head of a POST whose body is
// declared to be size bytes; with expect it asks "Expect: 100-continue", so
// that the server must say whether it wants the body before any is sent.
func (in *instance) rawPost(path string, size int64, sig string, expect bool) (net.Conn, *bufio.Reader) {
	in.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(in.url, "http://"))
	if err != nil {
		in.t.Fatal(err)
	}
	in.t.Cleanup(func() { conn.Close() })
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: callgate\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", path, size)
	if expect {
		head += "Expect: 100-continue\r\n"
	}
	if sig != "" {
		head += calls.SignatureHeader + ": " + sig + "\r\n"
	}
	if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
		in.t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// readAnswer reads one response (an interim 100 Continue too) and its
// error code, if any.
func readAnswer(t *testing.T, r *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusContinue {
		return resp, ""
	}
	defer resp.Body.Close()
	var out struct{ Code string }
	json.NewDecoder(resp.Body).Decode(&out)
	return resp, out.Code
}

// TestWebhookRefusedBeforeBody: a webhook whose signature header is
// missing, malformed, stale or from the future is answered 401 before the
// server reads any of its body. The client asks "Expect: 100-continue":
// a server that wanted the body would say 100 Continue first.
func TestWebhookRefusedBeforeBody(t *testing.T) {
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "a")
	mac := strings.Repeat("ab", 32)
	now := time.Now()
	for _, path := range []string{"/webhooks/elevenlabs", "/webhooks/transcription"} {
		for name, sig := range map[string]string{
			"no signature":     "",
			"malformed":        "sha256=" + mac,
			"upper-case hex":   fmt.Sprintf("t=%d,v0=%s", now.Unix(), strings.ToUpper(mac)),
			"an hour old":      fmt.Sprintf("t=%d,v0=%s", now.Add(-time.Hour).Unix(), mac),
			"an hour from now": fmt.Sprintf("t=%d,v0=%s", now.Add(time.Hour).Unix(), mac),
		} {
			_, r := in.rawPost(path, 60<<20, sig, true)
			if resp, code := readAnswer(t, r); resp.StatusCode != http.StatusUnauthorized || code != calls.CodeBadSignature {
				t.Errorf("%s, %s: first answer %d %q, want 401 bad_signature without asking for the body", path, name, resp.StatusCode, code)
			}
		}
	}

	// Without Expect the client starts sending; the answer comes while
	// almost all of the 60 MB are still unsent.
	conn, r := in.rawPost("/webhooks/elevenlabs", 60<<20, "", false)
	if _, err := conn.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	// A guard, not a measure: a server that reads the body never answers
	// before the rest is sent.
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if resp, code := readAnswer(t, r); resp.StatusCode != http.StatusUnauthorized || code != calls.CodeBadSignature {
		t.Errorf("unsigned 60 MB post: %d %q, want 401 bad_signature", resp.StatusCode, code)
	}
}

// TestWebhookBodyBudget: large webhooks with well-formed, fresh but wrong
// signatures must be read before the HMAC can refuse them. At most
// --webhook-body-budget bytes of them are held at once: eight 4 MiB bodies
// against a 10 MiB budget are two read and six answered 503 busy without
// being read. Once the two are refused, the budget is free again.
func TestWebhookBodyBudget(t *testing.T) {
	const (
		budget = 10 << 20
		size   = 4 << 20
	)
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "a", func(c *config) {
		c.WebhookBodyBudget, c.MaxPostCallBody = budget, 8<<20
	})
	forged := calls.Sign([]byte("not-the-secret"), time.Now(), nil)
	type held struct {
		conn net.Conn
		r    *bufio.Reader
	}
	var reading []held
	busy := 0
	for range 8 {
		conn, r := in.rawPost("/webhooks/elevenlabs", size, forged, true)
		resp, code := readAnswer(t, r)
		switch {
		case resp.StatusCode == http.StatusContinue:
			reading = append(reading, held{conn, r})
		case resp.StatusCode == http.StatusServiceUnavailable && code == calls.CodeBusy && resp.Header.Get("Retry-After") == "1":
			busy++
		default:
			t.Fatalf("answer %d %q (Retry-After %q), want 100 Continue or 503 busy", resp.StatusCode, code, resp.Header.Get("Retry-After"))
		}
	}
	if len(reading) != budget/size || busy != 8-budget/size {
		t.Fatalf("%d bodies read at once and %d refused busy, want %d and %d", len(reading), busy, budget/size, 8-budget/size)
	}
	m := in.scrape()
	if got := m["callgate_webhook_unverified_bytes"]; got != float64(len(reading)*size) || got > budget {
		t.Errorf("callgate_webhook_unverified_bytes = %v, want %d (budget %d)", got, len(reading)*size, budget)
	}
	if got := m["callgate_webhook_busy_total"]; got != float64(busy) {
		t.Errorf("callgate_webhook_busy_total = %v, want %d", got, busy)
	}

	for _, h := range reading {
		if _, err := h.conn.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		if resp, code := readAnswer(t, h.r); resp.StatusCode != http.StatusUnauthorized || code != calls.CodeBadSignature {
			t.Errorf("forged 4 MiB body: %d %q, want 401 bad_signature", resp.StatusCode, code)
		}
	}
	if got := in.scrape()["callgate_webhook_unverified_bytes"]; got != 0 {
		t.Errorf("after the answers callgate_webhook_unverified_bytes = %v, want 0", got)
	}
	if status, out := in.webhook("/webhooks/elevenlabs", fixture(t, "unknown_type.json")); status != http.StatusOK {
		t.Errorf("signed webhook after the budget was given back: %d %v", status, out)
	}
}
