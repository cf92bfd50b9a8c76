#!/usr/bin/env bash
# The docker-compose.yml topology without Docker, on loopback: one Redis with
# append-only persistence, three callgate instances, and nginx in front with
# the same configuration as compose (deploy/nginx/callgate.conf).
#
#   deploy/local/cluster.sh start    build callgate, start everything, print the URLs
#   deploy/local/cluster.sh status   what is running, and whether each instance is ready
#   deploy/local/cluster.sh stop     SIGTERM the instances (they drain), then nginx and Redis
#   deploy/local/cluster.sh clean    stop, then remove the state directory
#
# Needs go, redis-server and nginx (Debian: apt-get install redis-server nginx).
# Nothing is written outside the state directory.
#
# Environment (defaults in brackets):
#   CALLGATE_STATE_DIR       pids, logs, Redis data, nginx files [${TMPDIR:-/tmp}/callgate-cluster]
#   CALLGATE_HTTP_PORT       nginx, the address clients use [8080]
#   CALLGATE_INSTANCE_PORTS  one instance per port [8081 8082 8083]
#   CALLGATE_REDIS_PORT      redis-server [6390]
#   CALLGATE_WEBHOOK_SECRET  webhook signing secret [local-webhook-secret]
#   CALLGATE_API_KEY         API key [local-api-key]
#   CALLGATE_SHUTDOWN_TIMEOUT  drain time on stop [30s]
#   CALLGATE_JWT_SECRET, CALLGATE_JWT_PUBLIC_KEYS, CALLGATE_JWT_JWKS_URL
#                            how sockets authenticate; with none of them,
#                            sockets are let in without a token
#                            (CALLGATE_ALLOW_ANONYMOUS=true), as suits a
#                            cluster on loopback
#   CALLGATE_LOG_LEVEL, CALLGATE_LOG_FORMAT, and any other CALLGATE_* variable
#                            are passed to every instance
#   CALLGATE_BIN             use this callgate binary instead of building one
#   NGINX_BIN, REDIS_SERVER_BIN, GO_BIN
#                            the programs to run [nginx, redis-server, go]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${CALLGATE_STATE_DIR:-${TMPDIR:-/tmp}/callgate-cluster}
HTTP_PORT=${CALLGATE_HTTP_PORT:-8080}
read -r -a INSTANCE_PORTS <<<"${CALLGATE_INSTANCE_PORTS:-8081 8082 8083}"
REDIS_PORT=${CALLGATE_REDIS_PORT:-6390}
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
GO_BIN=${GO_BIN:-go}
# nginx reads NGINX as a list of inherited sockets (and then does not
# daemonize): never pass one on.
unset NGINX

RUN=$STATE/run                    # pid files of Redis and the instances
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
	local p
	for p in "$RUN"/*.pid "$NGINX_PID"; do
		if alive "$p"; then
			die "already running (see $p); run '$0 stop' first"
		fi
	done
	[ "${#INSTANCE_PORTS[@]}" -gt 0 ] || die "CALLGATE_INSTANCE_PORTS is empty"
	command -v "$REDIS_SERVER_BIN" >/dev/null || die "$REDIS_SERVER_BIN not found (apt-get install redis-server)"
	command -v "$NGINX_BIN" >/dev/null || die "$NGINX_BIN not found (apt-get install nginx)"
	mkdir -p "$RUN" "$STATE/redis" "$STATE/logs" "$STATE/nginx/callgate" "$STATE/nginx/tmp" "$STATE/bin"

	local bin=${CALLGATE_BIN:-}
	if [ -z "$bin" ]; then
		echo "building callgate"
		bin=$STATE/bin/callgate
		(cd "$REPO" && "$GO_BIN" build -o "$bin" ./cmd/callgate) || die "go build ./cmd/callgate failed"
	fi

	echo "starting redis-server on 127.0.0.1:$REDIS_PORT"
	"$REDIS_SERVER_BIN" --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$STATE/redis" \
		--appendonly yes --appendfsync everysec --maxmemory-policy noeviction \
		--daemonize yes --pidfile "$RUN/redis.pid" --logfile "$STATE/logs/redis.log"
	wait_for redis 10 redis_ping "$REDIS_PORT" || start_failed "redis-server did not start; see $STATE/logs/redis.log"

	local i=0 port
	for port in "${INSTANCE_PORTS[@]}"; do
		i=$((i + 1))
		echo "starting gateway-$i on 127.0.0.1:$port"
		CALLGATE_ADDR=127.0.0.1:$port \
			CALLGATE_INSTANCE_ID=gateway-$i \
			CALLGATE_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0 \
			nohup "$bin" >"$STATE/logs/gateway-$i.log" 2>&1 </dev/null &
		echo $! >"$RUN/gateway-$i.pid"
	done
	i=0
	for port in "${INSTANCE_PORTS[@]}"; do
		i=$((i + 1))
		wait_for "gateway-$i" 15 gateway_ready "$i" "$port" ||
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
	wait_for nginx 10 ready "$HTTP_PORT" || start_failed "nginx is not ready on port $HTTP_PORT; see $STATE/nginx/error.log"

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
		  redis:          redis://127.0.0.1:$REDIS_PORT/0 (append-only, data in $STATE/redis)
		  nginx logs:     $STATE/nginx/access.log, $STATE/nginx/error.log
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
	stop_pid "$RUN/redis.pid" TERM 10 redis-server
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
	for name in nginx redis; do
		f=$RUN/$name.pid
		[ "$name" = nginx ] && f=$NGINX_PID
		if alive "$f"; then
			running=$((running + 1))
			case $name in
			nginx) echo "nginx       running (pid $(<"$f")), 127.0.0.1:$HTTP_PORT /readyz: $(http_status "$HTTP_PORT" /readyz)" ;;
			redis) echo "redis       running (pid $(<"$f")), 127.0.0.1:$REDIS_PORT" ;;
			esac
		else
			echo "$name       stopped"
		fi
	done
	[ "$running" -gt 0 ]
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
clean)
	stop
	rm -rf "$STATE"
	echo "removed $STATE"
	;;
*)
	echo "usage: $0 start|status|stop|clean" >&2
	exit 2
	;;
esac
