#!/usr/bin/env bash
# run.sh -- `make bench`: runs every benchmark and prints its numbers.
# Benchmarks are not tests: they assert only zero loss, never a speed.
#   bench.py        core pipeline: ingest, end-to-end, emit->stored latency
#   hook_bench.py   agent-hook cost per invocation (collector up and down)
#   stream_bench.py WebSocket fan-out lag and streamer RSS
#   alert_bench.py  event -> Alertmanager latency
#   query_bench.py  history API latency on 10 M events (long: BENCH_QUERY=1)
set -euo pipefail
cd "$(dirname "$0")/../.."
status=0
run() {
	echo "== $1"
	python3 "tests/bench/$1" || { echo "bench $1 failed"; status=1; }
}
run bench.py
for b in hook_bench.py stream_bench.py alert_bench.py; do
	[ -f "tests/bench/$b" ] && run "$b"
done
if [ -f tests/bench/query_bench.py ]; then
	if [ "${BENCH_QUERY:-0}" = 1 ]; then run query_bench.py; else echo "== query_bench.py skipped (BENCH_QUERY=1 to run; generates 10 M events)"; fi
fi
exit "$status"
