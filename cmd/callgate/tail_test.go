package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/internal/redistest"
	"github.com/callgate/callgate/internal/tail/tailtest"
)

// startTail runs callgate tail with args, as the command parses them, with
// a short backoff cap so that reconnects in tests are quick.
func startTail(t *testing.T, merged bool, getenv func(string) string, args ...string) *tailtest.Run {
	t.Helper()
	cfg, err := parseTail(args, getenv, io.Discard)
	if err != nil {
		t.Fatalf("callgate tail %v: %v", args, err)
	}
	cfg.MaxBackoff = 100 * time.Millisecond
	return tailtest.Start(t, cfg, merged)
}

func noEnv(string) string { return "" }

// clockColumn is the time column that starts an event line.
var clockColumn = regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} `)

// readEvents reads lines until n event lines have come and returns them
// without their time column, with the notes read on the way.
func readEvents(t *testing.T, l *tailtest.Lines, n int) (events, notes []string) {
	t.Helper()
	for len(events) < n {
		line := l.Next()
		switch {
		case strings.HasPrefix(line, "-- "):
			notes = append(notes, line)
		case clockColumn.MatchString(line):
			events = append(events, clockColumn.ReplaceAllString(line, ""))
		default:
			t.Fatalf("line %q is neither a note nor an event", line)
		}
	}
	return events, notes
}

func expectLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\n%s\nwant\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// expectNote fails unless the next line starts with prefix.
func expectNote(t *testing.T, l *tailtest.Lines, prefix string) string {
	t.Helper()
	line := l.Next()
	if !strings.HasPrefix(line, prefix) {
		t.Fatalf("got line %q, want one starting with %q", line, prefix)
	}
	return line
}

// TestTailFollowsCall: tail follows a call on one instance while the
// webhooks land on another, and prints every event in order as a readable
// line.
func TestTailFollowsCall(t *testing.T) {
	_, ins := startCluster(t, 2)
	a, b := ins[0], ins[1]
	a.saveCall(calls.Update{CallSID: fixtureSID})
	r := startTail(t, true, noEnv, "--url", a.wsURL(""), fixtureSID)
	expectNote(t, r.Out, "-- following "+fixtureSID+", status initiated, on "+a.wsURL("")+" (instance i0)")

	for i, ev := range liveEvents(t) {
		if status, out := b.webhook("/webhooks/transcription", liveBody("call_sid", fixtureSID, ev)); status != 200 {
			t.Fatalf("live event %d: %d %v", i, status, out)
		}
	}
	b.mustPublish("/webhooks/elevenlabs", fixture(t, "post_call_transcription.json"))
	b.mustPublish("/webhooks/elevenlabs", fixture(t, "post_call_audio.json"))
	want := []string{
		"#1 status in-progress",
		"#2 transcript agent: Hi, this is Ava from Northwind Dental. Am I speaking with Maria?",
		"#3 transcript user (tentative): Yes, spea",
		"#4 transcript user: Yes, speaking.",
		"#5 transcript agent: I'm calling to confirm your cleaning on Tuesday at 3 pm and to tell you about our complete history of service.",
		"#6 interruption",
		"#7 transcript_correction agent (corrected): I'm calling to confirm your cleaning on Tuesday at 3 pm.",
		"#8 transcript user: Could we move it to Wednesday? Ça marche pour moi le matin aussi.",
		"#9 transcript agent: Wednesday at 10 am is open. I've moved it for you. 👍",
		"#10 completed 38 s, 6 turns, success: The agent confirmed and rescheduled a dental cleaning from Tuesday 3 pm to Wednesday 10 am. (ended: end_call tool was called.)",
		"#11 audio_available 114 bytes",
	}
	epoch, events, notes := epochEvents(t, r.Out, len(want))
	expectLines(t, "events", events, want)
	if len(notes) > 0 {
		t.Fatalf("notes while connected: %q", notes)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	expectLines(t, "after Ctrl-C", r.Out.Rest(), []string{"-- stopped after #" + epoch + ":11; to resume after it: --since " + epoch + ":11"})
}

// TestTailJSON: with --json the output is exactly the frames the gateway
// sends, byte for byte, and the notes go to the other stream.
func TestTailJSON(t *testing.T) {
	_, ins := startCluster(t, 2)
	a, b := ins[0], ins[1]
	a.saveCall(calls.Update{CallSID: "EL_json", ConversationID: "conv_json", Status: calls.StatusInProgress})
	r := startTail(t, false, noEnv, "--json", "--url", a.wsURL(""), "conv_json")
	ref := b.ws()
	ref.MustSubscribe("ref", "EL_json")
	var head []map[string]any
	for range 2 {
		var f map[string]any
		if line := r.Out.Next(); json.Unmarshal([]byte(line), &f) != nil {
			t.Fatalf("not a frame: %q", line)
		}
		head = append(head, f)
	}
	if head[0]["type"] != "welcome" || head[0]["instance_id"] != "i0" || head[1]["type"] != "subscribed" || head[1]["id"] != "1" {
		t.Fatalf("first frames %v", head)
	}
	expectNote(t, r.Notes, "-- following EL_json (conversation conv_json), status in-progress, on "+a.wsURL("")+" (instance i0)")
	for n := 1; n <= 5; n++ {
		ev := json.RawMessage(fmt.Sprintf(`{"type":"agent_response","agent_response_event":{"agent_response":"line %d \u001b \"quoted\"","event_id":%d}}`, n, n))
		b.mustPublish("/webhooks/transcription", liveBody("conversation_id", "conv_json", ev))
	}
	for n := 2; n <= 6; n++ { // event 1, the status, came before the subscribe
		if line, f := r.Out.Next(), ref.Expect("event"); line != string(f.Raw) {
			t.Fatalf("line %d:\n%s\nthe frame:\n%s", n, line, f.Raw)
		}
	}
}

// TestTailSinceAndHistory: --history prints a call from its first event,
// --since after the one given, then live; a --since beyond the call's
// events is told recovered:false.
func TestTailSinceAndHistory(t *testing.T) {
	_, ins := startCluster(t, 1)
	in := ins[0]
	url := in.wsURL("")
	// The failure webhook creates its call: followed by conversation_id.
	in.mustPublish("/webhooks/elevenlabs", fixture(t, "call_initiation_failure_twilio.json"))
	conv := "conv_8h3j5k7l9z1x2c4v6b8n0m1q3w"
	r := startTail(t, true, noEnv, "--url", url, "--history", conv)
	expectNote(t, r.Out, "-- following ")
	_, events, _ := epochEvents(t, r.Out, 1)
	expectLines(t, "--history of a failed call", events, []string{"#1 failed no-answer (twilio)"})
	r.Stop()

	in.saveCall(calls.Update{CallSID: "EL_since", Status: calls.StatusInProgress})
	interrupt := func(n int) {
		ev := json.RawMessage(fmt.Sprintf(`{"type":"interruption","interruption_event":{"event_id":%d}}`, n))
		in.mustPublish("/webhooks/transcription", liveBody("call_sid", "EL_since", ev))
	}
	for n := 2; n <= 5; n++ {
		interrupt(n)
	}
	r = startTail(t, true, noEnv, "--since", "3", "--url", url, "EL_since")
	expectNote(t, r.Out, "-- following EL_since, status in-progress, after #3, on "+url)
	interrupt(6)
	_, events, notes := epochEvents(t, r.Out, 3)
	expectLines(t, "--since 3", events, []string{"#4 interruption", "#5 interruption", "#6 interruption"})
	if len(notes) > 0 {
		t.Fatalf("notes: %q", notes)
	}
	r.Stop()

	// Beyond the call's last event: nothing to replay, and the next event
	// is printed without more ado.
	r = startTail(t, true, noEnv, "--url", url, "EL_since", "--since", "#9")
	expectNote(t, r.Out, "-- following EL_since, status in-progress, after #9, on ")
	expectNote(t, r.Out, "-- recovered:false: the gateway no longer has every event of EL_since after #9; what it still has follows")
	interrupt(7)
	_, events, notes = epochEvents(t, r.Out, 1)
	expectLines(t, "--since beyond the last event", append(notes, events...), []string{"#7 interruption"})
}

// TestTailTopic: a topic's states print as versions; a state equal to the
// last one publishes nothing, and prints nothing; after Redis lost the
// topic, its versions count again in a new epoch, and print.
func TestTailTopic(t *testing.T) {
	srv, ins := startCluster(t, 1)
	in := ins[0]
	in.putTopic("workflows", `{"workflows":[{"id":"wf1","state":"running"}]}`)
	r := startTail(t, true, noEnv, "--url", in.url, "--topic", "workflows")
	expectNote(t, r.Out, "-- following topic workflows on "+in.url+" (instance i0)")
	expectNote(t, r.Out, `version 1: {"workflows":[{"id":"wf1","state":"running"}]}`)
	in.putTopic("workflows", `{"workflows": [{"state":"running", "id":"wf1"}]}`)
	in.putTopic("workflows", `{"workflows":[]}`)
	expectNote(t, r.Out, `version 2: {"workflows":[]}`)
	srv.Flush(t)
	in.putTopic("workflows", `{"workflows":[{"id":"wf2","state":"running"}]}`)
	expectNote(t, r.Out, "-- the gateway lost the topic's state; its versions count again, in epoch ")
	expectNote(t, r.Out, `version 1: {"workflows":[{"id":"wf2","state":"running"}]}`)
}

// TestTailRefusals: what the gateway would refuse again ends callgate tail
// with exit code 1 and a message that says why; wrong arguments with 2.
func TestTailRefusals(t *testing.T) {
	srv := redistest.Start(t)
	in := secureInstance(t, srv, redistest.Prefix(t), func(c *config) { c.TopicOrgs = []string{"routes=acme"} })
	in.saveCall(calls.Update{CallSID: "EL_acme", Org: "acme"})
	url := in.wsURL("")
	acme, other := token(t, "u1", "acme"), token(t, "u2", "other")
	env := func(tok string) func(string) string {
		return func(k string) string {
			if k == "CALLGATE_TOKEN" {
				return tok
			}
			return ""
		}
	}
	for _, c := range []struct {
		name  string
		token string
		args  []string
		code  int
		want  string
	}{
		{"unknown call", acme, []string{"--url", url, "nope"}, 1, `callgate tail: no call has the call_sid or conversation_id "nope" (call_not_found): register it first`},
		{"call of another org", other, []string{"--url", url, "EL_acme"}, 1, "(call_not_found)"},
		{"no token", "", []string{"--url", url, "EL_acme"}, 1, "callgate tail: the gateway requires a token (close 4001: authentication required"},
		{"bad token", "not-a-jwt", []string{"--url", url, "EL_acme"}, 1, "callgate tail: the gateway refused the token (close 4001: invalid token)"},
		{"topic of another org", other, []string{"--url", url, "--topic", "routes"}, 1, "callgate tail: the gateway refused this token here (close 4003: this topic is not readable with this token)"},
		{"unknown topic", acme, []string{"--url", url, "--topic", "nope"}, 1, "/ws/nope answered 404 Not Found"},
		{"nothing to follow", "", []string{"--url", url}, 2, "callgate tail: give the call_sid or conversation_id of the call to follow, or --topic NAME"},
		{"two calls", "", []string{"a", "b"}, 2, `one call at a time`},
		{"call and topic", "", []string{"a", "--topic", "routes"}, 2, "give a call or --topic, not both"},
		{"bad since", "", []string{"--since", "x", "a"}, 2, `--since "x": want an event_id (57) or epoch:event_id (1764466799123:57)`},
		{"since and history", "", []string{"--since", "1", "--history", "a"}, 2, "--since and --history both say where to start"},
		{"topic since", "", []string{"--topic", "routes", "--history"}, 2, "a topic has no events to start from"},
		{"bad URL", "", []string{"--url", "ftp://x", "a"}, 2, `URL "ftp://x": want ws://host:port`},
		{"unknown flag", "", []string{"--follow", "a"}, 2, "flag provided but not defined: -follow"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tailtest.Wait)
			defer cancel()
			var stdout, stderr bytes.Buffer
			code := runTail(ctx, c.args, env(c.token), &stdout, &stderr)
			if ctx.Err() != nil {
				t.Fatalf("callgate tail %v did not exit:\n%s", c.args, stderr.String())
			}
			if code != c.code || !strings.Contains(stderr.String(), c.want) || stdout.Len() > 0 {
				t.Fatalf("callgate tail %v: exit %d, stdout %q, stderr\n%s\nwant exit %d and %q", c.args, code, stdout.String(), stderr.String(), c.code, c.want)
			}
		})
	}

	// The token, from CALLGATE_TOKEN, goes in the first frame.
	r := startTail(t, true, env(acme), "--url", url, "EL_acme")
	expectNote(t, r.Out, "-- following EL_acme, status initiated, on ")
	in.saveCall(calls.Update{CallSID: "EL_acme", Status: calls.StatusDone})
	_, events, _ := epochEvents(t, r.Out, 1)
	expectLines(t, "with a token", events, []string{"#1 status done"})

	// A call that gets an org while a token of another follows it: the
	// gateway ends the subscription, and tail does not try again.
	in.saveCall(calls.Update{CallSID: "EL_open"})
	r = startTail(t, true, env(other), "--url", url, "EL_open")
	expectNote(t, r.Out, "-- following EL_open")
	in.saveCall(calls.Update{CallSID: "EL_open", Org: "acme"})
	if err := r.Wait(); err == nil || err.Error() != "the gateway ended the subscription to EL_open (forbidden: the call's org and the token's no longer match)" {
		t.Fatalf("after the call got another org: %v", err)
	}
}

// TestTailUsage: callgate -h mentions the subcommand, and callgate tail -h
// explains itself; neither is an error.
func TestTailUsage(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseConfig([]string{"-h"}, noEnv, &out); !strings.Contains(out.String(), "callgate tail [flags] <call_sid or conversation_id>") {
		t.Fatalf("callgate -h (%v):\n%s", err, out.String())
	}
	out.Reset()
	if code := runTail(context.Background(), []string{"-h"}, noEnv, io.Discard, &out); code != 0 || !strings.Contains(out.String(), "-since") {
		t.Fatalf("callgate tail -h: exit %d\n%s", code, out.String())
	}
}

// TestTailResumesAcrossKill runs two instances as processes and gives tail
// both URLs: the instance holding its socket is killed with -9, and later
// the other is stopped (1001) after the first came back. tail moves to the
// other instance each time and resumes: every event is printed once, in
// order, and each move is said.
func TestTailResumesAcrossKill(t *testing.T) {
	srv := redistest.Start(t)
	bin := buildBinary(t)
	args := []string{
		srv.Flag(), srv.URL(), "--redis-prefix", redistest.Prefix(t),
		"--webhook-secret", testSecret, "--api-key", testAPIKey, "--allow-anonymous",
		"--log-level", "error", "--shutdown-timeout", "5s",
	}
	var procs []*process
	for _, name := range []string{"kill-a", "kill-b"} {
		p := &process{t: t, bin: bin, addr: freeAddr(t), args: append(clone(args), "--instance-id", name)}
		p.start()
		procs = append(procs, p)
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.stop()
		}
	})
	a, b := procs[0], procs[1]
	via := func(p *process) *instance { return &instance{t: t, url: "http://" + p.addr} }
	urlA, urlB := "ws://"+a.addr, "ws://"+b.addr
	via(a).saveCall(calls.Update{CallSID: "EL_kill", Status: calls.StatusInProgress})
	r := startTail(t, true, noEnv, "--url", urlA, "--url", urlB, "EL_kill")
	expectNote(t, r.Out, "-- following EL_kill, status in-progress, on "+urlA+" (instance kill-a)")

	next := 2 // event 1 is the status set at registration
	say := func(p *process, n int) {
		for range n {
			ev := json.RawMessage(fmt.Sprintf(`{"type":"agent_response","agent_response_event":{"agent_response":"turn %d","event_id":%d}}`, next, next))
			via(p).mustPublish("/webhooks/transcription", liveBody("call_sid", "EL_kill", ev))
			next++
		}
	}
	want := func(from, to int) []string {
		var out []string
		for n := from; n <= to; n++ {
			out = append(out, fmt.Sprintf("#%d transcript agent: turn %d", n, n))
		}
		return out
	}
	say(b, 5) // event 1, the status, came before the tail
	epoch, events, _ := epochEvents(t, r.Out, 5)
	expectLines(t, "before the kill", events, want(2, 6))

	a.kill9()
	say(b, 5)
	events, notes := readEvents(t, r.Out, 5)
	expectLines(t, "after the kill", events, want(7, 11))
	expectLines(t, "notes of the kill", notes, []string{
		"-- connection to " + urlA + " closed (1006: unexpected EOF); reconnecting to " + urlB + " in 0s",
		"-- resumed EL_kill after #" + epoch + ":6 on " + urlB + " (instance kill-b), nothing missed",
	})

	a.start()
	b.stop()
	say(a, 5)
	events, notes = readEvents(t, r.Out, 5)
	expectLines(t, "after the restart", events, want(12, 16))
	expectLines(t, "notes of the restart", notes, []string{
		"-- connection to " + urlB + " closed (1001: server shutting down); reconnecting to " + urlA + " in 0s",
		"-- resumed EL_kill after #" + epoch + ":11 on " + urlA + " (instance kill-a), nothing missed",
	})
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	expectLines(t, "the rest", r.Out.Rest(), []string{"-- stopped after #" + epoch + ":16; to resume after it: --since " + epoch + ":16"})
}

// noEpochs is why the epoch tests skip.
const noEpochs = `the gateway sends no "epoch" in event frames yet (probed from a real frame); this test needs the epoch protocol`

// sendsEpoch reports whether in's event frames carry an epoch, from a real
// frame of a call of its own.
func sendsEpoch(t *testing.T, in *instance) bool {
	t.Helper()
	in.saveCall(calls.Update{CallSID: "EL_epoch_probe"})
	c := in.ws()
	c.MustSubscribe("probe", "EL_epoch_probe")
	in.saveCall(calls.Update{CallSID: "EL_epoch_probe", Status: calls.StatusInProgress})
	var f map[string]any
	if err := json.Unmarshal(c.Expect("event").Raw, &f); err != nil {
		t.Fatal(err)
	}
	_, ok := f["epoch"]
	return ok
}

// epochEvents reads n event lines and returns their epoch (from the first,
// which shows it) and the lines without the epoch.
func epochEvents(t *testing.T, l *tailtest.Lines, n int) (epoch string, events, notes []string) {
	t.Helper()
	events, notes = readEvents(t, l, n)
	m := regexp.MustCompile(`^#(\d+):`).FindStringSubmatch(events[0])
	if m == nil {
		t.Fatalf("the first line of an epoch does not show it: %q", events[0])
	}
	events[0] = "#" + strings.TrimPrefix(events[0], m[0])
	return m[1], events, notes
}

func interruptions(from, to int) []string {
	var out []string
	for n := from; n <= to; n++ {
		out = append(out, fmt.Sprintf("#%d interruption", n))
	}
	return out
}

func (in *instance) interrupt(call string, from, to int) {
	in.t.Helper()
	for n := from; n <= to; n++ {
		ev := json.RawMessage(fmt.Sprintf(`{"type":"interruption","interruption_event":{"event_id":%d}}`, n))
		in.mustPublish("/webhooks/transcription", liveBody("call_sid", call, ev))
	}
}

// TestTailEpochReset: Redis loses a call while tail follows it. The
// gateway sends reset; tail says so and goes on with the new epoch from
// its event 1.
func TestTailEpochReset(t *testing.T) {
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "e0", func(c *config) { c.CallCacheTTL = 0 })
	if !sendsEpoch(t, in) {
		t.Skip(noEpochs)
	}
	in.saveCall(calls.Update{CallSID: "EL_reset", Status: calls.StatusInProgress})
	r := startTail(t, true, noEnv, "--url", in.wsURL(""), "EL_reset")
	expectNote(t, r.Out, "-- following EL_reset, status in-progress, on ")
	in.interrupt("EL_reset", 2, 3)
	old, events, _ := epochEvents(t, r.Out, 2)
	expectLines(t, "the first epoch", events, interruptions(2, 3))

	srv.Flush(t)
	in.saveCall(calls.Update{CallSID: "EL_reset", Status: calls.StatusInProgress})
	in.interrupt("EL_reset", 2, 3)
	epoch, events, notes := epochEvents(t, r.Out, 3)
	if epoch == old {
		t.Fatalf("the epoch did not change: %s", epoch)
	}
	expectLines(t, "the new epoch", events, append([]string{"#1 status in-progress"}, interruptions(2, 3)...))
	expectLines(t, "notes", notes, []string{"-- reset: the gateway lost the event numbering of EL_reset (Redis lost its state or failed over); events after #" +
		old + ":3 may be missing; numbering restarts at #" + epoch + ":1"})
}

// startLater reserves an address for an instance that a test starts later:
// until then, tail's connections to it are refused.
func startLater(t *testing.T, srv *redistest.Server, prefix, name string) (url string, start func() *instance) {
	addr := freeAddr(t)
	return "ws://" + addr, func() *instance {
		return startInstance(t, srv, prefix, name, func(c *config) { c.Addr, c.CallCacheTTL = addr, 0 })
	}
}

// TestTailEpochResume: tail loses its instance, and Redis loses the call
// meanwhile. Resuming from the old epoch on another instance, tail is told
// recovered:false and prints the new epoch's events from 1.
func TestTailEpochResume(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	a := startInstance(t, srv, prefix, "a", func(c *config) { c.CallCacheTTL = 0 })
	if !sendsEpoch(t, a) {
		t.Skip(noEpochs)
	}
	publisher := startInstance(t, srv, prefix, "p", func(c *config) { c.CallCacheTTL = 0 })
	urlB, startB := startLater(t, srv, prefix, "b")
	a.saveCall(calls.Update{CallSID: "EL_epochs", Status: calls.StatusInProgress})
	r := startTail(t, true, noEnv, "--url", a.wsURL(""), "--url", urlB, "EL_epochs")
	expectNote(t, r.Out, "-- following EL_epochs")
	a.interrupt("EL_epochs", 2, 3)
	old, _, _ := epochEvents(t, r.Out, 2)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.app.shutdown(ctx)
	expectNote(t, r.Out, "-- connection to "+a.wsURL("")+" closed (1001: server shutting down)")
	srv.Flush(t)
	publisher.saveCall(calls.Update{CallSID: "EL_epochs", Status: calls.StatusInProgress})
	publisher.interrupt("EL_epochs", 2, 3)
	startB()
	r.Out.Until("-- resumed EL_epochs after #" + old + ":3 on " + urlB + " (instance b)")
	expectNote(t, r.Out, "-- recovered:false: the gateway no longer has every event of EL_epochs after #"+old+":3; what it still has follows")
	epoch, events, notes := epochEvents(t, r.Out, 3)
	if epoch == old || len(notes) > 0 {
		t.Fatalf("epoch %s after %s, notes %q", epoch, old, notes)
	}
	expectLines(t, "the new epoch", events, append([]string{"#1 status in-progress"}, interruptions(2, 3)...))
}

// TestTailLiveResume: a tail that started live and printed nothing yet
// resumes from the call's last event when it subscribed (the subscribed
// frame's event_id and epoch): it prints exactly the events after it.
func TestTailLiveResume(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	a := startInstance(t, srv, prefix, "a")
	if !sendsEpoch(t, a) {
		t.Skip(noEpochs)
	}
	publisher := startInstance(t, srv, prefix, "p")
	urlB, startB := startLater(t, srv, prefix, "b")
	a.saveCall(calls.Update{CallSID: "EL_live", Status: calls.StatusInProgress})
	a.interrupt("EL_live", 2, 3)
	r := startTail(t, true, noEnv, "--url", a.wsURL(""), "--url", urlB, "EL_live")
	expectNote(t, r.Out, "-- following EL_live")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.app.shutdown(ctx)
	publisher.interrupt("EL_live", 4, 6)
	startB()
	r.Out.Until("-- resumed EL_live after #")
	_, events, notes := epochEvents(t, r.Out, 3)
	expectLines(t, "after the live start", append(notes, events...), interruptions(4, 6))
}
