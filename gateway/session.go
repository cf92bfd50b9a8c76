package gateway

import (
	"bytes"
	"context"
	"runtime/debug"
	"time"

	"github.com/gobwas/ws"
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
	// frame, and its code, that was just sent. After the client's close,
	// or a read error, there is nothing to wait for.
	if !c.inputEnded {
		_ = c.nc.SetReadDeadline(time.Now().Add(s.cfg.WriteWait))
		for c.readInput(false, discard) == nil {
		}
	}
	c.releaseReader()
	_ = c.nc.Close()

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

// readLoop reads and handles client frames until the connection ends. It
// runs in the connection's goroutine, which only waits for input: the
// frames are read and handled on a handler goroutine (see read.go).
func (c *conn) readLoop(ctx context.Context) {
	cfg := &c.srv.cfg
	c.extendReadDeadline()
	limiter := rate.NewLimiter(rate.Limit(cfg.FrameRate), cfg.FrameBurst)
	for !c.ending() {
		err := c.awaitReadable()
		if err == nil {
			c.aside(func() {
				err = c.readInput(true, func(op ws.OpCode, msg *bytes.Buffer) bool {
					return c.message(ctx, limiter, op, msg)
				})
			})
		}
		if err != nil {
			// Silence is not 1000: the client should reconnect.
			c.readFailed(err, websocket.CloseGoingAway, "no pong within the timeout")
			return
		}
	}
}

// message handles a whole data message from the client, and reports
// whether to read on.
func (c *conn) message(ctx context.Context, limiter *rate.Limiter, op ws.OpCode, msg *bytes.Buffer) bool {
	defer putFrameBuffer(msg)
	c.extendReadDeadline()
	if !limiter.Allow() {
		c.closeWith(CloseRateLimited, "too many frames: slow down")
		return false
	}
	if op != ws.OpText {
		c.reply(errorFrame{Type: "error", Code: CodeInvalidFrame, Message: "binary frames are not supported; send JSON text frames"})
		return true
	}
	// handle keeps nothing of the frame once it returns.
	c.handle(ctx, msg.Bytes())
	return true
}

// discard drops a message read while the connection closes.
func discard(_ ws.OpCode, msg *bytes.Buffer) bool {
	putFrameBuffer(msg)
	return true
}

// ending reports whether the connection is ending: done is closed.
func (c *conn) ending() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
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
