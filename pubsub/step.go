package pubsub

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// luaStep is one atomic step written in Lua, run as a Redis function where
// the server allows it, as a script (EVALSHA) otherwise.
//
// A function library is loaded once per Redis process and keeps what its
// code makes at load: helpers, and values it chooses to remember (the
// publish step remembers the process's run_id instead of reading INFO at
// every step, which was a fifth of its cost). A script is compiled once
// too, but runs its whole text, and reads INFO, at every call. Redis 7
// and later have functions; miniredis, older servers and users whose ACL
// forbids FUNCTION LOAD or FCALL get the script, which behaves the same.
//
// The library's and the function's names carry a digest of the code, so
// that instances of different versions sharing a Redis (a rolling
// upgrade) each call their own. A library left by an older version stays
// loaded until removed (FUNCTION DELETE); each is a few kilobytes.
type luaStep struct {
	fn     string        // the function's name
	lib    string        // the library's code
	script *redis.Script // the same step as a script
}

// stepRunner is how one Bus runs its steps: what its Redis allows, and
// the loads it made. Each Bus has its own, since each has its own client
// (and ACL user).
type stepRunner struct {
	// scripts is set once the server refused functions: every later call
	// runs the script.
	scripts atomic.Bool
	// loadMu serializes loads; loads counts them. A call that found the
	// library missing loads it only if no load finished since it was
	// sent, so the calls of a burst (at start, after a failover) load it
	// once, not once each.
	loadMu sync.Mutex
	loads  atomic.Uint64
}

// newLuaStep returns the step whose Lua code body defines a local
// function named entry(KEYS, ARGV).
func newLuaStep(name, entry, body string) *luaStep {
	sum := sha1.Sum([]byte(body))
	id := name + "_" + hex.EncodeToString(sum[:6])
	return &luaStep{
		fn:     id,
		lib:    "#!lua name=" + id + "\n" + body + "\nredis.register_function('" + id + "', " + entry + ")\n",
		script: redis.NewScript(body + "\nreturn " + entry + "(KEYS, ARGV)\n"),
	}
}

// call is what a step sends once: on c, as a function or as a script.
type call func(asFunction bool) *redis.Cmd

// run runs step with send, loading the library with load when the server
// does not have it and falling back to the script when the server refuses
// functions. load loads the library where send's command goes (every
// primary of a cluster).
func (s *stepRunner) run(ctx context.Context, step *luaStep, send call, load func(ctx context.Context, lib string) error) *redis.Cmd {
	if s.scripts.Load() {
		return send(false)
	}
	sent := s.loads.Load()
	cmd := send(true)
	err := cmd.Err()
	switch {
	case err == nil:
		return cmd
	case refusesFunctions(err):
		s.scripts.Store(true)
		return send(false)
	case !redis.HasErrorPrefix(err, "Function not found"):
		return cmd
	}
	// Not loaded here: a new process, a node new to the cluster, a
	// flushed or never-loaded library.
	if err := s.load(ctx, step, sent, load); err != nil {
		if refusesFunctions(err) {
			s.scripts.Store(true)
			return send(false)
		}
		cmd.SetErr(fmt.Errorf("load function library: %w", err))
		return cmd
	}
	return send(true)
}

// load loads step's library unless a load finished after the call that
// found it missing was sent (sent is loads then).
func (s *stepRunner) load(ctx context.Context, step *luaStep, sent uint64, load func(ctx context.Context, lib string) error) error {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	if s.loads.Load() != sent {
		return nil
	}
	if err := load(ctx, step.lib); err != nil {
		return err
	}
	s.loads.Add(1)
	return nil
}

// refusesFunctions reports whether err says that functions cannot be used
// here: an unknown command, or one the user may not run.
func refusesFunctions(err error) bool {
	return redis.HasErrorPrefix(err, "NOPERM") || strings.Contains(err.Error(), "unknown command")
}

// loadLibrary loads lib on every primary rdb writes to.
func loadLibrary(ctx context.Context, rdb redis.UniversalClient, lib string) error {
	if c, ok := rdb.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return node.FunctionLoadReplace(ctx, lib).Err()
		})
	}
	return rdb.FunctionLoadReplace(ctx, lib).Err()
}
