package redistest_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callgate/callgate/internal/redistest"
)

// direct returns a client of one server, closed at cleanup.
func direct(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// setReplicated writes key on the server at addr and waits until one
// replica has it, so that a kill of that server cannot lose it.
func setReplicated(t *testing.T, addr, key, value string) {
	t.Helper()
	ctx := context.Background()
	c := direct(t, addr)
	cn := c.Conn()
	defer cn.Close()
	if err := cn.Set(ctx, key, value, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := cn.Wait(ctx, 1, 10000).Result(); err != nil || n < 1 {
		t.Fatalf("WAIT 1: %d replicas have %s (%v)", n, key, err)
	}
}

// role returns the ROLE of the server at addr and, for a replica, its
// master's address.
func role(t *testing.T, addr string) (string, string) {
	t.Helper()
	v, err := direct(t, addr).Do(context.Background(), "ROLE").Slice()
	if err != nil {
		t.Fatalf("ROLE on %s: %v", addr, err)
	}
	if v[0] == "slave" {
		return "slave", fmt.Sprintf("%s:%d", v[1], v[2])
	}
	return v[0].(string), ""
}

func TestClusterKillMaster(t *testing.T) {
	only(t, redistest.ModeCluster)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	key := redistest.Prefix(t) + ":{kill}"
	old := srv.SlotOwner(t, key)
	setReplicated(t, old, key, "kept")

	promoted := srv.KillMaster(t, key)
	if promoted == old || srv.SlotOwner(t, key) != promoted {
		t.Fatalf("killed %s, promoted %s; the slot's owner is %s", old, promoted, srv.SlotOwner(t, key))
	}
	if r, _ := role(t, promoted); r != "master" {
		t.Fatalf("%s has role %s after its promotion", promoted, r)
	}
	if v, err := rdb.Get(ctx, key).Result(); v != "kept" {
		t.Fatalf("GET after the failover: %q %v", v, err)
	}

	srv.RestartKilled(t)
	if r, m := role(t, old); r != "slave" || m != promoted {
		t.Fatalf("the killed master is back as %s of %q, want a replica of %s", r, m, promoted)
	}
}

func TestClusterFailover(t *testing.T) {
	only(t, redistest.ModeCluster)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	key := redistest.Prefix(t) + ":{failover}"
	if err := rdb.Set(ctx, key, "kept", 0).Err(); err != nil {
		t.Fatal(err)
	}
	old := srv.SlotOwner(t, key)
	promoted := srv.Failover(t, key)
	if promoted == old || srv.SlotOwner(t, key) != promoted {
		t.Fatalf("failover from %s to %s; the slot's owner is %s", old, promoted, srv.SlotOwner(t, key))
	}
	if r, m := role(t, old); r != "slave" || m != promoted {
		t.Fatalf("the old master is %s of %q, want a replica of %s", r, m, promoted)
	}
	if v, err := rdb.Get(ctx, key).Result(); v != "kept" {
		t.Fatalf("GET after the failover: %q %v", v, err)
	}
	// And back.
	if back := srv.Failover(t, key); back != old {
		t.Fatalf("second failover to %s, want %s", back, old)
	}
}

// TestClusterMigrateSlot moves a slot with keys while a client keeps
// writing to it: every write acknowledged is there afterwards.
func TestClusterMigrateSlot(t *testing.T) {
	only(t, redistest.ModeCluster)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	tag := "{" + redistest.Prefix(t) + "}"
	const keys = 2000 // many MIGRATE batches, so that writes meet the slot in migration
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range keys {
			p.Set(ctx, fmt.Sprintf("%s:k%d", tag, i), i, 0)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	counter := tag + ":counter"
	old := srv.SlotOwner(t, counter)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var acked atomic.Int64
	var failed int64
	var created []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := rdb.Incr(ctx, counter).Err(); err != nil {
				failed++
				continue
			}
			acked.Add(1)
			k := fmt.Sprintf("%s:new%d", tag, i)
			if err := rdb.Set(ctx, k, "x", 0).Err(); err != nil {
				failed++
				continue
			}
			created = append(created, k)
		}
	}()
	// Let some writes through before the move starts: wait for the
	// counter, not for time.
	for {
		n, err := rdb.Get(ctx, counter).Int64()
		if err == nil && n >= 50 {
			break
		}
	}
	moved := srv.MigrateSlot(t, counter)
	after := acked.Load()
	for {
		n, err := rdb.Get(ctx, counter).Int64()
		if err == nil && n >= after+50 { // writes go on once the slot has moved
			break
		}
	}
	close(stop)
	wg.Wait()

	if moved == old || srv.SlotOwner(t, counter) != moved {
		t.Fatalf("slot moved from %s to %s; its owner is %s", old, moved, srv.SlotOwner(t, counter))
	}
	if n, err := rdb.Get(ctx, counter).Int64(); err != nil || n != acked.Load() {
		t.Fatalf("counter %d (%v), want the %d acknowledged increments", n, err, acked.Load())
	}
	for i := range keys {
		if v, err := rdb.Get(ctx, fmt.Sprintf("%s:k%d", tag, i)).Int(); err != nil || v != i {
			t.Fatalf("key %d: %d %v", i, v, err)
		}
	}
	for _, k := range created {
		if err := rdb.Get(ctx, k).Err(); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
	t.Logf("%d increments and %d new keys before, during and after the move, %d errors", acked.Load(), len(created), failed)
	if failed > 0 {
		t.Errorf("%d writes failed during the move: the client should follow ASK and MOVED", failed)
	}
	slot, err := rdb.ClusterKeySlot(ctx, counter).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := direct(t, old).ClusterCountKeysInSlot(ctx, int(slot)).Result(); err != nil || n != 0 {
		t.Fatalf("the old owner keeps %d keys of the slot (%v)", n, err)
	}
}

func TestSentinelKillPrimary(t *testing.T) {
	only(t, redistest.ModeSentinel)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	key := redistest.Prefix(t) + ":kill"
	old := srv.Primary(t)
	setReplicated(t, old, key, "kept")

	promoted := srv.KillPrimary(t)
	if promoted == old || srv.Primary(t) != promoted {
		t.Fatalf("killed %s, promoted %s; the primary is %s", old, promoted, srv.Primary(t))
	}
	if r, _ := role(t, promoted); r != "master" {
		t.Fatalf("%s has role %s after its promotion", promoted, r)
	}
	// The failover client follows the Sentinels to the new primary.
	deadline, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if v, err := rdb.Get(deadline, key).Result(); v != "kept" {
		t.Fatalf("GET after the failover: %q %v", v, err)
	}

	srv.RestartKilled(t)
	if r, m := role(t, old); r != "slave" || m != promoted {
		t.Fatalf("the old primary is back as %s of %q, want a replica of %s", r, m, promoted)
	}
	// A second failover, back to the first server.
	if back := srv.KillPrimary(t); back != old {
		t.Fatalf("second failover to %s, want %s", back, old)
	}
	srv.RestartKilled(t)
}
