package pubsub_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callgate/callgate/internal/redistest"
	"github.com/callgate/callgate/pubsub"
)

// redisCPU returns the CPU time the Redis server behind rdb has used
// (INFO cpu: used_cpu_user + used_cpu_sys).
func redisCPU(b *testing.B, rdb redis.UniversalClient) time.Duration {
	b.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		for _, k := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(line, k); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					b.Fatalf("%s%s: %v", k, v, err)
				}
				total += f
			}
		}
	}
	return time.Duration(total * float64(time.Second))
}

// BenchmarkPublishLiveEvent publishes as calls does for a live event of a
// call already in progress: a dedup mark, the record (which holds the
// position), the transition as a check alone, two channels' worth of
// fields, 64 publishes in flight. On a real Redis it reports Redis's own
// CPU per publish (redis-µs/op), the figure that bounds a deployment on
// one shard:
//
//	CALLGATE_TEST_REDIS=real go test -run '^$' -bench PublishLiveEvent ./pubsub
func BenchmarkPublishLiveEvent(b *testing.B) {
	srv := redistest.Shared(b)
	rdb := srv.Client(b)
	bus := pubsub.New(rdb, pubsub.Config{Sharded: srv.Mode() == redistest.ModeCluster})
	b.Cleanup(func() { bus.Close() })
	ctx := context.Background()
	prefix := redistest.Prefix(b)
	const calls = 2000
	tail := `,"time":"2026-11-30T04:10:17.588589218Z","data":{"role":"user","text":"Hello there, I would like to book an appointment for tomorrow","final":true}}`
	msgs := make([]pubsub.Message, calls)
	for c := range msgs {
		sid := "CA" + strconv.Itoa(c)
		k := prefix + ":call:{" + sid + "}"
		if err := rdb.HSet(ctx, k, "call_sid", sid, "conversation_id", "conv"+sid, "conversation_id_json", `"conv`+sid+`"`, "status", "in-progress").Err(); err != nil {
			b.Fatal(err)
		}
		msgs[c] = pubsub.Message{
			Seq: k, SeqTTL: 7 * 24 * time.Hour, History: k + ":events", HistoryMax: 1000, HistoryTTL: 7 * 24 * time.Hour,
			DedupTTL: 24 * time.Hour,
			Record:   k, Fields: []string{"call_sid", "conversation_id", "status"},
			Field: "conversation_id", RawField: "conversation_id_json", FieldPrefix: []byte(`,"conversation_id":`),
			FieldChannel: &pubsub.FieldChannel{Prefix: prefix + ":events:conv:"},
			Channels:     []string{prefix + ":events:sid:" + sid},
			Payload: pubsub.Payload{Head: []byte(`{"type":"event","event_id":"`), Mid: []byte(`","epoch":"`),
				Tail: []byte(`","event":"transcript","call_sid":"` + sid + `"`), Rest: []byte(tail)},
			Transition: &pubsub.Transition{Field: "status", From: "initiated", To: "in-progress", Unlikely: true,
				Payload: pubsub.Payload{Head: []byte(`{"type":"event","event_id":"`), Mid: []byte(`","epoch":"`),
					Tail: []byte(`","event":"status","call_sid":"` + sid + `"`), Rest: []byte(`,"data":{"status":"in-progress"}}`)}},
		}
	}
	publish := func(i int) {
		m := msgs[i%calls]
		m.Dedup = m.Seq + ":seen:" + strconv.Itoa(i)
		if _, err := bus.Publish(ctx, m); err != nil {
			b.Error(err)
		}
	}
	publish(0) // loads the function library
	const inFlight = 64
	// One server counts its CPU; a cluster's is spread over its masters.
	counted := srv.Mode() == redistest.ModeReal
	var before time.Duration
	if counted {
		before = redisCPU(b, rdb)
	}
	b.ResetTimer()
	var wg sync.WaitGroup
	next := make(chan int)
	for range inFlight {
		wg.Go(func() {
			for i := range next {
				publish(i)
			}
		})
	}
	for i := range b.N {
		next <- i + 1
	}
	close(next)
	wg.Wait()
	b.StopTimer()
	if counted {
		b.ReportMetric(float64((redisCPU(b, rdb)-before).Microseconds())/float64(b.N), "redis-µs/op")
	}
}
