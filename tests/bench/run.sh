#!/usr/bin/env bash
# run.sh -- `make bench`: runs every benchmark, prints its numbers, and writes
# tests/bench/REPORT.md and REPORT.json (tests/bench/report.py) from the
# figures each one recorded. Benchmarks are not tests: they assert only zero
# loss, never a speed.
#   bench.py          core pipeline: ingest, end-to-end, emit->stored latency
#   peer_bench.py     Redis XADD and PostgreSQL COPY alone: the ratios' peers
#   overhead_bench.py CPU and RSS of every daemon, event->dashboard, at 1,000 events/s
#   hook_bench.py     agent-hook cost per invocation (collector up and down)
#   stream_bench.py   WebSocket fan-out lag and streamer RSS
#   alert_bench.py    event -> Alertmanager latency
#   query_bench.py    history API latency on 10 M events (long: BENCH_QUERY=1)
set -euo pipefail
cd "$(dirname "$0")/../.."
status=0
BENCH_RESULTS=$(mktemp)
export BENCH_RESULTS
BENCH_LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
export BENCH_LOAD_BEFORE
trap 'rm -f "$BENCH_RESULTS"' EXIT
run() {
	echo "== $1"
	python3 "tests/bench/$1" || { echo "bench $1 failed"; status=1; }
}
for b in bench.py peer_bench.py overhead_bench.py hook_bench.py stream_bench.py alert_bench.py; do
	run "$b"
done
if [ "${BENCH_QUERY:-0}" = 1 ]; then run query_bench.py; else echo "== query_bench.py skipped (BENCH_QUERY=1 to run; generates 10 M events)"; fi
python3 tests/bench/report.py "$BENCH_RESULTS" || status=1
exit "$status"
