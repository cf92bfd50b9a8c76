#!/bin/sh
# Joins Redis servers started with --cluster-enabled yes into a Redis
# Cluster with one replica per master (six servers: three masters, three
# replicas), unless they already form one, then waits until every server
# reports cluster_state:ok and every replica is in sync. Run again on a cluster that exists, it only
# waits, so it can run at every start.
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

# info NODE FIELD [SECTION]: a field of the node's CLUSTER INFO (or of
# INFO SECTION), empty if it does not answer.
info() {
	if [ $# -gt 2 ]; then
		set -- "$1" "$2" info "$3"
	else
		set -- "$1" "$2" cluster info
	fi
	"$cli" -h "${1%:*}" -p "${1##*:}" "$3" "$4" 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

# A server that knows others is in a cluster already (nodes.conf), which
# may still be settling after a restart: then it is only waited for.
known=$(info "$1" cluster_known_nodes)
if [ "${known:-0}" -gt 1 ]; then
	echo "cluster-create.sh: $1 is already in a cluster of $known nodes"
else
	"$cli" --cluster create "$@" --cluster-replicas 1 --cluster-yes
fi

# ready NODE: whether the node sees the whole cluster (it learns it by
# gossip): its state is ok and every master it knows that has not failed
# serves slots (a replica just configured is a master without slots until
# the news arrives); and whether, if it is a replica, it holds a copy of
# its master's data.
ready() {
	[ "$(info "$1" cluster_state)" = ok ] &&
		"$cli" -h "${1%:*}" -p "${1##*:}" cluster nodes 2>/dev/null |
		awk '$3 ~ /master/ && $3 !~ /fail/ && NF < 9 { bad = 1 } END { exit bad }' &&
		{ [ "$(info "$1" role replication)" = master ] || [ "$(info "$1" master_link_status replication)" = up ]; }
}

deadline=$(($(date +%s) + ${CLUSTER_WAIT_SECONDS:-60}))
for node in "$@"; do
	until ready "$node"; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "cluster-create.sh: $node: cluster_state:$(info "$node" cluster_state), role:$(info "$node" role replication), master_link_status:$(info "$node" master_link_status replication)" >&2
			exit 1
		fi
		sleep 0.2
	done
done
echo "cluster-create.sh: cluster of $# nodes ok"
