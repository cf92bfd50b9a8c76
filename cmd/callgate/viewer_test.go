package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/callgate/callgate/internal/redistest"
)

func TestViewerFlag(t *testing.T) {
	prod := []string{"--redis-url", "redis://127.0.0.1:6379", "--webhook-secret", "s", "--api-key", "k", "--allow-anonymous"}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want bool
	}{
		{"on with --dev", []string{"--dev"}, nil, true},
		{"--dev --viewer=false", []string{"--dev", "--viewer=false"}, nil, false},
		{"--dev, CALLGATE_VIEWER=false", []string{"--dev"}, map[string]string{"CALLGATE_VIEWER": "false"}, false},
		{"off without --dev", prod, nil, false},
		{"--viewer", append(prod, "--viewer"), nil, true},
		{"CALLGATE_VIEWER=1", prod, map[string]string{"CALLGATE_VIEWER": "1"}, true},
	} {
		c, err := parseConfig(tc.args, env(tc.env), io.Discard)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if c.Viewer != tc.want {
			t.Errorf("%s: viewer %v, want %v", tc.name, c.Viewer, tc.want)
		}
	}
}

// TestViewerRoute checks that the page is served only with the flag, with
// its policy, and that what it is served holds nothing of the server's
// configuration.
func TestViewerRoute(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	off := startInstance(t, srv, prefix, "off")
	const id = "viewer-instance-7f3c"
	on := startInstance(t, srv, prefix, id, func(c *config) { c.Viewer = true })
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(in *instance, method, path string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, in.url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	for _, p := range []string{"/viewer/", "/viewer", "/viewer/viewer.js"} {
		if resp, _ := get(off, http.MethodGet, p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("without --viewer: GET %s %d, want 404", p, resp.StatusCode)
		}
	}

	resp, page := get(on, http.MethodGet, "/viewer/")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("GET /viewer/: %d %q, CSP %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Security-Policy"))
	}
	if resp, _ := get(on, http.MethodGet, "/viewer?call=CA1"); resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "viewer/?call=CA1" {
		t.Errorf("GET /viewer: %d to %q, want 301 to viewer/?call=CA1", resp.StatusCode, resp.Header.Get("Location"))
	}
	for path, want := range map[string]int{"/viewer/nope": 404, "/viewer/../healthz": 404} {
		if resp, _ := get(on, http.MethodGet, path); resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	if resp, _ := get(on, http.MethodPost, "/viewer/"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /viewer/: %d, want 405", resp.StatusCode)
	}
	// The rest of the gateway is unchanged next to it.
	if resp, _ := get(on, http.MethodGet, "/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz next to the viewer: %d", resp.StatusCode)
	}

	// Nothing of the server's configuration reaches the page.
	files := map[string]string{"index.html": page}
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(page, -1) {
		resp, b := get(on, http.MethodGet, "/viewer/"+m[1])
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /viewer/%s: %d", m[1], resp.StatusCode)
		}
		files[m[1]] = b
	}
	if _, ok := files["viewer.js"]; !ok {
		t.Fatalf("the page loads %v, not viewer.js", files)
	}
	_, files["callgate.js"] = get(on, http.MethodGet, "/viewer/callgate.js")
	for name, b := range files {
		for _, secret := range []string{testSecret, testAPIKey, testJWTSecret, prefix, id} {
			if strings.Contains(b, secret) {
				t.Errorf("%s holds %q from the server's configuration", name, secret)
			}
		}
	}
}
