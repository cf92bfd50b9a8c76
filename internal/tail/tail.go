// Package tail is the engine of `callgate tail`: it follows one call, or
// one state topic, of a callgate gateway and writes what arrives as lines,
// readable ones or the frames themselves. It reconnects by itself and
// resumes after the last event it wrote, so that no event is lost or
// written twice across reconnects, and it says in a note when the gateway
// could not replay everything.
//
// Events (or frames) go to Config.Out; notes about the connection, each
// starting with "-- ", go to Config.Notes.
package tail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

const (
	// callsPath is the call socket under a gateway's base URL; topics are
	// at /ws/<topic>.
	callsPath = "/ws/calls/transcriptions"

	handshakeTimeout = 10 * time.Second
	// writeWait bounds every write to the socket.
	writeWait = 10 * time.Second
	// pongWait is how long the connection may stay silent after a ping
	// before it counts as dead. The pings are application pings, answered
	// by pongs, so this does not depend on the server's --pong-wait.
	pongWait = 15 * time.Second
	// closeWait is how long a stop waits for the server to answer its
	// close frame.
	closeWait = 2 * time.Second
	// maxFrameBytes bounds a server frame: a completed event carries the
	// call's whole transcript.
	maxFrameBytes = 128 << 20

	defaultPingPeriod = 30 * time.Second
	defaultMaxBackoff = 30 * time.Second
	// minBackoff is the ceiling of the first wait; each failed attempt in
	// a row doubles it, up to MaxBackoff.
	minBackoff = 250 * time.Millisecond

	// Request ids of tail's own frames, so that replies can be told apart.
	subscribeID = "1"
	authID      = "auth"
	pingID      = "keepalive"
)

// Close codes of docs/PROTOCOL.md that are not in the websocket package.
const (
	closeAuthFailed        = 4001
	closeTokenExpired      = 4002
	closeForbidden         = 4003
	closeSendQueueOverflow = 4008
	closeRateLimited       = 4029
	closeTooManyConns      = 4030
)

// Config says what to follow, where, and where to write it.
type Config struct {
	// URLs are the gateway's base URLs, like ws://localhost:8080 (wss://,
	// and http(s):// for the same, are accepted; a path is a prefix). The
	// first connection goes to the first; each reconnect goes to the next
	// one, round the list.
	URLs []string
	// Call is the call_sid or conversation_id to follow. Topic, set
	// instead, is the state topic to follow.
	Call, Topic string
	// Token, if set, is sent in an auth frame, the first frame of every
	// connection; never in the URL.
	Token string
	// Since, if set, is where to start a call: every stored event after it
	// is written first. Nil starts with the call's next event.
	Since *Position
	// JSON writes the frames the server sends, one per line, instead of
	// readable lines. Left out: pongs (answers to tail's keepalive pings),
	// and an event or topic state already written before a reconnect.
	JSON bool
	// Out receives the events (or frames); Notes the notes.
	Out, Notes io.Writer
	// MaxBackoff caps the wait between reconnects; zero is 30 s.
	MaxBackoff time.Duration
	// PingPeriod is how often tail pings the server, to notice a dead
	// connection; zero is 30 s.
	PingPeriod time.Duration
}

// Tail follows what its Config names. Its fields belong to the goroutine
// of Run.
type Tail struct {
	cfg        Config
	urls       []string // socket URLs, in the order of cfg.URLs
	pingPeriod time.Duration
	maxBackoff time.Duration
	// attempt counts the connections in a row that failed before they got
	// going.
	attempt int

	// A call.
	pos     Position // the last event written, or where to start
	havePos bool
	shown   string // the epoch last shown on a line
	// followed: a subscribe was answered once; written: event lines.
	followed bool
	written  int
	// unsure: the gateway said recovered:false, and no event came since;
	// the next one may have an event_id below the position.
	unsure  bool
	callSID string
	// authNoted: the gateway said once that it checks no tokens.
	authNoted bool

	// A topic: the last state written, as (epoch, version); version 0
	// before one.
	version    int64
	topicEpoch string
}

// New checks cfg and returns a Tail for it.
func New(cfg Config) (*Tail, error) {
	if (cfg.Call == "") == (cfg.Topic == "") {
		return nil, errors.New("follow either a call or a topic")
	}
	if cfg.Topic != "" && cfg.Since != nil {
		return nil, errors.New("a topic has no events to start from: its current state comes first")
	}
	if len(cfg.URLs) == 0 {
		return nil, errors.New("no gateway URL")
	}
	t := &Tail{cfg: cfg, pingPeriod: cfg.PingPeriod, maxBackoff: cfg.MaxBackoff}
	for _, base := range cfg.URLs {
		u, err := endpoint(base, cfg.Topic)
		if err != nil {
			return nil, err
		}
		t.urls = append(t.urls, u)
	}
	if t.pingPeriod <= 0 {
		t.pingPeriod = defaultPingPeriod
	}
	if t.maxBackoff <= 0 {
		t.maxBackoff = defaultMaxBackoff
	}
	if cfg.Since != nil {
		t.pos, t.havePos, t.shown = *cfg.Since, true, cfg.Since.Epoch
	}
	return t, nil
}

// endpoint returns the socket URL under base for topic, or for calls when
// topic is "".
func endpoint(base, topic string) (string, error) {
	s := base
	if !strings.Contains(s, "://") {
		s = "ws://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("URL %q: %w", base, err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("URL %q: want ws://host:port or wss://host (http and https are read as ws and wss)", base)
	}
	if u.Host == "" {
		return "", fmt.Errorf("URL %q has no host", base)
	}
	path := callsPath
	if topic != "" {
		path = "/ws/" + topic
	}
	u.Path, u.RawPath = strings.TrimRight(u.Path, "/")+path, ""
	return u.String(), nil
}

// Run follows until ctx ends, and then returns nil after closing the
// socket with 1000. It returns an error when the gateway refuses in a way
// that retrying cannot change: an unknown call, a missing, refused or
// expired token, a forbidden topic, a URL that is not a gateway's.
func (t *Tail) Run(ctx context.Context) error {
	for i := 0; ; i++ {
		at := i % len(t.urls)
		r := t.connect(ctx, t.urls[at], t.cfg.URLs[at])
		if r.stop || ctx.Err() != nil {
			t.noteEnd("stopped")
			return nil
		}
		if r.fatal != nil {
			t.noteEnd("")
			return r.fatal
		}
		if r.going {
			t.attempt = 0
		}
		delay := t.backoff(r.pace)
		t.attempt++
		t.note("%s; reconnecting to %s in %s", r.reason, t.cfg.URLs[(i+1)%len(t.urls)], delay.Round(time.Millisecond))
		wait := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			wait.Stop()
			t.noteEnd("stopped")
			return nil
		case <-wait.C:
		}
	}
}

// pace is how soon to reconnect after a connection ended.
type pace int

const (
	// paceBackoff: after a wait that grows with each failure in a row.
	paceBackoff pace = iota
	// paceNow: at once if the connection had got going (the instance
	// shut down or died, or cut off a slow reader); else as paceBackoff.
	paceNow
	// paceSlow: the gateway asked to slow down; as paceBackoff, but as
	// if four attempts had failed already.
	paceSlow
)

// backoff returns the wait before the next connection: exponential with
// full jitter (a random time up to the ceiling), capped at maxBackoff.
func (t *Tail) backoff(p pace) time.Duration {
	n := t.attempt
	switch {
	case p == paceNow && n == 0:
		return 0
	case p == paceSlow:
		n = max(n, 4)
	}
	ceiling := t.maxBackoff
	if n < 30 {
		ceiling = min(ceiling, minBackoff<<n)
	}
	return rand.N(ceiling + 1)
}

// result is how a connection ended.
type result struct {
	stop   bool   // ctx ended
	fatal  error  // do not reconnect
	reason string // why it ended, for the note
	pace   pace
	// going: the connection got as far as following.
	going bool
}

// conn is one connection's state.
type conn struct {
	ws   *websocket.Conn
	base string // the base URL, as given
	// instance is the instance_id of the welcome frame.
	instance string
	// going: subscribed (a call) or welcomed (a topic).
	going bool
	// hadState: a topic state arrived on this connection.
	hadState bool
	// asked is what the subscribe asked for: since, or nil for live.
	asked *Position
}

// clientFrame is any frame tail sends.
type clientFrame struct {
	Type  string `json:"type"`
	ID    string `json:"id,omitempty"`
	Call  string `json:"call,omitempty"`
	Since string `json:"since,omitempty"`
	Epoch string `json:"epoch,omitempty"`
	Token string `json:"token,omitempty"`
}

func (c *conn) write(f clientFrame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	c.ws.SetWriteDeadline(time.Now().Add(writeWait))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// closeNormal sends a close frame with 1000.
func (c *conn) closeNormal() error {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	return c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(writeWait))
}

func (t *Tail) connect(ctx context.Context, socketURL, base string) result {
	d := websocket.Dialer{HandshakeTimeout: handshakeTimeout, Proxy: http.ProxyFromEnvironment}
	ws, resp, err := d.DialContext(ctx, socketURL, nil)
	if err != nil {
		if ctx.Err() != nil {
			return result{stop: true}
		}
		return refusedHandshake(base, socketURL, resp, err)
	}
	return t.session(ctx, &conn{ws: ws, base: base})
}

// refusedHandshake says what a failed handshake means: the answer of a
// gateway that will say the same again is fatal.
func refusedHandshake(base, socketURL string, resp *http.Response, err error) result {
	if resp == nil {
		return result{reason: fmt.Sprintf("cannot connect to %s (%v)", base, err), pace: paceBackoff}
	}
	var body struct{ Code, Message string }
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	what := fmt.Sprintf("%s answered %s", socketURL, resp.Status)
	if json.Unmarshal(raw, &body) == nil && body.Code != "" {
		what += fmt.Sprintf(" (%s: %s)", body.Code, clean(body.Message))
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		return result{fatal: fmt.Errorf("%s: is %s the gateway's base URL, and is the topic one it serves (--topics)?", what, base)}
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
		return result{fatal: errors.New(what)}
	case http.StatusTooManyRequests:
		return result{reason: what, pace: paceSlow}
	case http.StatusServiceUnavailable:
		return result{reason: what, pace: paceNow}
	}
	return result{reason: what, pace: paceBackoff}
}

// session runs one connection until it ends. Only this goroutine writes
// to the socket (gorilla answers pings and sends close frames through
// WriteControl, which may run alongside); a read loop of its own reads.
func (t *Tail) session(ctx context.Context, c *conn) (r result) {
	ws := c.ws
	ws.SetReadLimit(maxFrameBytes)
	frames := make(chan []byte)
	ended := make(chan error, 1)
	quit := make(chan struct{})
	var reader sync.WaitGroup
	reader.Add(1)
	go func() {
		defer reader.Done()
		for {
			ws.SetReadDeadline(time.Now().Add(t.pingPeriod + pongWait))
			_, b, err := ws.ReadMessage()
			if err != nil {
				ended <- err
				return
			}
			select {
			case frames <- b:
			case <-quit:
				return
			}
		}
	}()
	defer func() {
		close(quit)
		ws.Close()
		reader.Wait()
		r.going = c.going
	}()

	// lost: a write failed. The read loop knows why (a close frame from
	// the server, say, that got in before the write), so its reason wins.
	lost := func(err error) result {
		if rerr := drainUntilEnded(frames, ended); rerr != nil {
			return t.ended(c, rerr)
		}
		return result{reason: fmt.Sprintf("connection to %s lost (%v)", c.base, err), pace: paceNow}
	}
	if t.cfg.Token != "" {
		if err := c.write(clientFrame{Type: "auth", ID: authID, Token: t.cfg.Token}); err != nil {
			return lost(err)
		}
	}
	if t.cfg.Call != "" {
		sub := t.subscribeFrame(c)
		if err := c.write(sub); err != nil {
			return lost(err)
		}
	}
	ping := time.NewTicker(t.pingPeriod)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			if c.closeNormal() == nil {
				drainUntilEnded(frames, ended)
			}
			return result{stop: true}
		case err := <-ended:
			return t.ended(c, err)
		case b := <-frames:
			if r, done := t.handle(c, b); done {
				c.closeNormal() // tail ends it; the server need not wait
				return r
			}
		case <-ping.C:
			if err := c.write(clientFrame{Type: "ping", ID: pingID}); err != nil {
				return lost(err)
			}
		}
	}
}

// drainUntilEnded waits, up to closeWait, for the read loop to end (after
// a close frame, the server's answer), dropping the frames that arrive
// before; it returns the read loop's error, nil if it did not end.
func drainUntilEnded(frames <-chan []byte, ended <-chan error) error {
	timeout := time.NewTimer(closeWait)
	defer timeout.Stop()
	for {
		select {
		case <-frames:
		case err := <-ended:
			return err
		case <-timeout.C:
			return nil
		}
	}
}

// subscribeFrame is the subscribe of a call for a new connection: after
// the last event written, or from where the Config says.
func (t *Tail) subscribeFrame(c *conn) clientFrame {
	f := clientFrame{Type: "subscribe", ID: subscribeID, Call: t.cfg.Call}
	switch {
	case t.havePos:
		f.Since = strconv.FormatInt(t.pos.EventID, 10)
		if t.pos.Epoch != "0" {
			f.Epoch = t.pos.Epoch
		}
		c.asked = &Position{Epoch: t.pos.Epoch, EventID: t.pos.EventID}
	case t.followed:
		// The call had no event when it was followed (a subscribed frame
		// names the last one otherwise), and none came since: every
		// event it has now is new.
		f.Since = "0"
		c.asked = &Position{}
	}
	return f
}

// ended says what the end of a connection means, from its close code.
func (t *Tail) ended(c *conn, err error) result {
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		return result{reason: fmt.Sprintf("connection to %s lost (%v)", c.base, err), pace: paceNow}
	}
	why := strconv.Itoa(ce.Code)
	if ce.Text != "" {
		why += ": " + clean(ce.Text)
	}
	r := result{reason: fmt.Sprintf("connection to %s closed (%s)", c.base, why), pace: paceBackoff}
	switch ce.Code {
	case websocket.CloseGoingAway, websocket.CloseAbnormalClosure, closeSendQueueOverflow:
		// An instance shutting down or gone, or a reader that fell
		// behind: resume at once, on the next instance.
		r.pace = paceNow
	case websocket.CloseTryAgainLater, closeRateLimited, closeTooManyConns:
		r.pace = paceSlow
	case closeAuthFailed:
		if t.cfg.Token == "" {
			r.fatal = fmt.Errorf("the gateway requires a token (close %s); give one with --token or CALLGATE_TOKEN", why)
		} else {
			r.fatal = fmt.Errorf("the gateway refused the token (close %s)", why)
		}
	case closeTokenExpired:
		r.fatal = fmt.Errorf("the token expired (close %s); start again with a fresh one", why)
	case closeForbidden:
		r.fatal = fmt.Errorf("the gateway refused this token here (close %s)", why)
	}
	return r
}

// handle acts on one server frame; done ends the connection with r.
func (t *Tail) handle(c *conn, raw []byte) (r result, done bool) {
	var f frame
	if err := json.Unmarshal(raw, &f); err != nil {
		t.note("skipped a frame that is not valid JSON (%v)", err)
		return result{}, false
	}
	write := true // in JSON mode
	switch f.Type {
	case "welcome":
		c.instance = f.InstanceID
		if t.cfg.Topic != "" {
			c.going = true
			t.noteFollowing(c)
		}
	case "token_expiring":
		t.note("the token expires at %s; the gateway closes the socket then (4002)", clean(f.ExpiresAt))
	case "pong":
		write = false
	case "subscribed":
		t.subscribed(c, f)
	case "unsubscribed":
		// tail never unsubscribes: the gateway ended the subscription.
		why := clean(f.Reason)
		if f.Reason == "forbidden" {
			why += ": the call's org and the token's no longer match"
		}
		r, done = result{fatal: fmt.Errorf("the gateway ended the subscription to %s (%s)", clean(t.callSID), why)}, true
	case "event":
		write = t.event(f)
	case "reset":
		t.reset(f)
	case "state":
		write = t.state(c, f)
	case "error":
		r, done = t.errorFrame(c, f)
	}
	if !write {
		return r, done
	}
	if err := t.writeLine(f, raw); err != nil {
		return result{fatal: fmt.Errorf("writing output: %w", err)}, true
	}
	return r, done
}

// writeLine writes f: the frame itself in JSON mode, else a readable line
// for an event or a state.
func (t *Tail) writeLine(f frame, raw []byte) error {
	var err error
	switch {
	case t.cfg.JSON:
		_, err = fmt.Fprintf(t.cfg.Out, "%s\n", raw)
	case f.Type == "event":
		id := "#" + string(f.EventID)
		if e := string(f.Epoch); e != "" && e != "0" && e != t.shown {
			id = "#" + e + ":" + string(f.EventID)
			t.shown = e
		}
		_, err = fmt.Fprintf(t.cfg.Out, "%s %s %s\n", clock(f.Time), id, eventText(clean(f.Event), f.Data))
	case f.Type == "state":
		_, err = fmt.Fprintf(t.cfg.Out, "version %d: %s\n", f.Version, compact(f.Data))
	}
	return err
}

// subscribed takes note of the call, and of the position the gateway
// reports, and says that it follows.
func (t *Tail) subscribed(c *conn, f frame) {
	var rec callRecord
	_ = json.Unmarshal(f.Call, &rec)
	if rec.CallSID != "" {
		t.callSID = rec.CallSID
	}
	c.going = true
	epoch := string(f.Epoch)
	if n, err := strconv.ParseInt(string(f.EventID), 10, 64); err == nil {
		// Where the events that follow continue: the call's last event
		// for a live start, the since of a resume, or where the store
		// can go on from when it lost what tail had. A gateway without
		// epochs does not say.
		t.pos, t.havePos = Position{Epoch: orZero(epoch), EventID: n}, true
	}
	if !t.followed {
		t.followed = true
		what := clean(t.callSID)
		if rec.ConversationID != "" {
			what += " (conversation " + clean(rec.ConversationID) + ")"
		}
		from := ""
		switch {
		case c.asked != nil && c.asked.EventID == 0:
			from = ", from its first event"
		case c.asked != nil:
			from = ", after #" + c.asked.String()
		}
		t.note("following %s, status %s%s, on %s%s", what, clean(rec.Status), from, c.base, instance(c))
	} else {
		from := "from its first event"
		if c.asked != nil && c.asked.EventID > 0 {
			from = "after #" + c.asked.String()
		}
		ok := ""
		if f.Recovered != nil && *f.Recovered {
			ok = ", nothing missed"
		}
		t.note("resumed %s %s on %s%s%s", clean(t.callSID), from, c.base, instance(c), ok)
	}
	if f.Recovered != nil && !*f.Recovered {
		t.unsure = true
		after := "from its first event"
		if c.asked != nil && c.asked.EventID > 0 {
			after = "after #" + c.asked.String()
		}
		t.note("recovered:false: the gateway no longer has every event of %s %s; what it still has follows", clean(t.callSID), after)
	}
}

func instance(c *conn) string {
	if c.instance == "" {
		return ""
	}
	return " (instance " + clean(c.instance) + ")"
}

func orZero(epoch string) string {
	if epoch == "" {
		return "0"
	}
	return epoch
}

// event decides whether to write f, an event: not if it was written
// already. It notes what is missing before it, and moves the position.
func (t *Tail) event(f frame) bool {
	n, err := strconv.ParseInt(string(f.EventID), 10, 64)
	if err != nil || n < 1 {
		t.note("skipped an event without a valid event_id (%q)", clean(string(f.EventID)))
		return false
	}
	epoch := orZero(string(f.Epoch))
	if t.havePos {
		last := t.pos.EventID
		same := t.pos.Epoch == "" || t.pos.Epoch == epoch
		switch {
		case t.unsure && same && n <= last:
			// After recovered:false: the position may be one the call
			// never reached (a since beyond its last event).
		case same && n <= last && epoch != "0":
			t.note("skipped #%d, written already", n)
			return false
		case same && n <= last:
			// A gateway without epochs numbers a call again from 1 when
			// Redis lost its events; each event comes once per
			// connection, so this is not a repeat.
			t.note("event_id went back from #%d to #%d: the gateway lost the call's events and numbers them again", last, n)
		case same && n > last+1:
			t.noteMissing(Position{EventID: last + 1}, Position{EventID: n - 1})
		case !same && n > 1:
			t.noteMissing(Position{Epoch: epoch, EventID: 1}, Position{Epoch: epoch, EventID: n - 1})
		}
	}
	t.pos, t.havePos, t.unsure = Position{Epoch: epoch, EventID: n}, true, false
	t.written++
	return true
}

// noteMissing says that the events from first to last are missing.
func (t *Tail) noteMissing(first, last Position) {
	if first == last {
		t.note("#%s is missing", first)
		return
	}
	t.note("#%s to #%s are missing", first, last)
}

// reset: the call's numbering went back (a new epoch); the events that
// follow continue after the frame's position.
func (t *Tail) reset(f frame) {
	n, _ := strconv.ParseInt(string(f.EventID), 10, 64) // absent: 0
	next := Position{Epoch: clean(string(f.Epoch)), EventID: n}
	after := "of its old numbering"
	if t.havePos {
		after = "after #" + t.pos.String()
	}
	goesOn := fmt.Sprintf("numbering restarts at #%s:1", next.Epoch)
	if n > 0 {
		goesOn = "what follows continues after #" + next.String()
	}
	t.note("reset: the gateway lost the event numbering of %s (Redis lost its state or failed over); events %s may be missing; %s",
		clean(t.callSID), after, goesOn)
	t.pos, t.havePos = Position{Epoch: string(f.Epoch), EventID: n}, true
}

// state decides whether to write f, a topic state: not if it was written
// before the reconnect. States compare as (epoch, version); a new epoch is
// newer whatever its version.
func (t *Tail) state(c *conn, f frame) bool {
	first := !c.hadState
	c.hadState = true
	epoch := string(f.Epoch)
	switch {
	case t.version == 0:
	case epoch != t.topicEpoch:
		t.note("the gateway lost the topic's state; its versions count again, in epoch %s", clean(epoch))
	case first && f.Version < t.version:
		// A gateway without epochs.
		t.note("version went back from %d to %d: the gateway lost the topic's state", t.version, f.Version)
	case f.Version <= t.version:
		return false
	}
	t.version, t.topicEpoch = f.Version, epoch
	return true
}

// errorFrame acts on an error frame: a refused subscribe ends the
// connection, for good unless the gateway can answer otherwise later.
func (t *Tail) errorFrame(c *conn, f frame) (result, bool) {
	what := clean(f.Code) + ": " + clean(f.Message)
	switch {
	case f.ID == authID && f.Code == "auth_not_needed":
		if !t.authNoted {
			t.authNoted = true
			t.note("the gateway checks no tokens; the token is not needed")
		}
		return result{}, false
	case f.ID != subscribeID:
		t.note("the gateway says %s", what)
		return result{}, false
	case f.Code == "unavailable":
		return result{reason: fmt.Sprintf("%s cannot follow the call now (%s)", c.base, what), pace: paceSlow}, true
	case f.Code == "call_not_found" && t.followed:
		return result{fatal: fmt.Errorf("the gateway no longer knows call %q (call_not_found)", t.cfg.Call)}, true
	case f.Code == "call_not_found":
		return result{fatal: fmt.Errorf("no call has the call_sid or conversation_id %q (call_not_found): register it first (POST /api/calls); a conversation_id is known once it is linked, and a call of another org looks the same", t.cfg.Call)}, true
	}
	return result{fatal: fmt.Errorf("the gateway refused the subscribe (%s)", what)}, true
}

// noteFollowing says that a topic socket is open.
func (t *Tail) noteFollowing(c *conn) {
	verb := "following"
	if t.followed {
		verb = "resumed"
	}
	t.followed = true
	t.note("%s topic %s on %s%s", verb, t.cfg.Topic, c.base, instance(c))
}

// noteEnd says where a call's tail stopped, and how to go on from there.
func (t *Tail) noteEnd(verb string) {
	if t.cfg.Call == "" || t.written == 0 {
		if verb != "" {
			t.note("%s", verb)
		}
		return
	}
	if verb == "" {
		verb = "ended"
	}
	t.note("%s after #%s; to resume after it: --since %s", verb, t.pos, t.pos)
}

func (t *Tail) note(format string, args ...any) {
	fmt.Fprintf(t.cfg.Notes, "-- "+format+"\n", args...)
}
