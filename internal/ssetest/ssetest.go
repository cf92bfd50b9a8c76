// Package ssetest is a Server-Sent Events client for tests: a parser of
// text/event-stream as the HTML standard defines it for EventSource, and
// a client that reads a stream over HTTP/1.1 in the background and hands
// its events out in order.
package ssetest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/wstest"
)

// Wait bounds every wait for an event.
const Wait = wstest.Wait

// Event is one dispatched event.
type Event struct {
	// Name is the event's type: its event field, or "message".
	Name string
	// ID is the last event id when the event was dispatched, as
	// EventSource's lastEventId: the id field of this event or of an
	// earlier one.
	ID string
	// Data is the data fields, joined with "\n".
	Data string
	// Frame is Data decoded as a frame, when it is JSON.
	Frame wstest.Frame
}

// Parser reads events from a text/event-stream body.
type Parser struct {
	r       *bufio.Reader
	started bool
	lastID  string
	// retry is the last reconnection time the stream set, in
	// milliseconds; read by other goroutines.
	retry atomic.Int64
	// comment is called with each comment line, if set.
	comment func(string)
}

// NewParser returns a parser of r.
func NewParser(r io.Reader) *Parser { return &Parser{r: bufio.NewReader(r)} }

// readLine returns the next line without its end (CRLF, LF or CR).
func (p *Parser) readLine() (string, error) {
	var b []byte
	for {
		c, err := p.r.ReadByte()
		if err != nil {
			if err == io.EOF && len(b) > 0 {
				// A line without its end is not a line: EventSource
				// drops it with the event it belongs to.
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
		switch c {
		case '\n':
			return string(b), nil
		case '\r':
			if next, err := p.r.Peek(1); err == nil && next[0] == '\n' {
				p.r.ReadByte()
			}
			return string(b), nil
		}
		b = append(b, c)
	}
}

// Next returns the next event. At the end of the stream it returns the
// error that ended it (io.EOF for a clean end); an event that no blank
// line finished is dropped, as EventSource drops it.
func (p *Parser) Next() (Event, error) {
	var data strings.Builder
	hasData := false
	name := ""
	for {
		line, err := p.readLine()
		if err != nil {
			return Event{}, err
		}
		if !p.started {
			p.started = true
			line = strings.TrimPrefix(line, "\uFEFF")
		}
		if line == "" {
			if !hasData {
				name = ""
				continue
			}
			ev := Event{Name: name, ID: p.lastID, Data: strings.TrimSuffix(data.String(), "\n")}
			if ev.Name == "" {
				ev.Name = "message"
			}
			if json.Unmarshal([]byte(ev.Data), &ev.Frame) == nil {
				ev.Frame.Raw = []byte(ev.Data)
			}
			return ev, nil
		}
		if line[0] == ':' {
			if p.comment != nil {
				p.comment(line[1:])
			}
			continue
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			name = value
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
			hasData = true
		case "id":
			if !strings.ContainsRune(value, 0) {
				p.lastID = value
			}
		case "retry":
			if ms, err := strconv.Atoi(value); err == nil && ms >= 0 && strings.Trim(value, "0123456789") == "" {
				p.retry.Store(int64(ms))
			}
		}
	}
}

// Stream is a test client of one stream.
type Stream struct {
	t      testing.TB
	Resp   *http.Response
	parser *Parser
	events chan Event
	// comments receives each comment line (keepalives).
	comments chan string
	err      atomic.Pointer[error]
}

// Request opens url with header and returns the response: a Stream when
// it is a 200 event stream, else the status and error body.
func Request(t testing.TB, url string, header http.Header) (s *Stream, status int, body []byte, err error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "text/event-stream")
	// A transport of its own: no connection is shared with other
	// requests, and closing the body ends the stream's connection.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, nil, err
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, resp.StatusCode, body, nil
	}
	s = &Stream{t: t, Resp: resp, parser: NewParser(resp.Body),
		events: make(chan Event, 4096), comments: make(chan string, 4096)}
	s.parser.comment = func(c string) {
		select {
		case s.comments <- c:
		default:
		}
	}
	t.Cleanup(func() { resp.Body.Close() })
	go s.read()
	return s, resp.StatusCode, nil, nil
}

// Dial opens a stream and fails the test unless it starts.
func Dial(t testing.TB, url string, header http.Header) *Stream {
	t.Helper()
	s, status, body, err := Request(t, url, header)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if s == nil {
		t.Fatalf("GET %s: %d %s, want a stream", url, status, body)
	}
	return s
}

// Refused opens url and fails the test unless the request is refused; it
// returns the status and the error body's code.
func Refused(t testing.TB, url string, header http.Header) (int, string) {
	t.Helper()
	s, status, body, err := Request(t, url, header)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if s != nil {
		t.Fatalf("GET %s: a stream started, want a refusal", url)
	}
	var e struct{ Code, Message string }
	if err := json.Unmarshal(body, &e); err != nil || e.Code == "" || e.Message == "" {
		t.Fatalf("GET %s: %d with body %q, want {\"code\":…,\"message\":…}", url, status, body)
	}
	return status, e.Code
}

func (s *Stream) read() {
	defer close(s.events)
	for {
		ev, err := s.parser.Next()
		if err != nil {
			s.err.Store(&err)
			return
		}
		s.events <- ev
	}
}

// Next returns the next event; the test fails if none comes within Wait
// or the stream ends.
func (s *Stream) Next() Event {
	s.t.Helper()
	ev, ok := s.NextOrEnd()
	if !ok {
		s.t.Fatalf("stream ended (%v) while waiting for an event", s.Err())
	}
	return ev
}

// NextOrEnd returns the next event, or ok=false once the stream has
// ended.
func (s *Stream) NextOrEnd() (Event, bool) {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		return ev, ok
	case <-time.After(Wait):
		s.t.Fatalf("no event within %s", Wait)
		return Event{}, false
	}
}

// Expect returns the next event and fails unless it is named name.
func (s *Stream) Expect(name string) Event {
	s.t.Helper()
	ev := s.Next()
	if ev.Name != name {
		s.t.Fatalf("got event %q (id %q): %s, want %q", ev.Name, ev.ID, ev.Data, name)
	}
	return ev
}

// Ended waits for the end of the stream, failing on any event before it,
// and returns why reading ended (io.EOF for a clean end).
func (s *Stream) Ended() error {
	s.t.Helper()
	if ev, ok := s.NextOrEnd(); ok {
		s.t.Fatalf("got event %q: %s, want the end of the stream", ev.Name, ev.Data)
	}
	return s.Err()
}

// Err is why reading ended; nil while it goes on.
func (s *Stream) Err() error {
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

// CleanEnd reports whether err is a clean end of the body.
func CleanEnd(err error) bool { return errors.Is(err, io.EOF) }

// Comment waits for the next comment line and returns it.
func (s *Stream) Comment() string {
	s.t.Helper()
	select {
	case c := <-s.comments:
		return c
	case <-time.After(Wait):
		s.t.Fatalf("no comment within %s", Wait)
		return ""
	}
}

// Retry is the last reconnection time the stream set; 0 if none.
func (p *Parser) Retry() time.Duration { return time.Duration(p.retry.Load()) * time.Millisecond }

// Retry is the reconnection time the stream advertised so far.
func (s *Stream) Retry() time.Duration { return s.parser.Retry() }

// Close ends the stream from the client's side.
func (s *Stream) Close() { s.Resp.Body.Close() }

// Parse reads every event of a whole body; for tests of raw bytes.
func Parse(body []byte) ([]Event, error) {
	p := NewParser(bytes.NewReader(body))
	var out []Event
	for {
		ev, err := p.Next()
		if err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, err
		}
		out = append(out, ev)
	}
}

// Position is where an event or subscribed event puts its call, as a
// stream's id shows it: <epoch>-<event_id>; and the call's call_sid. ok
// is false for other events.
func (ev Event) Position() (call, pos string, ok bool) {
	f := ev.Frame
	switch f.Type {
	case "event", "reset":
		call = f.CallSID
	case "subscribed":
		var rec struct {
			CallSID string `json:"call_sid"`
		}
		if json.Unmarshal(f.Call, &rec) != nil {
			return "", "", false
		}
		call = rec.CallSID
	default:
		return "", "", false
	}
	return call, f.Epoch + "-" + f.EventID, true
}

// Follow reads n events of a stream of the calls keys (call_sids, in the
// order of its URL), whose positions start at at (as the stream's id shows
// them), and checks that each event that moves a call carries the id of
// every call's position after it: the calls' events may interleave in any
// order, but each id is exact. It returns the events.
func (s *Stream) Follow(keys, at []string, n int) []Event {
	s.t.Helper()
	cur := append([]string(nil), at...)
	var out []Event
	for range n {
		ev := s.Next()
		out = append(out, ev)
		call, pos, ok := ev.Position()
		if !ok {
			continue
		}
		i := slices.Index(keys, call)
		if i < 0 {
			s.t.Fatalf("event of %s, not a call of the stream %v: %s", call, keys, ev.Data)
		}
		cur[i] = pos
		if want := strings.Join(cur, ","); ev.ID != want {
			s.t.Fatalf("%s of %s: id %q, want %q", ev.Name, call, ev.ID, want)
		}
	}
	return out
}
