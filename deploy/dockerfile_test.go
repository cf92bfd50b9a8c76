package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is the repository root, relative to this package's directory
// (where go test runs).
const repoRoot = ".."

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
}

func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// stages splits instructions at each FROM.
func stages(ins []instruction) [][]instruction {
	var out [][]instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			out = append(out, nil)
		}
		if len(out) > 0 {
			out[len(out)-1] = append(out[len(out)-1], in)
		}
	}
	return out
}

func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, "Dockerfile")
	st := stages(ins)
	if len(st) < 2 {
		t.Fatalf("%d stages, want a build stage and a final one", len(st))
	}

	// The build: static, trimmed, stripped, both binaries.
	var builds []string
	for _, s := range st[:len(st)-1] {
		for _, in := range s {
			if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
				builds = append(builds, strings.Split(in.args, "&&")...)
			}
		}
	}
	for _, pkg := range []string{"./cmd/callgate", "./deploy/healthcheck"} {
		found := false
		for _, b := range builds {
			if !strings.Contains(b, "go build") || !strings.HasSuffix(strings.TrimSpace(b), pkg) {
				continue
			}
			found = true
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`} {
				if !strings.Contains(b, want) {
					t.Errorf("build of %s: %q lacks %s", pkg, b, want)
				}
			}
		}
		if !found {
			t.Errorf("no go build of %s in the build stage", pkg)
		}
	}

	// The final image: distroless static as non-root, both binaries,
	// exec-form commands only (there is no shell).
	final := st[len(st)-1]
	if from := final[0].args; !strings.HasPrefix(from, "gcr.io/distroless/static") || !strings.Contains(from, "nonroot") {
		t.Errorf("final image FROM %q, want gcr.io/distroless/static…:nonroot", from)
	}
	var user, expose string
	var copied []string
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "EXPOSE":
			expose = in.args
		case "COPY":
			copied = append(copied, strings.Fields(in.args)...)
		case "RUN":
			t.Errorf("RUN %q in the final stage: it has no shell", in.args)
		case "HEALTHCHECK", "ENTRYPOINT", "CMD":
			args := in.args
			if in.cmd == "HEALTHCHECK" {
				_, args, _ = strings.Cut(args, "CMD ")
			}
			var argv []string
			if err := json.Unmarshal([]byte(args), &argv); err != nil || len(argv) == 0 {
				t.Errorf("%s %s: want the exec form [\"…\"], the image has no shell", in.cmd, in.args)
			}
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric non-root user", user)
	}
	if expose != "8080" {
		t.Errorf("EXPOSE %q, want 8080", expose)
	}
	for _, bin := range []string{"/out/callgate", "/out/callgate-healthcheck"} {
		if !slices.Contains(copied, bin) {
			t.Errorf("final stage does not copy %s (COPY %v)", bin, copied)
		}
	}
}

// TestDockerignore: the build context leaves out secrets and the history.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for _, want := range []string{".git", ".env"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
	for _, keep := range []string{"cmd", "deploy", "go.mod", "go.sum", "deploy/healthcheck"} {
		if slices.Contains(lines, keep) || slices.Contains(lines, "/"+keep) {
			t.Errorf(".dockerignore excludes %s, which the build needs", keep)
		}
	}
}
