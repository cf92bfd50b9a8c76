package pubsub_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callgate/callgate/internal/bustest"
	"github.com/callgate/callgate/internal/redistest"
	"github.com/callgate/callgate/pubsub"
)

// env is the bus under test on the Redis that CALLGATE_TEST_REDIS selects.
type env struct {
	srv     *redistest.Server
	rdb     redis.UniversalClient
	sharded bool

	mu       sync.Mutex
	prefixes map[*testing.T]string
}

func TestMain(m *testing.M) { redistest.Main(m) }

// newEnv runs on the test binary's shared deployment; breakable on one of
// the test's own.
func newEnv(t *testing.T) *env {
	return envOn(t, redistest.Shared(t))
}

func breakableEnv(t *testing.T) *env {
	return envOn(t, redistest.Start(t))
}

func envOn(t *testing.T, srv *redistest.Server) *env {
	return &env{srv: srv, rdb: srv.Client(t), sharded: srv.Mode() == redistest.ModeCluster, prefixes: map[*testing.T]string{}}
}

// start runs a bus with cfg and returns it with the messages its handler
// saw.
func (e *env) start(t *testing.T, cfg pubsub.Config) (*pubsub.Bus, <-chan bustest.Message) {
	t.Helper()
	cfg.Sharded = e.sharded
	bus := pubsub.New(e.rdb, cfg)
	out := make(chan bustest.Message, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		bus.Run(context.Background(), func(ch string, p []byte) { out <- bustest.Message{Channel: ch, Payload: string(p)} })
	}()
	t.Cleanup(func() {
		bus.Close()
		<-done
	})
	return bus, out
}

func (e *env) publish(t *testing.T, ch, payload string) {
	t.Helper()
	var err error
	if e.sharded {
		err = e.rdb.SPublish(context.Background(), ch, payload).Err()
	} else {
		err = e.rdb.Publish(context.Background(), ch, payload).Err()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// subscribed reports Redis's count of subscribers to ch.
func (e *env) subscribed(t *testing.T, ch string) int {
	t.Helper()
	ctx := context.Background()
	var (
		n   map[string]int64
		err error
	)
	if cc, ok := e.rdb.(*redis.ClusterClient); ok {
		var node *redis.Client
		if node, err = cc.MasterForKey(ctx, ch); err == nil {
			n, err = node.PubSubShardNumSub(ctx, ch).Result()
		}
	} else {
		n, err = e.rdb.PubSubNumSub(ctx, ch).Result()
	}
	if err != nil {
		t.Fatal(err)
	}
	return int(n[ch])
}

// breakConns kills every subscriber connection Redis holds.
func (e *env) breakConns(t *testing.T) { e.srv.KillClients(t, "pubsub") }

// channel names channel i of a test; three hash tags spread them over
// three slots when sharded.
func (e *env) channel(t *testing.T, i int) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.prefixes[t]
	if !ok {
		p = redistest.Prefix(t)
		e.prefixes[t] = p
	}
	return fmt.Sprintf("%s:{%s-%d}:%d", p, p, i%3, i)
}

// TestConformance runs the behaviours every bus must have.
func TestConformance(t *testing.T) {
	e := breakableEnv(t)
	bustest.Run(t, bustest.Env{
		Start: func(t *testing.T, h bustest.Hooks) (bustest.Bus, <-chan bustest.Message) {
			cfg := pubsub.Config{OnLost: h.OnLost}
			if h.OnReconnect != nil {
				cfg.OnReconnect = func(_ context.Context, chs []string) { h.OnReconnect(chs) }
			}
			return e.start(t, cfg)
		},
		Publish:    e.publish,
		Subscribed: e.subscribed,
		Break:      e.breakConns,
		Channel:    e.channel,
	})
}

// TestLingeringChannels: with Linger, a channel left by its last local
// subscriber stays subscribed for a while. A Subscribe then needs no
// SUBSCRIBE, messages still reach the handler, and the channels whose
// time is up are unsubscribed together.
func TestLingeringChannels(t *testing.T) {
	e := newEnv(t)
	bus, msgs := e.start(t, pubsub.Config{Linger: 300 * time.Millisecond})
	ctx := context.Background()
	const n = 100
	for i := range n {
		if err := bus.Subscribe(ctx, e.channel(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	var subscribes, unsubscribes int64
	counts := e.srv.Mode() == redistest.ModeReal // one server, which counts commands
	if counts {
		subscribes, unsubscribes = redistest.CommandCalls(t, e.rdb, "subscribe"), redistest.CommandCalls(t, e.rdb, "unsubscribe")
	}
	for i := range n {
		if err := bus.Unsubscribe(ctx, e.channel(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	if bus.Channels() != n || e.subscribed(t, e.channel(t, 0)) != 1 {
		t.Fatalf("right after the last subscribers left: Channels() = %d, Redis subscribers %d", bus.Channels(), e.subscribed(t, e.channel(t, 0)))
	}
	e.publish(t, e.channel(t, 1), "meanwhile")
	if m := bustest.Next(t, msgs); m != (bustest.Message{Channel: e.channel(t, 1), Payload: "meanwhile"}) {
		t.Fatalf("got %+v", m)
	}
	if err := bus.Subscribe(ctx, e.channel(t, 0)); err != nil {
		t.Fatal(err)
	}
	if counts {
		if got := redistest.CommandCalls(t, e.rdb, "subscribe") - subscribes; got != 0 {
			t.Fatalf("subscribing again to a lingering channel sent %d SUBSCRIBE", got)
		}
	}
	// Channels() drops once Redis confirmed the UNSUBSCRIBE: from then on
	// nothing published on those channels arrives.
	bustest.WaitFor(t, "lingering channels unsubscribed", bustest.Tick(t), func() bool { return bus.Channels() == 1 })
	e.publish(t, e.channel(t, 1), "late")
	e.publish(t, e.channel(t, 0), "followed")
	if m := bustest.Next(t, msgs); m != (bustest.Message{Channel: e.channel(t, 0), Payload: "followed"}) {
		t.Fatalf("got %+v after the channels were unsubscribed", m)
	}
	if e.subscribed(t, e.channel(t, 0)) != 1 || e.subscribed(t, e.channel(t, 1)) != 0 || e.subscribed(t, e.channel(t, n-1)) != 0 {
		t.Fatalf("Redis subscribers: %d, %d, %d; want 1, 0, 0", e.subscribed(t, e.channel(t, 0)),
			e.subscribed(t, e.channel(t, 1)), e.subscribed(t, e.channel(t, n-1)))
	}
	if counts {
		sent := redistest.CommandCalls(t, e.rdb, "unsubscribe") - unsubscribes
		t.Logf("%d channels unsubscribed with %d UNSUBSCRIBE commands", n-1, sent)
		if sent >= n/10 {
			t.Fatalf("%d UNSUBSCRIBE commands for %d channels: not batched", sent, n-1)
		}
	}
}

// TestIdleBusIsHealthy: a bus that follows nothing is healthy whatever
// happened to its connection: before, it waited for a message, up to
// HealthCheck, to say so again.
func TestIdleBusIsHealthy(t *testing.T) {
	e := breakableEnv(t)
	bus, _ := e.start(t, pubsub.Config{HealthCheck: time.Hour})
	ctx := context.Background()
	ch := e.channel(t, 0)
	if err := bus.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if err := bus.Unsubscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	bustest.WaitFor(t, "channel released", bustest.Tick(t), func() bool { return bus.Channels() == 0 })
	e.breakConns(t)
	bustest.WaitFor(t, "healthy while idle", bustest.Tick(t), bus.Healthy)
	// And it follows again at once.
	if err := bus.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
}

// TestRefusedResubscribeIsUnhealthy: when Redis answers the subscription
// of a reconnect with an error (here: ACL permissions taken away), the bus
// says it is not healthy, and tries again until Redis accepts, then says
// it is and catches the channel up.
func TestRefusedResubscribeIsUnhealthy(t *testing.T) {
	e := breakableEnv(t)
	if e.srv.Mode() != redistest.ModeReal {
		t.Skip("changes the ACL of one server: needs CALLGATE_TEST_REDIS=real")
	}
	caught := make(chan []string, 4)
	bus, msgs := e.start(t, pubsub.Config{OnReconnect: func(_ context.Context, chs []string) { caught <- chs }})
	ctx := context.Background()
	ch := e.channel(t, 0)
	if err := bus.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	acl := func(rules ...any) {
		t.Helper()
		if err := e.rdb.Do(ctx, append([]any{"ACL", "SETUSER", "default"}, rules...)...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	acl("resetchannels")
	t.Cleanup(func() { acl("allchannels") })
	e.breakConns(t)
	bustest.WaitFor(t, "unhealthy while the resubscribe is refused", bustest.Tick(t), func() bool { return !bus.Healthy() })
	acl("allchannels")
	select {
	case chs := <-caught:
		if len(chs) != 1 || chs[0] != ch {
			t.Fatalf("caught up %v", chs)
		}
	case <-time.After(bustest.Wait):
		t.Fatal("not subscribed again once Redis accepted")
	}
	if !bus.Healthy() {
		t.Fatal("unhealthy once subscribed again")
	}
	e.publish(t, ch, "back")
	if m := bustest.Next(t, msgs); m.Payload != "back" {
		t.Fatalf("got %+v", m)
	}
}

// TestFollowsAcrossTopologyChanges: on a Redis Cluster, a followed channel
// keeps being followed when its slot migrates to another master (Redis
// ends the subscription on the old one), when a replica takes over with
// CLUSTER FAILOVER, and when its master is killed and its replica
// promoted; whenever the bus lost the channel it says so, then that it
// caught up. With Sentinel, a killed primary is the same.
func TestFollowsAcrossTopologyChanges(t *testing.T) {
	e := breakableEnv(t)
	var faults []struct {
		name  string
		fault func(key string)
	}
	add := func(name string, fault func(key string)) {
		faults = append(faults, struct {
			name  string
			fault func(key string)
		}{name, fault})
	}
	switch e.srv.Mode() {
	case redistest.ModeCluster:
		add("slot migration", func(key string) { e.srv.MigrateSlot(t, key) })
		add("CLUSTER FAILOVER", func(key string) { e.srv.Failover(t, key) })
		add("master killed", func(key string) { e.srv.KillMaster(t, key); e.srv.RestartKilled(t) })
	case redistest.ModeSentinel:
		add("primary killed", func(string) { e.srv.KillPrimary(t); e.srv.RestartKilled(t) })
	default:
		t.Skip("topology changes need CALLGATE_TEST_REDIS=cluster or sentinel")
	}
	lost := make(chan []string, 16)
	caught := make(chan []string, 16)
	bus, msgs := e.start(t, pubsub.Config{
		OnLost:      func(chs []string) { lost <- chs },
		OnReconnect: func(_ context.Context, chs []string) { caught <- chs },
	})
	ctx := context.Background()
	ch := e.channel(t, 0)
	if err := bus.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	for i, f := range faults {
		f.fault(ch)
		// A connection to the node that failed or gave the slot up breaks
		// at once, well before the fault helper has seen the cluster
		// settle. A connection that Redis routed to a replica (the
		// cluster's layout moments after a failover can still name it)
		// follows the channel through replication, and breaks only if
		// that node goes.
		select {
		case chs := <-lost:
			if len(chs) != 1 || chs[0] != ch {
				t.Fatalf("%s: lost %v", f.name, chs)
			}
			select {
			case chs := <-caught:
				if len(chs) != 1 || chs[0] != ch {
					t.Fatalf("%s: caught up %v", f.name, chs)
				}
			case <-time.After(bustest.Wait):
				t.Fatalf("%s: the bus lost the channel and never caught it up", f.name)
			}
		default:
			t.Logf("%s: the subscriber connection was not affected", f.name)
		}
		e.publish(t, ch, f.name)
		if m := bustest.Next(t, msgs); m != (bustest.Message{Channel: ch, Payload: f.name}) {
			t.Fatalf("%s: got %+v", f.name, m)
		}
		if !bus.Healthy() {
			t.Fatalf("%s: not healthy once caught up", f.name)
		}
		t.Logf("fault %d (%s): followed again", i, f.name)
	}
}
