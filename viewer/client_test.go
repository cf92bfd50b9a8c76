package viewer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

var update = flag.Bool("update", false, "rebuild assets/callgate.js from clients/js (needs npm ci there)")

// clientDir is the TypeScript client, relative to this package.
var clientDir = filepath.Join("..", "clients", "js")

// clientSources hashes what assets/callgate.js is built from: the
// client's sources, its compiler settings and the TypeScript version
// pinned in its lockfile.
func clientSources(t *testing.T) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(clientDir, "src", "*.ts"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no sources in %s/src (%v)", clientDir, err)
	}
	slices.Sort(files)
	files = append(files, filepath.Join(clientDir, "tsconfig.json"))
	lock, err := os.ReadFile(filepath.Join(clientDir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pkgs struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(lock, &pkgs); err != nil || pkgs.Packages["node_modules/typescript"].Version == "" {
		t.Fatalf("clients/js/package-lock.json: no version of typescript (%v)", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "typescript %s\n", pkgs.Packages["node_modules/typescript"].Version)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.ToSlash(f), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// clientHeader is the first lines of assets/callgate.js.
func clientHeader(sources string) string {
	return "// The callgate client, built by tsc from clients/js (sources " + sources + "): do not edit.\n" +
		"// Refresh: (cd clients/js && npm ci) && go test ./viewer -run TestClientBuild -update\n"
}

var headerSources = regexp.MustCompile(`^// The callgate client, built by tsc from clients/js \(sources ([0-9a-f]{16})\)`)

// TestClientSourcesUnchanged needs no Node: the embedded client says which
// sources it was built from, and they must be the ones in clients/js now.
func TestClientSourcesUnchanged(t *testing.T) {
	b, err := assets.ReadFile("assets/callgate.js")
	if err != nil {
		t.Fatal(err)
	}
	m := headerSources.FindSubmatch(b)
	if m == nil {
		t.Fatalf("assets/callgate.js does not start with the build header %q", clientHeader("…"))
	}
	if want := clientSources(t); string(m[1]) != want {
		t.Fatalf("assets/callgate.js was built from sources %s, clients/js has %s now; refresh it:\n"+
			"  (cd clients/js && npm ci) && go test ./viewer -run TestClientBuild -update", m[1], want)
	}
}

// TestClientBuildIsCurrent builds the client with its pinned tsc and checks
// that assets/callgate.js is that build, byte for byte. It needs Node and
// clients/js/node_modules (npm ci); without them it is skipped, unless
// CALLGATE_TEST_NODE=1 (as in CI) makes that a failure.
func TestClientBuildIsCurrent(t *testing.T) {
	required := os.Getenv("CALLGATE_TEST_NODE") != "" && os.Getenv("CALLGATE_TEST_NODE") != "0"
	tsc := filepath.Join(clientDir, "node_modules", "typescript", "bin", "tsc")
	_, nodeErr := exec.LookPath("node")
	if _, err := os.Stat(tsc); err != nil || nodeErr != nil {
		msg := "needs node on PATH and clients/js/node_modules (cd clients/js && npm ci)"
		if required || *update {
			t.Fatalf("CALLGATE_TEST_NODE is set (or -update given) but the client build %s", msg)
		}
		t.Skipf("the client build %s; set CALLGATE_TEST_NODE=1 to make this a failure", msg)
	}
	out := t.TempDir()
	cmd := exec.Command("node", filepath.Join("node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json", "--outDir", out)
	cmd.Dir = clientDir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tsc: %v\n%s", err, b)
	}
	built, err := os.ReadFile(filepath.Join(out, "index.js"))
	if err != nil {
		t.Fatal(err)
	}
	if imports := regexp.MustCompile(`(?m)^\s*(import|export .* from)\b`).FindAll(built, -1); len(imports) > 0 {
		t.Fatalf("dist/index.js imports %q: the page loads it as one module, it must import nothing", imports)
	}
	want := append([]byte(clientHeader(clientSources(t))), built...)
	const asset = "assets/callgate.js"
	if *update {
		if err := os.WriteFile(asset, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(asset)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not the current build of clients/js; refresh it:\n"+
			"  (cd clients/js && npm ci) && go test ./viewer -run TestClientBuild -update", asset)
	}
}
