// Package topics keeps whole-state documents for dashboards (workflows,
// routes, workflow history, …) in Redis, and publishes a topic's state only
// when it differs from the one before, atomically across instances.
package topics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/callgate/callgate/internal/httpapi"
)

// DefaultNames are the topics served when none are configured.
var DefaultNames = []string{"workflows", "routes", "workflow-history"}

// DefaultMaxBytes bounds a topic's state.
const DefaultMaxBytes = 1 << 20

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// ValidName reports whether name can be a topic: 1 to 64 lower-case
// letters, digits, '-' and '_', starting with a letter or digit. "calls"
// is reserved for the call socket.
func ValidName(name string) bool { return validName.MatchString(name) && name != "calls" }

// ErrUnknownTopic: the topic is not configured.
var ErrUnknownTopic = errors.New("topics: unknown topic")

// State is a topic's current state.
type State struct {
	Topic string `json:"topic"`
	// Version counts real changes from 1; 0 means no state yet.
	Version int64 `json:"version"`
	// Data is the canonical JSON of the state; null when Version is 0.
	Data []byte `json:"-"`
}

// Store keeps topic states in Redis.
type Store struct {
	rdb     redis.UniversalClient
	prefix  string
	names   map[string]bool
	sharded bool
}

// NewStore returns a Store for the given topic names. Sharded selects the
// layout of a Redis Cluster: each topic's state and channel in the slot of
// its name, states published with SPUBLISH.
func NewStore(rdb redis.UniversalClient, prefix string, names []string, sharded bool) *Store {
	s := &Store{rdb: rdb, prefix: prefix, names: make(map[string]bool), sharded: sharded}
	for _, n := range names {
		s.names[n] = true
	}
	return s
}

// Known reports whether topic is configured.
func (s *Store) Known(topic string) bool { return s.names[topic] }

func (s *Store) key(topic string) string { return s.prefix + ":topic:{" + topic + "}" }

// Channel is the Pub/Sub channel on which topic's state frames go out:
// P:topic-events:<name>, or the shard channel P:topic-events:{<name>} in
// the cluster layout.
func (s *Store) Channel(topic string) string {
	if s.sharded {
		return s.prefix + ":topic-events:{" + topic + "}"
	}
	return s.prefix + ":topic-events:" + topic
}

// FramePrefix is how every state frame of topic begins; its version
// follows. Subscribers read the version from there.
func FramePrefix(topic string) string {
	return `{"type":"state","topic":"` + topic + `","version":`
}

// Frame builds the frame that carries a state to clients:
// {"type":"state","topic":…,"version":N,"data":…}.
func Frame(st State) []byte {
	b := make([]byte, 0, len(st.Data)+64)
	b = append(b, FramePrefix(st.Topic)...)
	b = strconv.AppendInt(b, st.Version, 10)
	b = append(b, `,"data":`...)
	b = append(b, st.Data...)
	return append(b, '}')
}

// setScript compares and publishes in one step. KEYS[1] the topic hash.
// ARGV: canonical data, channel, frame prefix, publish command. Replies
// {version, changed}.
var setScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'data')
if cur == ARGV[1] then
  return {tonumber(redis.call('HGET', KEYS[1], 'version')), 0}
end
local v = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'data', ARGV[1])
redis.call(ARGV[4], ARGV[2], ARGV[3] .. v .. ',"data":' .. ARGV[1] .. '}')
return {v, 1}
`)

// Set makes doc the topic's state unless it equals the current one as a
// JSON value. A change gets the next version and is published to every
// instance; an equal state publishes nothing, whichever instance set the
// current one.
func (s *Store) Set(ctx context.Context, topic string, doc []byte) (State, bool, error) {
	if !s.Known(topic) {
		return State{}, false, ErrUnknownTopic
	}
	data, err := Canonical(doc)
	if err != nil {
		return State{}, false, err
	}
	publish := "PUBLISH"
	if s.sharded {
		publish = "SPUBLISH"
	}
	res, err := setScript.Run(ctx, s.rdb, []string{s.key(topic)},
		data, s.Channel(topic), FramePrefix(topic), publish).Int64Slice()
	if err != nil {
		return State{}, false, fmt.Errorf("set topic %q: %w", topic, err)
	}
	return State{Topic: topic, Version: res[0], Data: data}, res[1] == 1, nil
}

// Current returns the topic's state; Version 0 when it has none.
func (s *Store) Current(ctx context.Context, topic string) (State, error) {
	if !s.Known(topic) {
		return State{}, ErrUnknownTopic
	}
	vals, err := s.rdb.HMGet(ctx, s.key(topic), "version", "data").Result()
	if err != nil {
		return State{}, fmt.Errorf("get topic %q: %w", topic, err)
	}
	st := State{Topic: topic, Data: []byte("null")}
	if v, ok := vals[0].(string); ok {
		st.Version, _ = strconv.ParseInt(v, 10, 64)
	}
	if d, ok := vals[1].(string); ok {
		st.Data = []byte(d)
	}
	return st, nil
}

// Handler serves the topic API.
type Handler struct {
	store    *Store
	maxBytes int64
	log      *slog.Logger
}

// NewHandler returns a Handler; maxBytes bounds a state (zero:
// DefaultMaxBytes).
func NewHandler(store *Store, maxBytes int64, log *slog.Logger) *Handler {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if log == nil {
		log = slog.Default()
	}
	return &Handler{store: store, maxBytes: maxBytes, log: log.With("component", "topics")}
}

// Register adds PUT /topics/:name and GET /topics/:name to api, which the
// caller guards with an API key.
func (h *Handler) Register(api *echo.Group) {
	api.PUT("/topics/:name", h.put)
	api.GET("/topics/:name", h.get)
}

// CodeUnknownTopic answers a topic that is not configured.
const CodeUnknownTopic = "unknown_topic"

type stateBody struct {
	Topic   string `json:"topic"`
	Version int64  `json:"version"`
	// Changed is set on PUT answers.
	Changed *bool           `json:"changed,omitempty"`
	Data    json.RawMessage `json:"data"`
}

func (h *Handler) fail(c echo.Context, err error) error {
	switch {
	case errors.Is(err, ErrUnknownTopic):
		return httpapi.Fail(c, http.StatusNotFound, CodeUnknownTopic, "no such topic: "+c.Param("name"))
	case errors.Is(err, ErrInvalidJSON):
		return httpapi.Fail(c, http.StatusBadRequest, httpapi.CodeInvalidJSON, "the state must be one JSON value: "+err.Error())
	case errors.Is(err, context.Canceled):
		return err
	}
	h.log.Error("redis unavailable", "err", err)
	return httpapi.Fail(c, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "the state store is unavailable; retry later")
}

func (h *Handler) put(c echo.Context) error {
	topic := c.Param("name")
	if !h.store.Known(topic) {
		return h.fail(c, ErrUnknownTopic)
	}
	body, ok, err := httpapi.ReadBody(c, h.maxBytes)
	if !ok {
		return err
	}
	st, changed, err := h.store.Set(c.Request().Context(), topic, body)
	if err != nil {
		return h.fail(c, err)
	}
	h.log.Info("topic set", "topic", topic, "version", st.Version, "changed", changed, "bytes", len(st.Data))
	return c.JSON(http.StatusOK, stateBody{Topic: topic, Version: st.Version, Changed: &changed, Data: st.Data})
}

func (h *Handler) get(c echo.Context) error {
	st, err := h.store.Current(c.Request().Context(), c.Param("name"))
	if err != nil {
		return h.fail(c, err)
	}
	return c.JSON(http.StatusOK, stateBody{Topic: st.Topic, Version: st.Version, Data: st.Data})
}
