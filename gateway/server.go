// Package gateway serves client WebSocket connections: the call
// subscription protocol, each instance's local subscriptions, and the
// fan-out of bus messages to the sockets that follow them.
//
// It declares what it needs from the rest of the system (Bus, Resolver)
// and imports neither the Redis bus nor the call store.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
)

// Bus follows channels for this instance. Subscribe returns once messages
// published on the channel will reach the handler the bus was started
// with; calls are reference-counted per channel.
type Bus interface {
	Subscribe(ctx context.Context, channel string) error
	Unsubscribe(ctx context.Context, channel string) error
}

// Target is what a call identifier resolves to.
type Target struct {
	// Key identifies the call whatever identifier named it.
	Key string
	// Channel carries the call's events.
	Channel string
	// Org is the call's tenant; empty for none.
	Org string
}

// Event is a call event read back from history.
type Event struct {
	Seq   int64
	Frame []byte
}

// History reads the events a call has published.
type History interface {
	// After reads, at one moment, the events of call key numbered after
	// after, oldest first (events the history no longer holds are
	// missing), the call's last event_id, and the call's record.
	After(ctx context.Context, key string, after int64) (HistoryRead, error)
}

// HistoryRead is what History.After read.
type HistoryRead struct {
	Events []Event
	// Last is the call's last event_id.
	Last int64
	// Record is the call as JSON, as the subscribed reply carries it;
	// nil if the call no longer exists.
	Record json.RawMessage
	// Org is the call's tenant; empty for none.
	Org string
}

// ErrNotFound is returned by a Resolver for an unknown identifier.
var ErrNotFound = errors.New("gateway: call not found")

// Resolver finds the call an identifier (call_sid or conversation_id)
// names. The server reuses a Target for up to a minute: what it holds
// must not change while the call exists (the catch-up that follows each
// subscribe checks the call's existence and org again).
type Resolver interface {
	Resolve(ctx context.Context, id string) (Target, error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(ctx context.Context, id string) (Target, error)

// Resolve calls f.
func (f ResolverFunc) Resolve(ctx context.Context, id string) (Target, error) { return f(ctx, id) }

// Config configures a Server. Zero values of the tunables pick the
// documented defaults.
type Config struct {
	Bus      Bus
	Resolver Resolver
	History  History
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// InstanceID names this instance in welcome frames and logs.
	InstanceID string
	// AllowedOrigins lists the browser origins (scheme://host[:port])
	// that may connect. Empty allows every origin.
	AllowedOrigins []string

	// MaxFrameBytes is the largest client frame; a larger one closes the
	// connection with 1009. Default 64 KiB.
	MaxFrameBytes int64
	// SendQueue is how many frames may wait for a slow client before it
	// is disconnected with CloseSendQueueOverflow. Default 256.
	SendQueue int
	// MaxSubscriptions is how many calls one connection may follow.
	// Default 100.
	MaxSubscriptions int
	// WriteWait bounds each write. Default 10s.
	WriteWait time.Duration
	// PongWait is how long a silent client is kept; the server pings
	// every 9/10 of it. Default 60s.
	PongWait time.Duration
	// PingPeriod is derived from PongWait.
	PingPeriod time.Duration
	// SubscribeTimeout bounds resolving and subscribing one call.
	// Default 10s.
	SubscribeTimeout time.Duration

	// Authenticator verifies tokens. Nil: no authentication; every
	// connection is anonymous.
	Authenticator Authenticator
	// AllowAnonymous lets connections without a token in as anonymous
	// when an Authenticator is set; otherwise they must send an auth
	// frame within AuthTimeout.
	AllowAnonymous bool
	// Tenancy hides calls of an org from connections of other orgs and
	// from anonymous ones.
	Tenancy bool
	// AuthTimeout bounds the wait for the first frame, auth, of a
	// connection that brought no token. Default 10s.
	AuthTimeout time.Duration
	// TokenWarning is how long before its token expires a connection
	// gets token_expiring. Default 60s.
	TokenWarning time.Duration
	// MaxConnections bounds this instance's open connections; past it
	// upgrades get 503. Default 10000.
	MaxConnections int
	// MaxConnectionsPerUser bounds one user's connections to this
	// instance. Default 50; anonymous connections are not counted.
	MaxConnectionsPerUser int
	// FrameRate and FrameBurst bound client frames per connection (a
	// token bucket); past it the connection is closed with 4029.
	// Defaults 20/s and 50.
	FrameRate  float64
	FrameBurst int

	// PublishLatency, if set, is called with the time from an event's
	// publication to its write to a socket, for every live event
	// written. It runs on the goroutines that write to sockets and must
	// be cheap.
	PublishLatency func(time.Duration)

	// Topics are the state topics served by TopicHandler, and
	// TopicSource gives their current states.
	Topics      []Topic
	TopicSource TopicSource
}

func (c *Config) fill() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = 64 << 10
	}
	if c.SendQueue <= 0 {
		c.SendQueue = 256
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = 100
	}
	if c.WriteWait <= 0 {
		c.WriteWait = 10 * time.Second
	}
	if c.PongWait <= 0 {
		c.PongWait = 60 * time.Second
	}
	c.PingPeriod = c.PongWait * 9 / 10
	if c.SubscribeTimeout <= 0 {
		c.SubscribeTimeout = 10 * time.Second
	}
	if c.AuthTimeout <= 0 {
		c.AuthTimeout = 10 * time.Second
	}
	if c.TokenWarning <= 0 {
		c.TokenWarning = time.Minute
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 10000
	}
	if c.MaxConnectionsPerUser <= 0 {
		c.MaxConnectionsPerUser = 50
	}
	if c.FrameRate <= 0 {
		c.FrameRate = 20
	}
	if c.FrameBurst <= 0 {
		c.FrameBurst = 50
	}
}

// Stats are a Server's counters.
type Stats struct {
	// Connections and Subscriptions are open now.
	Connections   int64
	Subscriptions int64
	// Channels are followed by at least one local connection.
	Channels int
	// Delivered counts frames of events and states queued to sockets.
	Delivered int64
	// Dropped counts frames that could not be queued (their socket was
	// cut off) or were malformed.
	Dropped int64
	// Overflows counts sockets cut off with CloseSendQueueOverflow.
	Overflows int64
}

type metrics struct {
	connections, subscriptions, delivered, dropped, overflows atomic.Int64
}

// Server accepts client connections and fans bus messages out to them.
type Server struct {
	cfg      Config
	log      *slog.Logger
	hub      *hub
	targets  *targets
	upgrader websocket.Upgrader
	metrics  metrics
	flusher  *flusher
	// handlers run the handling of client frames (see conn.aside).
	handlers *handlerPool
	// nextSlot numbers connections for the pinger.
	nextSlot atomic.Uint32

	// ctx is the parent of every connection's work; cancelled by Close.
	ctx    context.Context
	cancel context.CancelFunc

	// topics by name and by channel; fixed after NewServer.
	topics          map[string]*topicState
	topicsByChannel map[string]*topicState

	mu       sync.Mutex
	conns    map[*conn]struct{}
	users    map[string]int // open connections by user
	draining bool
	wg       sync.WaitGroup
}

// NewServer returns a Server. Feed it bus messages through Deliver.
func NewServer(cfg Config) *Server {
	cfg.fill()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "gateway"),
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[*conn]struct{}),
		users:  make(map[string]int),

		topics:          make(map[string]*topicState),
		topicsByChannel: make(map[string]*topicState),
	}
	s.hub = newHub(s)
	s.targets = newTargets(targetTTL)
	s.flusher = newFlusher()
	s.handlers = newHandlerPool(2 * time.Second)
	context.AfterFunc(ctx, s.flusher.stop)
	go s.pinger()
	for _, t := range cfg.Topics {
		ts := &topicState{Topic: t, conns: make(map[*conn]int64)}
		s.topics[t.Name] = ts
		s.topicsByChannel[t.Channel] = ts
	}
	s.upgrader = websocket.Upgrader{
		// Client frames are small; larger ones are read in pieces.
		ReadBufferSize: 256,
		// The flusher writes frames itself, so gorilla's writer, and its
		// buffer, are never used.
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     s.checkOrigin,
		Error:           upgradeError,
	}
	return s
}

// sees reports whether a connection of org connOrg may follow a call of
// org callOrg: a call without an org is everyone's.
func (s *Server) sees(connOrg, callOrg string) bool {
	return !s.cfg.Tenancy || callOrg == "" || callOrg == connOrg
}

func (s *Server) checkOrigin(r *http.Request) bool {
	if len(s.cfg.AllowedOrigins) == 0 {
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	for _, o := range s.cfg.AllowedOrigins {
		if strings.EqualFold(o, u.Scheme+"://"+u.Host) {
			return true
		}
	}
	return false
}

// Deliver fans payload out to the local connections following channel. It
// never blocks; it is the bus's message handler.
func (s *Server) Deliver(channel string, payload []byte) {
	if t := s.topicsByChannel[channel]; t != nil {
		s.deliverTopic(t, payload)
		return
	}
	n := s.hub.deliver(channel, payload)
	s.metrics.delivered.Add(int64(n))
}

// unsubscribe releases one bus reference of c to channel.
func (s *Server) unsubscribe(ctx context.Context, c *conn, channel string) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SubscribeTimeout)
	defer cancel()
	if err := s.cfg.Bus.Unsubscribe(ctx, channel); err != nil {
		c.logger().Warn("bus unsubscribe failed", "channel", channel, "err", err)
	}
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Connections:   s.metrics.connections.Load(),
		Subscriptions: s.metrics.subscriptions.Load(),
		Channels:      s.hub.channels(),
		Delivered:     s.metrics.delivered.Load(),
		Dropped:       s.metrics.dropped.Load(),
		Overflows:     s.metrics.overflows.Load(),
	}
}

// ServeHTTP upgrades the request to a WebSocket that follows calls, and
// serves it until it closes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r, nil)
}

// serve checks, upgrades and serves one connection; topic is nil for the
// call socket.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, topic *topicState) {
	s.mu.Lock()
	draining := s.draining
	if !draining {
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if draining {
		writeHTTPError(w, http.StatusServiceUnavailable, "shutting_down", "this instance is shutting down; connect to another")
		return
	}
	upgraded := false
	defer func() {
		if !upgraded {
			s.wg.Done()
		}
	}()
	if s.metrics.connections.Load() >= int64(s.cfg.MaxConnections) {
		writeHTTPError(w, http.StatusServiceUnavailable, "too_many_connections", "this instance is at its connection limit; try another")
		return
	}
	var id *Identity
	mustAuth := false
	if s.cfg.Authenticator != nil {
		if token := tokenFrom(r); token != "" {
			ident, err := s.cfg.Authenticator.Authenticate(token)
			if err != nil {
				s.log.Info("upgrade refused: invalid token", "err", err)
				writeHTTPError(w, http.StatusUnauthorized, "invalid_token", "the token is invalid or expired")
				return
			}
			id = &ident
		} else {
			mustAuth = !s.cfg.AllowAnonymous
		}
	}
	if topic != nil && !mustAuth && s.cfg.Authenticator != nil && !topic.mayUse(id) {
		writeHTTPError(w, http.StatusForbidden, "forbidden", "this topic is not readable with this token")
		return
	}
	if id != nil && !s.admit(id.User) {
		writeHTTPError(w, http.StatusTooManyRequests, "too_many_connections", "too many connections for this user")
		return
	}
	c := &conn{
		srv:         s,
		id:          uuid.NewString(),
		user:        "anonymous",
		topic:       topic,
		connectedAt: time.Now(),
		slot:        s.nextSlot.Add(1),
		done:        make(chan struct{}),
		finished:    make(chan struct{}),
	}
	ws, err := s.upgrader.Upgrade(hijacker{w, c}, r, nil)
	if err != nil {
		if id != nil {
			s.release(id.User)
		}
		return // the upgrader has answered
	}
	c.ws = ws
	ws.SetPingHandler(func(data string) error {
		c.enqueueFrame(outFrame{data: controlFrame(websocket.PongMessage, []byte(data)), control: true})
		return nil
	})
	ws.SetCloseHandler(func(code int, _ string) error {
		// The echo of the client's close, at once: what still waits
		// for a client that is leaving is of no use to it.
		c.end(code, "", true)
		return nil
	})
	if id != nil {
		c.counted = true
		c.setIdentity(*id)
	}
	c.requestID = w.Header().Get("X-Request-Id")
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.metrics.connections.Add(1)
	// The connection gets a goroutine of its own and this one returns:
	// everything the HTTP server held for the request is freed.
	upgraded = true
	go c.run(mustAuth, r.URL.Path)
}

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
	c.logger().Info("connection opened", "user", c.user, "path", path)
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

// upgradeError answers a request that could not be upgraded in the API's
// error format.
func upgradeError(w http.ResponseWriter, _ *http.Request, status int, reason error) {
	code := "bad_handshake"
	if status == http.StatusForbidden {
		code = "origin_not_allowed"
	}
	writeHTTPError(w, status, code, reason.Error())
}

func writeHTTPError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}

// welcome is the first frame of every connection.
func (c *conn) welcome() []byte {
	return encode(welcomeFrame{Type: "welcome", ConnectionID: c.id, InstanceID: c.srv.cfg.InstanceID, User: c.user})
}

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// Shutdown stops accepting connections, closes every open one with 1001
// (going away) so clients reconnect elsewhere, and waits for them to finish
// until ctx ends, when it drops the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	for c := range s.conns {
		c.closeWith(websocket.CloseGoingAway, "server shutting down")
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			_ = c.nc.Close()
		}
		s.mu.Unlock()
		s.cancel()
		<-done
		return ctx.Err()
	}
}
