#!/usr/bin/env bash
# Runs the benchmarks and prints a Markdown report for BENCHMARKS.md.
# Needs ../shared/data beside the repository (the shared Loghub sets) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p opsloop
exec python3 scripts/bench.py "$@"
