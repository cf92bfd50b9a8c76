package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"runtime/debug"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"
)

// subscription is one call a connection follows.
type subscription struct {
	key     string // the call
	channel string
	// ids are the identifiers the client used for this call.
	ids []string
}

// byKey returns c's subscription to call key, or nil.
func (c *conn) byKey(key string) *subscription {
	for _, s := range c.subs {
		if s.key == key {
			return s
		}
	}
	return nil
}

// byID returns c's subscription that the client named id, or nil.
func (c *conn) byID(id string) *subscription {
	for _, s := range c.subs {
		if slices.Contains(s.ids, id) {
			return s
		}
	}
	return nil
}

// conn is one client WebSocket connection.
//
// Its own goroutine, run, reads; it and the short-lived goroutines it
// hands each frame to (aside), one at a time, own subs. Frames for the client go through enqueue; the server's
// flusher writes them (see writer.go).
type conn struct {
	srv         *Server
	ws          *websocket.Conn
	id          string
	user        string
	connectedAt time.Time
	// requestID is the upgrade request's id, for the logs.
	requestID string
	// slot picks the pinger's round that pings this connection.
	slot uint32

	// nc is the socket, raw its system handle (nil if it has none).
	nc  net.Conn
	raw syscall.RawConn
	// wmu is held while bytes go to the socket, by the flusher or by
	// gorilla, so that frames never interleave.
	wmu sync.Mutex

	// qmu guards the fields below. queue holds the frames waiting to be
	// written, of which up to replayed were replayed from history and do
	// not count against the live limit. writing is the writer role: set
	// while the connection is with the flusher or a write is under way;
	// whoever sets it schedules the write. closing: the close frame is
	// queued or the connection failed; nothing more is queued.
	qmu      sync.Mutex
	queue    []outFrame
	spare    []outFrame
	replayed int
	writing  bool
	closing  bool

	closeOnce sync.Once
	// done is closed when the connection must end; closeCode and
	// closeText, set before, say how.
	done      chan struct{}
	closeCode int
	closeText string
	// finished is closed once the close frame is written or writing
	// failed; finishOnce guards it.
	finished   chan struct{}
	finishOnce sync.Once

	// topic is set for a topic connection; attached once it follows it.
	topic    *topicState
	attached bool

	// authMu guards identity and the expiry timers.
	authMu      sync.Mutex
	identity    *Identity // nil: anonymous
	warnTimer   *time.Timer
	expireTimer *time.Timer
	// counted: the connection counts against its user's limit.
	counted bool
	// welcomed: the welcome frame is queued (set before readLoop
	// starts).
	welcomed bool

	// subs are the calls followed, at most MaxSubscriptions (a list:
	// it is short, and smaller than a map). Owned by run and, while it
	// waits for them, its aside goroutines.
	subs []*subscription
}

// logger returns a logger that names the connection. It is built when
// needed rather than kept: a connection's log lines are few, and an idle
// connection should cost little.
func (c *conn) logger() *slog.Logger {
	if c.requestID == "" {
		return c.srv.log.With("conn", c.id)
	}
	return c.srv.log.With("conn", c.id, "request_id", c.requestID)
}

// enqueue queues a frame without blocking. When SendQueue live frames
// already wait, the client is too slow: it is disconnected
// (CloseSendQueueOverflow) so that it never delays anyone else.
func (c *conn) enqueue(frame []byte) bool {
	return c.enqueueFrame(outFrame{data: frame})
}

func (c *conn) enqueueFrame(f outFrame) bool {
	ok, start := c.push(f)
	if start {
		c.srv.flusher.add(c)
	}
	return ok
}

// push queues f and reports whether it did, and whether the caller took
// the writer role and must hand c to the flusher.
func (c *conn) push(f outFrame) (ok, start bool) {
	c.qmu.Lock()
	if c.closing {
		c.qmu.Unlock()
		return false, false // already cut off; not counted again
	}
	if len(c.queue)-c.replayed >= c.srv.cfg.SendQueue {
		c.qmu.Unlock()
		c.srv.metrics.overflows.Add(1)
		c.srv.metrics.dropped.Add(1)
		c.end(CloseSendQueueOverflow, "send queue overflow: read faster, then reconnect", true)
		return false, false
	}
	if c.queue == nil {
		c.queue, c.spare = c.spare, nil
	}
	c.queue = append(c.queue, f)
	start = !c.writing
	c.writing = true
	c.qmu.Unlock()
	return true, start
}

// enqueueReplay queues frames replayed from history. They are bounded by
// the history's size rather than by SendQueue, so a client can resume from
// further back than its queue holds.
func (c *conn) enqueueReplay(frames [][]byte) {
	if len(frames) == 0 {
		return
	}
	c.qmu.Lock()
	if c.closing {
		c.qmu.Unlock()
		return
	}
	for _, f := range frames {
		c.queue = append(c.queue, outFrame{data: f})
	}
	c.replayed += len(frames)
	start := !c.writing
	c.writing = true
	c.qmu.Unlock()
	if start {
		c.srv.flusher.add(c)
	}
}

// take returns every queued frame, oldest first, and empties the queue.
// With nothing queued it gives up the writer role and returns nil.
func (c *conn) take() []outFrame {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	batch := c.queue
	if len(batch) == 0 {
		c.writing = false
		return nil
	}
	c.queue = nil
	c.replayed = 0
	return batch
}

// closeWith ends the connection with a close frame, sent after the frames
// already queued; the first call wins.
func (c *conn) closeWith(code int, text string) { c.end(code, text, false) }

// end ends the connection; the first call wins. It queues the close
// frame, after the frames already queued or, with drop, instead of them.
func (c *conn) end(code int, text string, drop bool) {
	if !c.stop(code, text) {
		return
	}
	if c.seal(drop, outFrame{data: closeFrame(code, text), control: true, close: true}) {
		c.srv.flusher.add(c)
	}
}

// closedBy ends the connection after gorilla has sent the close frame
// with code itself.
func (c *conn) closedBy(code int) {
	if c.stop(code, "") {
		c.seal(false)
		c.finish()
	}
}

// stop records how the connection ends and closes done. Only the first
// call does, and reports that it did.
func (c *conn) stop(code int, text string) bool {
	first := false
	c.closeOnce.Do(func() {
		c.closeCode, c.closeText = code, text
		close(c.done)
		first = true
	})
	return first
}

// seal lets nothing more be queued after last: with drop, what is queued
// goes first. It reports whether the caller took the writer role (only
// when it queued something) and must hand c to the flusher.
func (c *conn) seal(drop bool, last ...outFrame) bool {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if drop {
		clear(c.queue)
		c.queue = c.queue[:0]
		c.replayed = 0
	}
	c.queue = append(c.queue, last...)
	c.closing = true
	if len(last) == 0 || c.writing {
		return false
	}
	c.writing = true
	return true
}

// finish marks the connection's writing as over.
func (c *conn) finish() {
	c.finishOnce.Do(func() { close(c.finished) })
}

func (c *conn) ending() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// fail ends a connection whose write failed: closing the socket makes
// readLoop return at once, which removes every subscription.
func (c *conn) fail(err error) {
	c.logger().Debug("write failed", "err", err)
	c.stop(websocket.CloseAbnormalClosure, "")
	c.seal(true)
	c.finish()
	_ = c.nc.Close()
}

// readLoop reads and handles client frames until the connection ends, then
// removes the connection's subscriptions. It runs in the goroutine that
// accepted the connection.
func (c *conn) readLoop(ctx context.Context) {
	cfg := &c.srv.cfg
	c.ws.SetReadLimit(cfg.MaxFrameBytes)
	extend := func() { _ = c.ws.SetReadDeadline(time.Now().Add(cfg.PongWait)) }
	extend()
	c.ws.SetPongHandler(func(string) error { extend(); return nil })
	limiter := rate.NewLimiter(rate.Limit(cfg.FrameRate), cfg.FrameBurst)
	for {
		typ, buf, err := c.readFrame()
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, websocket.ErrReadLimit):
				c.logger().Info("frame over the size limit", "limit", cfg.MaxFrameBytes)
				c.closedBy(websocket.CloseMessageTooBig) // gorilla sent it
			case errors.As(err, &ne) && ne.Timeout():
				// Not 1000: the client should reconnect.
				c.closeWith(websocket.CloseGoingAway, "no pong within the timeout")
			}
			return
		}
		extend()
		if !limiter.Allow() {
			putFrameBuffer(buf)
			c.closeWith(CloseRateLimited, "too many frames: slow down")
			return
		}
		if typ != websocket.TextMessage {
			putFrameBuffer(buf)
			c.reply(errorFrame{Type: "error", Code: CodeInvalidFrame, Message: "binary frames are not supported; send JSON text frames"})
			continue
		}
		// handle keeps nothing of the frame once it returns.
		c.aside(func() { c.handle(ctx, buf.Bytes()) })
		putFrameBuffer(buf)
	}
}

// frameBuffers hold client frames while they are handled. Taken only once
// a frame arrives, so a connection waiting for one holds none.
var frameBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readFrame waits for the next client frame and reads it into a buffer
// from frameBuffers.
func (c *conn) readFrame() (int, *bytes.Buffer, error) {
	typ, r, err := c.ws.NextReader()
	if err != nil {
		return 0, nil, err
	}
	buf := frameBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	if _, err := buf.ReadFrom(r); err != nil {
		putFrameBuffer(buf)
		return 0, nil, err
	}
	return typ, buf, nil
}

func putFrameBuffer(buf *bytes.Buffer) {
	if buf.Cap() <= 64<<10 {
		frameBuffers.Put(buf)
	}
}

// aside runs f, the handling of a client frame, on another goroutine and
// waits for it. The reader, which is parked in a read most of its life,
// so keeps a small stack: the deep work (JSON, Redis, token checks) runs
// on the server's handler goroutines, whose grown stacks are reused. A
// panic in f ends this connection with 1011 rather than the process.
func (c *conn) aside(f func()) {
	done := make(chan struct{})
	c.srv.handlers.run(func() {
		defer close(done)
		defer func() {
			if v := recover(); v != nil {
				c.logger().Error("panic while handling a client frame", "panic", v, "stack", string(debug.Stack()))
				c.closeWith(websocket.CloseInternalServerErr, "internal error")
			}
		}()
		f()
	})
	<-done
}

// handlerPool runs functions on goroutines that outlive one call, so that
// the stacks they grew are reused; as many run as are needed at once, and
// each exits after idle with nothing to do.
type handlerPool struct {
	jobs chan func()
	idle time.Duration
}

func newHandlerPool(idle time.Duration) *handlerPool {
	return &handlerPool{jobs: make(chan func()), idle: idle}
}

// run runs f on an idle goroutine of the pool, or a new one.
func (p *handlerPool) run(f func()) {
	select {
	case p.jobs <- f:
	default:
		go p.work(f)
	}
}

func (p *handlerPool) work(f func()) {
	t := time.NewTimer(p.idle)
	defer t.Stop()
	for {
		f()
		t.Reset(p.idle)
		select {
		case f = <-p.jobs:
		case <-t.C:
			return
		}
	}
}

func (c *conn) reply(v any) { c.enqueue(encode(v)) }

func (c *conn) replyError(id string, e *frameError) {
	c.reply(errorFrame{Type: "error", ID: id, Code: e.Code, Message: e.Message})
}

func (c *conn) handle(ctx context.Context, data []byte) {
	f, ferr := decodeFrame(data)
	if ferr != nil {
		c.replyError(f.ID, ferr)
		return
	}
	if f.Type == typeAuth {
		if c.srv.cfg.Authenticator == nil {
			c.replyError(f.ID, &frameError{CodeAuthNotNeeded, "this gateway does not check tokens"})
			return
		}
		c.authenticate(f.Token, c.identity == nil)
		return
	}
	if c.topic != nil && f.Type != typePing {
		c.replyError(f.ID, &frameError{CodeUnknownType, "a topic socket carries states only; the client frames are ping and auth"})
		return
	}
	switch f.Type {
	case typePing:
		c.reply(pongFrame{Type: "pong", ID: f.ID})
	case typeSubscribe:
		if ferr := c.subscribe(ctx, f); ferr != nil {
			c.replyError(f.ID, ferr)
		}
	case typeUnsubscribe:
		if ferr := c.unsubscribe(ctx, f); ferr != nil {
			c.replyError(f.ID, ferr)
		}
	}
}

var (
	errUnavailable  = &frameError{CodeUnavailable, "the gateway cannot reach its event bus right now; retry later"}
	errCallNotFound = &frameError{CodeCallNotFound, "no call has that call_sid or conversation_id"}
)

// errConnClosed: the connection ended while a subscribe waited.
var errConnClosed = errors.New("gateway: connection closed")

// resolve finds the call id names: from what this instance resolved in
// the last minute, unless fresh; else from the Resolver. cached says
// which.
func (c *conn) resolve(ctx context.Context, id string, fresh bool) (t Target, cached bool, ferr *frameError) {
	if !fresh {
		if t, ok := c.srv.targets.get(id); ok {
			return t, true, c.visible(t)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.srv.cfg.SubscribeTimeout)
	defer cancel()
	t, err := c.srv.cfg.Resolver.Resolve(ctx, id)
	switch {
	case err == nil:
		c.srv.targets.put(id, t)
		return t, false, c.visible(t)
	case errors.Is(err, ErrNotFound):
		return t, false, errCallNotFound
	}
	c.logger().Warn("resolve call failed", "err", err)
	return t, false, errUnavailable
}

// visible refuses a call the connection's org may not see, with exactly
// the answer for an unknown call: no existence leak.
func (c *conn) visible(t Target) *frameError {
	if !c.srv.sees(c.org(), t.Org) {
		return errCallNotFound
	}
	return nil
}

func (c *conn) subscribe(ctx context.Context, f frame) *frameError {
	ferr, stale := c.trySubscribe(ctx, f, false)
	if stale {
		// What this instance remembered of the call is out of date.
		c.srv.targets.forget(f.Call)
		ferr, _ = c.trySubscribe(ctx, f, true)
	}
	return ferr
}

// trySubscribe subscribes as f asks, resolving f.Call afresh if fresh.
// stale: the call was not found, but the resolution came from the cache.
func (c *conn) trySubscribe(ctx context.Context, f frame, fresh bool) (ferr *frameError, stale bool) {
	t, cached, ferr := c.resolve(ctx, f.Call, fresh)
	if ferr != nil {
		return ferr, false
	}
	if sub := c.byKey(t.Key); sub != nil {
		// Already following this call, maybe by its other identifier:
		// events still arrive once.
		return c.resubscribe(ctx, f, sub), false
	}
	if len(c.subs) >= c.srv.cfg.MaxSubscriptions {
		return &frameError{CodeTooManySubscriptions, "this connection follows the maximum number of calls; unsubscribe from one first"}, false
	}
	sctx, cancel := context.WithTimeout(ctx, c.srv.cfg.SubscribeTimeout)
	defer cancel()
	if err := c.srv.cfg.Bus.Subscribe(sctx, t.Channel); err != nil {
		c.logger().Warn("bus subscribe failed", "channel", t.Channel, "err", err)
		return errUnavailable, false
	}
	// The catch-up reads the record, and where a client that did not ask
	// to resume starts, after the subscription is confirmed: every later
	// event will arrive.
	replyFor := func(record json.RawMessage, recovered *bool) []byte {
		return encode(subscribedFrame{Type: "subscribed", ID: f.ID, Call: record, Recovered: recovered})
	}
	if err := c.srv.hub.join(sctx, t.Channel, t.Key, c, f.Since, replyFor); err != nil {
		c.srv.unsubscribe(context.WithoutCancel(ctx), c, t.Channel)
		switch {
		case errors.Is(err, errConnClosed):
			return nil, false
		case errors.Is(err, errCallGone):
			return errCallNotFound, cached
		}
		c.logger().Warn("resume from history failed", "channel", t.Channel, "err", err)
		return errUnavailable, false
	}
	c.subs = append(c.subs, &subscription{key: t.Key, channel: t.Channel, ids: []string{f.Call}})
	c.srv.metrics.subscriptions.Add(1)
	return nil, false
}

// resubscribe answers a subscribe to a call the connection follows
// already, with the call's record as it is now.
func (c *conn) resubscribe(ctx context.Context, f frame, sub *subscription) *frameError {
	ctx, cancel := context.WithTimeout(ctx, c.srv.cfg.SubscribeTimeout)
	defer cancel()
	read, err := c.srv.cfg.History.After(ctx, sub.key, startNow-1)
	switch {
	case err != nil:
		c.logger().Warn("read call failed", "call", sub.key, "err", err)
		return errUnavailable
	case read.Record == nil:
		return errCallNotFound
	}
	if !slices.Contains(sub.ids, f.Call) {
		sub.ids = append(sub.ids, f.Call)
	}
	c.enqueue(encode(subscribedFrame{Type: "subscribed", ID: f.ID, Call: read.Record}))
	return nil
}

func (c *conn) unsubscribe(ctx context.Context, f frame) *frameError {
	sub := c.byID(f.Call)
	if sub == nil {
		// The client may name the call by an identifier it did not
		// subscribe with (a conversation_id linked since).
		t, _, ferr := c.resolve(ctx, f.Call, false)
		if ferr != nil && ferr.Code != CodeCallNotFound {
			return ferr
		}
		if t.Key != "" {
			sub = c.byKey(t.Key)
		}
	}
	if sub == nil {
		return &frameError{CodeNotSubscribed, "this connection is not subscribed to that call"}
	}
	c.drop(ctx, sub)
	c.reply(unsubscribedFrame{Type: "unsubscribed", ID: f.ID, CallSID: sub.key})
	return nil
}

// drop ends subscription sub.
func (c *conn) drop(ctx context.Context, sub *subscription) {
	c.srv.hub.leave(sub.channel, c)
	c.subs = slices.DeleteFunc(c.subs, func(s *subscription) bool { return s == sub })
	c.srv.metrics.subscriptions.Add(-1)
	c.srv.unsubscribe(ctx, c, sub.channel)
}

// cleanup removes every subscription of a finished connection.
func (c *conn) cleanup(ctx context.Context) {
	for len(c.subs) > 0 {
		c.drop(ctx, c.subs[len(c.subs)-1])
	}
	if t := c.topic; t != nil && c.attached {
		t.remove(c)
		c.srv.unsubscribe(ctx, c, t.Channel)
	}
	c.stopAuthTimers()
	if c.counted {
		c.srv.release(c.user)
	}
}
