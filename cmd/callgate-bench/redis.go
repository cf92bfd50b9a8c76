package main

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisWatch reads the CPU time of the Redis servers behind the gateways
// (INFO cpu: used_cpu_user + used_cpu_sys, the process's whole CPU time
// in microseconds) at the start and end of a phase. Given any node of a
// Redis Cluster, it follows every node of the cluster, and sums its
// masters and its replicas apart; it also sums what the cluster bus
// carried for Pub/Sub (CLUSTER INFO), where a PUBLISH goes to every node
// and an SPUBLISH only to its shard's replicas.
//
// It asks Redis rather than reading /proc for --pids: Redis knows which
// of its servers are masters, which /proc does not; it measures in
// microseconds, /proc in hundredths of a second; and it works for a Redis
// on another machine or in a container.
type redisWatch struct {
	cluster bool
	nodes   []*redisNode
}

type redisNode struct {
	client *redis.Client
	addr   string
	role   string // master or replica
	before redisSample
}

type redisSample struct {
	cpu                   time.Duration
	publish, publishShard int64 // cluster bus messages sent
}

// parseRedisAddr reads --redis: host:port or a redis:// or rediss:// URL.
func parseRedisAddr(s string) (*redis.Options, error) {
	if !strings.Contains(s, "://") {
		s = "redis://" + s
	}
	opt, err := redis.ParseURL(s)
	if err != nil {
		return nil, fmt.Errorf("--redis: want host:port or redis://[user:password@]host:port (%w)", err)
	}
	return opt, nil
}

// startRedisWatch finds the servers behind addr and samples them.
func startRedisWatch(ctx context.Context, addr string) (*redisWatch, error) {
	opt, err := parseRedisAddr(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	seed := redis.NewClient(opt)
	info, err := seed.Info(ctx, "cluster", "replication").Result()
	if err != nil {
		seed.Close()
		return nil, fmt.Errorf("--redis %s: %w", opt.Addr, err)
	}
	w := &redisWatch{cluster: infoField(info, "cluster_enabled") == "1"}
	if !w.cluster {
		role := "master"
		if infoField(info, "role") == "slave" {
			role = "replica"
		}
		w.nodes = []*redisNode{{client: seed, addr: opt.Addr, role: role}}
	} else {
		slots, err := seed.ClusterSlots(ctx).Result()
		seed.Close()
		if err != nil {
			return nil, fmt.Errorf("--redis %s: CLUSTER SLOTS: %w", opt.Addr, err)
		}
		seen := map[string]bool{}
		for _, s := range slots {
			for i, n := range s.Nodes {
				if seen[n.Addr] {
					continue
				}
				seen[n.Addr] = true
				o := *opt
				o.Addr = n.Addr
				role := "master"
				if i > 0 {
					role = "replica"
				}
				w.nodes = append(w.nodes, &redisNode{client: redis.NewClient(&o), addr: n.Addr, role: role})
			}
		}
	}
	// Masters first, each group by address.
	slices.SortFunc(w.nodes, func(a, b *redisNode) int {
		return cmp.Or(cmp.Compare(a.role, b.role), cmp.Compare(a.addr, b.addr))
	})
	for _, n := range w.nodes {
		if n.before, err = w.sample(ctx, n); err != nil {
			w.close()
			return nil, err
		}
	}
	return w, nil
}

func (w *redisWatch) sample(ctx context.Context, n *redisNode) (redisSample, error) {
	info, err := n.client.Info(ctx, "cpu").Result()
	if err != nil {
		return redisSample{}, fmt.Errorf("--redis: INFO cpu of %s: %w", n.addr, err)
	}
	var s redisSample
	for _, k := range []string{"used_cpu_user", "used_cpu_sys"} {
		v, err := strconv.ParseFloat(infoField(info, k), 64)
		if err != nil {
			return s, fmt.Errorf("--redis: INFO cpu of %s: %s: %w", n.addr, k, err)
		}
		s.cpu += time.Duration(v * float64(time.Second))
	}
	if w.cluster {
		ci, err := n.client.ClusterInfo(ctx).Result()
		if err != nil {
			return s, fmt.Errorf("--redis: CLUSTER INFO of %s: %w", n.addr, err)
		}
		// Absent until the node sent one.
		s.publish, _ = strconv.ParseInt(infoField(ci, "cluster_stats_messages_publish_sent"), 10, 64)
		s.publishShard, _ = strconv.ParseInt(infoField(ci, "cluster_stats_messages_publishshard_sent"), 10, 64)
	}
	return s, nil
}

// finish samples every server again and reports what each used since
// start, and per unit: n webhooks or pairs (none when n is 0).
func (w *redisWatch) finish(ctx context.Context, unit string, n int64) *RedisResult {
	defer w.close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r := &RedisResult{Cluster: w.cluster}
	for _, n := range w.nodes {
		after, err := w.sample(ctx, n)
		if err != nil {
			r.Error = err.Error()
			return r
		}
		cpu := (after.cpu - n.before.cpu).Seconds()
		r.Nodes = append(r.Nodes, RedisNode{Addr: n.addr, Role: n.role, CPUSeconds: round6(cpu)})
		if n.role == "master" {
			r.MasterCPUSeconds += cpu
		} else {
			r.ReplicaCPUSeconds += cpu
		}
		r.ClusterBusPublish += after.publish - n.before.publish
		r.ClusterBusPublishShard += after.publishShard - n.before.publishShard
	}
	if n > 0 {
		r.Per = unit
		r.MasterMicrosPer = round3(r.MasterCPUSeconds * 1e6 / float64(n))
		r.ReplicaMicrosPer = round3(r.ReplicaCPUSeconds * 1e6 / float64(n))
	}
	r.MasterCPUSeconds, r.ReplicaCPUSeconds = round6(r.MasterCPUSeconds), round6(r.ReplicaCPUSeconds)
	return r
}

func (w *redisWatch) close() {
	for _, n := range w.nodes {
		n.client.Close()
	}
}

// infoField reads "key:value" from an INFO-style reply.
func infoField(info, key string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), key+":"); ok {
			return v
		}
	}
	return ""
}

func round6(f float64) float64 { return math.Round(f*1e6) / 1e6 }
