// Package gateway serves client connections, WebSockets and Server-Sent
// Events streams: the call subscription protocol, each instance's local
// subscriptions, and the fan-out of bus messages to the connections that
// follow them.
//
// It declares what it needs from the rest of the system (interfaces.go:
// Bus, Resolver, History, TopicSource, Authenticator) and imports neither
// the Redis bus nor the call store.
//
// # Files
//
//	server.go      Server: delivery, stats, shutdown
//	config.go      Config and its defaults
//	upgrade.go     the checks and upgrade of a request
//	sse.go         Server-Sent Events streams: the request, its checks, the end
//	ssewire.go     the streams' event format: events, the close event, resumable ids
//	conn.go        a connection's state
//	session.go     a connection's life: run, open, the read loop, cleanup
//	read.go        the reading of client frames (read_linux.go: the wait for input)
//	handlers.go    subscribe and unsubscribe
//	auth.go        tokens, identities, per-user limits
//	queue.go       the send queue and how a connection ends
//	writer.go      the flusher: how queued frames reach the sockets
//	write_linux.go the non-blocking writev, a stream socket's user timeout (write_other.go: neither)
//	ping.go        the pinger
//	hub.go         local subscriptions, ordering and catch-up from history
//	topic.go       state topics
//	targets.go     the cache of resolved call identifiers
//	protocol.go    frames and codes, and the buffers client messages are read into
//	decode.go      the decoding of client frames
//	pool.go        the handler goroutines
//	group.go       goroutines that Shutdown waits for
//
// # Goroutines
//
// Each runs the code named and owns what is said. Shutdown stops them all
// and waits for them, but for the callers' goroutines and the token
// timers, which it stops.
//
//   - The HTTP server's, per request: serve checks and upgrades, fills in
//     the conn, and starts run. Server.wg counts it from the check.
//   - The HTTP server's, per stream request (sse.go): serveStream checks,
//     subscribes (holding the writer role, so nothing is written yet),
//     hijacks, writes the response head, starts runStream and hands the
//     writer role to the flusher.
//   - runStream, one per stream: reads only to see the client go away,
//     then cleans up.
//   - run, one per connection (session.go): waits for the client to send
//     something (awaitAuth, readLoop) and has a handler read and handle
//     it (aside, read.go), so that its own stack stays small; then cleans
//     up, and finishes the closing handshake, reading itself. It owns
//     subs, counted, welcomed, attached, rd and inputEnded, which the
//     handler it waits for in aside may use while it waits.
//   - The handler workers (pool.go): each runs one aside call at a time,
//     for the run goroutine that waits for it (open; readInput and what
//     it reads: subscribe, unsubscribe, auth). They exit after two idle
//     seconds or at Shutdown.
//   - The flusher's, one per core (writer.go): write what connections
//     queued, never waiting for a socket.
//   - finishWrite, one per write that found the socket full: writes the
//     rest within WriteWait, hands the connection back. Closing finished
//     is the last writer's last act on the connection, and run waits for
//     it.
//   - The pingers (ping.go): one queues a ping to every socket once per
//     9/10 of PongWait, the other a keepalive comment to every stream
//     once per StreamKeepalive.
//   - A catch-up per channel at a time (hub.go, while channelState.syncing):
//     reads history and queues what followers miss.
//   - The bus's receive goroutine (the caller's): Deliver. Never blocks.
//   - The caller of Resync (the bus's reconnect callback).
//   - Token timers (time.AfterFunc, auth.go): queue token_expiring or
//     close the connection; stopped by cleanup.
//
// # Locks
//
// In the order they may be taken; a lock lower in the list is never held
// while one higher up is taken, and the first group never nests:
//
//	Server.mu, topicState.mu, hubShard.mu   (at most one of them at a time)
//	  -> conn.qmu        queue and writer role
//	  -> flusher.mu      the flusher's pending list
//	  -> group.mu        starting a catch-up (under hubShard.mu)
//	  -> conn.authMu     user, identity, token timers
//	  -> targets.mu      resolved identifiers
//
// Everything from conn.qmu down is a leaf: nothing is taken while it is
// held, so leaves never nest either, and any of them may be taken under
// the first group. No lock is held across a write to a socket: only the
// holder of a connection's writer role writes to it (below), and a
// flusher goroutine never waits for a socket (finishWrite does).
// conn.closeOnce and conn.finishOnce run only close() (finishOnce also
// half-closes a stream's connection, which takes no lock), and finish is
// never called with a lock held. Frames are queued under Server.mu
// (Shutdown's close frames), topicState.mu (so each connection gets a
// topic's versions in order) and hubShard.mu (so it gets a call's events
// in order), which is why queueing never blocks.
//
// What each lock guards is written next to its fields. Functions that
// expect a lock to be held say "Called with ... held".
//
// # Fields of a conn
//
//   - Set by serve (serveStream) before run (runStream) starts, then read
//     only: srv, id, connectedAt, requestID, slot, nc, raw, topic,
//     stream, done, finished; and a stream's keys and given.
//   - Owned by the writer role: a stream's pos and known, the positions
//     its ids are built from (sse.go).
//   - Under authMu: user, identity, warnTimer, expireTimer.
//   - Under qmu: queue, spare, replayed, writing, closing.
//   - Owned by run and the handler it waits for: subs, counted (which
//     serve may set first), welcomed, attached, rd, inputEnded.
//
// # The writer role
//
// conn.writing, under qmu, says that someone has the connection's queue to
// write; only that one takes frames from the queue and writes them.
// Whoever sets it hands the connection to the flusher.
//
//	idle       writing is false
//	scheduled  on flusher.pending
//	flushing   a flusher goroutine: take, then one non-blocking writev
//	blocked    a finishWrite goroutine: the rest, within WriteWait
//	sealed     the close frame (a stream's close event) is written: writing
//	           stays set, finished is closed; a stream's response ends
//	failed     a write failed (fail): writing stays set, finished is closed
//
//	idle       ── a frame is queued (push, enqueueReplay, end) ──▶ scheduled
//	scheduled  ── a flusher goroutine takes it ───────────────────▶ flushing
//	flushing   ── the queue was empty (take) ─────────────────────▶ idle
//	flushing   ── the socket is full ─────────────────────────────▶ blocked
//	flushing,  ── all written, more queued (written) ─────────────▶ scheduled
//	blocked    ── all written, nothing queued ────────────────────▶ idle
//	           ── the close frame written ────────────────────────▶ sealed
//	           ── a write error ──────────────────────────────────▶ failed
//
// How a connection's queue closes is drawn in queue.go.
package gateway
