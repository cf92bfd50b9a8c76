package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"
)

// subscription is one call a connection follows.
type subscription struct {
	channel string
	// ids are the identifiers the client used for this call.
	ids []string
}

// conn is one client WebSocket connection.
//
// Two goroutines serve it: readLoop, which owns subs and aliases and does
// all subscribing, and writeLoop, the only writer of data frames. Everyone
// else talks to it through enqueue and closeWith.
type conn struct {
	srv         *Server
	ws          *websocket.Conn
	id          string
	user        string
	connectedAt time.Time
	log         *slog.Logger

	// qmu guards queue and replayed: the frames waiting for writeLoop,
	// of which up to replayed were replayed from history and do not count
	// against the live limit. wake tells writeLoop there is work.
	qmu      sync.Mutex
	queue    []outFrame
	replayed int
	wake     chan struct{}

	// hdrs and bufs are writeBatch's scratch space, reused between
	// batches; owned by writeLoop.
	hdrs []byte
	bufs net.Buffers

	closeOnce sync.Once
	// done is closed when the connection must end; closeCode and
	// closeText, set before, say how.
	done      chan struct{}
	closeCode int
	closeText string

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
	// welcomed: the welcome frame is queued (set by the serving
	// goroutine before readLoop starts).
	welcomed bool

	// Owned by readLoop.
	subs    map[string]*subscription // by call key
	aliases map[string]string        // identifier -> call key
}

// enqueue queues a frame without blocking. When SendQueue live frames
// already wait, the client is too slow: it is disconnected
// (CloseSendQueueOverflow) so that it never delays anyone else.
func (c *conn) enqueue(frame []byte) bool {
	return c.enqueueFrame(outFrame{data: frame})
}

// outFrame is a queued frame and, for live events, when it was published.
type outFrame struct {
	data      []byte
	published int64 // Unix nanoseconds; 0 when not a live event
}

func (c *conn) enqueueFrame(f outFrame) bool {
	c.qmu.Lock()
	if len(c.queue)-c.replayed >= c.srv.cfg.SendQueue {
		c.qmu.Unlock()
		if c.ending() {
			return false // already cut off; not counted again
		}
		c.srv.metrics.overflows.Add(1)
		c.srv.metrics.dropped.Add(1)
		c.closeWith(CloseSendQueueOverflow, "send queue overflow: read faster, then reconnect")
		return false
	}
	c.queue = append(c.queue, f)
	c.qmu.Unlock()
	c.signal()
	return true
}

// enqueueReplay queues frames replayed from history. They are bounded by
// the history's size rather than by SendQueue, so a client can resume from
// further back than its queue holds.
func (c *conn) enqueueReplay(frames [][]byte) {
	if len(frames) == 0 {
		return
	}
	c.qmu.Lock()
	for _, f := range frames {
		c.queue = append(c.queue, outFrame{data: f})
	}
	c.replayed += len(frames)
	c.qmu.Unlock()
	c.signal()
}

func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// take returns every queued frame, oldest first, and empties the queue.
func (c *conn) take() []outFrame {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	batch := c.queue
	c.queue = nil
	c.replayed = 0
	return batch
}

// closeWith ends the connection with a close frame; the first call wins.
func (c *conn) closeWith(code int, text string) {
	c.closeOnce.Do(func() {
		c.closeCode, c.closeText = code, text
		close(c.done)
	})
}

// writeLoop writes queued frames and pings until the connection ends. It
// runs in its own goroutine and is the only writer of data frames.
func (c *conn) writeLoop() {
	cfg := &c.srv.cfg
	ping := time.NewTimer(cfg.PingPeriod)
	defer ping.Stop()
	for {
		if c.ending() {
			c.writeClose()
			return
		}
		select {
		case <-c.wake:
			// Write everything queued in one system call, unless the
			// connection is ending.
			batch := c.take()
			if len(batch) == 0 || c.ending() {
				continue
			}
			if err := c.writeBatch(batch); err != nil {
				c.fail(err)
				return
			}
			if cfg.PublishLatency != nil {
				now := time.Now().UnixNano()
				for _, f := range batch {
					if f.published != 0 {
						cfg.PublishLatency(time.Duration(now - f.published))
					}
				}
			}
		case <-ping.C:
			_ = c.ws.SetWriteDeadline(time.Now().Add(cfg.WriteWait))
			if err := c.ws.WriteMessage(websocket.PingMessage, nil); err != nil {
				c.fail(err)
				return
			}
			ping.Reset(cfg.PingPeriod)
		case <-c.done:
			c.writeClose()
			return
		}
	}
}

// writeClose sends the close frame. The client has WriteWait to answer it
// before readLoop gives up on its deadline.
func (c *conn) writeClose() {
	wait := c.srv.cfg.WriteWait
	msg := websocket.FormatCloseMessage(c.closeCode, c.closeText)
	_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(wait))
	_ = c.ws.NetConn().SetReadDeadline(time.Now().Add(wait))
}

func (c *conn) ending() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// writeBatch writes frames as WebSocket text frames with one writev.
//
// It writes to the network connection directly rather than through
// gorilla's per-message writer, which costs a system call per frame.
// That is safe because writeLoop is the only writer of data frames, and
// the control frames gorilla may write from the read side (pong and close
// replies) go out in single writes: the connection's write lock keeps
// every frame whole, so frames only ever meet at frame boundaries.
func (c *conn) writeBatch(frames []outFrame) error {
	hdrs := c.hdrs[:0]
	bufs := c.bufs[:0]
	for _, f := range frames {
		start := len(hdrs)
		hdrs = appendFrameHeader(hdrs, len(f.data))
		bufs = append(bufs, hdrs[start:len(hdrs):len(hdrs)], f.data)
	}
	c.hdrs, c.bufs = hdrs, bufs
	nc := c.ws.NetConn()
	_ = nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteWait))
	out := bufs // WriteTo consumes its receiver
	_, err := out.WriteTo(nc)
	clear(bufs) // drop references to the frames
	return err
}

// appendFrameHeader appends the header of an unmasked, final text frame
// of n bytes (RFC 6455 section 5.2).
func appendFrameHeader(b []byte, n int) []byte {
	const finText = 0x81
	switch {
	case n < 126:
		return append(b, finText, byte(n))
	case n <= 0xFFFF:
		return append(b, finText, 126, byte(n>>8), byte(n))
	default:
		return append(b, finText, 127,
			byte(uint64(n)>>56), byte(uint64(n)>>48), byte(uint64(n)>>40), byte(uint64(n)>>32),
			byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// fail ends a connection whose write failed: closing the socket makes
// readLoop return at once, which removes every subscription.
func (c *conn) fail(err error) {
	c.log.Debug("write failed", "err", err)
	c.closeWith(websocket.CloseAbnormalClosure, "")
	_ = c.ws.NetConn().Close()
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
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, websocket.ErrReadLimit):
				c.log.Info("frame over the size limit", "limit", cfg.MaxFrameBytes)
			case errors.As(err, &ne) && ne.Timeout():
				// Not 1000: the client should reconnect.
				c.closeWith(websocket.CloseGoingAway, "no pong within the timeout")
			}
			return
		}
		extend()
		if !limiter.Allow() {
			c.closeWith(CloseRateLimited, "too many frames: slow down")
			return
		}
		if typ != websocket.TextMessage {
			c.reply(errorFrame{Type: "error", Code: CodeInvalidFrame, Message: "binary frames are not supported; send JSON text frames"})
			continue
		}
		c.handle(ctx, data)
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

func (c *conn) resolve(ctx context.Context, id string) (Target, *frameError) {
	ctx, cancel := context.WithTimeout(ctx, c.srv.cfg.SubscribeTimeout)
	defer cancel()
	t, err := c.srv.cfg.Resolver.Resolve(ctx, id)
	switch {
	case err == nil:
		if c.srv.cfg.Tenancy && t.Org != "" && t.Org != c.org() {
			// Exactly the answer for an unknown call: no existence leak.
			return Target{}, errCallNotFound
		}
		return t, nil
	case errors.Is(err, ErrNotFound):
		return t, errCallNotFound
	}
	c.log.Warn("resolve call failed", "err", err)
	return t, errUnavailable
}

func (c *conn) subscribe(ctx context.Context, f frame) *frameError {
	t, ferr := c.resolve(ctx, f.Call)
	if ferr != nil {
		return ferr
	}
	reply := encode(subscribedFrame{Type: "subscribed", ID: f.ID, Call: t.Record})
	if sub, ok := c.subs[t.Key]; ok {
		// Already following this call, maybe by its other identifier:
		// events still arrive once.
		if _, known := c.aliases[f.Call]; !known {
			c.aliases[f.Call] = t.Key
			sub.ids = append(sub.ids, f.Call)
		}
		c.enqueue(reply)
		return nil
	}
	if len(c.subs) >= c.srv.cfg.MaxSubscriptions {
		return &frameError{CodeTooManySubscriptions, "this connection follows the maximum number of calls; unsubscribe from one first"}
	}
	sctx, cancel := context.WithTimeout(ctx, c.srv.cfg.SubscribeTimeout)
	defer cancel()
	if err := c.srv.cfg.Bus.Subscribe(sctx, t.Channel); err != nil {
		c.log.Warn("bus subscribe failed", "channel", t.Channel, "err", err)
		return errUnavailable
	}
	// Read the record again now that every later event will arrive: it
	// and its last event_id are the starting point of a client that did
	// not ask to resume.
	fresh, ferr := c.resolve(ctx, f.Call)
	if ferr == nil && fresh.Key != t.Key {
		ferr = errCallNotFound
	}
	if ferr != nil {
		c.srv.unsubscribe(context.WithoutCancel(ctx), c, t.Channel)
		return ferr
	}
	after := fresh.Seq
	if f.Since >= 0 {
		after = f.Since
	}
	replyFor := func(recovered *bool) []byte {
		return encode(subscribedFrame{Type: "subscribed", ID: f.ID, Call: fresh.Record, Recovered: recovered})
	}
	if err := c.srv.hub.join(sctx, t.Channel, t.Key, c, after, f.Since, replyFor); err != nil {
		c.srv.unsubscribe(context.WithoutCancel(ctx), c, t.Channel)
		if errors.Is(err, errConnClosed) {
			return nil
		}
		c.log.Warn("resume from history failed", "channel", t.Channel, "err", err)
		return errUnavailable
	}
	c.subs[t.Key] = &subscription{channel: t.Channel, ids: []string{f.Call}}
	c.aliases[f.Call] = t.Key
	c.srv.metrics.subscriptions.Add(1)
	return nil
}

func (c *conn) unsubscribe(ctx context.Context, f frame) *frameError {
	key, ok := c.aliases[f.Call]
	if !ok {
		// The client may name the call by an identifier it did not
		// subscribe with (a conversation_id linked since).
		t, ferr := c.resolve(ctx, f.Call)
		if ferr != nil && ferr.Code != CodeCallNotFound {
			return ferr
		}
		key = t.Key
	}
	if _, ok := c.subs[key]; !ok || key == "" {
		return &frameError{CodeNotSubscribed, "this connection is not subscribed to that call"}
	}
	c.drop(ctx, key)
	c.reply(unsubscribedFrame{Type: "unsubscribed", ID: f.ID, CallSID: key})
	return nil
}

// drop ends the subscription to call key.
func (c *conn) drop(ctx context.Context, key string) {
	sub := c.subs[key]
	c.srv.hub.leave(sub.channel, c)
	for _, id := range sub.ids {
		delete(c.aliases, id)
	}
	delete(c.subs, key)
	c.srv.metrics.subscriptions.Add(-1)
	c.srv.unsubscribe(ctx, c, sub.channel)
}

// cleanup removes every subscription of a finished connection.
func (c *conn) cleanup(ctx context.Context) {
	for key := range c.subs {
		c.drop(ctx, key)
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
