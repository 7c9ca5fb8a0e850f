#!/usr/bin/env bash
# stack.sh -- run the agent-obs stack natively on this machine, bound to
# 127.0.0.1 only: redis, postgres (migrated), then the agent-obs daemons.
# State lives under var/ at the repo root (git-ignored):
#   var/run/<name>.pid   var/log/<name>.log   var/redis/   var/pg/
#   var/prometheus/   var/alertmanager/   var/oncall.jsonl
#
# Usage: deploy/local/stack.sh up | down | run | status | restart NAME
#   up        start whatever is not running, wait until healthy, print URLs
#   down      stop the daemons (SIGTERM, SIGKILL after 10 s), then postgres, redis
#   run       up, wait for Ctrl-C / SIGTERM / SIGHUP (or the parent exiting), down
#   status    one line per service: running (pid N) or stopped
#   restart   stop and start one service, e.g. `restart processor`
#
# Settings (export to override; the daemons get the same values):
#   OBS_REDIS_PORT=6390  OBS_PG_PORT=5440  OBS_COLLECTOR_PORT=7070
#   OBS_PROCESSOR_METRICS_PORT=7072  OBS_ALERTER_METRICS_PORT=7073  OBS_STREAMER_PORT=7071
#   OBS_REDIS_HOST=127.0.0.1
#   OBS_PG_CONNINFO="host=127.0.0.1 port=$OBS_PG_PORT dbname=agent_obs user=agent_obs"
#   OBS_COLLECTOR_PG_CONNINFO (history reads: same server, role agent_obs_read)
#   OBS_STREAMER_API_URL=http://127.0.0.1:$OBS_COLLECTOR_PORT (the dashboard's history view
#   reads the collector) and OBS_COLLECTOR_CORS_ORIGIN=http://127.0.0.1:$OBS_STREAMER_PORT
#   (the collector lets that one origin read it)
#   OBS_REDIS_PASSWORD or OBS_REDIS_PASSWORD_FILE (optional: requirepass for the
#     stack's redis; the daemons read the same variable; never put it on a command line)
#   OBS_CONFIG (default config/agent-obs.yaml; passed as --config if it exists)
# Any other OBS_* variable you export reaches the daemons unchanged.
# The alert path has fixed loopback ports that its configs name:
#   on-call sink :7079 (var/oncall.jsonl), Alertmanager :9093 (var/alertmanager,
#   clustering off), Prometheus :9090 (var/prometheus; deploy/prometheus/prometheus.yml
#   scrapes the daemons on their default ports). Debian's packages also install
#   system services of their own; the stack never uses those.
set -euo pipefail

SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
ROOT=$(cd "$(dirname "$SELF")/../.." && pwd)
# shellcheck source=deploy/local/lib.sh
source "$ROOT/deploy/local/lib.sh"

VAR=$ROOT/var
RUN=$VAR/run
LOG=$VAR/log
HEALTH_TIMEOUT=15   # seconds a daemon gets to answer its health check
STOP_TIMEOUT=10     # seconds between SIGTERM and SIGKILL

# ---------------------------------------------------------------- settings --

: "${OBS_REDIS_HOST:=127.0.0.1}"
: "${OBS_REDIS_PORT:=6390}"
: "${OBS_PG_PORT:=5440}"
: "${OBS_PG_CONNINFO:=host=127.0.0.1 port=$OBS_PG_PORT dbname=agent_obs user=agent_obs}"
: "${OBS_COLLECTOR_PG_CONNINFO:=host=127.0.0.1 port=$OBS_PG_PORT dbname=agent_obs user=agent_obs_read}"
: "${OBS_COLLECTOR_PORT:=7070}"
: "${OBS_PROCESSOR_METRICS_PORT:=7072}"
: "${OBS_STREAMER_PORT:=7071}"
: "${OBS_ALERTER_METRICS_PORT:=7073}"
: "${OBS_STREAMER_API_URL:=http://127.0.0.1:$OBS_COLLECTOR_PORT}"
: "${OBS_COLLECTOR_CORS_ORIGIN:=http://127.0.0.1:$OBS_STREAMER_PORT}"
export OBS_REDIS_HOST OBS_REDIS_PORT OBS_PG_CONNINFO OBS_COLLECTOR_PG_CONNINFO OBS_COLLECTOR_PORT OBS_PROCESSOR_METRICS_PORT
export OBS_ALERTER_METRICS_PORT OBS_STREAMER_PORT OBS_STREAMER_API_URL OBS_COLLECTOR_CORS_ORIGIN
CONFIG=${OBS_CONFIG:-$ROOT/config/agent-obs.yaml}

# ---------------------------------------------------------------- services --

# One row per service, in start order (stopped in reverse order):
#   name | kind | health URL ("-": none) | command ("-" for redis/postgres)
# kind: redis, postgres  managed through lib.sh (data in var/redis, var/pg)
#       daemon           an agent-obs binary; gets --config CONFIG if it exists
#       external         any other long-running command, started as written
# The command is split on blanks (no quoting); a word with a '/' that is not
# absolute is relative to the repo root, which is also the working directory.
# A wrapper script should `exec` the real program, so that `down` signals it.
SERVICES=(
	"redis     | redis    | -                                                      | -"
	"postgres  | postgres | -                                                      | -"
	"collector | daemon   | http://127.0.0.1:${OBS_COLLECTOR_PORT}/healthz         | build/collector"
	"processor | daemon   | http://127.0.0.1:${OBS_PROCESSOR_METRICS_PORT}/healthz | build/processor"
	"streamer  | daemon   | http://127.0.0.1:${OBS_STREAMER_PORT}/healthz          | build/streamer"
	"oncall       | external | http://127.0.0.1:7079/healthz  | deploy/local/oncall_sink.py --port 7079 --out var/oncall.jsonl"
	"alertmanager | external | http://127.0.0.1:9093/-/ready   | prometheus-alertmanager --config.file=deploy/alertmanager/alertmanager.yml --storage.path=var/alertmanager --web.listen-address=127.0.0.1:9093 --cluster.listen-address="
	"alerter      | daemon   | http://127.0.0.1:${OBS_ALERTER_METRICS_PORT}/healthz | build/alerter"
	"prometheus   | external | http://127.0.0.1:9090/-/ready   | prometheus --config.file=deploy/prometheus/prometheus.yml --storage.tsdb.path=var/prometheus --web.listen-address=127.0.0.1:9090 --web.enable-lifecycle"
)

# What `up` prints for each service, in table order; a service without a line
# prints nothing.
declare -A SERVICE_INFO=(
	[collector]="POST http://127.0.0.1:${OBS_COLLECTOR_PORT}/events   (GET /healthz, /metrics)"
	[processor]="http://127.0.0.1:${OBS_PROCESSOR_METRICS_PORT}/metrics   (GET /healthz)"
	[streamer]="dashboard http://127.0.0.1:${OBS_STREAMER_PORT}/ (history: /#/history)   (WS /stream, GET /config.json, /healthz, /metrics)"
	[redis]="redis-cli -h 127.0.0.1 -p ${OBS_REDIS_PORT}   (stream agent_events)"
	[postgres]="psql -h 127.0.0.1 -p ${OBS_PG_PORT} -U agent_obs agent_obs"
	[alerter]="http://127.0.0.1:${OBS_ALERTER_METRICS_PORT}/rules   (GET /metrics; rules: config/alerts.yaml, reload: kill -HUP)"
	[alertmanager]="http://127.0.0.1:9093   (alerts: /api/v2/alerts)"
	[prometheus]="http://127.0.0.1:9090   (alerts: /alerts, targets: /targets)"
	[oncall]="http://127.0.0.1:7079   (notifications appended to var/oncall.jsonl)"
)

# ----------------------------------------------------------------- helpers --

say() { printf 'stack: %s\n' "$*"; }
err() { printf 'stack: error: %s\n' "$*" >&2; }

# svc_load ROW -> sets S_NAME S_KIND S_HEALTH S_CMD (trimmed).
svc_load() {
	local f
	IFS='|' read -r S_NAME S_KIND S_HEALTH S_CMD <<<"$1"
	for f in S_NAME S_KIND S_HEALTH S_CMD; do
		read -r "${f?}" <<<"${!f}"
	done
}

# svc_find NAME -> svc_load the row named NAME, false if there is none.
svc_find() {
	local row
	for row in "${SERVICES[@]}"; do
		svc_load "$row"
		[[ $S_NAME == "$1" ]] && return 0
	done
	return 1
}

svc_names() {
	local row sep=
	for row in "${SERVICES[@]}"; do
		svc_load "$row"
		printf '%s%s' "${sep:-}" "$S_NAME"
		sep=' '
	done
}

# svc_argv -> fills CMD (array) from S_CMD, repo-relative paths made absolute.
svc_argv() {
	read -r -a CMD <<<"$S_CMD"
	if [[ ${CMD[0]} == */* && ${CMD[0]} != /* ]]; then
		CMD[0]=$ROOT/${CMD[0]}
	fi
}

# svc_pidfile -> the pid file of the loaded service.
svc_pidfile() {
	case $S_KIND in
	redis) echo "$VAR/redis/redis.pid" ;;
	postgres) echo "$VAR/pg/postmaster.pid" ;;
	*) echo "$RUN/$S_NAME.pid" ;;
	esac
}

# svc_pid -> print the pid of the loaded service if it runs, else fail.
# Daemons' pid files carry the start time, so a reused pid is not mistaken
# for the service (see proc_alive).
svc_pid() {
	local pidfile name="" pid
	pidfile=$(svc_pidfile)
	case $S_KIND in
	redis) name=redis-server ;;
	postgres) name=postgres ;;
	esac
	proc_alive "$pidfile" "$name" || return 1
	read -r pid <"$pidfile"
	echo "$pid"
}

# check_binary -> fail with a helpful message if the loaded service's
# program is missing.
check_binary() {
	[[ $S_KIND == daemon || $S_KIND == external ]] || return 0
	svc_argv
	if [[ ${CMD[0]} == */* ]]; then
		[[ -x ${CMD[0]} ]] && return 0
		if [[ $S_KIND == daemon ]]; then
			err "${CMD[0]#"$ROOT"/} not found: build it first with \`make\` (or use \`make up\` / \`make run\`, which build and start the stack)"
		else
			err "${CMD[0]} not found or not executable (needed by $S_NAME)"
		fi
		return 1
	fi
	command -v "${CMD[0]}" >/dev/null && return 0
	err "${CMD[0]} not found in PATH (needed by $S_NAME)"
	return 1
}

# health_port -> the port of the loaded service's health URL, if on 127.0.0.1.
health_port() {
	[[ $S_HEALTH =~ ^https?://127\.0\.0\.1:([0-9]+)(/|$) ]] || return 1
	echo "${BASH_REMATCH[1]}"
}

log_tail() {
	local f=$LOG/$1.log
	[[ -f $f ]] || return 0
	echo "---- last 20 lines of var/log/$1.log ----" >&2
	tail -n 20 "$f" | sed 's/^/    /' >&2
}

# ---------------------------------------------------------- start and stop --

# start_service -> start the loaded service unless it already runs.
start_service() {
	local pid port
	if pid=$(svc_pid); then
		say "$(printf '%-10s already running (pid %s)' "$S_NAME" "$pid")"
		[[ $S_KIND == postgres ]] && { pg_migrate "$OBS_PG_PORT" || return 1; }
		return 0
	fi
	mkdir -p "$RUN" "$LOG"
	case $S_KIND in
	redis)
		REDIS_PASSWORD=$(redis_password) redis_start "$VAR/redis" "$OBS_REDIS_PORT" "$LOG/redis.log" ||
			{ err "redis did not start (log: var/log/redis.log)"; return 1; }
		ln -sfn ../redis/redis.pid "$RUN/redis.pid"
		;;
	postgres)
		pg_start "$VAR/pg" "$OBS_PG_PORT" "$LOG/postgres.log" ||
			{ err "postgres did not start (log: var/log/postgres.log)"; return 1; }
		ln -sfn ../pg/postmaster.pid "$RUN/postgres.pid"
		pg_migrate "$OBS_PG_PORT" || { err "migrations failed"; return 1; }
		;;
	daemon | external)
		check_binary || return 1
		if port=$(health_port) && _lib_port_busy "$port"; then
			err "$S_NAME: 127.0.0.1:$port is already in use by another process (set OBS_* ports to move it)"
			return 1
		fi
		svc_argv
		if [[ $S_KIND == daemon && -f $CONFIG ]]; then
			CMD+=(--config "$CONFIG")
		fi
		printf -- '---- %s stack.sh: starting %s ----\n' "$(date '+%F %T')" "${CMD[*]}" >>"$LOG/$S_NAME.log"
		# Own session (setsid): Ctrl-C on `run` reaches stack.sh, not the
		# daemons, so they are stopped in order by `down`. Not a process group
		# leader here, so setsid execs in place and $! is the daemon's pid.
		(cd "$ROOT" && exec setsid nohup "${CMD[@]}" >>"$LOG/$S_NAME.log" 2>&1 </dev/null) &
		# pid, then its start time: proc_alive uses it to ignore a reused pid.
		printf '%s\n%s\n' "$!" "$(_lib_pid_starttime "$!")" >"$RUN/$S_NAME.pid"
		say "$(printf '%-10s started (pid %s)' "$S_NAME" "$!")"
		;;
	*)
		err "$S_NAME: unknown kind '$S_KIND'"
		return 1
		;;
	esac
}

# wait_healthy -> wait until the loaded service answers its health URL.
wait_healthy() {
	local pid started deadline
	[[ $S_KIND == daemon || $S_KIND == external ]] || return 0
	started=$(_lib_ms)
	deadline=$((started + HEALTH_TIMEOUT * 1000))
	while (($(_lib_ms) < deadline)); do
		if ! pid=$(svc_pid); then
			err "$S_NAME exited during start-up"
			log_tail "$S_NAME"
			return 1
		fi
		if [[ $S_HEALTH == - ]]; then
			# No health URL: alive for half a second is all we can check.
			(($(_lib_ms) >= started + 500)) && return 0
		elif curl -fsS -m 1 -o /dev/null "$S_HEALTH" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	err "$S_NAME (pid $pid) not healthy after ${HEALTH_TIMEOUT} s: curl -fsS $S_HEALTH"
	curl -fsS -m 1 -o /dev/null "$S_HEALTH" || true
	log_tail "$S_NAME"
	return 1
}

# redis_password -> the Redis password: $OBS_REDIS_PASSWORD, else the first
# line of $OBS_REDIS_PASSWORD_FILE, else nothing. Printed only into a variable
# of the caller (it goes to lib.sh through the environment, never argv).
redis_password() {
	if [[ -n ${OBS_REDIS_PASSWORD:-} ]]; then
		printf '%s' "$OBS_REDIS_PASSWORD"
	elif [[ -n ${OBS_REDIS_PASSWORD_FILE:-} ]]; then
		head -n 1 -- "$OBS_REDIS_PASSWORD_FILE" | tr -d '\r\n'
	fi
}

# stop_service -> stop the loaded service if it runs; remove its pid file.
stop_service() {
	local pid
	case $S_KIND in
	redis)
		REDIS_PASSWORD=$(redis_password) redis_stop "$VAR/redis" "$OBS_REDIS_PORT" || return 1
		;;
	postgres)
		pg_stop "$VAR/pg" || return 1
		;;
	*)
		if pid=$(svc_pid); then
			kill -TERM "$pid" 2>/dev/null || true
			if ! _lib_wait_exit "$pid" "$STOP_TIMEOUT"; then
				say "$S_NAME (pid $pid) still running after ${STOP_TIMEOUT} s: SIGKILL"
				# The daemon leads its own session: take any children with it.
				kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
				_lib_wait_exit "$pid" 5 || { err "cannot stop $S_NAME (pid $pid)"; return 1; }
			fi
			say "$(printf '%-10s stopped (pid %s)' "$S_NAME" "$pid")"
		fi
		;;
	esac
	rm -f "$RUN/$S_NAME.pid"
}

# -------------------------------------------------------------- commands --

cmd_up() {
	local row
	# Check every program first, so that a missing binary starts nothing.
	for row in "${SERVICES[@]}"; do
		svc_load "$row"
		check_binary || return 1
	done
	for row in "${SERVICES[@]}"; do
		svc_load "$row"
		start_service || return 1
		wait_healthy || return 1
	done
	echo
	echo "agent-obs stack is up (logs: var/log/<name>.log, stop: deploy/local/stack.sh down)"
	for row in "${SERVICES[@]}"; do
		svc_load "$row"
		[[ -n ${SERVICE_INFO[$S_NAME]:-} ]] && printf '  %-10s %s\n' "$S_NAME" "${SERVICE_INFO[$S_NAME]}"
	done
	return 0
}

cmd_down() {
	local i rc=0
	for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
		svc_load "${SERVICES[i]}"
		stop_service || rc=1
	done
	((rc == 0)) && say "stack is down"
	return "$rc"
}

cmd_status() {
	local row pid
	for row in "${SERVICES[@]}"; do
		svc_load "$row"
		if pid=$(svc_pid); then
			printf '%-10s running (pid %s)\n' "$S_NAME" "$pid"
		else
			printf '%-10s stopped\n' "$S_NAME"
		fi
	done
}

cmd_restart() {
	local name=${1:-}
	if [[ -z $name ]] || ! svc_find "$name"; then
		err "usage: stack.sh restart NAME   (NAME: $(svc_names))"
		return 2
	fi
	stop_service || return 1
	start_service || return 1
	wait_healthy || return 1
}

# ppid_now -> the current parent pid of this shell (changes when it dies).
ppid_now() {
	local stat
	stat=$(cat "/proc/$$/stat" 2>/dev/null) || { echo 0; return; }
	stat=${stat##*) }
	read -r _ stat _ <<<"$stat"
	echo "$stat"
}

cmd_run() {
	local stop=0 parent row pid sleeper
	local -A reported=()
	parent=$(ppid_now)
	trap 'stop=1' INT TERM HUP
	# `up` runs as its own process in its own session: Ctrl-C during start-up
	# does not kill it halfway (which could orphan a server that has no pid
	# file yet); this shell notes the signal, lets `up` finish, then runs `down`.
	if ! setsid bash "$SELF" up; then
		trap '' INT TERM HUP
		((stop)) || err "start-up failed; stopping what was started"
		cmd_down || true
		((stop)) && exit 0
		exit 1
	fi
	((stop)) || echo "Ctrl-C to stop"
	while ((!stop)); do
		sleep 1 &
		sleeper=$!
		wait "$sleeper" || true
		kill "$sleeper" 2>/dev/null || true
		((stop)) && break
		if [[ $(ppid_now) != "$parent" ]]; then
			say "parent process exited"
			break
		fi
		for row in "${SERVICES[@]}"; do
			svc_load "$row"
			if pid=$(svc_pid); then
				unset "reported[$S_NAME]"
			elif [[ -z ${reported[$S_NAME]:-} ]]; then
				reported[$S_NAME]=1
				err "$S_NAME is not running (see var/log/$S_NAME.log; \`deploy/local/stack.sh up\` restarts it)"
			fi
		done
	done
	# A second Ctrl-C while stopping must not interrupt `down`.
	trap '' INT TERM HUP
	echo
	say "stopping"
	cmd_down || true
	exit 0
}

usage() {
	cat >&2 <<EOF
usage: deploy/local/stack.sh up | down | run | status | restart NAME
services: $(svc_names)
EOF
}

main() {
	case ${1:-} in
	up) cmd_up || exit 1 ;;
	down) cmd_down || exit 1 ;;
	run) cmd_run ;;
	status) cmd_status ;;
	restart)
		shift
		cmd_restart "$@" || exit $?
		;;
	-h | --help | help) usage ;;
	*)
		usage
		exit 2
		;;
	esac
}

main "$@"
