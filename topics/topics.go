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
	// Epoch tells apart the counts of versions: a new one starts when
	// Redis may have lost the topic's state (see setScript). Versions
	// compare by epoch first.
	Epoch int64 `json:"-"`
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
// follows, then EpochSep and its epoch. Subscribers read them from there.
func FramePrefix(topic string) string {
	return `{"type":"state","topic":"` + topic + `","version":`
}

// EpochSep comes between a state frame's version and its epoch.
const EpochSep = `,"epoch":"`

// Frame builds the frame that carries a state to clients:
// {"type":"state","topic":…,"version":N,"epoch":"E","data":…}.
func Frame(st State) []byte {
	b := make([]byte, 0, len(st.Data)+96)
	b = append(b, FramePrefix(st.Topic)...)
	b = strconv.AppendInt(b, st.Version, 10)
	b = append(b, EpochSep...)
	b = strconv.AppendInt(b, st.Epoch, 10)
	b = append(b, `","data":`...)
	b = append(b, st.Data...)
	return append(b, '}')
}

// setScript compares and publishes in one step. KEYS[1] the topic hash.
// ARGV: canonical data, channel, frame prefix, publish command. Replies
// {version, epoch, changed}.
//
// Versions are counted within epochs. A new epoch starts when the topic
// has no state (new, or lost by Redis), or when its state was written by
// another Redis process than this one (a restart, a failover to a replica
// that may have missed the last writes): clients may hold a newer state
// than what Redis still has, so the next one is published whatever it is,
// and in a later epoch, which they take as newer.
var setScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'data', 'version', 'epoch', 'rid')
local me = ''
local info = redis.pcall('INFO', 'server')
if type(info) == 'string' then me = string.match(info, 'run_id:(%x+)') or '' end
local version, epoch = tonumber(cur[2]) or 0, tonumber(cur[3]) or 0
local moved = me ~= '' and cur[4] and cur[4] ~= me
if cur[1] == ARGV[1] and epoch > 0 and not moved then
  return {version, epoch, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if not cur[1] then
  epoch, version = now, 0
elseif moved or epoch == 0 then
  epoch = math.max(now, epoch + 1)
end
version = version + 1
local v, e = string.format('%d', version), string.format('%d', epoch)
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'version', v, 'epoch', e, 'rid', me)
redis.call(ARGV[4], ARGV[2], ARGV[3] .. v .. '` + EpochSep + `' .. e .. '","data":' .. ARGV[1] .. '}')
return {version, epoch, 1}
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
	return State{Topic: topic, Version: res[0], Epoch: res[1], Data: data}, res[2] == 1, nil
}

// Current returns the topic's state; Version 0 when it has none.
func (s *Store) Current(ctx context.Context, topic string) (State, error) {
	if !s.Known(topic) {
		return State{}, ErrUnknownTopic
	}
	vals, err := s.rdb.HMGet(ctx, s.key(topic), "version", "data", "epoch").Result()
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
	if e, ok := vals[2].(string); ok {
		st.Epoch, _ = strconv.ParseInt(e, 10, 64)
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
	// Epoch is the state frames' epoch, decimal digits in a string as
	// there; "0" while the topic has no state.
	Epoch string `json:"epoch"`
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
	return c.JSON(http.StatusOK, stateBody{Topic: topic, Version: st.Version, Epoch: strconv.FormatInt(st.Epoch, 10), Changed: &changed, Data: st.Data})
}

func (h *Handler) get(c echo.Context) error {
	st, err := h.store.Current(c.Request().Context(), c.Param("name"))
	if err != nil {
		return h.fail(c, err)
	}
	return c.JSON(http.StatusOK, stateBody{Topic: st.Topic, Version: st.Version, Epoch: strconv.FormatInt(st.Epoch, 10), Data: st.Data})
}
