package gateway

// Server-Sent Events streams.
//
// A stream is a conn like a socket: the same hub followers, the same send
// queue bounded in frames and bytes, the same flusher, limits, counters and
// shutdown. What differs:
//
//   - serveStream does the work a socket's client frames do (welcome,
//     subscribe each call, or attach the topic) before the response starts,
//     so that every refusal is an HTTP status. It holds the writer role
//     meanwhile: frames queue up, nothing is written. Then it hijacks the
//     connection, writes the response head itself and hands the writer
//     role to the flusher.
//   - The flusher writes each frame as an event (buildStream): the same
//     JSON as the socket's frame on a data line, with an event name and,
//     for frames that move a call (or a topic) forward, an id. Control
//     frames are written as they are: keepalive comments and the close
//     event.
//   - The response has no length and no chunked encoding: it ends when the
//     connection does. A stream's "close frame" is its close event; once
//     it is written, finish half-closes the connection (endResponse).
//   - runStream only reads, to see the client go away.
//
// Event ids. A call stream's id lists, in the order the request named the
// calls, the position each call reached in the events written so far:
// <epoch>-<event_id>, comma-separated. It is exactly what the client sends
// back (Last-Event-ID, or ?since=) to resume every call where it was. The
// writer builds it from each frame's meta (call, pos) as it writes, in queue order,
// so it needs no lock: the writer role is one goroutine at a time. A call
// whose subscribed event is not written yet shows the position the
// request gave for it (empty for none).

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
)

// Error codes of stream requests, answered as HTTP errors before the
// stream starts (the others are shared with sockets and the API).
const (
	codeTokenRequired  = "token_required"
	codeInvalidSince   = "invalid_since"
	codeInvalidRequest = "invalid_request"
)

// maxCallIDBytes: no call has a longer identifier (the API allows 128
// bytes); a longer one is answered as unknown without a lookup.
const maxCallIDBytes = 1024

// keepaliveComment is written to idle streams every StreamKeepalive.
var keepaliveComment = []byte(": keepalive\n\n")

// sseStream is what a conn that is a stream has more than a socket.
type sseStream struct {
	// Set by serveStream before the stream starts; read only after.
	//
	// keys are the calls, in the order the request named them; given is
	// each call's position as the request gave it ("" for none), shown
	// in ids until the call's subscribed event is written.
	keys  []string
	given []string

	// Owned by the writer role: the position each call reached in what
	// was written, once known.
	pos   []Position
	known []bool
}

// ServeCallStream serves a Server-Sent Events stream of the calls ids
// name (call_sid or conversation_id); with no ids, the request's "call"
// query parameters name them.
func (s *Server) ServeCallStream(w http.ResponseWriter, r *http.Request, ids ...string) {
	s.serveStream(w, r, nil, ids)
}

// TopicStreamHandler serves the Server-Sent Events stream of one
// configured topic; nil for an unknown topic.
func (s *Server) TopicStreamHandler(name string) http.Handler {
	t := s.topics[name]
	if t == nil {
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveStream(w, r, t, nil) })
}

// serveStream checks a stream request, follows what it names, and starts
// the stream; topic is nil for a call stream.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, topic *topicState, ids []string) {
	if !s.enter(w) {
		return
	}
	started := false
	defer func() {
		if !started {
			s.wg.Done()
		}
	}()
	if !s.checkOrigin(r) {
		writeHTTPError(w, http.StatusForbidden, "origin_not_allowed", "origin not allowed")
		return
	}
	s.allowCORS(w.Header(), r)
	st := &sseStream{}
	var resume []resumeAt
	if topic == nil {
		var ferr *frameError
		if ids, ferr = s.streamCalls(r, ids); ferr == nil {
			resume, ferr = parseResume(r, len(ids))
		}
		if ferr != nil {
			writeHTTPError(w, http.StatusBadRequest, ferr.Code, ferr.Message)
			return
		}
		st.given = make([]string, len(ids))
		for i, at := range resume {
			st.given[i] = at.text
		}
		st.pos, st.known = make([]Position, len(ids)), make([]bool, len(ids))
	}
	id, _, ok := s.checkRequest(w, r, topic, true)
	if !ok {
		return
	}
	c := &conn{
		srv:         s,
		id:          uuid.NewString(),
		user:        "anonymous",
		topic:       topic,
		stream:      st,
		connectedAt: time.Now(),
		slot:        s.nextSlot.Add(1),
		done:        make(chan struct{}),
		finished:    make(chan struct{}),
		// Held until the response head is written: what is queued
		// meanwhile waits.
		writing: true,
	}
	if id != nil {
		c.counted = true
		c.setIdentity(*id)
	}
	c.requestID = w.Header().Get("X-Request-Id")

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	if ferr := c.openStream(ctx, ids, resume); ferr != nil {
		c.cleanup(context.WithoutCancel(ctx))
		writeHTTPError(w, streamStatus(ferr.Code), ferr.Code, ferr.Message)
		return
	}
	nc, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		c.cleanup(context.WithoutCancel(ctx))
		writeHTTPError(w, http.StatusHTTPVersionNotSupported, "http_version_not_supported", "streams are served over HTTP/1.1")
		return
	}
	// The server's read and write timeouts are for requests, not
	// streams.
	_ = nc.SetDeadline(time.Time{})
	c.nc = nc
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	// A stream's client sends nothing, so silence does not tell that it
	// is gone; a keepalive that goes unacknowledged does.
	setUserTimeout(c.raw, streamUserTimeout(&s.cfg))
	s.mu.Lock()
	s.conns[c] = struct{}{}
	if s.draining {
		// Shutdown began meanwhile, after it closed the connections it
		// found.
		c.closeWith(websocket.CloseGoingAway, "server shutting down")
	}
	s.mu.Unlock()
	s.metrics.connections.Add(1)
	s.metrics.streams.Add(1)
	started = true
	user, _ := c.principal()
	c.logger().Info("connection opened", "user", user, "path", r.URL.Path, "transport", "sse")
	go c.runStream()

	head := streamHead(w.Header())
	_ = nc.SetWriteDeadline(time.Now().Add(s.cfg.WriteWait))
	if _, err := nc.Write(head); err != nil {
		c.fail(err)
		return
	}
	_ = nc.SetWriteDeadline(time.Time{})
	c.scheduleExpiry()
	s.flusher.add(c) // the writer role passes to the flusher
}

// openStream queues what a stream starts with: the welcome and each
// call's subscription (its subscribed event, then its events), or the
// topic's current state. On error nothing has started; the caller cleans
// up.
func (c *conn) openStream(ctx context.Context, ids []string, resume []resumeAt) *frameError {
	if c.topic != nil {
		if !c.srv.attachTopic(ctx, c) {
			return errUnavailable
		}
		return nil
	}
	c.enqueue(c.welcome())
	for i, id := range ids {
		if len(id) > maxCallIDBytes {
			return errCallNotFound
		}
		f := frame{Type: typeSubscribe, Call: id, Since: -1}
		if at := resume[i]; at.set {
			f.Since, f.Epoch, f.HasEpoch = at.pos.Seq, at.pos.Epoch, at.hasEpoch
		}
		before := len(c.subs)
		if ferr := c.subscribe(ctx, f); ferr != nil {
			return ferr
		}
		select {
		case <-c.done:
			// Ended already (its queue overflowed): the stream starts
			// with its close event, and the client comes back.
			return nil
		default:
		}
		if len(c.subs) == before {
			return &frameError{codeInvalidRequest, "a call is named twice (perhaps by call_sid and conversation_id)"}
		}
		c.stream.keys = append(c.stream.keys, c.subs[len(c.subs)-1].key)
	}
	return nil
}

// streamCalls returns the calls a call stream request names: ids from the
// path, or the call query parameters.
func (s *Server) streamCalls(r *http.Request, ids []string) ([]string, *frameError) {
	q := r.URL.Query()["call"]
	if len(ids) > 0 && len(q) > 0 {
		return nil, &frameError{codeInvalidRequest, "name the calls in the path or as call parameters, not both"}
	}
	if len(ids) == 0 {
		ids = q
	}
	if len(ids) == 0 {
		return nil, &frameError{CodeMissingField, "name a call: /sse/calls/{call_sid or conversation_id}, or /sse/calls?call=…&call=…"}
	}
	for _, id := range ids {
		if strings.TrimSpace(id) == "" {
			return nil, &frameError{CodeMissingField, "a call is empty"}
		}
	}
	if len(ids) > s.cfg.MaxSubscriptions {
		return nil, &frameError{CodeTooManySubscriptions, "more calls than one stream may follow (" + strconv.Itoa(s.cfg.MaxSubscriptions) + ")"}
	}
	return ids, nil
}

// streamUserTimeout is how long a stream's written data may go
// unacknowledged before its connection is dropped: three keepalive
// periods and a write's bound.
func streamUserTimeout(cfg *Config) time.Duration {
	return 3*cfg.StreamKeepalive + cfg.WriteWait
}

// streamStatus is the HTTP status of a refusal before a stream starts.
func streamStatus(code string) int {
	switch code {
	case CodeCallNotFound:
		return http.StatusNotFound
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}

// allowCORS lets the page of an allowed origin read the stream: any
// origin, without credentials, when no origins are configured; with
// credentials (the cookie) only for the origins configured.
func (s *Server) allowCORS(h http.Header, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	if len(s.cfg.AllowedOrigins) > 0 {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

// streamHead is the response head of a stream, with the headers set on h
// (the request id, CORS), and the retry advertised: between 1 and 3
// seconds, drawn for each stream, so that the clients of an instance that
// went away do not all come back at once.
func streamHead(h http.Header) []byte {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Connection", "close")
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(&b) // replaces line breaks in values
	b.WriteString("\r\nretry: ")
	b.WriteString(strconv.Itoa(1000 + rand.IntN(2000)))
	b.WriteString("\n\n")
	return b.Bytes()
}

// runStream waits for the client to go away, or for the stream to end,
// then cleans up. Nothing is read but the end: the client sends nothing
// after its request.
func (c *conn) runStream() {
	s := c.srv
	defer s.wg.Done()
	var buf [512]byte
	for {
		if _, err := c.nc.Read(buf[:]); err != nil {
			break
		}
	}
	// Whatever still waits is of no use to a client that left; after
	// the close event nothing waits.
	c.end(0, "", true)
	c.cleanup(context.WithoutCancel(s.ctx))
	<-c.finished
	_ = c.nc.Close()

	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.metrics.connections.Add(-1)
	s.metrics.streams.Add(-1)
	c.logger().Info("connection closed", "duration", time.Since(c.connectedAt).Round(time.Millisecond).String())
}

// endResponse ends a stream's response once its last frame is written:
// the client sees the end of the body, and has WriteWait to close its
// side, which ends runStream's read.
func (c *conn) endResponse() {
	if c.nc == nil {
		return
	}
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.WriteWait))
}
