package main

// The README's promises, run: every flag in its table, every transcript of
// callgate's output, every go command, the package layout and the quick
// start. When one of these tests fails, the message says which README line
// to change and how.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/wstest"
)

// repoRoot is the repository, seen from this package's directory.
var repoRoot = filepath.Join("..", "..")

// mdBlock is a fenced code block of README.md.
type mdBlock struct {
	lang  string
	line  int      // README line of the opening fence, from 1
	lines []string // content, without the fence's indentation
}

// readme returns README.md's lines and code blocks.
func readme(t *testing.T) ([]string, []mdBlock) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var blocks []mdBlock
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimLeft(lines[i], " ")
		if !strings.HasPrefix(trimmed, "```") {
			continue
		}
		indent := len(lines[i]) - len(trimmed)
		blk := mdBlock{lang: strings.TrimPrefix(trimmed, "```"), line: i + 1}
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			l := lines[i]
			l = l[min(indent, len(l)-len(strings.TrimLeft(l, " "))):]
			blk.lines = append(blk.lines, l)
		}
		blocks = append(blocks, blk)
	}
	return lines, blocks
}

// section returns the README lines [from, to) of the section with heading
// title ("## Configuration"), up to the next heading of its level.
func section(t *testing.T, lines []string, title string) (from, to int) {
	t.Helper()
	level := strings.Fields(title)[0] + " "
	from = slices.Index(lines, title)
	if from < 0 {
		t.Fatalf("README.md has no %q section", title)
	}
	for to = from + 1; to < len(lines) && !strings.HasPrefix(lines[to], level); to++ {
	}
	return from, to
}

// blocksIn returns the blocks that start within README lines [from, to).
func blocksIn(blocks []mdBlock, from, to int) []mdBlock {
	var out []mdBlock
	for _, b := range blocks {
		if b.line > from && b.line <= to {
			out = append(out, b)
		}
	}
	return out
}

// TestREADMEFlagTable: the Configuration table lists exactly the flags of
// callgate -h, each with its variable and default.
func TestREADMEFlagTable(t *testing.T) {
	lines, _ := readme(t)
	from, to := section(t, lines, "## Configuration")
	type row struct {
		line  int
		cells []string
	}
	rows := map[string]row{}
	for i := from; i < to; i++ {
		if !strings.HasPrefix(lines[i], "| `--") {
			continue
		}
		cells := strings.Split(strings.TrimSuffix(strings.TrimPrefix(lines[i], "| "), " |"), " | ")
		name := strings.TrimPrefix(strings.Trim(cells[0], "`"), "--")
		if len(cells) != 4 {
			t.Errorf("README.md:%d: the row of --%s has %d cells, want 4 (flag, variable, default, meaning)", i+1, name, len(cells))
			continue
		}
		rows[name] = row{i + 1, cells}
	}
	fs := flagSet(&config{})
	fs.VisitAll(func(f *flag.Flag) {
		r, ok := rows[f.Name]
		if !ok {
			def := "none"
			if f.DefValue != "" {
				def = "`" + f.DefValue + "`"
			}
			t.Errorf("README.md's flag table (## Configuration) lacks --%s; add a row like\n| `--%s` | `%s` | %s | %s |",
				f.Name, f.Name, envName(f.Name), def, f.Usage)
			return
		}
		if want := "`" + envName(f.Name) + "`"; r.cells[1] != want {
			t.Errorf("README.md:%d: the variable of --%s is %s, want %s", r.line, f.Name, r.cells[1], want)
		}
		if !defaultMatches(f, r.cells[2]) {
			t.Errorf("README.md:%d: the default of --%s reads %q, but callgate -h says %q", r.line, f.Name, r.cells[2], f.DefValue)
		}
	})
	for name, r := range rows {
		if fs.Lookup(name) == nil {
			t.Errorf("README.md:%d: the flag table lists --%s, which callgate does not have: remove the row", r.line, name)
		}
	}
}

// defaultMatches reports whether a README default cell agrees with f's
// default: its first `value` must be the default (a duration in any
// spelling of the same length). A flag whose default is empty computes it
// (a host name, a format that depends on --dev) or has none: its cell
// describes that in words.
func defaultMatches(f *flag.Flag, cell string) bool {
	if f.DefValue == "" {
		return true
	}
	_, rest, ok := strings.Cut(cell, "`")
	value, _, ok2 := strings.Cut(rest, "`")
	if !ok || !ok2 {
		return false
	}
	if g, isGetter := f.Value.(flag.Getter); isGetter {
		if want, isDuration := g.Get().(time.Duration); isDuration {
			got, err := time.ParseDuration(value)
			return err == nil && got == want
		}
	}
	return value == f.DefValue
}

// TestREADMETranscripts runs every "$ callgate …" transcript of the README
// with the built command and compares its output, line for line.
func TestREADMETranscripts(t *testing.T) {
	_, blocks := readme(t)
	var bin string
	ran := 0
	for _, b := range blocks {
		for i := 0; i < len(b.lines); i++ {
			cmdline, ok := strings.CutPrefix(b.lines[i], "$ ")
			if !ok {
				continue
			}
			var want []string
			for i+1 < len(b.lines) && !strings.HasPrefix(b.lines[i+1], "$ ") {
				i++
				want = append(want, b.lines[i])
			}
			if bin == "" {
				bin = buildBinary(t)
			}
			got := runTranscript(t, bin, cmdline)
			if wantOut := strings.Join(want, "\n") + "\n"; got != wantOut {
				t.Errorf("README.md:%d: `%s` prints\n%s\nbut the README shows\n%s\nUpdate the README (or the message).", b.line, cmdline, got, wantOut)
			}
			ran++
		}
	}
	if ran == 0 {
		t.Fatal("README.md has no \"$ callgate\" transcript; the invalid-configuration sample is gone")
	}
}

// runTranscript runs cmdline, "[NAME=value …] callgate [args…]" without
// quotes, with bin and an environment without CALLGATE_* variables, and
// returns what it printed.
func runTranscript(t *testing.T, bin, cmdline string) string {
	t.Helper()
	words := strings.Fields(cmdline)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CALLGATE_") {
			env = append(env, kv)
		}
	}
	for len(words) > 0 && strings.Contains(words[0], "=") {
		env = append(env, words[0])
		words = words[1:]
	}
	if len(words) == 0 || words[0] != "callgate" || strings.ContainsAny(cmdline, `'"\`) {
		t.Fatalf("README transcript `%s`: want [NAME=value …] callgate [args…] without quotes", cmdline)
	}
	// A transcript shows a command that stops at once; one that serves is
	// ended here, and fails.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, words[1:]...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("README transcript `%s` did not exit; transcripts must show commands that stop", cmdline)
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("README transcript `%s`: %v", cmdline, err)
	}
	return string(out)
}

// goCommand matches a go command in the README's text or code.
var goCommand = regexp.MustCompile("^(?:[A-Z_]+=\\S+ )*go (?:test|run) ")

// TestREADMEGoCommands checks every go test and go run command the README
// shows: `go run ./cmd/callgate` with flags that parse, `go test` on
// packages that exist, with -run and -fuzz patterns that match tests.
func TestREADMEGoCommands(t *testing.T) {
	lines, blocks := readme(t)
	type command struct {
		line int
		text string
	}
	var cmds []command
	for _, b := range blocks {
		if b.lang != "sh" {
			continue
		}
		for i, l := range b.lines {
			if l, _, _ = strings.Cut(l, " #"); goCommand.MatchString(l) {
				cmds = append(cmds, command{b.line + 1 + i, strings.TrimSpace(l)})
			}
		}
	}
	inline := regexp.MustCompile("`([^`]+)`")
	for i, l := range lines {
		for _, m := range inline.FindAllStringSubmatch(l, -1) {
			if goCommand.MatchString(m[1]) {
				cmds = append(cmds, command{i + 1, m[1]})
			}
		}
	}
	if len(cmds) < 5 {
		t.Fatalf("found only %d go commands in README.md: %v", len(cmds), cmds)
	}
	for _, c := range cmds {
		words := strings.Fields(c.text)
		for words[0] != "go" {
			words = words[1:] // NAME=value
		}
		switch words[1] {
		case "run":
			switch {
			case words[2] != "./cmd/callgate":
				t.Errorf("README.md:%d: `%s` runs %s; only ./cmd/callgate is checked here", c.line, c.text, words[2])
			case slices.Contains(words, "…"):
				// A placeholder for any arguments.
			case len(words) > 3 && words[3] == "tail":
				if _, err := parseTail(words[4:], env(nil), io.Discard); err != nil {
					t.Errorf("README.md:%d: `%s`: %v", c.line, c.text, err)
				}
			default:
				if _, err := parseConfig(words[3:], env(nil), io.Discard); err != nil {
					t.Errorf("README.md:%d: `%s`: %v", c.line, c.text, err)
				}
			}
		case "test":
			if err := checkGoTest(words[2:]); err != nil {
				t.Errorf("README.md:%d: `%s`: %v", c.line, c.text, err)
			}
		}
	}
}

// checkGoTest checks the arguments of a go test command: its packages
// exist, and -run and -fuzz select tests that exist there.
func checkGoTest(args []string) error {
	var pkgs []string
	patterns := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "./") {
			pkgs = append(pkgs, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name != "run" && name != "fuzz" && name != "skip" {
			continue
		}
		if !hasValue && i+1 < len(args) {
			i++
			value = args[i]
		}
		patterns[name] = strings.Trim(value, `'"`)
	}
	if len(pkgs) == 0 {
		return errors.New("no package")
	}
	var funcs []string
	for _, p := range pkgs {
		dir, all := strings.CutSuffix(p, "/...")
		dir = filepath.Join(repoRoot, dir)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return fmt.Errorf("no package %s", p)
		}
		fs, err := testFuncs(dir, all)
		if err != nil {
			return err
		}
		funcs = append(funcs, fs...)
	}
	for _, name := range []string{"run", "fuzz"} {
		pattern, ok := patterns[name]
		if !ok || pattern == "^$" {
			continue
		}
		re, err := regexp.Compile(strings.Split(pattern, "/")[0])
		if err != nil {
			return fmt.Errorf("-%s=%s: %v", name, pattern, err)
		}
		var matched []string
		for _, f := range funcs {
			if re.MatchString(f) && (name == "run" && !strings.HasPrefix(f, "Benchmark") || strings.HasPrefix(f, "Fuzz")) {
				matched = append(matched, f)
			}
		}
		switch {
		case len(matched) == 0:
			return fmt.Errorf("-%s=%s selects no test in %v", name, pattern, pkgs)
		case name == "fuzz" && len(matched) > 1:
			return fmt.Errorf("-fuzz=%s selects %v; go test fuzzes one target at a time", pattern, matched)
		}
	}
	return nil
}

var testFunc = regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark|Example)\w*)\(`)

// testFuncs returns the test functions of the _test.go files in dir, and
// in the directories below it if all is set.
func testFuncs(dir string, all bool) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != dir && (!all || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		for _, m := range testFunc.FindAllSubmatch(b, -1) {
			out = append(out, string(m[1]))
		}
		return err
	})
	return out, err
}

// TestREADMELayout: the package layout under ## Development lists every
// package of the module (or a directory above it), and only what exists.
func TestREADMELayout(t *testing.T) {
	lines, blocks := readme(t)
	from, to := section(t, lines, "## Development")
	bs := blocksIn(blocks, from, to)
	if len(bs) == 0 || bs[0].lang != "" {
		t.Fatal("README.md's ## Development section no longer starts with the package layout block")
	}
	listed := map[string]bool{}
	for i, l := range bs[0].lines {
		if l == "" || strings.HasPrefix(l, " ") {
			continue // a description's second line
		}
		entry := strings.Fields(l)[0]
		path := strings.TrimSuffix(entry, "/")
		if _, err := os.Stat(filepath.Join(repoRoot, path)); err != nil {
			t.Errorf("README.md:%d: the layout lists %s, which does not exist", bs[0].line+1+i, entry)
		}
		listed[path] = true
	}
	list := exec.Command("go", "list", "-f", "{{.Dir}}", "./...")
	list.Dir = repoRoot
	out, err := list.Output()
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, dir)
		if err != nil || rel == "." {
			continue
		}
		rel = filepath.ToSlash(rel)
		covered := false
		for p := rel; p != "." && p != "internal"; p = filepath.ToSlash(filepath.Dir(p)) {
			covered = covered || listed[p]
		}
		if !covered {
			t.Errorf("README.md's package layout (## Development, line %d) lacks %s/; add a line like\n%-20s what the package does", bs[0].line, rel, rel+"/")
		}
	}
}

// TestREADMEQuickStart follows the quick start: the instance started as
// shown prints the three steps the README shows, and running them (the
// curl requests, and callgate tail both as shown and with --json) gives
// the answers, lines and frames the README shows, times, identifiers and
// epochs aside.
func TestREADMEQuickStart(t *testing.T) {
	lines, blocks := readme(t)
	from, to := section(t, lines, "## Quick start")
	bs := blocksIn(blocks, from, to)
	if len(bs) == 0 || !strings.HasPrefix(bs[0].lines[0], "go run ./cmd/callgate ") {
		t.Fatal("README.md's quick start no longer starts with `go run ./cmd/callgate …`")
	}
	args, _, _ := strings.Cut(strings.TrimPrefix(bs[0].lines[0], "go run ./cmd/callgate "), "#")
	cfg, err := parseConfig(append(strings.Fields(args), "--addr", "127.0.0.1:0", "--log-level", "error"), env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a := serveApp(t, cfg, io.Discard)
	// The README shows the default address, which the banner prints in
	// its own spelling, and without the --url tail needs elsewhere.
	_, port, _ := strings.Cut(a.addr(), ":")
	hostless := strings.NewReplacer("127.0.0.1:8080", "HOST", "localhost:8080", "HOST", a.addr(), "HOST", "localhost:"+port, "HOST")
	var banner bytes.Buffer
	printDevBanner(&banner, cfg, a)
	shown := map[string]bool{}
	for _, l := range strings.Split(hostless.Replace(banner.String()), "\n") {
		shown[strings.ReplaceAll(strings.TrimSpace(l), " --url ws://HOST", "")] = true
	}
	local := func(s string) string { return strings.ReplaceAll(hostless.Replace(s), "HOST", a.addr()) }

	var pending []byte           // the answer to the last request, until a json block shows it
	var human, frames *tailLines // callgate tail as shown, and with --json
	for _, b := range bs[1:] {
		line := b.line + 1
		switch {
		case b.lang == "sh":
			for _, l := range b.lines {
				if !shown[hostless.Replace(strings.TrimSpace(l))] {
					t.Errorf("README.md:%d: %q is not among the steps that --dev prints:\n%s", b.line, strings.TrimSpace(l), banner.String())
				}
			}
			words, err := shellWords(strings.Join(b.lines, "\n"))
			if err != nil {
				t.Fatalf("README.md:%d: %v", line, err)
			}
			switch {
			case words[0] == "curl":
				pending = curl(t, line, words, local)
			case strings.Join(words[:min(3, len(words))], " ") == "go run ./cmd/callgate" && len(words) > 3 && words[3] == "tail":
				url := []string{"--url", "ws://" + a.addr()}
				human = runTailInTest(t, append(url, words[4:]...), true)
				frames = runTailInTest(t, append(append(url, "--json"), words[4:]...), false)
				// The reader waits for the tail to follow before the next step.
				human.await(t, func(ls []string) bool { return len(ls) > 0 })
				frames.await(t, func(ls []string) bool {
					return slices.ContainsFunc(ls, func(l string) bool { return strings.Contains(l, `"subscribed"`) })
				})
			default:
				t.Fatalf("README.md:%d: the quick start runs %s, which this test does not know", line, words[0])
			}
		case b.lang == "json" && pending != nil:
			sameJSON(t, line, pending, []byte(b.lines[0]))
			pending = nil
		case b.lang == "json" && frames != nil:
			got := frames.await(t, func(ls []string) bool { return len(ls) >= len(b.lines) })
			for i, want := range b.lines {
				sameJSON(t, line+i, []byte(got[i]), []byte(want))
			}
		case b.lang == "" && human != nil:
			got := human.await(t, func(ls []string) bool { return len(ls) >= len(b.lines) })
			for i, want := range b.lines {
				if g, w := masked(got[i]), masked(want); g != w {
					t.Errorf("README.md:%d: callgate tail now prints\n%s\nwhere the README shows\n%s\n(times, epochs, instances and URLs may differ)", line+i, got[i], want)
				}
			}
		}
	}
	if human == nil || frames == nil {
		t.Fatal("README.md's quick start no longer follows the call with callgate tail")
	}
}

// masks hides what differs from run to run in callgate tail's lines.
var masks = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\b\d\d:\d\d:\d\d\.\d{3}\b`), "TIME"},
	{regexp.MustCompile(`\b\d{10,}\b`), "EPOCH"},
	{regexp.MustCompile(`\(instance [^)]*\)`), "(instance …)"},
	{regexp.MustCompile(`ws://\S+`), "ws://…"},
}

func masked(s string) string {
	for _, m := range masks {
		s = m.re.ReplaceAllString(s, m.with)
	}
	return s
}

// tailLines runs callgate tail in the test and collects what it prints,
// stdout and stderr together, line by line.
type tailLines struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	more    chan struct{} // receives after new lines
}

func (l *tailLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	l.mu.Unlock()
	select {
	case l.more <- struct{}{}:
	default:
	}
	return len(p), nil
}

// await returns the lines once done holds for them, failing the test if
// it does not within wstest.Wait.
func (l *tailLines) await(t *testing.T, done func([]string) bool) []string {
	t.Helper()
	deadline := time.After(wstest.Wait)
	for {
		l.mu.Lock()
		lines := slices.Clone(l.lines)
		l.mu.Unlock()
		if done(lines) {
			return lines
		}
		select {
		case <-l.more:
		case <-deadline:
			t.Fatalf("callgate tail printed only:\n%s", strings.Join(lines, "\n"))
		}
	}
}

// runTailInTest runs callgate tail with args until the test ends, and
// collects its output, and its notes (stderr) if notes is set.
func runTailInTest(t *testing.T, args []string, notes bool) *tailLines {
	t.Helper()
	out := &tailLines{more: make(chan struct{}, 1)}
	var stderr io.Writer = io.Discard
	if notes {
		stderr = out
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- runTail(ctx, args, env(nil), out, stderr) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			out.mu.Lock()
			defer out.mu.Unlock()
			t.Errorf("callgate tail %v exited with %d:\n%s", args, code, strings.Join(out.lines, "\n"))
		}
	})
	return out
}

// curl makes the request of a curl command line (-X, -H, -d) and returns
// the answer's body.
func curl(t *testing.T, line int, words []string, local func(string) string) []byte {
	t.Helper()
	method, url, body := "GET", "", ""
	header := http.Header{}
	for i := 1; i < len(words); i++ {
		switch w := words[i]; {
		case w == "-s":
		case w == "-X" && i+1 < len(words):
			i++
			method = words[i]
		case w == "-d" && i+1 < len(words):
			i++
			body = words[i]
		case w == "-H" && i+1 < len(words):
			i++
			k, v, _ := strings.Cut(words[i], ":")
			header.Add(k, strings.TrimSpace(v))
		case strings.HasPrefix(w, "http"):
			url = local(w)
		default:
			t.Fatalf("README.md:%d: curl option %s is not known to this test", line, w)
		}
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("README.md:%d: %v", line, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(out)
}

// shellWords splits a command line as sh does for what the README uses:
// blanks, single and double quotes, and backslash-newline.
func shellWords(s string) ([]string, error) {
	s = strings.ReplaceAll(s, "\\\n", " ")
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case '\'', '"':
			end := strings.IndexByte(s[i+1:], c)
			if end < 0 {
				return nil, fmt.Errorf("unclosed %c in %q", c, s)
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// volatile are the fields whose values differ from run to run: times,
// identifiers and epochs.
var volatile = map[string]bool{"created_at": true, "updated_at": true, "time": true, "connection_id": true, "instance_id": true, "epoch": true}

// sameJSON fails unless got and the README's want are the same JSON value,
// but for the values of volatile fields, which need only be present in
// both.
func sameJSON(t *testing.T, line int, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("README.md:%d: not JSON: %v", line, err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("README.md:%d: the server answered %s: %v", line, got, err)
	}
	if !reflect.DeepEqual(blank(g), blank(w)) {
		t.Errorf("README.md:%d: the server now sends\n%s\nwhere the README shows\n%s\n(%v may differ in value only)", line, got, want, slices.Sorted(maps.Keys(volatile)))
	}
}

// blank replaces the values of volatile fields, at any depth.
func blank(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if volatile[k] {
				v[k] = "…"
			} else {
				v[k] = blank(x)
			}
		}
	case []any:
		for i := range v {
			v[i] = blank(v[i])
		}
	}
	return v
}
