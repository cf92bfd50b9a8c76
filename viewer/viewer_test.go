package viewer

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string, header http.Header) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkHeaders checks the headers every answer carries, errors included.
func checkHeaders(t *testing.T, what string, resp *http.Response) {
	t.Helper()
	for k, want := range map[string]string{
		"Content-Security-Policy": ContentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %s %q, want %q", what, k, got, want)
		}
	}
}

func TestServesTheFiles(t *testing.T) {
	h := Handler("/viewer/")
	for _, tc := range []struct {
		path, ctype, holds string
	}{
		{"/viewer/", "text/html; charset=utf-8", `<script type="module" src="viewer.js">`},
		{"/viewer/?call=CA1", "text/html; charset=utf-8", "<title>callgate live viewer</title>"},
		{"/viewer/viewer.js", "text/javascript; charset=utf-8", `from "./callgate.js"`},
		{"/viewer/callgate.js", "text/javascript; charset=utf-8", "export function connect("},
		{"/viewer/viewer.css", "text/css; charset=utf-8", ".transcript"},
		{"/viewer/icon.svg", "image/svg+xml", "<svg"},
	} {
		resp := get(t, h, http.MethodGet, tc.path, nil)
		b := body(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d, want 200", tc.path, resp.StatusCode)
			continue
		}
		if got := resp.Header.Get("Content-Type"); got != tc.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.ctype)
		}
		if !strings.Contains(b, tc.holds) {
			t.Errorf("GET %s: body does not hold %q", tc.path, tc.holds)
		}
		if resp.Header.Get("Cache-Control") != "no-cache" || resp.Header.Get("ETag") == "" {
			t.Errorf("GET %s: Cache-Control %q, ETag %q: want no-cache and an ETag", tc.path,
				resp.Header.Get("Cache-Control"), resp.Header.Get("ETag"))
		}
		checkHeaders(t, "GET "+tc.path, resp)

		// HEAD: the same headers, no body.
		head := get(t, h, http.MethodHead, tc.path, nil)
		if head.StatusCode != http.StatusOK || body(t, head) != "" || head.Header.Get("Content-Type") != tc.ctype {
			t.Errorf("HEAD %s: %d %q, want 200, %s and no body", tc.path, head.StatusCode, head.Header.Get("Content-Type"), tc.ctype)
		}

		// A cached copy is revalidated by its ETag.
		again := get(t, h, http.MethodGet, tc.path, http.Header{"If-None-Match": {resp.Header.Get("ETag")}})
		if again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d, want 304", tc.path, again.StatusCode)
		}
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	h := Handler("/viewer/")
	for _, p := range []string{
		"/viewer/nope.js",
		"/viewer/index.html", // served at /viewer/ only
		"/viewer/assets/viewer.js",
		"/viewer/viewer.js/",
		"/viewer//viewer.js",
		"/viewer/../viewer/viewer.js",
		"/other/viewer.js",
		"/",
	} {
		resp := get(t, h, http.MethodGet, p, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
		checkError(t, "GET "+p, resp, `{"code":"not_found","message":"not found"}`)
		checkHeaders(t, "GET "+p, resp)
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions} {
		resp := get(t, h, m, "/viewer/", nil)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /viewer/: %d, Allow %q; want 405 and GET, HEAD", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
		checkError(t, m+" /viewer/", resp, `{"code":"method_not_allowed","message":"method not allowed"}`)
		checkHeaders(t, m+" /viewer/", resp)
	}
}

// checkError checks that an error answer has the gateway's JSON error
// body, want.
func checkError(t *testing.T, what string, resp *http.Response, want string) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	if got := strings.TrimSpace(body(t, resp)); got != want {
		t.Errorf("%s: body %s, want %s", what, got, want)
	}
}

func TestRedirectsToTheSlash(t *testing.T) {
	h := Handler("/viewer/")
	for target, want := range map[string]string{
		"/viewer":          "viewer/",
		"/viewer?call=CA1": "viewer/?call=CA1",
	} {
		resp := get(t, h, http.MethodGet, target, nil)
		if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != want {
			t.Errorf("GET %s: %d to %q, want 301 to %q (relative, for proxies that add a path)", target,
				resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
	if loc := get(t, Handler("/tools/live/"), http.MethodGet, "/tools/live", nil).Header.Get("Location"); loc != "live/" {
		t.Errorf("prefix /tools/live/: redirect to %q, want live/", loc)
	}
	if resp := get(t, Handler("/tools/live/"), http.MethodGet, "/tools/live/viewer.js", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("prefix /tools/live/: GET viewer.js %d", resp.StatusCode)
	}
}

func TestBadPrefixPanics(t *testing.T) {
	for _, p := range []string{"", "/", "viewer/", "/viewer"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Handler(%q) did not panic", p)
				}
			}()
			Handler(p)
		}()
	}
}

// TestPageFitsItsPolicy checks what the Content-Security-Policy would
// block: inline scripts, inline styles, event handler attributes, and
// files the page needs that the handler does not serve.
func TestPageFitsItsPolicy(t *testing.T) {
	h := Handler("/viewer/")
	page := body(t, get(t, h, http.MethodGet, "/viewer/", nil))
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`<script(\s[^>]*)?>[^<\s]`), // inline script
		regexp.MustCompile(`<style`),
		regexp.MustCompile(`\sstyle=`),
		regexp.MustCompile(`\son[a-z]+=`),
		regexp.MustCompile(`(?i)javascript:`),
	} {
		if m := bad.FindString(page); m != "" {
			t.Errorf("index.html holds %q, which the policy blocks", m)
		}
	}
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(page, -1) {
		if !strings.Contains(tag, ` src="`) {
			t.Errorf("index.html has %s: a script without src, which the policy blocks", tag)
		}
	}
	refs := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(page, -1)
	js := body(t, get(t, h, http.MethodGet, "/viewer/viewer.js", nil))
	refs = append(refs, regexp.MustCompile(`from "\./([^"]+)"`).FindAllStringSubmatch(js, -1)...)
	if len(refs) < 4 {
		t.Fatalf("found only %v in the page and its script", refs)
	}
	for _, r := range refs {
		if strings.Contains(r[1], ":") || strings.HasPrefix(r[1], "/") {
			t.Errorf("the page loads %q: only files beside it are allowed", r[1])
			continue
		}
		if resp := get(t, h, http.MethodGet, "/viewer/"+r[1], nil); resp.StatusCode != http.StatusOK {
			t.Errorf("the page loads %s, which answers %d", r[1], resp.StatusCode)
		}
	}
	for _, dom := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		if strings.Contains(js, dom) {
			t.Errorf("viewer.js uses %s; the page writes text only (Trusted Types forbid HTML sinks)", dom)
		}
	}
}
