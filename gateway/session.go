package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime/debug"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"
)

// run serves an upgraded connection until it closes.
func (c *conn) run(mustAuth bool, path string) {
	s := c.srv
	defer s.wg.Done()
	if !mustAuth || c.awaitAuth() {
		ready := false
		c.aside(func() { ready = c.open(path) })
		if ready {
			c.readLoop(s.ctx)
		}
	}
	// Unsubscribing must finish even while the server shuts down.
	c.cleanup(context.WithoutCancel(s.ctx))
	c.closeWith(websocket.CloseNormalClosure, "")
	<-c.finished
	// Finish the closing handshake: discard what the client still sends
	// until its close frame (or WriteWait). Closing with unread input
	// would reset the connection, and the client could lose the close
	// frame, and its code, that was just sent. After a read error this
	// returns at once.
	_ = c.nc.SetReadDeadline(time.Now().Add(s.cfg.WriteWait))
	for {
		if _, _, err := c.ws.NextReader(); err != nil {
			break
		}
	}
	_ = c.ws.Close()

	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.metrics.connections.Add(-1)
	c.logger().Info("connection closed", "duration", time.Since(c.connectedAt).Round(time.Millisecond).String())
}

// open greets an accepted connection: its welcome, or for a topic its
// subscription and current state. It reports whether the connection may
// go on.
func (c *conn) open(path string) bool {
	s := c.srv
	user, _ := c.principal()
	c.logger().Info("connection opened", "user", user, "path", path)
	ready := true
	if c.topic == nil {
		c.enqueue(c.welcome())
	} else {
		ready = s.attachTopic(s.ctx, c)
	}
	// token_expiring may only follow the welcome.
	c.welcomed = true
	c.scheduleExpiry()
	return ready
}

// welcome is the first frame of every connection.
func (c *conn) welcome() []byte {
	user, _ := c.principal()
	return encode(welcomeFrame{Type: "welcome", ConnectionID: c.id, InstanceID: c.srv.cfg.InstanceID, User: user})
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
				c.closedByGorilla() // with 1009
			case errors.As(err, &ne) && ne.Timeout():
				// Not 1000: the client should reconnect.
				c.closeWith(websocket.CloseGoingAway, "no pong within the timeout")
			case isProtocolError(err):
				c.logger().Info("protocol error", "err", err)
				c.closedByGorilla() // with 1002
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

// isProtocolError reports whether a read error is gorilla's answer to a
// frame that breaks RFC 6455 (a reserved bit, a bad opcode, an unmasked
// frame, a bad close code, …), after which gorilla has sent a close frame
// 1002 itself. Such errors have no type of their own: they are what is left
// once the client's close, the size limit, the network and the end of the
// stream are told apart.
func isProtocolError(err error) bool {
	var ce *websocket.CloseError
	var ne net.Error
	return !errors.As(err, &ce) && !errors.As(err, &ne) && !errors.Is(err, websocket.ErrReadLimit) &&
		!errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed)
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
		user, _ := c.principal()
		c.srv.release(user)
	}
}
