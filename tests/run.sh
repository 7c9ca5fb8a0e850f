#!/usr/bin/env bash
# run.sh -- `make test`: every cmocka unit test binary in build/tests, each
# fuzz target (build/fuzz: its seed corpus and regression inputs, then
# FUZZ_TEST_SECONDS of fuzzing; one pass or failure each), then the
# integration tests (real redis-server and postgres on throwaway ports), then
# one final line "N passed, N failed". Exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
pass=0
fail=0

for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	out=$("$t" 2>&1)
	status=$?
	printf '%s\n' "$out"
	p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	pass=$((pass + ${p:-0}))
	fail=$((fail + ${f:-0}))
	if [ "$status" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then
		echo "unit test binary $t exited with status $status"
		fail=$((fail + 1))
	fi
done

# A missing fuzz binary is a failure, not a skip (install-deps installs clang).
for f in tests/fuzz/fuzz_*.c; do
	name=${f#tests/fuzz/fuzz_}
	name=${name%.c}
	if BUILD=$BUILD FUZZ_SECONDS=${FUZZ_TEST_SECONDS:-10} FUZZ_QUIET=1 tests/fuzz/run.sh "$name"; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
	fi
done

counts=$(mktemp)
OBS_COUNTS_FILE=$counts OBS_BUILD_DIR=$BUILD python3 tests/integration/run.py "$@"
status=$?
read -r ip if_ < "$counts" 2>/dev/null || { ip=0; if_=1; }
rm -f "$counts"
if [ "$status" -ne 0 ] && [ "${if_:-0}" -eq 0 ]; then
	echo "integration runner exited with status $status"
	if_=1
fi
pass=$((pass + ip))
fail=$((fail + if_))
echo "${pass} passed, ${fail} failed"
[ "$fail" -eq 0 ]
