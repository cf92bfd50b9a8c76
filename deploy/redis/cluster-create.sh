#!/bin/sh
# Joins Redis servers started with --cluster-enabled yes into a Redis
# Cluster with one replica per master (six servers: three masters, three
# replicas), unless they already form one, then waits until every server
# reports cluster_state:ok. Run again on a cluster that exists, it does
# nothing, so it can run at every start.
#
#   cluster-create.sh HOST:PORT HOST:PORT HOST:PORT HOST:PORT HOST:PORT HOST:PORT [...]
#
# Used by docker-compose.yml (profile cluster, service redis-cluster-init)
# and by deploy/local/cluster.sh --redis cluster. POSIX sh and redis-cli
# only, as in the redis image.
#
# Environment:
#   REDIS_CLI            the redis-cli to run [redis-cli]
#   REDISCLI_AUTH        the servers' password, if they have one (read by redis-cli)
#   CLUSTER_WAIT_SECONDS how long to wait for cluster_state:ok [60]
set -eu

cli=${REDIS_CLI:-redis-cli}
if [ $# -lt 6 ]; then
	echo "usage: $0 HOST:PORT x6 (or more)" >&2
	exit 2
fi

# info NODE FIELD: a field of the node's CLUSTER INFO, empty if it does not answer.
info() {
	"$cli" -h "${1%:*}" -p "${1##*:}" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

if [ "$(info "$1" cluster_state)" = ok ]; then
	echo "cluster-create.sh: $1 is already in a cluster of $(info "$1" cluster_known_nodes) nodes"
	exit 0
fi
"$cli" --cluster create "$@" --cluster-replicas 1 --cluster-yes

# Every node has to learn the whole configuration by gossip.
deadline=$(($(date +%s) + ${CLUSTER_WAIT_SECONDS:-60}))
for node in "$@"; do
	until [ "$(info "$node" cluster_state)" = ok ]; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "cluster-create.sh: $node reports cluster_state:$(info "$node" cluster_state), not ok" >&2
			exit 1
		fi
		sleep 0.2
	done
done
echo "cluster-create.sh: cluster of $# nodes ok"
