#!/usr/bin/env bash
# The benchmark (not part of the tests): wh against the seeds' layout and the physical
# floor, side by side, on its own pair of clusters (ports 55510/55511). Writes
# BENCHMARKS.md and target/bench-results.json. About 30 minutes at full scale.
#   WH_BENCH_SCALE=0.1 scripts/bench.sh          a quick run at a tenth of the rows
#   WH_BENCH_ONLY=ingest,queries scripts/bench.sh  some sections only
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec target/venv/bin/python bench/bench.py
