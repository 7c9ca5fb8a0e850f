#!/usr/bin/env bash
# run.sh -- `make fuzz`: run each libFuzzer target ($BUILD/fuzz/fuzz_<name>)
# for FUZZ_SECONDS on a fresh copy of its seed corpus (tests/fuzz/corpus/<name>),
# after replaying its regression inputs (tests/fuzz/regress/<name>). A crash,
# leak, timeout or sanitizer report fails the target; its input is kept in
# $OUT/crashes/<name>/ and the log in $OUT/logs/<name>.log (OUT: FUZZ_OUT,
# default $BUILD/fuzz).
# Usage: tests/fuzz/run.sh [NAME...] (default: every target). Also used by
# tests/run.sh with FUZZ_SECONDS=10 (FUZZ_QUIET=1: one line per target).
# Prints "fuzz <name>: ok|FAILED ..." per target; exits non-zero on a failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
SECONDS_EACH=${FUZZ_SECONDS:-60}
QUIET=${FUZZ_QUIET:-0}
OUT=${FUZZ_OUT:-$BUILD/fuzz}
names=("$@")
if ((${#names[@]} == 0)); then
	for f in tests/fuzz/fuzz_*.c; do
		n=${f#tests/fuzz/fuzz_}
		names+=("${n%.c}")
	done
fi

failed=0
for name in "${names[@]}"; do
	bin=$BUILD/fuzz/fuzz_$name
	work=$OUT/work/$name
	crashes=$OUT/crashes/$name
	log=$OUT/logs/$name.log
	if [ ! -x "$bin" ]; then
		echo "fuzz $name: FAILED: $bin not built (make fuzz-build; needs clang)"
		failed=$((failed + 1))
		continue
	fi
	rm -rf "$work"
	mkdir -p "$work" "$crashes" "$(dirname "$log")"
	cp -R "tests/fuzz/corpus/$name/." "$work/" 2>/dev/null
	regress=tests/fuzz/regress/$name
	opts=(-timeout=10 -rss_limit_mb=2048 -max_total_time="$SECONDS_EACH"
	      -artifact_prefix="$crashes/" -print_final_stats=1)
	[ -f "tests/fuzz/$name.dict" ] && opts+=(-dict="tests/fuzz/$name.dict")
	[ -f "tests/fuzz/$name.options" ] && read -ra extra < "tests/fuzz/$name.options" && opts+=("${extra[@]}")
	status=0
	# 1. every regression input, one by one (a file argument runs it once)
	if [ -d "$regress" ] && [ -n "$(ls -A "$regress")" ]; then
		"$bin" "${opts[@]}" "$regress"/* > "$log" 2>&1 || status=$?
	else
		: > "$log"
	fi
	# 2. the corpus, then new inputs for SECONDS_EACH seconds
	if [ "$status" -eq 0 ]; then
		"$bin" "${opts[@]}" "$work" >> "$log" 2>&1 || status=$?
	fi
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
	if [ "$status" -eq 0 ]; then
		echo "fuzz $name: ok (${SECONDS_EACH}s, ${execs:-?} runs, ${cov:-cov: ?})"
	else
		echo "fuzz $name: FAILED (exit $status); input in $crashes/, log $log:"
		if [ "$QUIET" = 1 ]; then
			grep -m1 -E 'ERROR: |runtime error|SUMMARY' "$log" | sed 's/^/    /'
		else
			grep -E -A30 'ERROR: |runtime error' "$log" | head -60 | sed 's/^/    /'
		fi
		failed=$((failed + 1))
	fi
done
[ "$failed" -eq 0 ]
