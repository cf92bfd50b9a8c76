#!/usr/bin/env bash
# The docker-compose.yml topology without Docker, on loopback: Redis with
# append-only persistence, three callgate instances, and nginx in front with
# the same configuration as compose (deploy/nginx/callgate.conf).
#
#   deploy/local/cluster.sh start    build callgate, start everything, print the URLs
#   deploy/local/cluster.sh status   what is running, and whether each instance is ready
#   deploy/local/cluster.sh stop     SIGTERM the instances (they drain), then nginx and Redis
#   deploy/local/cluster.sh clean    stop, then remove the state directory
#   deploy/local/cluster.sh redis    start Redis alone and print the flag to give callgate
#
# --redis MODE (before or after the command) chooses the Redis of start and
# redis, as docker-compose.yml's profiles do:
#   single    one redis-server (the default)
#   cluster   a Redis Cluster of six servers, three masters with a replica
#             each (deploy/redis/cluster-create.sh); the instances get
#             CALLGATE_REDIS_CLUSTER
#   sentinel  a primary, a replica and three Sentinels
#             (deploy/redis/sentinel.sh); the instances get
#             CALLGATE_REDIS_SENTINEL
#
# Needs go, redis-server and nginx (Debian: apt-get install redis-server nginx),
# and redis-cli (installed with redis-server) for cluster and sentinel.
# Nothing is written outside the state directory.
#
# Environment (defaults in brackets):
#   CALLGATE_STATE_DIR       pids, logs, Redis data, nginx files [${TMPDIR:-/tmp}/callgate-cluster]
#   CALLGATE_HTTP_PORT       nginx, the address clients use [8080]
#   CALLGATE_INSTANCE_PORTS  one instance per port [8081 8082 8083]
#   CALLGATE_REDIS_PORT      redis-server; with sentinel, the first primary [6390]
#   CALLGATE_REDIS_REPLICA_PORT  with sentinel, the first replica [6391]
#   CALLGATE_SENTINEL_PORTS  with sentinel, one Sentinel per port [26390 26391 26392]
#   CALLGATE_REDIS_CLUSTER_PORTS  with cluster, one server per port; each
#                            also uses its port + 10000 for the cluster bus
#                            [7001 7002 7003 7004 7005 7006]
#   CALLGATE_WEBHOOK_SECRET  webhook signing secret [local-webhook-secret]
#   CALLGATE_API_KEY         API key [local-api-key]
#   CALLGATE_SHUTDOWN_TIMEOUT  drain time on stop [30s]
#   CALLGATE_JWT_SECRET, CALLGATE_JWT_PUBLIC_KEYS, CALLGATE_JWT_JWKS_URL
#                            how sockets authenticate; with none of them,
#                            sockets are let in without a token
#                            (CALLGATE_ALLOW_ANONYMOUS=true), as suits a
#                            cluster on loopback
#   CALLGATE_LOG_LEVEL, CALLGATE_LOG_FORMAT, and any other CALLGATE_* variable
#                            are passed to every instance (the same
#                            CALLGATE_REDIS_CLUSTER_PARTITIONS for all, say)
#   CALLGATE_BIN             use this callgate binary instead of building one
#   NGINX_BIN, REDIS_SERVER_BIN, REDIS_CLI_BIN, GO_BIN
#                            the programs to run [nginx, redis-server, redis-cli, go]
set -euo pipefail

usage() {
	echo "usage: $0 [--redis single|cluster|sentinel] start|status|stop|clean|redis" >&2
	exit 2
}

REDIS_MODE=single
COMMAND=
while [ $# -gt 0 ]; do
	case $1 in
	--redis)
		[ $# -ge 2 ] || usage
		REDIS_MODE=$2
		shift 2
		;;
	--redis=*)
		REDIS_MODE=${1#--redis=}
		shift
		;;
	*)
		[ -z "$COMMAND" ] || usage
		COMMAND=$1
		shift
		;;
	esac
done
case $REDIS_MODE in
single | cluster | sentinel) ;;
*) usage ;;
esac

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${CALLGATE_STATE_DIR:-${TMPDIR:-/tmp}/callgate-cluster}
HTTP_PORT=${CALLGATE_HTTP_PORT:-8080}
read -r -a INSTANCE_PORTS <<<"${CALLGATE_INSTANCE_PORTS:-8081 8082 8083}"
REDIS_PORT=${CALLGATE_REDIS_PORT:-6390}
REPLICA_PORT=${CALLGATE_REDIS_REPLICA_PORT:-6391}
read -r -a SENTINEL_PORTS <<<"${CALLGATE_SENTINEL_PORTS:-26390 26391 26392}"
read -r -a CLUSTER_PORTS <<<"${CALLGATE_REDIS_CLUSTER_PORTS:-7001 7002 7003 7004 7005 7006}"
# The name the Sentinels know the primary by (deploy/redis/sentinel.sh).
SENTINEL_MASTER=callgate
export CALLGATE_WEBHOOK_SECRET=${CALLGATE_WEBHOOK_SECRET:-local-webhook-secret}
export CALLGATE_API_KEY=${CALLGATE_API_KEY:-local-api-key}
export CALLGATE_SHUTDOWN_TIMEOUT=${CALLGATE_SHUTDOWN_TIMEOUT:-30s}
if [ -z "${CALLGATE_JWT_SECRET:-}${CALLGATE_JWT_PUBLIC_KEYS:-}${CALLGATE_JWT_JWKS_URL:-}" ]; then
	export CALLGATE_ALLOW_ANONYMOUS=${CALLGATE_ALLOW_ANONYMOUS:-true}
fi
# Debian installs nginx in /usr/sbin, which is not on every user's PATH.
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
NGINX_BIN=${NGINX_BIN:-nginx}
REDIS_SERVER_BIN=${REDIS_SERVER_BIN:-redis-server}
REDIS_CLI_BIN=${REDIS_CLI_BIN:-redis-cli}
GO_BIN=${GO_BIN:-go}
# nginx reads NGINX as a list of inherited sockets (and then does not
# daemonize): never pass one on.
unset NGINX

RUN=$STATE/run                    # pid files of Redis, the Sentinels and the instances
NGINX_PID=$STATE/nginx/nginx.pid  # nginx's, from "pid" in deploy/local/nginx.conf

die() {
	echo "cluster.sh: $*" >&2
	exit 1
}

# start_failed MESSAGE: stop what start has started so far, then fail.
start_failed() {
	echo "cluster.sh: $*" >&2
	stop >/dev/null 2>&1 || true
	exit 1
}

# running PID: whether process PID exists and has not exited (an exited
# process stays a zombie until its parent, often init, reaps it).
running() {
	local stat
	kill -0 "$1" 2>/dev/null || return 1
	if [ -r "/proc/$1/stat" ]; then
		stat=$(<"/proc/$1/stat") || return 1
		stat=${stat##*) }
		[ "${stat%% *}" != Z ] || return 1
	fi
}

# alive PIDFILE: whether the process named in PIDFILE is running.
alive() {
	local pid
	[ -s "$1" ] && pid=$(<"$1") && [ -n "$pid" ] && running "$pid"
}

# http_status PORT PATH: the HTTP status of GET PATH on 127.0.0.1:PORT, or 000.
http_status() {
	local line=""
	{
		exec 3<>"/dev/tcp/127.0.0.1/$1" &&
			printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3 &&
			IFS=' ' read -r -t 3 _ line _ <&3
	} 2>/dev/null || true
	{ exec 3>&-; } 2>/dev/null || true
	echo "${line:-000}"
}

# redis_ping PORT: whether Redis on 127.0.0.1:PORT answers PING.
redis_ping() {
	local reply=""
	{
		exec 3<>"/dev/tcp/127.0.0.1/$1" &&
			printf 'PING\r\n' >&3 &&
			read -r -t 3 reply <&3
	} 2>/dev/null || true
	{ exec 3>&-; } 2>/dev/null || true
	[ "${reply%$'\r'}" = "+PONG" ]
}

# wait_for WHAT SECONDS COMMAND...: run COMMAND until it succeeds.
wait_for() {
	local deadline=$((SECONDS + $2))
	shift 2
	until "$@"; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

ready() { [ "$(http_status "$1" /readyz)" = 200 ]; }

# gateway_ready N PORT: whether instance N is ready; fails the start if it
# has exited.
gateway_ready() {
	alive "$RUN/gateway-$1.pid" || start_failed "gateway-$1 exited; see $STATE/logs/gateway-$1.log:
$(tail -n 5 "$STATE/logs/gateway-$1.log" 2>/dev/null)"
	ready "$2"
}

# stop_pid PIDFILE SIGNAL SECONDS NAME: signal the process, wait for it to
# exit, kill it if it does not.
stop_pid() {
	local file=$1 sig=$2 wait=$3 name=$4 pid
	[ -e "$file" ] || return 0
	if ! alive "$file"; then
		rm -f "$file"
		echo "stopped $name"
		return 0
	fi
	pid=$(<"$file")
	kill -s "$sig" "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + wait))
	while running "$pid"; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "$name (pid $pid) still running after ${wait}s: killing it" >&2
			kill -s KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.1
	done
	echo "stopped $name"
	rm -f "$file"
}

# seconds DURATION: a Go duration such as 30s, 2m or 1m30s in whole seconds,
# rounded up.
seconds() {
	local d=$1 total=0 n unit
	while [[ $d =~ ^([0-9]+)(ms|s|m|h)(.*)$ ]]; do
		n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]} d=${BASH_REMATCH[3]}
		case $unit in
		ms) total=$((total + (n + 999) / 1000)) ;;
		s) total=$((total + n)) ;;
		m) total=$((total + n * 60)) ;;
		h) total=$((total + n * 3600)) ;;
		esac
	done
	[ -z "$d" ] || total=30
	echo "$total"
}

nginx_args() {
	local args=(-p "$STATE/nginx/" -c "$STATE/nginx/nginx.conf" -e "$STATE/nginx/error.log")
	# As root, nginx would run its workers as "nobody", who may not enter
	# the state directory; this cluster serves loopback only.
	if [ "$(id -u)" = 0 ]; then
		args+=(-g "user root;")
	fi
	printf '%s\n' "${args[@]}"
}

start() {
	check_not_running
	[ "${#INSTANCE_PORTS[@]}" -gt 0 ] || die "CALLGATE_INSTANCE_PORTS is empty"
	command -v "$REDIS_SERVER_BIN" >/dev/null || die "$REDIS_SERVER_BIN not found (apt-get install redis-server)"
	command -v "$NGINX_BIN" >/dev/null || die "$NGINX_BIN not found (apt-get install nginx)"
	mkdir -p "$RUN" "$STATE/logs" "$STATE/nginx/callgate" "$STATE/nginx/tmp" "$STATE/bin"

	local bin=${CALLGATE_BIN:-}
	if [ -z "$bin" ]; then
		echo "building callgate"
		bin=$STATE/bin/callgate
		(cd "$REPO" && "$GO_BIN" build -o "$bin" ./cmd/callgate) || die "go build ./cmd/callgate failed"
	fi

	start_redis
	local v unset=()
	for v in CALLGATE_REDIS_URL CALLGATE_REDIS_CLUSTER CALLGATE_REDIS_SENTINEL; do
		[ "$v" = "$REDIS_VAR" ] || unset+=(-u "$v")
	done

	local i=0 port
	for port in "${INSTANCE_PORTS[@]}"; do
		i=$((i + 1))
		echo "starting gateway-$i on 127.0.0.1:$port"
		env "${unset[@]}" \
			CALLGATE_ADDR="127.0.0.1:$port" \
			CALLGATE_INSTANCE_ID="gateway-$i" \
			"$REDIS_VAR=$REDIS_VALUE" \
			nohup "$bin" >"$STATE/logs/gateway-$i.log" 2>&1 </dev/null &
		echo $! >"$RUN/gateway-$i.pid"
	done
	i=0
	for port in "${INSTANCE_PORTS[@]}"; do
		i=$((i + 1))
		wait_for "gateway-$i" 60 gateway_ready "$i" "$port" ||
			start_failed "gateway-$i is not ready on port $port; see $STATE/logs/gateway-$i.log"
	done

	echo "starting nginx on 127.0.0.1:$HTTP_PORT"
	cp "$REPO/deploy/local/nginx.conf" "$STATE/nginx/nginx.conf"
	ln -sfn "$REPO/deploy/nginx/callgate.conf" "$STATE/nginx/callgate.conf"
	{
		echo "# written by deploy/local/cluster.sh"
		for port in "${INSTANCE_PORTS[@]}"; do
			echo "server 127.0.0.1:$port max_fails=3 fail_timeout=10s;"
		done
	} >"$STATE/nginx/callgate/upstream.conf"
	cat >"$STATE/nginx/callgate/server.conf" <<-EOF
		# written by deploy/local/cluster.sh
		listen 127.0.0.1:$HTTP_PORT;
		access_log access.log callgate;
	EOF
	local args
	mapfile -t args < <(nginx_args)
	"$NGINX_BIN" "${args[@]}" >"$STATE/logs/nginx-start.log" 2>&1 ||
		start_failed "nginx did not start: $(cat "$STATE/logs/nginx-start.log")"
	wait_for nginx 30 ready "$HTTP_PORT" || start_failed "nginx is not ready on port $HTTP_PORT; see $STATE/nginx/error.log"

	cat <<-EOF

		callgate cluster is up (state in $STATE)
		  through nginx:  http://127.0.0.1:$HTTP_PORT
		    WebSocket     ws://127.0.0.1:$HTTP_PORT/ws/calls/transcriptions
		    webhooks      http://127.0.0.1:$HTTP_PORT/webhooks/elevenlabs, /webhooks/transcription
		    API           http://127.0.0.1:$HTTP_PORT/api/calls (Authorization: Bearer \$CALLGATE_API_KEY)
		    health        http://127.0.0.1:$HTTP_PORT/readyz
		  sockets:        $(if [ "${CALLGATE_ALLOW_ANONYMOUS:-}" = true ]; then echo "anonymous (no token needed)"; else echo "need a token"; fi)
	EOF
	i=0
	for port in "${INSTANCE_PORTS[@]}"; do
		i=$((i + 1))
		echo "  gateway-$i:      http://127.0.0.1:$port (metrics: /metrics, log: $STATE/logs/gateway-$i.log)"
	done
	cat <<-EOF
		  redis:          $REDIS_MODE, $REDIS_VAR=$REDIS_VALUE (append-only, data in $STATE)
		  nginx logs:     $STATE/nginx/access.log, $STATE/nginx/error.log
		stop with: $0 stop
	EOF
}

# check_not_running: fail if anything of a cluster runs in the state directory.
check_not_running() {
	local p
	for p in "$RUN"/*.pid "$NGINX_PID"; do
		if alive "$p"; then
			die "already running (see $p); run '$0 stop' first"
		fi
	done
}

# redis_server NAME PORT DIR [OPTION...]: start a redis-server in the
# background with append-only persistence. Replicas are sent their first
# copy at once rather than after 5 s, in case more ask at the same time.
redis_server() {
	local name=$1 port=$2 dir=$3
	shift 3
	mkdir -p "$dir"
	"$REDIS_SERVER_BIN" --bind 127.0.0.1 --port "$port" --dir "$dir" \
		--appendonly yes --appendfsync everysec --maxmemory-policy noeviction --repl-diskless-sync-delay 0 \
		--daemonize yes --pidfile "$RUN/$name.pid" --logfile "$STATE/logs/$name.log" "$@"
}

# replica_linked PORT: whether the replica on PORT is in sync with its primary.
replica_linked() {
	"$REDIS_CLI_BIN" -p "$1" info replication 2>/dev/null | tr -d '\r' | grep -qx 'master_link_status:up'
}

# sentinel_ready PORT: whether the Sentinel on PORT knows the replica and
# sees enough Sentinels to fail the primary over.
sentinel_ready() {
	local replicas
	"$REDIS_CLI_BIN" -p "$1" sentinel ckquorum "$SENTINEL_MASTER" 2>/dev/null | grep -q "^OK ${#SENTINEL_PORTS[@]} usable" || return 1
	replicas=$("$REDIS_CLI_BIN" -p "$1" sentinel master "$SENTINEL_MASTER" 2>/dev/null | awk 'prev == "num-slaves" { print; exit } { prev = $0 }')
	[ "$replicas" = 1 ]
}

# start_redis: start Redis in REDIS_MODE and set REDIS_VAR and REDIS_VALUE,
# the variable that points callgate at it.
start_redis() {
	local port addrs=()
	if [ "$REDIS_MODE" != single ]; then
		command -v "$REDIS_CLI_BIN" >/dev/null || die "$REDIS_CLI_BIN not found (apt-get install redis-server)"
	fi
	case $REDIS_MODE in
	single)
		echo "starting redis-server on 127.0.0.1:$REDIS_PORT"
		redis_server redis "$REDIS_PORT" "$STATE/redis"
		wait_for redis 30 redis_ping "$REDIS_PORT" || start_failed "redis-server did not start; see $STATE/logs/redis.log"
		REDIS_VAR=CALLGATE_REDIS_URL
		REDIS_VALUE=redis://127.0.0.1:$REDIS_PORT/0
		;;
	cluster)
		[ "${#CLUSTER_PORTS[@]}" -ge 6 ] || die "CALLGATE_REDIS_CLUSTER_PORTS: a cluster needs six ports"
		echo "starting a Redis Cluster on 127.0.0.1, ports ${CLUSTER_PORTS[*]}"
		for port in "${CLUSTER_PORTS[@]}"; do
			redis_server "redis-$port" "$port" "$STATE/redis-cluster/$port" \
				--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000
			addrs+=("127.0.0.1:$port")
		done
		for port in "${CLUSTER_PORTS[@]}"; do
			wait_for redis 30 redis_ping "$port" || start_failed "redis-server on port $port did not start; see $STATE/logs/redis-$port.log"
		done
		REDIS_CLI=$REDIS_CLI_BIN sh "$REPO/deploy/redis/cluster-create.sh" "${addrs[@]}" >"$STATE/logs/cluster-create.log" 2>&1 ||
			start_failed "the cluster was not created; see $STATE/logs/cluster-create.log:
$(tail -n 5 "$STATE/logs/cluster-create.log")"
		REDIS_VAR=CALLGATE_REDIS_CLUSTER
		REDIS_VALUE=redis://${addrs[0]}
		local sep="?"
		for port in "${addrs[@]:1}"; do
			REDIS_VALUE+="${sep}addr=$port"
			sep="&"
		done
		;;
	sentinel)
		[ "${#SENTINEL_PORTS[@]}" -ge 3 ] || die "CALLGATE_SENTINEL_PORTS: want three Sentinels (the quorum is 2)"
		echo "starting redis-server on 127.0.0.1:$REDIS_PORT, its replica on $REPLICA_PORT, Sentinels on ${SENTINEL_PORTS[*]}"
		redis_server "redis-$REDIS_PORT" "$REDIS_PORT" "$STATE/redis-$REDIS_PORT"
		redis_server "redis-$REPLICA_PORT" "$REPLICA_PORT" "$STATE/redis-$REPLICA_PORT" --replicaof 127.0.0.1 "$REDIS_PORT"
		wait_for redis 30 redis_ping "$REDIS_PORT" || start_failed "redis-server did not start; see $STATE/logs/redis-$REDIS_PORT.log"
		# The Sentinels find the replica in the primary's INFO at once
		# when it is connected before they start.
		wait_for replica 60 replica_linked "$REPLICA_PORT" || start_failed "the replica is not in sync; see $STATE/logs/redis-$REPLICA_PORT.log"
		for port in "${SENTINEL_PORTS[@]}"; do
			mkdir -p "$STATE/sentinel-$port"
			REDIS_SERVER=$REDIS_SERVER_BIN SENTINEL_MASTER_NAME=$SENTINEL_MASTER \
				sh "$REPO/deploy/redis/sentinel.sh" "$STATE/sentinel-$port/sentinel.conf" 127.0.0.1 "$REDIS_PORT" \
				--port "$port" --bind 127.0.0.1 --dir "$STATE/sentinel-$port" \
				--daemonize yes --pidfile "$RUN/sentinel-$port.pid" --logfile "$STATE/logs/sentinel-$port.log"
			addrs+=("127.0.0.1:$port")
		done
		for port in "${SENTINEL_PORTS[@]}"; do
			wait_for sentinel 60 sentinel_ready "$port" || start_failed "the Sentinel on port $port does not see the others or the replica; see $STATE/logs/sentinel-$port.log"
		done
		REDIS_VAR=CALLGATE_REDIS_SENTINEL
		REDIS_VALUE=redis://${addrs[0]}?master_name=$SENTINEL_MASTER
		for port in "${addrs[@]:1}"; do
			REDIS_VALUE+="&addr=$port"
		done
		;;
	esac
}

# redis_only: start Redis alone, for a callgate started by hand.
redis_only() {
	local flag
	check_not_running
	command -v "$REDIS_SERVER_BIN" >/dev/null || die "$REDIS_SERVER_BIN not found (apt-get install redis-server)"
	mkdir -p "$RUN" "$STATE/logs"
	start_redis
	case $REDIS_VAR in
	CALLGATE_REDIS_URL) flag=--redis-url ;;
	CALLGATE_REDIS_CLUSTER) flag=--redis-cluster ;;
	CALLGATE_REDIS_SENTINEL) flag=--redis-sentinel ;;
	esac
	cat <<-EOF

		redis ($REDIS_MODE) is up (state in $STATE); point callgate at it with
		$REDIS_VAR=$REDIS_VALUE
		or: callgate $flag '$REDIS_VALUE'
		stop with: $0 stop
	EOF
}

stop() {
	local f drain
	drain=$(($(seconds "$CALLGATE_SHUTDOWN_TIMEOUT") + 5))
	# The instances first, all at once: each closes its sockets with 1001
	# and drains within CALLGATE_SHUTDOWN_TIMEOUT. Then nginx, whose
	# proxied sockets are closed by then, and Redis last.
	local pids=()
	for f in "$RUN"/gateway-*.pid; do
		[ -e "$f" ] || continue
		if alive "$f"; then
			kill -s TERM "$(<"$f")" 2>/dev/null || true
		fi
		pids+=("$f")
	done
	for f in "${pids[@]}"; do
		stop_pid "$f" TERM "$drain" "$(basename "$f" .pid)"
	done
	stop_pid "$NGINX_PID" QUIT 10 nginx
	# The Sentinels before their servers, so that they fail nothing over.
	for f in "$RUN"/sentinel-*.pid "$RUN"/redis.pid "$RUN"/redis-*.pid; do
		[ -e "$f" ] || continue
		stop_pid "$f" TERM 10 "$(basename "$f" .pid)"
	done
}

status() {
	local f name port i=0 running=0
	for port in "${INSTANCE_PORTS[@]}"; do
		i=$((i + 1))
		f=$RUN/gateway-$i.pid
		if alive "$f"; then
			running=$((running + 1))
			echo "gateway-$i   running (pid $(<"$f")), 127.0.0.1:$port /readyz: $(http_status "$port" /readyz)"
		else
			echo "gateway-$i   stopped"
		fi
	done
	if alive "$NGINX_PID"; then
		running=$((running + 1))
		echo "nginx       running (pid $(<"$NGINX_PID")), 127.0.0.1:$HTTP_PORT /readyz: $(http_status "$HTTP_PORT" /readyz)"
	else
		echo "nginx       stopped"
	fi
	# Redis: whatever servers and Sentinels were started, in any mode.
	local any=
	for f in "$RUN"/redis.pid "$RUN"/redis-*.pid "$RUN"/sentinel-*.pid; do
		[ -e "$f" ] || continue
		any=1
		name=$(basename "$f" .pid)
		port=${name##*-}
		[ "$name" = redis ] && port=$REDIS_PORT
		if alive "$f"; then
			running=$((running + 1))
			printf '%-11s running (pid %s), 127.0.0.1:%s\n' "$name" "$(<"$f")" "$port"
		else
			printf '%-11s stopped\n' "$name"
		fi
	done
	[ -n "$any" ] || echo "redis       stopped"
	[ "$running" -gt 0 ]
}

case $COMMAND in
start) start ;;
stop) stop ;;
status) status ;;
redis) redis_only ;;
clean)
	stop
	rm -rf "$STATE"
	echo "removed $STATE"
	;;
*) usage ;;
esac
