#!/usr/bin/env bash
# run.sh -- `make bench`: runs the benchmarks and prints their numbers.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 tests/bench/bench.py
