package gateway

import (
	"bufio"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// How frames reach the sockets.
//
// A connection's frames wait in its queue. The first frame queued to a
// connection with nothing in flight puts the connection on the server's
// flusher: one goroutine per core that writes each connection's queued
// frames with one non-blocking writev. Only a socket whose kernel buffer
// is full gets a goroutine of its own, which finishes that write with a
// deadline and hands the connection back. An idle connection therefore
// has no writer goroutine, a busy one costs no wake-up of its own, and
// frames queued while a write is under way go out together in the next.
//
// The flusher writes to the socket directly rather than through gorilla's
// per-message writer. Gorilla still reads, and still writes a close frame
// itself on a protocol error; it sees the socket through lockedConn, so
// its writes and the flusher's never interleave within a frame.

// outFrame is a queued frame.
type outFrame struct {
	data []byte
	// meta is set for the frames that move a call forward; nil for
	// others.
	meta *frameMeta
	// control: data is a whole control frame, header included; otherwise
	// it is the payload of a text frame.
	control bool
	// close: this is the close frame; nothing follows it.
	close bool
}

// frameMeta is what the writers know of a frame that moves a call
// forward (an event, a subscribed or reset reply) besides its bytes. One
// is shared by every connection the frame is queued to (a delivery
// allocates one, not one per follower) and never modified.
type frameMeta struct {
	// published is when a live event was published, in Unix nanoseconds;
	// 0 for other frames.
	published int64
	// call is the call, and pos the position the frame moves it to; a
	// stream's writer builds its event ids from them (see sse.go).
	call string
	pos  Position
}

var pingFrame = []byte{0x89, 0x00}

// controlFrame returns the wire form of a control frame (payload at most
// 125 bytes, which the callers guarantee).
func controlFrame(opcode byte, payload []byte) []byte {
	b := make([]byte, 0, 2+len(payload))
	b = append(b, 0x80|opcode, byte(len(payload)))
	return append(b, payload...)
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

// frameHeaderLen is the length of appendFrameHeader's header for n bytes.
func frameHeaderLen(n int) int {
	switch {
	case n < 126:
		return 2
	case n <= 0xFFFF:
		return 4
	default:
		return 10
	}
}

// flushChunk is how many connections a flusher goroutine takes at a time.
const flushChunk = 64

// flusher writes queued frames for connections that have some.
type flusher struct {
	// mu guards the fields below; a leaf: nothing is taken under it.
	mu      sync.Mutex
	cond    sync.Cond
	pending []*conn
	idle    int // goroutines waiting for work
	stopped bool

	runners sync.WaitGroup
}

func newFlusher() *flusher {
	f := &flusher{}
	f.cond.L = &f.mu
	for range runtime.GOMAXPROCS(0) {
		f.runners.Go(f.run)
	}
	return f
}

// add schedules connections whose queues need writing. Each must hold its
// writer role (conn.writing), which passes to the flusher.
func (f *flusher) add(cs ...*conn) {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		// After stop (when every connection has ended), the caller
		// writes; flush never waits for the socket.
		var w writeScratch
		for _, c := range cs {
			c.flush(&w)
		}
		return
	}
	f.pending = append(f.pending, cs...)
	wake := f.idle > 0
	f.mu.Unlock()
	if wake {
		f.cond.Signal()
	}
}

// stop ends the flusher's goroutines once the pending work is done, and
// waits for them.
func (f *flusher) stop() {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	f.cond.Broadcast()
	f.runners.Wait()
}

func (f *flusher) run() {
	var w writeScratch
	batch := make([]*conn, 0, flushChunk)
	f.mu.Lock()
	for {
		for len(f.pending) == 0 {
			if f.stopped {
				f.mu.Unlock()
				return
			}
			f.idle++
			f.cond.Wait()
			f.idle--
		}
		n := min(len(f.pending), flushChunk)
		batch = append(batch[:0], f.pending[:n]...)
		rest := copy(f.pending, f.pending[n:])
		clear(f.pending[rest:])
		f.pending = f.pending[:rest]
		if rest > 0 && f.idle > 0 {
			f.cond.Signal() // share the rest
		}
		f.mu.Unlock()
		for _, c := range batch {
			c.flush(&w)
		}
		clear(batch)
		f.mu.Lock()
	}
}

// writeScratch is one writer's reusable space for a batch.
type writeScratch struct {
	hdrs []byte
	bufs [][]byte
	ends []int // buildStream: where each header ends in hdrs
	sys  sysScratch
}

// build lays frames out as alternating headers and payloads, and returns
// them with their length in bytes; a control frame's header is empty, as
// its data is the whole frame.
func (w *writeScratch) build(frames []outFrame) ([][]byte, int) {
	hdrs := w.hdrs[:0]
	for _, f := range frames {
		if !f.control {
			hdrs = appendFrameHeader(hdrs, len(f.data))
		}
	}
	bufs := w.bufs[:0]
	off, total := 0, 0
	for _, f := range frames {
		end := off
		if !f.control {
			end += frameHeaderLen(len(f.data))
		}
		bufs = append(bufs, hdrs[off:end:end], f.data)
		off = end
		total += len(f.data)
	}
	w.hdrs, w.bufs = hdrs, bufs
	return bufs, total + len(hdrs)
}

// remainder returns what is left of bufs after its first n bytes, as
// buffers that do not share the scratch space (headers, at even indexes,
// are copied).
func remainder(bufs [][]byte, n int) net.Buffers {
	i := 0
	for i < len(bufs) && n >= len(bufs[i]) {
		n -= len(bufs[i])
		i++
	}
	size := 0
	for j := i; j < len(bufs); j += 2 - j%2 {
		if j%2 == 0 {
			size += len(bufs[j])
		}
	}
	hdrs := make([]byte, 0, size)
	out := make(net.Buffers, 0, len(bufs)-i)
	for j := i; j < len(bufs); j++ {
		b := bufs[j]
		if j == i {
			b = b[n:]
		}
		if j%2 == 0 {
			start := len(hdrs)
			hdrs = append(hdrs, b...)
			b = hdrs[start:len(hdrs):len(hdrs)]
		}
		out = append(out, b)
	}
	return out
}

// flush writes what c has queued without blocking; if the socket cannot
// take it all, a goroutine finishes the write. The caller holds c's writer
// role, which flush passes on or gives up.
func (c *conn) flush(w *writeScratch) {
	frames := c.take()
	if frames == nil {
		return
	}
	var (
		bufs  [][]byte
		total int
	)
	if c.stream != nil {
		bufs, total = w.buildStream(c, frames)
	} else {
		bufs, total = w.build(frames)
	}
	if !c.wmu.TryLock() {
		// Gorilla is writing a control frame.
		go c.finishWrite(remainder(bufs, 0), frames, false)
		clear(w.bufs)
		return
	}
	n, err := w.sys.writeNow(c.raw, bufs)
	switch {
	case err != nil:
		c.wmu.Unlock()
		clear(w.bufs)
		c.fail(err)
	case n < total:
		rest := remainder(bufs, n)
		clear(w.bufs)
		go c.finishWrite(rest, frames, true)
	default:
		c.wmu.Unlock()
		clear(w.bufs)
		c.written(frames)
	}
}

// writeChunk is how much of a blocked batch finishWrite writes under one
// write deadline. A client must make room for this much every WriteWait
// (25.6 KiB/s with the default 10 s) or be cut off as stalled, however
// large the batch: one deadline over a whole batch of megabytes would cut
// off a client that reads steadily but not that fast. It is larger than
// the usual socket send buffer, so a chunk still fills the socket with one
// writev.
const writeChunk = 256 << 10

// finishWrite writes rest, the unwritten part of frames, in chunks of up
// to writeChunk bytes, each with a write deadline of WriteWait, then hands
// c back to the flusher. locked says whether the caller already holds wmu.
func (c *conn) finishWrite(rest net.Buffers, frames []outFrame, locked bool) {
	if !locked {
		c.wmu.Lock()
	}
	var err error
	chunk := make(net.Buffers, 0, 16)
	for len(rest) > 0 && err == nil {
		chunk, rest = nextChunk(chunk[:0], rest, writeChunk)
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteWait))
		// WriteTo consumes its receiver: write a copy of the slice
		// header so that chunk's array is reused.
		w := chunk
		_, err = w.WriteTo(c.nc)
		clear(chunk) // drop references to the frames
	}
	if err == nil {
		// A deadline left on the socket would fail every later write,
		// the flusher's non-blocking ones included, once it passed.
		_ = c.nc.SetWriteDeadline(time.Time{})
	}
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
		return
	}
	c.written(frames)
}

// nextChunk moves up to size bytes from the front of rest to chunk, and
// returns both; a buffer cut at the boundary is split between them, and
// empty buffers go with the bytes before them.
func nextChunk(chunk, rest net.Buffers, size int) (net.Buffers, net.Buffers) {
	for len(rest) > 0 && (size > 0 || len(rest[0]) == 0) {
		b := rest[0]
		if len(b) > size {
			b = b[:size]
			rest[0] = rest[0][size:]
		} else {
			rest = rest[1:]
		}
		chunk = append(chunk, b)
		size -= len(b)
	}
	return chunk, rest
}

// written records frames as sent and passes the writer role on: to the
// flusher if more frames are queued, otherwise back to the next enqueue.
func (c *conn) written(frames []outFrame) {
	if lat := c.srv.cfg.PublishLatency; lat != nil {
		var now int64
		for _, f := range frames {
			if f.meta != nil && f.meta.published != 0 {
				if now == 0 {
					now = time.Now().UnixNano()
				}
				lat(time.Duration(now - f.meta.published))
			}
		}
	}
	closed := len(frames) > 0 && frames[len(frames)-1].close
	clear(frames)
	c.qmu.Lock()
	if cap(frames) <= 64 {
		c.spare = frames[:0]
	}
	more := len(c.queue) > 0 && !closed
	if !more {
		c.writing = closed // nothing is written after the close frame
	}
	c.qmu.Unlock()
	if closed {
		c.finish()
	}
	if more {
		c.srv.flusher.add(c)
	}
}

// lockedConn is the socket as gorilla sees it. Its writes (the handshake
// response, and the close frame it sends on a protocol error) take the
// connection's write lock, so they never land inside a batch.
type lockedConn struct {
	net.Conn
	mu *sync.Mutex
}

func (l *lockedConn) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.Conn.Write(p)
}

// hijacker hands gorilla's Upgrade the socket wrapped in a lockedConn, and
// keeps the socket itself for c's writers.
type hijacker struct {
	http.ResponseWriter
	c *conn
}

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.c.nc = nc
	if sc, ok := nc.(syscall.Conn); ok {
		h.c.raw, _ = sc.SyscallConn()
	}
	return &lockedConn{Conn: nc, mu: &h.c.wmu}, rw, nil
}

// closeFrame is the wire form of a close frame with code and text; text
// is cut to fit the 125 bytes a control frame may carry.
func closeFrame(code int, text string) []byte {
	const maxText = 123
	if len(text) > maxText {
		text = strings.ToValidUTF8(text[:maxText], "")
	}
	return controlFrame(websocket.CloseMessage, websocket.FormatCloseMessage(code, text))
}
