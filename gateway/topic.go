package gateway

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"sync"
)

// Topic configures one state topic.
type Topic struct {
	Name string
	// Channel carries the topic's state frames.
	Channel string
	// FramePrefix is how every state frame begins; the version, a decimal
	// integer, follows it directly, then EpochSep and the decimal epoch
	// as a string (frames written before epochs lack them: epoch 0).
	FramePrefix string
	// Org, when set, restricts the topic to tokens of that org.
	Org string
}

// TopicEpochSep comes between a state frame's version and its epoch.
const TopicEpochSep = `,"epoch":"`

// topicState is one topic on this instance: the newest state frame seen,
// and the local connections with the version each was sent last.
// Versions are Positions: the epoch, then the version within it.
type topicState struct {
	Topic
	mu      sync.Mutex // guards the fields below; held while enqueueing (see doc.go)
	version Position
	frame   []byte
	conns   map[*conn]Position
}

// versionOf reads the version and epoch of a state frame; ok=false if it
// has no version.
func (t *topicState) versionOf(frame []byte) (Position, bool) {
	rest, ok := bytes.CutPrefix(frame, []byte(t.FramePrefix))
	if !ok {
		return Position{}, false
	}
	end := digits(rest, 0)
	v, err := strconv.ParseInt(string(rest[:end]), 10, 64)
	if err != nil {
		return Position{}, false
	}
	rest, ok = bytes.CutPrefix(rest[end:], []byte(TopicEpochSep))
	if !ok {
		return Position{Seq: v}, true
	}
	e, err := strconv.ParseInt(string(rest[:digits(rest, 0)]), 10, 64)
	if err != nil {
		return Position{}, false
	}
	return Position{Epoch: e, Seq: v}, true
}

// publish sends the state frame of version to every local connection that
// has not had that version or a newer one, and keeps it if it is the
// newest. Each connection sees each version at most once, in increasing
// order; connections that were sent a newer snapshot skip older live
// frames. It returns how many connections it queued the frame for, and
// whether any connection followed the topic.
func (t *topicState) publish(frame []byte, version Position) (n int, followed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.version.Less(version) {
		t.version, t.frame = version, frame
	}
	for c, sent := range t.conns {
		if sent.Less(version) && c.enqueue(frame) {
			t.conns[c] = version
			n++
		}
	}
	return n, len(t.conns) > 0
}

// add registers c and sends it its welcome, then the newest state known:
// the one held, or snapshot if that is newer (the live frame that carries
// it may still be on its way). Other connections get it from its live
// frame, in order.
func (t *topicState) add(c *conn, snapshot []byte, version Position) {
	welcome := c.welcome()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.version.Less(version) {
		t.version, t.frame = version, snapshot
	}
	t.conns[c] = t.version
	c.enqueue(welcome)
	if t.frame != nil {
		c.enqueue(t.frame)
	}
}

func (t *topicState) remove(c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c)
}

func (t *topicState) active() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns) > 0
}

// deliverTopic handles a bus message on a topic channel, and reports
// whether any local connection followed the topic.
func (s *Server) deliverTopic(t *topicState, payload []byte) bool {
	v, ok := t.versionOf(payload)
	if !ok {
		s.log.Warn("topic frame without a version dropped", "topic", t.Name)
		return t.active()
	}
	n, followed := t.publish(payload, v)
	s.metrics.delivered.Add(int64(n))
	return followed
}

// current loads a topic's state from its source.
func (s *Server) current(ctx context.Context, t *topicState) ([]byte, Position, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SubscribeTimeout)
	defer cancel()
	return s.cfg.TopicSource.Current(ctx, t.Name)
}

// Lost tells the server that the bus lost its subscription to channels:
// the calls among them hold their live events until Resync has caught
// them up, so that nothing published meanwhile is skipped. It does not
// block; a bus calls it from its receive loop, before anything it
// receives on the next connection.
func (s *Server) Lost(channels []string) { s.hub.lost(channels) }

// Resync catches the local connections following channels up after the
// bus subscribed to them again: messages published while it could not
// were lost. Calls are filled in from their history; topics get their
// newest state.
func (s *Server) Resync(ctx context.Context, channels []string) {
	s.hub.resync(channels)
	for _, ch := range channels {
		t := s.topicsByChannel[ch]
		if t == nil || !t.active() {
			continue
		}
		frame, v, err := s.current(ctx, t)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("topic resync failed", "topic", t.Name, "err", err)
			}
			continue
		}
		if frame != nil {
			n, _ := t.publish(frame, v)
			s.metrics.delivered.Add(int64(n))
		}
	}
}

// TopicHandler serves the WebSocket of one configured topic: the client
// gets the current state at once, then every change. It returns nil for
// an unknown topic.
func (s *Server) TopicHandler(name string) http.Handler {
	t := s.topics[name]
	if t == nil {
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, t) })
}

// attachTopic follows c's topic for c: subscribe on the bus first, then
// load the current state, so no change falls between the two.
func (s *Server) attachTopic(ctx context.Context, c *conn) bool {
	t := c.topic
	sctx, cancel := context.WithTimeout(ctx, s.cfg.SubscribeTimeout)
	err := s.cfg.Bus.Subscribe(sctx, t.Channel)
	cancel()
	var (
		frame   []byte
		version Position
	)
	if err == nil {
		if frame, version, err = s.current(ctx, t); err != nil {
			s.unsubscribe(context.WithoutCancel(ctx), c, t.Channel)
		}
	}
	if err != nil {
		c.logger().Warn("topic unavailable", "topic", t.Name, "err", err)
		c.closeWith(closeTryAgainLater, "event bus unavailable; reconnect later")
		return false
	}
	c.attached = true
	t.add(c, frame, version)
	return true
}
