package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFilterRealGoTest runs `go test -json` on a small module with a
// passing, a failing, a skipped and a slow test and a package that does
// not build, and checks that the filter shows what plain `go test` shows,
// lists the slow test first and reports the failure.
func TestFilterRealGoTest(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/m\n\ngo 1.22\n",
		"a/a_test.go": `package a

import (
	"testing"
	"time"
)

func TestPasses(t *testing.T) { t.Log("passing chatter") }

func TestFails(t *testing.T) {
	t.Run("inner", func(t *testing.T) { t.Error("inner broke") })
	t.Log("outer note")
}

func TestSkips(t *testing.T) { t.Skip("not today") }

func TestSlow(t *testing.T) {
	time.Sleep(300 * time.Millisecond) // a slow test, to be listed first
}
`,
		"b/b_test.go": "package b\n\nfunc TestX(t *testing.T) {}\n", // no import: does not build
		"c/c_test.go": "package c\n\nimport \"testing\"\n\nfunc TestOK(t *testing.T) {}\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "test", "-json", "-count=1", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	stream, _ := cmd.CombinedOutput() // fails, as it should
	var out bytes.Buffer
	failed, err := filter(bytes.NewReader(stream), &out)
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !failed {
		t.Errorf("a failing run was not reported as failed:\n%s", got)
	}
	for _, want := range []string{
		"--- FAIL: TestFails/inner", "inner broke", "outer note", "--- FAIL: TestFails ",
		"FAIL\texample.com/m/a", "ok  \texample.com/m/c", "undefined: testing", "example.com/m/b",
		"--- slowest tests\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"passing chatter", "not today", "=== RUN", "PASS\n"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("output has %q, which plain go test does not show:\n%s", unwanted, got)
		}
	}
	_, list, _ := strings.Cut(got, "--- slowest tests\n")
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 4 || !strings.HasSuffix(lines[0], "example.com/m/a TestSlow") {
		t.Errorf("slowest tests:\n%s\nwant 4, TestSlow first", list)
	}
	if !strings.Contains(list, "TestFails  FAIL") || strings.Contains(list, "inner") || strings.Contains(list, "TestSkips") {
		t.Errorf("slowest tests:\n%s\nwant TestFails marked, no subtest, no skipped test", list)
	}
}

// TestFilterPassesAndShowsUnfinishedTests: a passing stream exits clean,
// and the output of a test that never finished (a panic or a timeout
// ended its package) is shown when the package fails.
func TestFilterPassesAndShowsUnfinishedTests(t *testing.T) {
	pass := `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"p","Test":"TestA","Output":"--- PASS: TestA (0.50s)\n"}
{"Action":"pass","Package":"p","Test":"TestA","Elapsed":0.5}
{"Action":"output","Package":"p","Output":"PASS\n"}
{"Action":"output","Package":"p","Output":"ok  \tp\t0.6s\n"}
{"Action":"pass","Package":"p","Elapsed":0.6}
`
	var out bytes.Buffer
	if failed, err := filter(strings.NewReader(pass), &out); failed || err != nil {
		t.Fatalf("passing stream: failed %v, %v", failed, err)
	}
	if want := "ok  \tp\t0.6s\n--- slowest tests\n    0.50s  p TestA\n"; out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}

	crash := `{"Action":"run","Package":"q","Test":"TestHang"}
{"Action":"output","Package":"q","Test":"TestHang","Output":"panic: test timed out after 1s\n"}
{"Action":"output","Package":"q","Output":"FAIL\tq\t1.0s\n"}
{"Action":"fail","Package":"q","Elapsed":1}
`
	out.Reset()
	if failed, err := filter(strings.NewReader(crash), &out); !failed || err != nil {
		t.Fatalf("crashed stream: failed %v, %v", failed, err)
	}
	if want := "panic: test timed out after 1s\nFAIL\tq\t1.0s\n"; out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
}
