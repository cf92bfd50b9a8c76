#!/bin/sh
# Runs a Redis Sentinel that watches the primary at HOST:PORT under the
# name callgate (or SENTINEL_MASTER_NAME), as callgate's --redis-sentinel
# URL expects (master_name=callgate).
#
#   sentinel.sh CONF HOST PORT [redis-server option...]
#
# CONF is written on the first start only. Sentinel rewrites it with what
# it learns (the current primary after a failover, the replicas, the other
# Sentinels), which a restart must keep; it must be on writable storage.
# The options (--port 26379, --daemonize yes, …) go to redis-server.
#
# Used by docker-compose.yml (profile sentinel) and by
# deploy/local/cluster.sh --redis sentinel. POSIX sh only, as in the redis
# image.
#
# Environment, read on the first start:
#   REDIS_SERVER                  the redis-server to run [redis-server]
#   SENTINEL_MASTER_NAME          [callgate]
#   SENTINEL_QUORUM               Sentinels that must agree the primary is down [2]
#   SENTINEL_DOWN_AFTER_MS        silence after which a server is down [5000]
#   SENTINEL_FAILOVER_TIMEOUT_MS  [60000]
#   SENTINEL_ANNOUNCE_IP          the address (or host name) other Sentinels
#                                 and clients reach this one at [its own address]
set -eu

if [ $# -lt 3 ]; then
	echo "usage: $0 CONF HOST PORT [redis-server option...]" >&2
	exit 2
fi
conf=$1 host=$2 port=$3
shift 3
name=${SENTINEL_MASTER_NAME:-callgate}

if [ ! -s "$conf" ]; then
	{
		# Host names (containers') are resolved, and given to clients as
		# they are rather than as addresses that change when a container is
		# recreated.
		echo "sentinel resolve-hostnames yes"
		echo "sentinel announce-hostnames yes"
		if [ -n "${SENTINEL_ANNOUNCE_IP:-}" ]; then
			echo "sentinel announce-ip $SENTINEL_ANNOUNCE_IP"
		fi
		echo "sentinel monitor $name $host $port ${SENTINEL_QUORUM:-2}"
		echo "sentinel down-after-milliseconds $name ${SENTINEL_DOWN_AFTER_MS:-5000}"
		echo "sentinel failover-timeout $name ${SENTINEL_FAILOVER_TIMEOUT_MS:-60000}"
		echo "sentinel parallel-syncs $name 1"
	} >"$conf.new"
	mv "$conf.new" "$conf"
fi
exec "${REDIS_SERVER:-redis-server}" "$conf" --sentinel "$@"
