# shellcheck shell=bash
# lib.sh -- start, stop and migrate throwaway local Redis and PostgreSQL
# servers bound to 127.0.0.1 only. Sourced by deploy/local/stack.sh and by the
# integration tests, e.g.
#     bash -c 'source deploy/local/lib.sh; pg_start /tmp/x/pg 55432'
#
#   pg_bindir                       print the newest /usr/lib/postgresql/*/bin
#   redis_start DIR PORT [LOGFILE]  start redis-server (AOF in DIR), wait for PONG
#   redis_stop  DIR PORT            SHUTDOWN it (else SIGTERM/SIGKILL), wait
#   pg_start    DIR PORT [LOGFILE]  initdb DIR if needed, start, wait, create db agent_obs
#   pg_stop     DIR                 pg_ctl stop -m fast, wait
#   pg_migrate  PORT                apply deploy/sql/*.sql once each, in name order
#   proc_alive  PIDFILE [NAME]      true if the pid in PIDFILE is a live process
#                                   (and, with NAME, its comm is NAME; a numeric
#                                   second line must match its start time)
#
# Environment:
#   REDIS_PASSWORD   redis_start: requirepass (written to DIR/redis.conf, mode 600);
#                    redis_stop/redis_start also use it to talk to the server.
#   PG_FSYNC=off     pg_start: fsync=off, synchronous_commit=off (throwaway test
#                    databases only: a crash can corrupt them).
#   PG_SQL_DIR       pg_migrate: migrations directory (default deploy/sql).
#
# Functions print progress and errors on stderr, return 0 on success and 1 on
# failure; they never exit the calling shell and do not depend on set -e/-u.
# Paths must not contain whitespace, quotes or backslashes. Default log files
# are DIR/redis.log and DIR/postgres.log; the Redis pid file is DIR/redis.pid,
# PostgreSQL's is DIR/postmaster.pid. PostgreSQL refuses to run as root: when
# root, DIR is chowned to the `postgres` user and its tools run via runuser.

LIB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# ---------------------------------------------------------------- helpers --

_lib_err() { printf '%s: error: %s\n' "${FUNCNAME[1]}" "$*" >&2; }
_lib_say() { printf '%s: %s\n' "${FUNCNAME[1]}" "$*" >&2; }

# _lib_port PORT -> true if PORT is a number in 1..65535.
_lib_port() { [[ ${1:-} =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= 65535)); }

# _lib_absdir DIR -> mkdir -p DIR and print its absolute path; rejects odd names.
_lib_absdir() {
	local d=${1:-}
	[[ -n $d ]] || { echo "directory argument missing" >&2; return 1; }
	if [[ $d =~ [[:space:]\"\'\\] ]]; then
		echo "path '$d' contains whitespace, a quote or a backslash" >&2
		return 1
	fi
	mkdir -p -- "$d" || return 1
	(cd -- "$d" && pwd)
}

# _lib_port_busy PORT -> true if something accepts TCP connections on 127.0.0.1:PORT.
_lib_port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# _lib_pid_alive PID -> true if PID exists and is not a zombie.
_lib_pid_alive() {
	local pid=$1 stat state
	[[ $pid =~ ^[0-9]+$ ]] && ((pid > 1)) || return 1
	kill -0 "$pid" 2>/dev/null || [[ -d /proc/$pid ]] || return 1
	if [[ -r /proc/$pid/stat ]]; then
		stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
		state=${stat##*) }
		state=${state%% *}
		[[ $state != Z && $state != X ]] || return 1
	fi
	return 0
}

# _lib_ms -> milliseconds on the wall clock (for deadlines).
_lib_ms() {
	local t=${EPOCHREALTIME/[.,]/}
	echo $((10#$t / 1000))
}

# _lib_wait_exit PID SECONDS -> true once PID is gone, false on timeout.
_lib_wait_exit() {
	local pid=$1 deadline
	deadline=$(($(_lib_ms) + $2 * 1000))
	while (($(_lib_ms) < deadline)); do
		_lib_pid_alive "$pid" || return 0
		sleep 0.1
	done
	! _lib_pid_alive "$pid"
}

# _lib_tail FILE -> last 20 lines of a log file, indented, on stderr.
_lib_tail() {
	[[ -f $1 ]] || return 0
	echo "---- last lines of $1 ----" >&2
	tail -n 20 -- "$1" | sed 's/^/    /' >&2
}

# _lib_pid_starttime PID -> the process start time (clock ticks after boot,
# /proc/PID/stat field 22); with the pid it names one process for good.
_lib_pid_starttime() {
	local stat
	local -a f
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	read -r -a f <<<"${stat##*) }"
	[[ ${f[19]:-} =~ ^[0-9]+$ ]] || return 1
	echo "${f[19]}"
}

proc_alive() {
	local pidfile=${1:-} name=${2:-} pid start="" comm
	[[ -n $pidfile && -r $pidfile ]] || return 1
	{ read -r pid && read -r start; } <"$pidfile" 2>/dev/null
	[[ -n ${pid:-} ]] || return 1
	_lib_pid_alive "$pid" || return 1
	# A numeric second line is the start time written by the starter: a
	# different value means the pid now belongs to another process.
	if [[ $start =~ ^[0-9]+$ ]] && [[ $(_lib_pid_starttime "$pid") != "$start" ]]; then
		return 1
	fi
	if [[ -n $name ]]; then
		comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
		[[ $comm == "${name:0:15}" ]] || return 1
	fi
	return 0
}

# ------------------------------------------------------------------ redis --

# _lib_redis_cli PORT ARGS... -> redis-cli on 127.0.0.1:PORT, with
# REDIS_PASSWORD passed through the environment (never argv).
_lib_redis_cli() {
	local port=$1
	shift
	if [[ -n ${REDIS_PASSWORD:-} ]]; then
		REDISCLI_AUTH=$REDIS_PASSWORD redis-cli --no-auth-warning -h 127.0.0.1 -p "$port" "$@"
	else
		redis-cli -h 127.0.0.1 -p "$port" "$@"
	fi
}

# _lib_redis_conf_str S -> S as a double-quoted redis.conf string.
_lib_redis_conf_str() {
	local s=${1//\\/\\\\}
	s=${s//\"/\\\"}
	printf '"%s"' "$s"
}

redis_start() {
	local dir port log conf pidfile pid deadline out
	if (($# < 2)) || ! _lib_port "$2"; then
		_lib_err "usage: redis_start DIR PORT [LOGFILE]"
		return 1
	fi
	if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
		_lib_err "redis-server/redis-cli not found (run deploy/local/install-deps.sh)"
		return 1
	fi
	dir=$(_lib_absdir "$1") || { _lib_err "cannot use directory '$1'"; return 1; }
	port=$2
	log=${3:-$dir/redis.log}
	conf=$dir/redis.conf
	pidfile=$dir/redis.pid

	if proc_alive "$pidfile" redis-server; then
		read -r pid <"$pidfile"
		if [[ $(_lib_redis_cli "$port" ping 2>/dev/null) == PONG ]]; then
			_lib_say "already running on 127.0.0.1:$port (pid $pid)"
			return 0
		fi
	elif _lib_port_busy "$port"; then
		_lib_err "127.0.0.1:$port is already in use by another process"
		return 1
	else
		rm -f -- "$pidfile"
		mkdir -p -- "$(dirname -- "$log")" || return 1
		# The config file may hold a password: create it private.
		if ! (
			umask 077
			rm -f -- "$conf"
			{
				echo "# written by deploy/local/lib.sh redis_start; regenerated on every start"
				echo "bind 127.0.0.1"
				echo "protected-mode yes"
				echo "port $port"
				echo "daemonize yes"
				echo "pidfile $(_lib_redis_conf_str "$pidfile")"
				echo "logfile $(_lib_redis_conf_str "$log")"
				echo "dir $(_lib_redis_conf_str "$dir")"
				echo 'save ""'
				echo "appendonly yes"
				echo "appendfsync everysec"
				if [[ -n ${REDIS_PASSWORD:-} ]]; then
					echo "requirepass $(_lib_redis_conf_str "$REDIS_PASSWORD")"
				fi
			} >"$conf"
		); then
			_lib_err "cannot write $conf"
			return 1
		fi
		if ! out=$(redis-server "$conf" 2>&1); then
			_lib_err "redis-server failed to start: $out"
			_lib_tail "$log"
			return 1
		fi
	fi

	deadline=$(($(_lib_ms) + 10000))
	while (($(_lib_ms) < deadline)); do
		if [[ $(_lib_redis_cli "$port" ping 2>/dev/null) == PONG ]] && proc_alive "$pidfile"; then
			read -r pid <"$pidfile"
			_lib_say "redis on 127.0.0.1:$port (pid $pid, dir $dir)"
			return 0
		fi
		sleep 0.1
	done
	_lib_err "redis on 127.0.0.1:$port did not answer PING within 10 s"
	_lib_tail "$log"
	if proc_alive "$pidfile" redis-server; then
		read -r pid <"$pidfile"
		kill -KILL "$pid" 2>/dev/null
	fi
	return 1
}

redis_stop() {
	local dir port pidfile pid served
	if (($# < 2)) || ! _lib_port "$2"; then
		_lib_err "usage: redis_stop DIR PORT"
		return 1
	fi
	dir=$(_lib_absdir "$1") || return 1
	port=$2
	pidfile=$dir/redis.pid
	if ! proc_alive "$pidfile" redis-server; then
		rm -f -- "$pidfile"
		return 0
	fi
	read -r pid <"$pidfile"
	# SHUTDOWN only if PORT is really served by our pid, so that a wrong PORT
	# never stops somebody else's Redis. SIGTERM is a graceful shutdown too.
	served=$(_lib_redis_cli "$port" info server 2>/dev/null | tr -d '\r' |
		sed -n 's/^process_id://p')
	if [[ $served == "$pid" ]]; then
		_lib_redis_cli "$port" shutdown >/dev/null 2>&1 || true
	else
		kill -TERM "$pid" 2>/dev/null || true
	fi
	if ! _lib_wait_exit "$pid" 10; then
		_lib_say "pid $pid still running after 10 s; sending SIGTERM/SIGKILL"
		kill -TERM "$pid" 2>/dev/null || true
		_lib_wait_exit "$pid" 5 || kill -KILL "$pid" 2>/dev/null || true
		_lib_wait_exit "$pid" 5 || { _lib_err "cannot stop pid $pid"; return 1; }
	fi
	rm -f -- "$pidfile"
	_lib_say "redis on 127.0.0.1:$port stopped"
	return 0
}

# ------------------------------------------------------------- postgresql --

pg_bindir() {
	local d
	d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	if [[ ! -x $d/pg_ctl ]]; then
		echo "pg_bindir: error: no /usr/lib/postgresql/<version>/bin (install postgresql)" >&2
		return 1
	fi
	printf '%s\n' "$d"
}

# _lib_pg_as_owner CMD... -> run CMD as the postgres user when we are root,
# from / so that it never trips over an unreadable working directory.
_lib_pg_as_owner() {
	if ((EUID == 0)); then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

# _lib_pg_own DIR LOG -> when root, hand DIR (and LOG) to postgres and make
# sure postgres can reach DIR through its parents (adds o+x where missing).
_lib_pg_own() {
	local dir=$1 log=$2 p
	((EUID == 0)) || return 0
	id -u postgres >/dev/null 2>&1 ||
		{ echo "running as root, but there is no 'postgres' user to run PostgreSQL as" >&2; return 1; }
	command -v runuser >/dev/null || { echo "runuser not found (install util-linux)" >&2; return 1; }
	find "$dir" ! -user postgres -exec chown -h postgres:postgres {} + || return 1
	if [[ -n $log ]]; then
		touch -- "$log" && chown postgres:postgres -- "$log" || return 1
	fi
	runuser -u postgres -- test -x "$dir" -a -w "$dir" 2>/dev/null && return 0
	p=$dir
	while [[ $p != / ]]; do
		p=$(dirname -- "$p")
		if ! runuser -u postgres -- test -x "$p" 2>/dev/null; then
			echo "making $p traversable (o+x) so that the postgres user can reach $dir" >&2
			chmod o+x -- "$p" || return 1
		fi
	done
	runuser -u postgres -- test -x "$dir" -a -w "$dir" ||
		{ echo "the postgres user cannot write $dir" >&2; return 1; }
}

pg_start() {
	local bindir dir port log out pg_opts pid running ready=0 started deadline
	local -a initdb_opts=()
	if (($# < 2)) || ! _lib_port "$2"; then
		_lib_err "usage: pg_start DIR PORT [LOGFILE]"
		return 1
	fi
	bindir=$(pg_bindir) || return 1
	dir=$(_lib_absdir "$1") || { _lib_err "cannot use directory '$1'"; return 1; }
	port=$2
	log=${3:-$dir/postgres.log}
	if ((${#dir} + 18 > 107)); then
		_lib_err "$dir is too long for a unix socket path (max ~89 characters)"
		return 1
	fi
	if [[ -n ${3:-} ]]; then
		log=$(_lib_absdir "$(dirname -- "$3")")/$(basename -- "$3") || return 1
	fi

	running=0
	if proc_alive "$dir/postmaster.pid" postgres; then
		running=1
	elif _lib_port_busy "$port"; then
		_lib_err "127.0.0.1:$port is already in use by another process"
		return 1
	fi

	if [[ ! -f $dir/PG_VERSION ]]; then
		_lib_pg_own "$dir" "" || { _lib_err "cannot prepare $dir"; return 1; }
		[[ ${PG_FSYNC:-} == off ]] && initdb_opts=(--no-sync)
		if ! out=$(_lib_pg_as_owner "$bindir/initdb" -D "$dir" --auth=trust -U agent_obs \
			--encoding=UTF8 --locale=C "${initdb_opts[@]}" 2>&1); then
			printf '%s\n' "$out" >&2
			_lib_err "initdb $dir failed"
			return 1
		fi
		_lib_say "initialised $dir"
	fi
	_lib_pg_own "$dir" "$log" || { _lib_err "cannot prepare $dir"; return 1; }

	if ((running)); then
		read -r pid <"$dir/postmaster.pid"
		_lib_say "already running (pid $pid)"
	else
		pg_opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir"
		# Write-heavy ingest: fewer checkpoints, room for WAL, a bigger cache.
		pg_opts+=" -c max_wal_size=4GB -c checkpoint_timeout=15min -c shared_buffers=256MB"
		pg_opts+=" -c wal_buffers=16MB -c checkpoint_completion_target=0.9"
		[[ ${PG_FSYNC:-} == off ]] && pg_opts+=" -c fsync=off -c synchronous_commit=off"
		if ! out=$(_lib_pg_as_owner "$bindir/pg_ctl" -D "$dir" -l "$log" -o "$pg_opts" -W -s start 2>&1); then
			printf '%s\n' "$out" >&2
			_lib_err "pg_ctl start failed"
			_lib_tail "$log"
			return 1
		fi
	fi

	started=$(_lib_ms)
	deadline=$((started + 30000))
	while (($(_lib_ms) < deadline)); do
		"$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" && { ready=1; break; }
		# Give up early when the server died during start-up.
		if (($(_lib_ms) > started + 2000)) && ! proc_alive "$dir/postmaster.pid" postgres; then
			break
		fi
		sleep 0.1
	done
	if ((!ready)); then
		_lib_err "postgres on 127.0.0.1:$port not ready within 30 s"
		_lib_tail "$log"
		return 1
	fi

	if ! out=$("$bindir/psql" -X -qtA -h 127.0.0.1 -p "$port" -U agent_obs -d postgres \
		-c "SELECT 1 FROM pg_database WHERE datname = 'agent_obs'" 2>&1); then
		printf '%s\n' "$out" >&2
		_lib_err "cannot query postgres on 127.0.0.1:$port"
		return 1
	fi
	if [[ $out != 1 ]]; then
		"$bindir/createdb" -h 127.0.0.1 -p "$port" -U agent_obs agent_obs ||
			{ _lib_err "createdb agent_obs failed"; return 1; }
		_lib_say "created database agent_obs"
	fi
	read -r pid <"$dir/postmaster.pid"
	_lib_say "postgres on 127.0.0.1:$port (pid $pid, dir $dir)"
	return 0
}

pg_stop() {
	local bindir dir pid out
	if (($# < 1)); then
		_lib_err "usage: pg_stop DIR"
		return 1
	fi
	dir=$(_lib_absdir "$1") || return 1
	proc_alive "$dir/postmaster.pid" postgres || return 0
	bindir=$(pg_bindir) || return 1
	read -r pid <"$dir/postmaster.pid"
	if ! out=$(_lib_pg_as_owner "$bindir/pg_ctl" -D "$dir" -m fast -w -t 60 -s stop 2>&1); then
		printf '%s\n' "$out" >&2
		_lib_err "pg_ctl stop $dir failed"
		return 1
	fi
	_lib_wait_exit "$pid" 10 || { _lib_err "postgres pid $pid did not exit"; return 1; }
	_lib_say "postgres (pid $pid) stopped"
	return 0
}

pg_migrate() {
	local bindir port sqldir f name applied out n=0
	local -a psql
	if (($# < 1)) || ! _lib_port "$1"; then
		_lib_err "usage: pg_migrate PORT"
		return 1
	fi
	port=$1
	sqldir=${PG_SQL_DIR:-$LIB_ROOT/deploy/sql}
	bindir=$(pg_bindir) || return 1
	psql=("$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U agent_obs -d agent_obs)

	if ! applied=$("${psql[@]}" -tA -c "SET client_min_messages = warning;
		CREATE TABLE IF NOT EXISTS schema_migrations (
			name       text PRIMARY KEY,
			applied_at timestamptz DEFAULT now());
		SELECT name FROM schema_migrations" 2>&1); then
		printf '%s\n' "$applied" >&2
		_lib_err "cannot reach database agent_obs on 127.0.0.1:$port"
		return 1
	fi

	for f in "$sqldir"/*.sql; do
		[[ -f $f ]] || continue
		name=$(basename -- "$f")
		grep -qxF -- "$name" <<<"$applied" && continue
		# deploy/sql/migrate.psql: one transaction per file, applied once.
		if ! out=$("${psql[@]}" -v mig_name="$name" -v mig_path="$f" -f "$LIB_ROOT/deploy/sql/migrate.psql" 2>&1); then
			printf '%s\n' "$out" >&2
			_lib_err "$name failed (rolled back)"
			return 1
		fi
		# Absent marker: a concurrent pg_migrate applied it first.
		if grep -qxF "migrate:applied $name" <<<"$out"; then
			_lib_say "applied $name"
			n=$((n + 1))
		fi
	done
	((n > 0)) || _lib_say "database agent_obs on 127.0.0.1:$port is up to date"
	return 0
}
