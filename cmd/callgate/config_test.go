package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigRequiresSecretsOutsideDev(t *testing.T) {
	_, err := parseConfig(nil, env(nil), io.Discard)
	if err == nil {
		t.Fatal("started without --dev and without Redis, secret and key")
	}
	for _, want := range []string{"--redis-url (CALLGATE_REDIS_URL)", "--webhook-secret (CALLGATE_WEBHOOK_SECRET)", "--api-key (CALLGATE_API_KEY)", "--allow-anonymous"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, err := parseConfig([]string{"--dev"}, env(nil), io.Discard); err != nil {
		t.Fatalf("--dev alone: %v", err)
	}
}

func TestConfigFromEnvironment(t *testing.T) {
	c, err := parseConfig([]string{"--addr", ":9999"}, env(map[string]string{
		"CALLGATE_ADDR":           ":7777", // the flag wins
		"CALLGATE_REDIS_URL":      "redis://127.0.0.1:6379/2",
		"CALLGATE_WEBHOOK_SECRET": "new, old",
		"CALLGATE_API_KEY":        "k1",
		"CALLGATE_JWT_SECRET":     "j1",
		"CALLGATE_SEND_QUEUE":     "17",
		"CALLGATE_CALL_TTL":       "1h",
		"CALLGATE_LOG_LEVEL":      "debug",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":9999" || c.RedisURL != "redis://127.0.0.1:6379/2" || c.SendQueue != 17 ||
		c.CallTTL != time.Hour || c.LogLevel.String() != "DEBUG" || c.LogFormat != "json" ||
		strings.Join(c.WebhookSecrets, "|") != "new|old" || strings.Join(c.APIKeys, "|") != "k1" {
		t.Fatalf("config %+v", c)
	}
}

func TestConfigRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--dev", "--redis-url", "http://x"}, nil, "--redis-url"},
		{[]string{"--dev", "--addr", "8080"}, nil, "--addr"},
		{[]string{"--dev", "--send-queue", "0"}, nil, "--send-queue"},
		{[]string{"--dev", "--log-format", "xml"}, nil, "--log-format"},
		{[]string{"--dev", "--allowed-origins", "dash.example.com"}, nil, "--allowed-origins"},
		{[]string{"--dev"}, map[string]string{"CALLGATE_PONG_WAIT": "soon"}, "CALLGATE_PONG_WAIT"},
		{[]string{"--dev", "stray"}, nil, "unexpected argument"},
		{[]string{"--dev", "--webhook-body-budget", "1048576"}, nil, "--webhook-body-budget (CALLGATE_WEBHOOK_BODY_BUDGET) must be at least --max-post-call-body"},
		{[]string{"--dev"}, map[string]string{"CALLGATE_UNSUBSCRIBE_LINGER": "-1s"}, "--unsubscribe-linger (CALLGATE_UNSUBSCRIBE_LINGER) must not be negative"},
		{[]string{"--dev", "--addr", "127.0.0.1:99999"}, nil, "a port from 0 to 65535"},
		{[]string{"--dev", "--addr", "127.0.0.1:http"}, nil, "--addr"},
		{[]string{"--dev", "--addr", "127.0.0.1:"}, nil, "--addr"},
		{[]string{"--dev", "--addr", "exa mple.com:80"}, nil, "--addr"},
		{[]string{"--dev", "--addr", "-bad-:80"}, nil, "--addr"},
		{[]string{"--dev", "--debug-addr", "localhost:70000"}, nil, "--debug-addr"},
		{[]string{"--dev"}, map[string]string{"CALLGATE_PONG_WAIT": "60"}, `CALLGATE_PONG_WAIT="60": want a duration with a unit, like 90s`},
		{[]string{"--dev", "--call-ttl", "7d"}, nil, `invalid value "7d" for flag -call-ttl: want a duration with a unit`},
		{[]string{"--dev", "--send-queue", "many"}, nil, "want a whole number"},
		{[]string{"--dev", "--max-frame-rate", "fast"}, nil, "want a number"},
		{[]string{"--dev=maybe"}, nil, "want true or false"},
		{[]string{"--dev", "--log-level", "loud"}, nil, "want debug, info, warn or error"},
	} {
		_, err := parseConfig(tc.args, env(tc.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want one naming %s", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestRefusesToStartWithoutRedis(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	cfg, err := parseConfig([]string{"--redis-url", "redis://" + addr, "--webhook-secret", "s", "--api-key", "k", "--jwt-secret", "j", "--addr", "127.0.0.1:0"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, err = newApp(context.Background(), cfg, newLogger(cfg, io.Discard))
	if err == nil || !strings.Contains(err.Error(), "cannot reach Redis") || !strings.Contains(err.Error(), addr) {
		t.Fatalf("got %v", err)
	}
}

// TestDevListensOnLoopback: --dev serves an open API and unsigned
// webhooks, so it listens on 127.0.0.1 unless --addr or CALLGATE_ADDR says
// otherwise, and its banner says who can reach it.
func TestDevListensOnLoopback(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--dev"}, nil, "127.0.0.1:8080"},
		{[]string{"--dev", "--addr", ":9000"}, nil, ":9000"},
		{[]string{"--dev"}, map[string]string{"CALLGATE_ADDR": ":9001"}, ":9001"},
		{[]string{"--redis-url", "redis://127.0.0.1:1", "--webhook-secret", "s", "--api-key", "k", "--allow-anonymous"}, nil, ":8080"},
	} {
		c, err := parseConfig(tc.args, env(tc.env), io.Discard)
		if err != nil || c.Addr != tc.want {
			t.Errorf("%v %v: addr %q (%v), want %q", tc.args, tc.env, c.Addr, err, tc.want)
		}
	}
	for addr, want := range map[string]string{
		"127.0.0.1:8080": "this machine only",
		"[::1]:8080":     "this machine only",
		":8080":          "NOT only this machine",
		"0.0.0.0:8080":   "NOT only this machine",
		"10.1.2.3:8080":  "NOT only this machine",
	} {
		if got := reach(addr); !strings.HasPrefix(got, want) {
			t.Errorf("reach(%q) = %q, want %q…", addr, got, want)
		}
	}

	cfg, err := parseConfig([]string{"--dev", "--addr", "127.0.0.1:0"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a := serveApp(t, cfg, io.Discard)
	var banner strings.Builder
	printDevBanner(&banner, cfg, a)
	if want := "Listening on " + a.addr() + ": this machine only"; !strings.Contains(banner.String(), want) {
		t.Errorf("banner does not say %q:\n%s", want, banner.String())
	}
}

func TestConfigAcceptsListenAddresses(t *testing.T) {
	for _, addr := range []string{":8080", ":0", "127.0.0.1:65535", "[::1]:80", "[fe80::1%eth0]:80", "localhost:1", "gw-1.internal.example.com.:8080"} {
		if _, err := parseConfig([]string{"--dev", "--addr", addr, "--debug-addr", addr}, env(nil), io.Discard); err != nil {
			t.Errorf("--addr %s: %v", addr, err)
		}
	}
}

// TestBadFlagIsReportedShortly: a flag that does not parse is reported
// with a pointer to -h, not drowned in the whole usage; -h prints it.
func TestBadFlagIsReportedShortly(t *testing.T) {
	for _, args := range [][]string{{"--nope"}, {"--pong-wait", "60"}, {"--dev", "stray"}} {
		var out bytes.Buffer
		_, err := parseConfig(args, env(nil), &out)
		if err == nil || !strings.HasSuffix(err.Error(), "\n"+helpHint) || strings.Count(err.Error(), "\n") != 1 {
			t.Errorf("%v: error %q, want one line and %q", args, err, helpHint)
		}
		if out.Len() != 0 {
			t.Errorf("%v: printed %q besides the error", args, out.String())
		}
	}
	var out bytes.Buffer
	if _, err := parseConfig([]string{"-h"}, env(nil), &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, want := range []string{"Usage: callgate", "  -pong-wait duration\n", `(default ":8080")`, "  -dev\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-h output lacks %q:\n%s", want, out.String())
		}
	}
}
