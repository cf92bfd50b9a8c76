package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// How client frames are read.
//
// A connection's own goroutine, run, spends its life waiting for the
// client to send something, and its stack is most of what an idle
// connection costs. So run only waits (awaitReadable: bytes arrived, the
// client closed, or the read deadline passed) and reads nothing itself.
// The frames are read where they are handled, on a handler goroutine
// (aside), with a reader taken from a pool and given back once nothing
// more is buffered. The wait is a few calls deep, and run keeps the 2 KiB
// stack it started with; reading a frame through a buffer and the net
// package goes deeper, and would double it until a collection shrank it.
//
// Nothing may stay buffered when run waits: bytes already read from the
// socket would wake no one. readInput therefore reads every frame that
// has begun to arrive before it returns, and awaitReadable does not wait
// while its handler stopped it with bytes still buffered.
//
// Frames are read with gobwas/ws's header reader, checks and unmasking.
// What is checked: client frames must be masked; no reserved bits (no
// extension is negotiated) or opcodes; control frames are final and carry
// at most 125 bytes; a fragmented message's frames are continuations,
// with control frames allowed between them; a close frame carries no
// payload or a code a client may send and a reason in UTF-8; a message is
// at most MaxFrameBytes, across its fragments. The payload of a text
// message is not checked for UTF-8 here: it goes to the frame decoder,
// which answers what it cannot read with an error frame.

// frameReader reads one connection's frames. A connection holds one
// (conn.rd) only while bytes are buffered or a message is half read.
type frameReader struct {
	br  *bufio.Reader
	lim io.LimitedReader
	hdr [ws.MaxHeaderSize - 2]byte
	ctl [ws.MaxControlFramePayloadSize]byte
	// msg is the data message being put together from its fragments,
	// and op its opcode; msg is nil between messages.
	msg *bytes.Buffer
	op  ws.OpCode
}

// readBufferSize is a frame reader's buffer: several frames of the size
// clients send, per read from the socket.
const readBufferSize = 4 << 10

var frameReaders = sync.Pool{New: func() any {
	return &frameReader{br: bufio.NewReaderSize(nil, readBufferSize)}
}}

// errTooLarge is a message longer than the limit.
var errTooLarge = errors.New("message larger than the limit")

// inFrame is what frameReader.next read: a whole data message (op is
// OpText or OpBinary, and msg, from frameBuffers, is the caller's), a
// control frame (payload, unmasked, valid until the next call), or a
// fragment of a message not yet whole (op is OpContinuation).
type inFrame struct {
	op      ws.OpCode
	msg     *bytes.Buffer
	payload []byte
}

// next reads one frame, waiting for all of its bytes. A message of more
// than limit bytes is errTooLarge, read no further; a frame against the
// protocol is a ws.ProtocolError.
func (r *frameReader) next(limit int64) (inFrame, error) {
	h, err := ws.ReadHeaderBuffer(r.br, r.hdr[:])
	if errors.Is(err, ws.ErrHeaderLengthMSB) {
		return inFrame{}, ws.ProtocolError("payload length with the most significant bit set")
	}
	if err != nil {
		return inFrame{}, err
	}
	state := ws.StateServerSide
	if r.msg != nil {
		state = state.Set(ws.StateFragmented)
	}
	if err := ws.CheckHeader(h, state); err != nil {
		return inFrame{}, err
	}
	if h.OpCode.IsControl() {
		p := r.ctl[:h.Length]
		if _, err := io.ReadFull(r.br, p); err != nil {
			return inFrame{}, err
		}
		ws.Cipher(p, h.Mask, 0)
		if h.OpCode == ws.OpClose {
			if err := checkClosePayload(p); err != nil {
				return inFrame{}, err
			}
		}
		return inFrame{op: h.OpCode, payload: p}, nil
	}
	if r.msg == nil {
		r.msg = frameBuffers.Get().(*bytes.Buffer)
		r.msg.Reset()
		r.op = h.OpCode
	}
	start := r.msg.Len()
	if h.Length > limit-int64(start) {
		return inFrame{}, errTooLarge
	}
	// The buffer grows as bytes arrive, not by the length the header
	// announces.
	r.lim = io.LimitedReader{R: r.br, N: h.Length}
	_, err = r.msg.ReadFrom(&r.lim)
	if err == nil && r.lim.N > 0 {
		err = io.ErrUnexpectedEOF
	}
	r.lim.R = nil
	if err != nil {
		return inFrame{}, err
	}
	ws.Cipher(r.msg.Bytes()[start:], h.Mask, 0)
	if !h.Fin {
		return inFrame{op: ws.OpContinuation}, nil
	}
	msg := r.msg
	r.msg = nil
	return inFrame{op: r.op, msg: msg}, nil
}

// idle reports whether r holds nothing of the connection's: no buffered
// byte, no half-read message.
func (r *frameReader) idle() bool {
	return r.msg == nil && r.br.Buffered() == 0
}

// free gives r back to the pool, dropping what it holds.
func (r *frameReader) free() {
	if r.msg != nil {
		putFrameBuffer(r.msg)
		r.msg = nil
	}
	r.br.Reset(nil)
	frameReaders.Put(r)
}

// checkClosePayload checks a close frame's payload: none, or a code a
// client may send and a reason in UTF-8.
func checkClosePayload(p []byte) error {
	switch {
	case len(p) == 0:
		return nil
	case len(p) == 1:
		return ws.ProtocolError("close frame with a one-byte payload")
	}
	code, _ := ws.ParseCloseFrameDataUnsafe(p)
	if !sendableCloseCode(int(code)) {
		return ws.ErrProtocolStatusCodeUnknown
	}
	if !utf8.Valid(p[2:]) {
		return ws.ErrProtocolInvalidUTF8
	}
	return nil
}

// sendableCloseCode reports whether an endpoint may send code in a close
// frame: the codes of RFC 6455 and of the IANA registry but those that
// only report a closure (1005, 1006, 1015), and the ranges of libraries
// and applications. gobwas/ws's check (ws.CheckCloseFrameData) refuses the
// codes registered after the RFC (1012 to 1014) and lets codes above 4999
// through, so it is not used here.
func sendableCloseCode(code int) bool {
	switch {
	case code >= 3000 && code <= 4999:
		return true
	case code == 1004, code == 1005, code == 1006:
		return false
	default:
		return code >= 1000 && code <= 1014
	}
}

// closeCode is the code of a valid close frame's payload: 1005 (no
// status) for an empty one.
func closeCode(p []byte) int {
	if len(p) < 2 {
		return websocket.CloseNoStatusReceived
	}
	code, _ := ws.ParseCloseFrameDataUnsafe(p)
	return int(code)
}

// errClientClosed: the client's close frame came.
var errClientClosed = errors.New("the client closed the connection")

// readInput reads the frames the client sent: one, waiting for its bytes
// if they have not all arrived, then every one whose first byte is
// already buffered. It answers control frames (a pong pushes the read
// deadline back when live is set: once the connection is past
// authentication) and gives each whole data message to handle, which
// owns it and returns false to stop reading for now. It returns nil while
// the client may send more; otherwise errClientClosed or what reading
// failed with (see readFailed), and nothing more is read.
//
// It runs on the goroutine that handles the connection's frames (aside),
// or on run once the connection is closing.
func (c *conn) readInput(live bool, handle func(op ws.OpCode, msg *bytes.Buffer) bool) error {
	r := c.rd
	if r == nil {
		r = frameReaders.Get().(*frameReader)
		r.br.Reset(c.nc)
		c.rd = r
	}
	for {
		f, err := r.next(c.srv.cfg.MaxFrameBytes)
		if err != nil {
			c.inputEnded = true
			return err
		}
		switch f.op {
		case ws.OpPing:
			c.enqueueFrame(outFrame{data: controlFrame(websocket.PongMessage, f.payload), control: true})
		case ws.OpPong:
			if live {
				c.extendReadDeadline()
			}
		case ws.OpClose:
			// The echo of the client's close, at once: what still
			// waits for a client that is leaving is of no use to it.
			c.end(closeCode(f.payload), "", true)
			c.inputEnded = true
			return errClientClosed
		case ws.OpText, ws.OpBinary:
			if !handle(f.op, f.msg) {
				return nil
			}
		}
		if r.br.Buffered() == 0 {
			break
		}
	}
	if r.idle() {
		c.rd = nil
		r.free()
	}
	return nil
}

// readFailed ends the connection after its input could not be read: with
// 1002 for a frame against the protocol, 1009 for a message over the size
// limit, and code and text after silence past the read deadline. Other
// errors are the client's close, the client gone or the socket closed:
// there is nobody to tell.
func (c *conn) readFailed(err error, code int, text string) {
	c.inputEnded = true
	var (
		pe ws.ProtocolError
		ne net.Error
	)
	switch {
	case errors.As(err, &pe):
		c.logger().Info("client frame against the protocol", "err", err)
		c.closeWith(websocket.CloseProtocolError, string(pe))
	case errors.Is(err, errTooLarge):
		c.logger().Info("frame over the size limit", "limit", c.srv.cfg.MaxFrameBytes)
		c.closeWith(websocket.CloseMessageTooBig, "message too large")
	case errors.As(err, &ne) && ne.Timeout():
		c.closeWith(code, text)
	}
}

// extendReadDeadline gives the client PongWait more to send something.
func (c *conn) extendReadDeadline() {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.PongWait))
}

// buffered reports whether the connection's reader holds bytes not yet
// read as frames.
func (c *conn) buffered() bool {
	return c.rd != nil && c.rd.br.Buffered() > 0
}

// releaseReader gives the connection's reader back, once nothing more is
// read.
func (c *conn) releaseReader() {
	if c.rd != nil {
		c.rd.free()
		c.rd = nil
	}
}
