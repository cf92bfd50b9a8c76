package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/callgate/callgate/internal/tail"
)

const tailUsage = `Usage: callgate tail [flags] <call_sid or conversation_id>
       callgate tail [flags] --topic <name>

Follows one call of a callgate gateway and prints each of its events as a
line: time, #event_id (#epoch:event_id when the epoch changes), event, and
what it says. With --topic, prints each state of the topic as
"version N: <json>". Reconnects by itself and resumes after the last event
printed, so nothing is lost or printed twice; lines starting with "-- " (on
stderr) say when the connection drops, resumes, or the gateway could not
replay everything. Ctrl-C stops it.

Flags:
`

// tailFlags are the flags of callgate tail.
type tailFlags struct {
	urls    []string
	token   string
	since   string
	history bool
	topic   string
	json    bool
}

// urlList is a repeatable --url: the first use replaces the default.
type urlList struct {
	p   *[]string
	set bool
}

func (l *urlList) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, " ")
}

func (l *urlList) Set(s string) error {
	if !l.set {
		*l.p, l.set = nil, true
	}
	*l.p = append(*l.p, s)
	return nil
}

// parseTail reads callgate tail's arguments (flags may come before and
// after the call) and returns the tail's configuration, without its
// writers.
func parseTail(args []string, getenv func(string) string, stderr io.Writer) (tail.Config, error) {
	f := tailFlags{urls: []string{"ws://localhost:8080"}}
	fs := flag.NewFlagSet("callgate tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&urlList{p: &f.urls}, "url", "the gateway's base URL; repeat it to list instances, tried in turn on each reconnect")
	fs.StringVar(&f.token, "token", "", "a JWT, sent in the first frame (never in the URL); default $CALLGATE_TOKEN")
	fs.StringVar(&f.since, "since", "", "start after this event: event_id (57) or epoch:event_id (1764466799123:57), as lines show them; every stored event after it is printed first")
	fs.BoolVar(&f.history, "history", false, "start from the call's first stored event (the same as --since 0)")
	fs.StringVar(&f.topic, "topic", "", "follow this state topic instead of a call")
	fs.BoolVar(&f.json, "json", false, "print the frames as they arrive, one per line, instead of readable lines")
	fs.Usage = func() {
		fmt.Fprint(stderr, tailUsage)
		fs.PrintDefaults()
	}
	var calls []string
	for {
		if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
			return tail.Config{}, err
		} else if err != nil {
			return tail.Config{}, errReported
		}
		if fs.NArg() == 0 {
			break
		}
		calls = append(calls, fs.Arg(0))
		args = fs.Args()[1:]
	}
	cfg := tail.Config{URLs: f.urls, Topic: f.topic, Token: f.token, JSON: f.json}
	if cfg.Token == "" {
		cfg.Token = getenv("CALLGATE_TOKEN")
	}
	switch {
	case len(calls) > 1:
		return cfg, fmt.Errorf("one call at a time: got %q", calls)
	case len(calls) == 1 && f.topic != "":
		return cfg, fmt.Errorf("give a call or --topic, not both")
	case len(calls) == 0 && f.topic == "":
		return cfg, fmt.Errorf("give the call_sid or conversation_id of the call to follow, or --topic NAME")
	case len(calls) == 1:
		cfg.Call = calls[0]
	}
	switch {
	case f.since != "" && f.history:
		return cfg, errors.New("--since and --history both say where to start: give one")
	case f.since != "":
		p, err := tail.ParsePosition(f.since)
		if err != nil {
			return cfg, fmt.Errorf("--since %q: %w", f.since, err)
		}
		cfg.Since = &p
	case f.history:
		cfg.Since = &tail.Position{}
	}
	return cfg, nil
}

// errReported is a flag error the flag package has printed already, with
// the usage.
var errReported = errors.New("flag error reported")

// runTail is callgate tail: it follows until ctx ends (exit code 0), the
// gateway refuses for good (1), or the arguments are wrong (2).
func runTail(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := parseTail(args, getenv, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errReported):
		return 2
	}
	var t *tail.Tail
	if err == nil {
		cfg.Out, cfg.Notes = stdout, stderr
		t, err = tail.New(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "callgate tail: %v\nRun callgate tail -h for its flags.\n", err)
		return 2
	}
	if err := t.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "callgate tail: %v\n", err)
		return 1
	}
	return 0
}
