package gateway

// A connection's send queue, and how the connection ends.
//
// Any goroutine queues frames for the client here without blocking; the
// writer role (doc.go) takes them out. The queue closes once, in one of
// four ways. The first closes done (stop) and sets closing: nothing more
// is queued.
//
//	open     ── closeWith ──────▶ closing   the close frame goes after what is queued
//	open     ── end with drop ──▶ closing   the close frame goes instead of it (the
//	                                        client's close, a queue overflow)
//	open     ── closedByGorilla ▶ finished  gorilla sent the close frame itself
//	open     ── fail ───────────▶ finished  a write failed: queue dropped, socket closed
//	closing  ── close frame written, or a write failed ──▶ finished
//
// finished is closed on entering finished. run waits for it, then reads
// until the client's close (or WriteWait) and closes the socket.

// enqueue queues a frame without blocking. When SendQueue live frames or
// SendQueueBytes already wait, the client is too slow: it is disconnected
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
	cfg := &c.srv.cfg
	if len(c.queue)-c.replayed >= cfg.SendQueue || c.queued > 0 && c.queued+len(f.data) > cfg.SendQueueBytes {
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
	c.queued += len(f.data)
	start = !c.writing
	c.writing = true
	c.qmu.Unlock()
	return true, start
}

// enqueueReplay queues frames replayed from history. They are not bounded
// by SendQueue, so a client can resume from further back than its queue
// holds in frames, but they are by SendQueueBytes: what does not fit is
// not queued, and the connection ends with CloseSendQueueOverflow after
// what did, so that the client resumes from there (a replay too large to
// hold at once goes out in pieces, one connection each).
func (c *conn) enqueueReplay(frames []outFrame) {
	if len(frames) == 0 {
		return
	}
	c.qmu.Lock()
	if c.closing {
		c.qmu.Unlock()
		return
	}
	n := 0
	for _, f := range frames {
		if c.queued > 0 && c.queued+len(f.data) > c.srv.cfg.SendQueueBytes {
			break
		}
		c.queue = append(c.queue, f)
		c.queued += len(f.data)
		n++
	}
	c.replayed += n
	start := !c.writing
	c.writing = true
	c.qmu.Unlock()
	if start {
		c.srv.flusher.add(c)
	}
	if n < len(frames) {
		c.closeWith(CloseSendQueueOverflow, "replay larger than the send queue: resume from the last event received")
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
	c.queued, c.replayed = 0, 0
	return batch
}

// closeWith ends the connection with a close frame, sent after the frames
// already queued; the first call wins.
func (c *conn) closeWith(code int, text string) { c.end(code, text, false) }

// end ends the connection; the first call wins. It queues the close
// frame, after the frames already queued or, with drop, instead of them.
func (c *conn) end(code int, text string, drop bool) {
	if !c.stop() {
		return
	}
	if c.seal(drop, outFrame{data: c.closeFrame(code, text), control: true, close: true}) {
		c.srv.flusher.add(c)
	}
}

// closedByGorilla ends the connection after gorilla has sent the close
// frame itself.
func (c *conn) closedByGorilla() {
	if c.stop() {
		c.seal(false)
		c.finish()
	}
}

// stop closes done. Only the first call does, and reports that it did.
func (c *conn) stop() bool {
	first := false
	c.closeOnce.Do(func() {
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
		c.queued, c.replayed = 0, 0
	}
	c.queue = append(c.queue, last...)
	c.closing = true
	if len(last) == 0 || c.writing {
		return false
	}
	c.writing = true
	return true
}

// finish marks the connection's writing as over. A stream's response
// ends there (see conn.endResponse).
func (c *conn) finish() {
	c.finishOnce.Do(func() {
		close(c.finished)
		if c.stream != nil {
			c.endResponse()
		}
	})
}

// closeFrame is what ends the connection on the wire: a WebSocket close
// frame, or a stream's close event (none for code 0: the client is gone).
func (c *conn) closeFrame(code int, text string) []byte {
	if c.stream != nil {
		return streamClose(code, text)
	}
	return closeFrame(code, text)
}

// fail ends a connection whose write failed: closing the socket makes
// readLoop return at once, which removes every subscription.
func (c *conn) fail(err error) {
	c.logger().Debug("write failed", "err", err)
	c.stop()
	c.seal(true)
	c.finish()
	_ = c.nc.Close()
}
