// Package viewer serves the live call viewer: a static page, embedded in
// the binary, that follows a call or a state topic through the gateway's
// own sockets with the TypeScript client of clients/js.
//
// The page is the same for every deployment. It carries nothing of the
// server's configuration: it authenticates as any other client does, with
// a token typed into it (or none where anonymous sockets are allowed), and
// it imports nothing of the gateway.
package viewer

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// assets holds the page. assets/callgate.js is clients/js's dist/index.js
// as tsc builds it; TestClientBuildIsCurrent keeps it so.
//
//go:embed assets
var assets embed.FS

// ContentSecurityPolicy is sent with every answer of the handler. The page
// runs its own two scripts and its stylesheet, talks only to its own
// origin (the sockets; 'self' covers ws: and wss: there), and writes the
// DOM through textContent only, so Trusted Types can forbid every HTML
// sink.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; " +
	"frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"

// contentTypes are the types of the files served, by extension. They are
// fixed here rather than taken from the system's MIME table, which may
// say application/javascript or nothing at all.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// file is one embedded file, ready to serve.
type file struct {
	name  string
	body  []byte
	ctype string
	etag  string
}

type handler struct {
	prefix string
	files  map[string]*file // by path below prefix; "" is index.html
}

// Handler serves the viewer at prefix, which starts and ends with "/"
// (for example "/viewer/"): index.html at prefix itself, the other files
// by name below it, and a redirect from prefix without its slash. It
// answers GET and HEAD; anything else is 405, a name it does not hold 404,
// both with the API's JSON error body.
func Handler(prefix string) http.Handler {
	if !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") || len(prefix) < 2 {
		panic("viewer: prefix must start and end with /: " + prefix)
	}
	h := &handler{prefix: prefix, files: map[string]*file{}}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ctype, ok := contentTypes[path.Ext(p)]
		if !ok {
			return nil
		}
		body, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		name := strings.TrimPrefix(p, "assets/")
		h.files[name] = &file{name: name, body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		panic("viewer: reading the embedded files: " + err.Error())
	}
	h.files[""] = h.files["index.html"]
	delete(h.files, "index.html") // one URL per file
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", ContentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Cross-Origin-Opener-Policy", "same-origin")
	hdr.Set("Cross-Origin-Resource-Policy", "same-origin")
	hdr.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")

	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		fail(w, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed")
		return
	}
	if r.URL.Path == strings.TrimSuffix(h.prefix, "/") {
		// Relative, so that it holds behind a proxy that serves the
		// gateway under a path of its own. http.Redirect would make it
		// absolute.
		target := path.Base(h.prefix) + "/"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		hdr.Set("Location", target)
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, h.prefix)
	f := h.files[name]
	if !ok || f == nil {
		fail(w, http.StatusNotFound, "not_found", "not found")
		return
	}
	hdr.Set("Content-Type", f.ctype)
	hdr.Set("ETag", f.etag)
	// The files change only with the binary: revalidate (cheap, by ETag)
	// so that a new version is never hidden behind a cached old one.
	hdr.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
}

// fail answers as the gateway's router does for its other paths, with the
// API's error body {"code":…,"message":…}: clients match errors on one
// shape everywhere.
func fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{code, msg})
}
