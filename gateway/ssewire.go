package gateway

// The event format of Server-Sent Events streams: how frames are written as
// events, the close event, and the event ids a call stream resumes from
// (see sse.go).

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"

	"github.com/callgate/callgate/internal/wire"
)

// resumeAt is where the request asks a call's events to resume: after
// pos, whose epoch is the call's current one unless hasEpoch. text is the
// position as an id shows it.
type resumeAt struct {
	set, hasEpoch bool
	pos           Position
	text          string
}

// maxPositionBytes is the longest position an id holds: two int64s and a
// dash.
const maxPositionBytes = 2*19 + 1

// parseResume reads where a call stream resumes: Last-Event-ID (what
// EventSource sends when it reconnects), else ?since=; one position per
// call, comma-separated, each <epoch>-<event_id>, or <event_id> in the
// epoch ?epoch= gives (the call's current one without it), or empty for
// none.
func parseResume(r *http.Request, n int) ([]resumeAt, *frameError) {
	out := make([]resumeAt, n)
	raw := r.Header.Get("Last-Event-ID")
	q := r.URL.Query()
	if raw == "" {
		raw = q.Get("since")
	}
	epoch, hasEpoch := int64(0), false
	if e := q.Get("epoch"); e != "" {
		v, ok := decimalString(e)
		if !ok {
			return nil, &frameError{codeInvalidSince, "epoch must be a string of digits, as the server sent it"}
		}
		epoch, hasEpoch = v, true
	}
	if raw == "" {
		return out, nil
	}
	bad := &frameError{codeInvalidSince, "Last-Event-ID (or since) must be an event id of this stream: one position per call, in the order of the calls, each <epoch>-<event_id> or <event_id>"}
	if len(raw) > n*(maxPositionBytes+1) || strings.Count(raw, ",") != n-1 {
		return nil, bad
	}
	for i, entry := range strings.Split(raw, ",") {
		if entry == "" {
			continue
		}
		at := resumeAt{set: true}
		e, seq, dashed := strings.Cut(entry, "-")
		if !dashed {
			seq = e
		}
		v, ok := decimalString(seq)
		if !ok {
			return nil, bad
		}
		at.pos.Seq = v
		switch {
		case dashed:
			if at.pos.Epoch, ok = decimalString(e); !ok {
				return nil, bad
			}
			at.hasEpoch = true
		case hasEpoch:
			at.pos.Epoch, at.hasEpoch = epoch, true
		}
		if at.hasEpoch {
			at.text = string(appendPosition(nil, at.pos))
		} else {
			at.text = seq
		}
		out[i] = at
	}
	return out, nil
}

// decimalString reads a non-negative int64 written in canonical decimal.
func decimalString(s string) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0 && s == strconv.FormatInt(n, 10)
}

// streamCloseFrame is the data of a close event.
type streamCloseFrame struct {
	Type   string `json:"type"`
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// streamClose is a stream's last event: why the server ends it, with the
// code a socket would be closed with. Code 0 writes nothing: the client
// is gone.
func streamClose(code int, text string) []byte {
	if code == 0 {
		return nil
	}
	b := []byte("event: close\ndata: ")
	b = append(b, encode(streamCloseFrame{Type: "close", Code: code, Reason: text})...)
	return append(b, "\n\n"...)
}

// buildStream lays frames out as the events of c's stream, in
// alternating headers and payloads as build does: each frame's JSON is a
// payload, shared and unchanged unless it spans lines, and everything
// around it (the blank line that ends the event before, the id, the
// event name, "data: ") is a header in the scratch space. Control frames
// are written as they are. It returns the buffers and their length in
// bytes. Called by the writer role, which owns the stream's positions.
func (w *writeScratch) buildStream(c *conn, frames []outFrame) ([][]byte, int) {
	st := c.stream
	hdrs, ends, bufs := w.hdrs[:0], w.ends[:0], w.bufs[:0]
	open := false // the last event still needs its blank line
	for _, f := range frames {
		if open {
			hdrs = append(hdrs, "\n\n"...)
		}
		data := f.data
		if !f.control {
			hdrs = st.appendHead(hdrs, c.topic, f)
			data = dataLines(data)
		}
		open = !f.control
		ends = append(ends, len(hdrs))
		bufs = append(bufs, nil, data)
	}
	if open {
		hdrs = append(hdrs, "\n\n"...)
		ends = append(ends, len(hdrs))
		bufs = append(bufs, nil, nil)
	}
	off, total := 0, len(hdrs)
	for i, end := range ends {
		bufs[2*i] = hdrs[off:end:end]
		total += len(bufs[2*i+1])
		off = end
	}
	w.hdrs, w.ends, w.bufs = hdrs, ends, bufs
	return bufs, total
}

// appendHead appends what comes before an event's data: its id, if the
// frame moves a call or the topic forward, its name, and "data: ".
func (st *sseStream) appendHead(b []byte, topic *topicState, f outFrame) []byte {
	switch {
	case f.meta != nil:
		b = st.appendID(b, f.meta.call, f.meta.pos)
	case topic != nil:
		if v, ok := topic.versionOf(f.data); ok {
			b = append(b, "id: "...)
			b = appendPosition(b, v)
			b = append(b, '\n')
		}
	}
	b = append(b, "event: "...)
	b = appendEventName(b, f.data)
	return append(b, "\ndata: "...)
}

// appendID records that call reached p and appends the stream's id.
func (st *sseStream) appendID(b []byte, call string, p Position) []byte {
	for i, k := range st.keys {
		if k == call {
			st.pos[i], st.known[i] = p, true
		}
	}
	b = append(b, "id: "...)
	for i := range st.pos {
		if i > 0 {
			b = append(b, ',')
		}
		if st.known[i] {
			b = appendPosition(b, st.pos[i])
		} else {
			b = append(b, st.given[i]...)
		}
	}
	return append(b, '\n')
}

// appendPosition appends p as <epoch>-<event_id>.
func appendPosition(b []byte, p Position) []byte {
	b = strconv.AppendInt(b, p.Epoch, 10)
	b = append(b, '-')
	return strconv.AppendInt(b, p.Seq, 10)
}

// appendEventName appends the event name of a frame: a call event's
// event, else the frame's type.
func appendEventName(b, frame []byte) []byte {
	if name, ok := wire.EventName(frame); ok && plainName(name) {
		return append(b, name...)
	}
	if rest, ok := bytes.CutPrefix(frame, []byte(`{"type":"`)); ok {
		if i := bytes.IndexByte(rest, '"'); i > 0 && plainName(rest[:i]) {
			return append(b, rest[:i]...)
		}
	}
	return append(b, "message"...)
}

// plainName reports whether s can stand on an event line as it is.
func plainName[T string | []byte](s T) bool {
	for i := range len(s) {
		if c := s[i]; c == '\n' || c == '\r' || c == '\\' {
			return false
		}
	}
	return len(s) > 0
}

// dataLines returns frame as the value of data lines: unchanged when it
// is one line, as frames are; otherwise each line break starts a new
// data line (EventSource joins them with "\n", which JSON reads as
// white space).
func dataLines(frame []byte) []byte {
	if bytes.IndexAny(frame, "\r\n") < 0 {
		return frame
	}
	out := make([]byte, 0, len(frame)+64)
	for i := 0; i < len(frame); i++ {
		switch frame[i] {
		case '\r':
			if i+1 < len(frame) && frame[i+1] == '\n' {
				i++
			}
			out = append(out, "\ndata: "...)
		case '\n':
			out = append(out, "\ndata: "...)
		default:
			out = append(out, frame[i])
		}
	}
	return out
}
