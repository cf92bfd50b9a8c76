package gateway

import (
	"log/slog"
	"time"
)

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
	// SendQueueBytes is how many bytes of frames may wait for a client:
	// past it a live frame disconnects it as SendQueue does, and a replay
	// from history is cut (see conn.enqueueReplay). A frame is always
	// accepted into an empty queue, whatever its size. Default 8 MiB.
	SendQueueBytes int
	// MaxSubscriptions is how many calls one connection may follow.
	// Default 100.
	MaxSubscriptions int
	// WriteWait bounds each write. Default 10s.
	WriteWait time.Duration
	// PongWait is how long a silent client is kept; the server pings
	// every 9/10 of it. Default 60s.
	PongWait time.Duration
	// StreamKeepalive is how often a Server-Sent Events stream gets a
	// comment line, so that proxies see traffic on an idle stream.
	// Default 15s.
	StreamKeepalive time.Duration
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

// pingPeriod is how often the server pings: often enough that a client
// that answers is never silent for PongWait.
func (c *Config) pingPeriod() time.Duration { return c.PongWait * 9 / 10 }

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
	if c.SendQueueBytes <= 0 {
		c.SendQueueBytes = 8 << 20
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
	if c.StreamKeepalive <= 0 {
		c.StreamKeepalive = 15 * time.Second
	}
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
