// Package tailtest runs a tail in a test and hands out the lines it
// writes, in order, as they are written.
package tailtest

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/tail"
)

// Wait bounds every wait for a line or for the end of a run. Generous: it
// only matters when a test is about to fail.
const Wait = 20 * time.Second

// Lines are the lines written to one writer.
type Lines struct {
	t  testing.TB
	ch chan string
	// read are the lines handed out so far, for failure messages.
	read []string
}

// Next returns the next line, failing the test if none comes within Wait.
func (l *Lines) Next() string {
	l.t.Helper()
	select {
	case s, ok := <-l.ch:
		if !ok {
			l.t.Fatalf("the tail ended while a line was awaited; the lines were:\n%s", l.history())
		}
		l.read = append(l.read, s)
		return s
	case <-time.After(Wait):
		l.t.Fatalf("no line within %s; the lines were:\n%s", Wait, l.history())
	}
	return ""
}

// history returns the last lines handed out.
func (l *Lines) history() string {
	return strings.Join(l.read[max(0, len(l.read)-20):], "\n")
}

// Until returns the lines up to and including the first that contains s.
func (l *Lines) Until(s string) []string {
	l.t.Helper()
	var got []string
	for {
		line := l.Next()
		got = append(got, line)
		if strings.Contains(line, s) {
			return got
		}
	}
}

// Rest returns the lines not read yet, once the run has ended.
func (l *Lines) Rest() []string {
	var out []string
	for s := range l.ch {
		out = append(out, s)
	}
	return out
}

// Run is a tail running in a test.
type Run struct {
	t testing.TB
	// Out has what the tail writes to Config.Out; Notes what it writes
	// to Config.Notes. They are the same Lines when started merged.
	Out, Notes *Lines
	cancel     context.CancelFunc
	done       chan error
}

// Start runs a tail of cfg, whose writers it sets: with merged, notes and
// events go to one Lines in the order written. The tail is stopped when
// the test ends.
func Start(t testing.TB, cfg tail.Config, merged bool) *Run {
	t.Helper()
	r := &Run{t: t, done: make(chan error, 1)}
	var closers []io.Closer
	r.Out, cfg.Out, closers = pipe(t, closers)
	r.Notes, cfg.Notes = r.Out, cfg.Out
	if !merged {
		r.Notes, cfg.Notes, closers = pipe(t, closers)
	}
	tl, err := tail.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		err := tl.Run(ctx)
		for _, c := range closers {
			c.Close()
		}
		r.done <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			r.done <- err
		case <-time.After(Wait):
			t.Errorf("the tail did not stop within %s", Wait)
		}
	})
	return r
}

// pipe returns Lines fed by the returned writer, closed with closers.
func pipe(t testing.TB, closers []io.Closer) (*Lines, io.Writer, []io.Closer) {
	pr, pw := io.Pipe()
	// Buffered far beyond what a test writes, so that the tail never
	// waits on a test that stopped reading.
	l := &Lines{t: t, ch: make(chan string, 1<<16)}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			l.ch <- sc.Text()
		}
		close(l.ch)
	}()
	return l, pw, append(closers, pw)
}

// Stop ends the tail as Ctrl-C does and returns what Run returned.
func (r *Run) Stop() error {
	r.t.Helper()
	r.cancel()
	return r.Wait()
}

// Wait waits for the tail to end and returns what Run returned.
func (r *Run) Wait() error {
	r.t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(Wait):
		r.t.Fatalf("the tail did not end within %s", Wait)
	}
	return nil
}
