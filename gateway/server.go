package gateway

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Stats are a Server's counters.
type Stats struct {
	// Connections and Subscriptions are open now. Connections counts
	// sockets and streams; Streams the Server-Sent Events streams among
	// them.
	Connections   int64
	Streams       int64
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
	// BusMessages counts the messages the bus handed to Deliver: call
	// events, org notices and topic states. BusFollowed counts those of
	// them on a channel at least one local connection followed when the
	// message came: BusMessages / BusFollowed is how many messages the
	// instance received from Redis for each one it needed.
	BusMessages int64
	BusFollowed int64
}

type metrics struct {
	connections, streams, subscriptions, delivered, dropped, overflows atomic.Int64
	busMessages, busFollowed                                           atomic.Int64
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

	// ctx is the parent of every connection's work; cancelled by Shutdown.
	ctx    context.Context
	cancel context.CancelFunc

	// topics by name and by channel; fixed after NewServer.
	topics          map[string]*topicState
	topicsByChannel map[string]*topicState

	// bg runs the pinger and the hub's catch-ups; Shutdown waits for
	// them.
	bg group
	// stopOnce guards the end of Shutdown, which stops the goroutines
	// that serve every connection.
	stopOnce sync.Once

	// mu guards the fields below (see doc.go for the lock order).
	mu       sync.Mutex
	conns    map[*conn]struct{}
	users    map[string]int // open connections by user
	draining bool
	// wg counts the connections being upgraded or served.
	wg sync.WaitGroup
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
	s.bg.Go(func() { s.pinger(cfg.pingPeriod(), false) })
	s.bg.Go(func() { s.pinger(cfg.StreamKeepalive, true) })
	for _, t := range cfg.Topics {
		ts := &topicState{Topic: t, conns: make(map[*conn]Position)}
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

// Deliver fans payload out to the local connections following channel. It
// never blocks; it is the bus's message handler.
func (s *Server) Deliver(channel string, payload []byte) {
	s.metrics.busMessages.Add(1)
	var followed bool
	if t := s.topicsByChannel[channel]; t != nil {
		followed = s.deliverTopic(t, payload)
	} else {
		var n int
		n, followed = s.hub.deliver(channel, payload)
		s.metrics.delivered.Add(int64(n))
	}
	if followed {
		s.metrics.busFollowed.Add(1)
	}
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
		Streams:       s.metrics.streams.Load(),
		Subscriptions: s.metrics.subscriptions.Load(),
		Channels:      s.hub.channels(),
		Delivered:     s.metrics.delivered.Load(),
		Dropped:       s.metrics.dropped.Load(),
		Overflows:     s.metrics.overflows.Load(),
		BusMessages:   s.metrics.busMessages.Load(),
		BusFollowed:   s.metrics.busFollowed.Load(),
	}
}

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// Shutdown stops accepting connections, closes every open one with 1001
// (going away; a stream ends after its close event) so clients reconnect
// elsewhere, and waits for them to finish
// until ctx ends, when it drops the rest. Then it stops the server's own
// goroutines (pinger, flusher, handlers, catch-ups) and waits for them:
// once it returns, nothing of the server runs. Deliver and Resync may
// still be called; they find no connection.
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
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.mu.Lock()
		for c := range s.conns {
			_ = c.nc.Close()
		}
		s.mu.Unlock()
		s.cancel() // what the connections still wait for gives up
		<-done
	}
	s.stopOnce.Do(func() {
		s.cancel()
		s.handlers.stop()
		s.flusher.stop()
		s.bg.close()
	})
	return err
}
