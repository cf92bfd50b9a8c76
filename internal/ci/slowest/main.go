// Command slowest reads `go test -json` on stdin and writes what `go test`
// without -json would have written: each package's result line, and the
// output of the tests that failed. At the end it lists the slowest tests,
// so that CI shows where its time goes. It exits 1 if a test or package
// failed; lines that are not test events (build errors, go command
// messages) are passed through as they are.
//
//	go test -json ./... 2>&1 | go run ./internal/ci/slowest
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// event is a line of `go test -json` (see `go doc test2json`).
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// result is how long a top-level test took.
type result struct {
	pkg, test string
	seconds   float64
	failed    bool
}

// top is how many of the slowest tests are listed.
const top = 10

func main() {
	failed, err := filter(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "slowest:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

// filter copies r's test events to w as plain `go test` output, lists the
// slowest tests, and reports whether anything failed.
func filter(r io.Reader, w io.Writer) (failed bool, err error) {
	out := bufio.NewWriter(w)
	defer func() {
		if ferr := out.Flush(); err == nil {
			err = ferr
		}
	}()
	held := map[[2]string][]string{} // a running test's output, by package and test
	var results []result
	in := bufio.NewReader(r)
	for {
		line, rerr := in.ReadBytes('\n')
		if len(line) > 0 {
			var e event
			if !bytes.HasPrefix(line, []byte("{")) || json.Unmarshal(line, &e) != nil {
				out.Write(line) // not a test event
			} else {
				key := [2]string{e.Package, e.Test}
				switch {
				case e.Action == "output" && e.Test != "":
					if !strings.HasPrefix(e.Output, "=== ") { // -v's progress lines
						held[key] = append(held[key], e.Output)
					}
				case e.Action == "output" || e.Action == "build-output":
					if strings.HasPrefix(e.Output, "FAIL") {
						flushPackage(out, held, e.Package)
					}
					if e.Output != "PASS\n" {
						out.WriteString(e.Output)
					}
				case e.Test != "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip"):
					if e.Action == "fail" {
						failed = true
						writeAll(out, held[key])
					}
					delete(held, key)
					if e.Action != "skip" && !strings.Contains(e.Test, "/") {
						results = append(results, result{e.Package, e.Test, e.Elapsed, e.Action == "fail"})
					}
				case e.Action == "fail" || e.Action == "build-fail":
					failed = true
					flushPackage(out, held, e.Package)
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return failed, rerr
		}
	}
	for _, lines := range held { // the stream ended in the middle of tests
		writeAll(out, lines)
	}
	slowestTests(out, results)
	return failed, nil
}

// flushPackage writes what the unfinished tests of pkg wrote: when the
// package fails with tests still running (a panic, a timeout), that
// explains it.
func flushPackage(w *bufio.Writer, held map[[2]string][]string, pkg string) {
	for k, lines := range held {
		if k[0] == pkg {
			writeAll(w, lines)
			delete(held, k)
		}
	}
}

// writeAll writes a test's output with its result line ("--- FAIL: …")
// first, where plain go test puts it; -json reports it last.
func writeAll(w *bufio.Writer, lines []string) {
	for _, l := range lines {
		if strings.HasPrefix(l, "--- ") {
			w.WriteString(l)
		}
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "--- ") {
			w.WriteString(l)
		}
	}
}

// slowestTests writes the top slowest of results.
func slowestTests(w io.Writer, results []result) {
	if len(results) == 0 {
		return
	}
	slices.SortStableFunc(results, func(a, b result) int {
		switch {
		case a.seconds > b.seconds:
			return -1
		case a.seconds < b.seconds:
			return 1
		}
		return 0
	})
	fmt.Fprintf(w, "--- slowest tests\n")
	for _, r := range results[:min(top, len(results))] {
		mark := ""
		if r.failed {
			mark = "  FAIL"
		}
		fmt.Fprintf(w, "%8.2fs  %s %s%s\n", r.seconds, r.pkg, r.test, mark)
	}
}
