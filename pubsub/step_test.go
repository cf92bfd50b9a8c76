package pubsub_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callgate/callgate/internal/bustest"
	"github.com/callgate/callgate/internal/redistest"
	"github.com/callgate/callgate/pubsub"
)

// TestUnlikelyTransition: a transition sent as a check alone is made all
// the same when its record is in the state it leaves, and costs nothing
// when not.
func TestUnlikelyTransition(t *testing.T) {
	e := newEnv(t)
	k := e.keys(t)
	bus, msgs := e.start(t, pubsub.Config{})
	ctx := context.Background()
	if err := bus.Subscribe(ctx, k.ch); err != nil {
		t.Fatal(err)
	}
	m := k.msg("event")
	m.Record, m.Fields = k.rec, []string{"status"}
	m.Transition = &pubsub.Transition{
		Field: "status", From: "initiated", To: "running", Set: []string{"updated", "now"},
		Payload:  pubsub.Payload{Head: []byte("n="), Mid: []byte(";e="), Tail: []byte(";status")},
		Unlikely: true,
	}
	if err := e.rdb.HSet(ctx, k.rec, "status", "running").Err(); err != nil {
		t.Fatal(err)
	}
	res, err := bus.Publish(ctx, m)
	if err != nil || res.Transitioned || res.Seq != 1 {
		t.Fatalf("past the transition: %+v %v", res, err)
	}
	if got := bustest.Next(t, msgs).Payload; got != payload(res.Position, "event") {
		t.Fatalf("got %q", got)
	}
	// The record made again, as it starts: the transition is due.
	if err := e.rdb.HSet(ctx, k.rec, "status", "initiated").Err(); err != nil {
		t.Fatal(err)
	}
	res, err = bus.Publish(ctx, m)
	if err != nil || !res.Transitioned || res.Seq != 3 || res.Record[1] != "running" {
		t.Fatalf("with the transition due: %v %v %q %v", res.Position, res.Transitioned, res.Record, err)
	}
	if got := bustest.Next(t, msgs).Payload; got != payload(pubsub.Position{Epoch: res.Epoch, Seq: 2}, "status") {
		t.Fatalf("announcement %q", got)
	}
	if got := bustest.Next(t, msgs).Payload; got != payload(res.Position, "event") {
		t.Fatalf("got %q", got)
	}
	if v, err := e.rdb.HGet(ctx, k.rec, "updated").Result(); err != nil || v != "now" {
		t.Fatalf("record's set pair: %q %v", v, err)
	}
}

// TestExpiriesRenewed: a step sets its keys' expiries when they were set
// long enough ago, or when asked, and leaves them alone otherwise.
func TestExpiriesRenewed(t *testing.T) {
	e := newEnv(t)
	k := e.keys(t)
	bus := e.publisher(t)
	ctx := context.Background()
	m := k.msg("x")
	m.SeqTTL, m.HistoryTTL = time.Hour, 2*time.Hour
	if _, err := bus.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	ttl := func() (pos, hist time.Duration) {
		t.Helper()
		var err error
		if pos, err = e.rdb.PTTL(ctx, k.pos).Result(); err != nil {
			t.Fatal(err)
		}
		if hist, err = e.rdb.PTTL(ctx, k.hist).Result(); err != nil {
			t.Fatal(err)
		}
		return pos, hist
	}
	if pos, hist := ttl(); pos <= time.Minute || hist <= time.Hour {
		t.Fatalf("first step: TTLs %s, %s", pos, hist)
	}
	shorten := func() {
		t.Helper()
		for _, key := range []string{k.pos, k.hist} {
			if err := e.rdb.PExpire(ctx, key, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	shorten()
	if _, err := bus.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	if pos, hist := ttl(); pos > time.Minute || hist > time.Minute {
		t.Fatalf("renewed just after being set: %s, %s", pos, hist)
	}
	// Set long ago, as the position says.
	old := strconv.FormatInt(time.Now().Add(-5*time.Minute).UnixMilli(), 10)
	if err := e.rdb.HSet(ctx, k.pos, "x", old).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	if pos, hist := ttl(); pos <= time.Minute || hist <= time.Hour {
		t.Fatalf("not renewed after a sixteenth of the TTL: %s, %s", pos, hist)
	}
	shorten()
	m.ExpireNow = true
	if _, err := bus.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	if pos, hist := ttl(); pos <= time.Minute || hist <= time.Hour {
		t.Fatalf("not renewed when asked: %s, %s", pos, hist)
	}
}

// forEachPrimary runs f on every primary of the deployment.
func forEachPrimary(ctx context.Context, rdb redis.UniversalClient, f func(context.Context, *redis.Client) error) error {
	if c, ok := rdb.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, f)
	}
	return f(ctx, rdb.(*redis.Client))
}

// TestFunctionLibraryLoadedAgain: the step's function library, removed
// from Redis (FUNCTION FLUSH, or a new process without it), is loaded
// again by the next step, which succeeds.
func TestFunctionLibraryLoadedAgain(t *testing.T) {
	e := newEnv(t)
	if e.srv.Mode() == redistest.ModeMini {
		t.Skip("miniredis has no functions; the step runs as a script there")
	}
	k := e.keys(t)
	bus := e.publisher(t)
	ctx := context.Background()
	if _, err := bus.Publish(ctx, k.msg("x")); err != nil {
		t.Fatal(err)
	}
	// libraries says whether every primary has the step's library (each
	// may own the slot of a key the step is called on).
	libraries := func() bool {
		var primaries, with atomic.Int32
		err := forEachPrimary(ctx, e.rdb, func(ctx context.Context, c *redis.Client) error {
			libs, err := c.FunctionList(ctx, redis.FunctionListQuery{LibraryNamePattern: "callgate_publish_*"}).Result()
			primaries.Add(1)
			if len(libs) > 0 {
				with.Add(1)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return with.Load() == primaries.Load()
	}
	if !libraries() {
		t.Fatal("the step ran, but not every primary has its library")
	}
	if err := forEachPrimary(ctx, e.rdb, func(ctx context.Context, c *redis.Client) error {
		return c.FunctionFlush(ctx).Err()
	}); err != nil {
		t.Fatal(err)
	}
	res, err := bus.Publish(ctx, k.msg("x"))
	if err != nil || res.Seq != 2 {
		t.Fatalf("after FUNCTION FLUSH: %+v %v", res, err)
	}
	if !libraries() {
		t.Fatal("the library was not loaded again on every primary")
	}
}

// TestScriptWhenFunctionsForbidden: a user whose ACL forbids functions
// gets the same step as a script.
func TestScriptWhenFunctionsForbidden(t *testing.T) {
	e := newEnv(t)
	if e.srv.Mode() == redistest.ModeMini {
		t.Skip("miniredis has neither ACL users nor functions")
	}
	ctx := context.Background()
	user, pass := redistest.Prefix(t)+"-nofn", "secret"
	rule := []any{"ACL", "SETUSER", user, "on", ">" + pass, "~*", "&*", "+@all", "-function", "-fcall", "-fcall_ro"}
	if err := forEachPrimary(ctx, e.rdb, func(ctx context.Context, c *redis.Client) error {
		return c.Do(ctx, rule...).Err()
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = forEachPrimary(ctx, e.rdb, func(ctx context.Context, c *redis.Client) error {
			return c.Do(ctx, "ACL", "DELUSER", user).Err()
		})
	})
	rdb := e.srv.ClientAs(t, user, pass)
	if err := rdb.FCall(ctx, "callgate_nothing", nil).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("the user may call functions: %v", err)
	}
	k := e.keys(t)
	bus := pubsub.New(rdb, pubsub.Config{Sharded: e.sharded})
	t.Cleanup(func() { bus.Close() })
	for i := 1; i <= 3; i++ {
		res, err := bus.Publish(ctx, k.msg("x"))
		if err != nil || res.Seq != int64(i) {
			t.Fatalf("publish %d without functions: %+v %v", i, res, err)
		}
	}
}
