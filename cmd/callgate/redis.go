package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// redisMode is how callgate reaches Redis.
type redisMode int

const (
	redisSingle   redisMode = iota // --redis-url, or the embedded one in --dev
	redisCluster                   // --redis-cluster: sharded Pub/Sub, partitioned keys
	redisSentinel                  // --redis-sentinel: the primary Sentinel names
)

func (m redisMode) String() string {
	return [...]string{"single", "cluster", "sentinel"}[m]
}

// connectRedis returns the client cfg asks for (starting the embedded
// Redis in --dev when no Redis is given) and checks that Redis answers.
func connectRedis(ctx context.Context, cfg config) (redis.UniversalClient, redisMode, *miniredis.Miniredis, error) {
	var (
		rdb  redis.UniversalClient
		mode redisMode
		mini *miniredis.Miniredis
		err  error
		// where names the servers tried, for the error when none answers.
		where string
	)
	switch {
	case cfg.RedisCluster != "":
		var opts *redis.ClusterOptions
		if opts, err = redis.ParseClusterURL(cfg.RedisCluster); err == nil {
			rdb, mode = redis.NewClusterClient(opts), redisCluster
			where = strings.Join(opts.Addrs, ", ")
		}
	case cfg.RedisSentinel != "":
		var opts *redis.FailoverOptions
		if opts, err = redis.ParseFailoverURL(cfg.RedisSentinel); err == nil {
			rdb, mode = redis.NewFailoverClient(opts), redisSentinel
			where = "master " + opts.MasterName + " through " + strings.Join(opts.SentinelAddrs, ", ")
		}
	default:
		url := cfg.RedisURL
		if url == "" {
			mini = miniredis.NewMiniRedis()
			if err := mini.StartAddr("127.0.0.1:0"); err != nil {
				return nil, 0, nil, fmt.Errorf("start embedded Redis: %w", err)
			}
			url = "redis://" + mini.Addr()
		}
		var opts *redis.Options
		if opts, err = redis.ParseURL(url); err == nil {
			rdb, where = redis.NewClient(opts), opts.Addr
		}
	}
	if err != nil {
		if mini != nil {
			mini.Close()
		}
		return nil, 0, nil, fmt.Errorf("redis %s settings: %w", mode, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pingRedis(pctx, rdb); err != nil {
		rdb.Close()
		if mini != nil {
			mini.Close()
		}
		return nil, 0, nil, fmt.Errorf("cannot reach Redis (%s, %s): %w", mode, where, err)
	}
	return rdb, mode, mini, nil
}

// pingRedis checks that Redis answers: every master of a cluster, whose
// slots would fail otherwise, or the one server (the primary, through
// Sentinel).
func pingRedis(ctx context.Context, rdb redis.UniversalClient) error {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return rdb.Ping(ctx).Err()
	}
	// ForEachMaster also reloads the cluster's layout, so that a
	// failover is seen here as soon as the cluster reports it.
	return cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		if err := node.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("%s: %w", strings.TrimSpace(node.Options().Addr), err)
		}
		return nil
	})
}
