// Package pubsub moves byte payloads over named Redis Pub/Sub channels. It
// publishes numbered messages atomically, recording each in a history that
// Range reads back, and follows the channels in use (and, for a moment,
// the ones just left) on shared subscriber connections.
//
// It runs on one Redis server, on a primary watched by Sentinel (through
// go-redis's failover client), or on a Redis Cluster with sharded Pub/Sub
// (Config.Sharded). It knows nothing of what the payloads mean or who
// receives them.
//
// # Numbering when Redis loses state
//
// A sequence's messages are numbered within epochs (see Position). Redis
// can lose a sequence's state, or part of it: a restart without
// persistence, an eviction, a failover to a replica that missed the last
// writes. Publish then starts a new epoch instead of reusing numbers that
// subscribers may already have seen with other messages, and never
// numbers a message below what the history holds. Readers compare
// positions by epoch, then number, and treat a change of epoch as a point
// where messages may have been lost.
//
// # Files
//
//	message.go    what a publisher says (Message, Payload, Position) and gets back
//	publish.go    Publish: the publish step (publish.lua) and how it is sent
//	step.go       a Lua step run as a Redis function, or as a script
//	history.go    Range: a sequence's position and history, read back
//	bus.go        the Bus: its configuration, channels and their reference
//	              counts, subscribe, unsubscribe, the linger sweep and health;
//	              past 400 lines because all of them share Bus.mu and read
//	              best side by side
//	subscriber.go one subscriber connection: its commands and receive loop
//
// # Concurrency
//
// Lock order: subscriber.sendMu, then Bus.mu. Bus.mu guards every channel
// and subscriber field (marked so where they are declared) and is never
// held across I/O. stepRunner.loadMu, held while a function library is
// loaded, is taken with no other lock held. Goroutines: one receive loop
// per subscriber connection (started by Run, or when a new connection is
// needed after Run), which owns that connection's reads and replaces it on
// failure; one Config.OnReconnect call per restored connection; the linger
// sweeper's timer. Close stops all of them and waits for them.
package pubsub
