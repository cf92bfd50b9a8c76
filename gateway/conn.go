package gateway

import (
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// conn is one client connection: a WebSocket, or a Server-Sent Events
// stream (stream is set; see sse.go), which shares everything but the
// wire format and the reading.
//
// Its own goroutine, run, reads, and hands each frame to a handler
// goroutine (aside), one at a time. Frames for the client go through
// enqueue; the server's flusher writes them (see writer.go). Which
// goroutine or lock owns each field is written in doc.go.
type conn struct {
	// Set by serve before run starts; read only after.
	srv         *Server
	ws          *websocket.Conn
	id          string
	connectedAt time.Time
	// requestID is the upgrade request's id, for the logs.
	requestID string
	// slot picks the pinger's round that pings this connection.
	slot uint32

	// nc is the socket, raw its system handle (nil if it has none); set
	// by the upgrade.
	nc  net.Conn
	raw syscall.RawConn
	// wmu is held while bytes go to the socket, by the flusher or by
	// gorilla, so that frames never interleave.
	wmu sync.Mutex

	// qmu guards the fields below. queue holds the frames waiting to be
	// written, queued bytes of them, of which up to replayed were
	// replayed from history and do not count against the live limit in
	// frames. writing is the writer role: set
	// while the connection is with the flusher or a write is under way;
	// whoever sets it schedules the write. closing: the close frame is
	// queued or the connection failed; nothing more is queued.
	qmu      sync.Mutex
	queue    []outFrame
	spare    []outFrame
	queued   int
	replayed int
	writing  bool
	closing  bool

	closeOnce sync.Once
	// done is closed when the connection must end.
	done chan struct{}
	// finished is closed once the close frame is written or writing
	// failed; finishOnce guards it.
	finished   chan struct{}
	finishOnce sync.Once

	// stream is set for a Server-Sent Events stream (by serveStream,
	// before anything is written); nil for a WebSocket.
	stream *sseStream

	// topic is set for a topic connection (by serve); attached once it
	// follows it (owned by run).
	topic    *topicState
	attached bool

	// authMu guards user, identity and the expiry timers.
	authMu      sync.Mutex
	user        string    // identity's User; "anonymous" without one
	identity    *Identity // nil: anonymous
	warnTimer   *time.Timer
	expireTimer *time.Timer

	// Owned by run and, while it waits for them, its aside calls.
	//
	// counted: the connection counts against its user's limit (serve
	// may set it first).
	counted bool
	// welcomed: the welcome frame is queued (set before readLoop
	// starts).
	welcomed bool
	// subs are the calls followed, at most MaxSubscriptions (a list:
	// it is short, and smaller than a map).
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
