package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"time"
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

// Position is where an event stands in its call: its epoch, then its
// event_id within the epoch. Event ids count 1, 2, 3… within an epoch; a
// new epoch, numbered from 1 again, starts when the store may have lost
// the call's events (its numbering went back). Epochs only grow.
type Position struct {
	Epoch, Seq int64
}

// Less reports whether p comes before q.
func (p Position) Less(q Position) bool {
	return p.Epoch < q.Epoch || p.Epoch == q.Epoch && p.Seq < q.Seq
}

// none is the position before every event.
var none Position

// Event is a call event read back from history.
type Event struct {
	Position
	Frame []byte
}

// History reads the events a call has published.
type History interface {
	// After reads, at one moment, the events of call key after the
	// position after, oldest first (events the history no longer holds
	// are missing), at most limit of them (0: all), the call's last
	// position, and the call's record. An after of Latest reads no
	// events.
	After(ctx context.Context, key string, after Position, limit int) (HistoryRead, error)
}

// Latest is the position after every event: History.After reads only the
// call's position and record.
var Latest = Position{math.MaxInt64, math.MaxInt64}

// HistoryRead is what History.After read.
type HistoryRead struct {
	Events []Event
	// Last is the call's last position: its last event's.
	Last Position
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

// Identity is an authenticated client.
type Identity struct {
	User, Name, Org string
	// Expires is when the credentials end; zero for never.
	Expires time.Time
}

// Authenticator verifies a client's token.
type Authenticator interface {
	Authenticate(token string) (Identity, error)
}

// TopicSource gives a topic's current state.
type TopicSource interface {
	// Current returns the topic's state frame and its version (Seq) in
	// its epoch; a nil frame when the topic has no state yet.
	Current(ctx context.Context, topic string) (frame []byte, version Position, err error)
}
