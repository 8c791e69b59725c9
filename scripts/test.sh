#!/usr/bin/env bash
# Installs what the test suite needs, then runs every check CI runs:
# formatting, clippy with warnings as errors, and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

# The toolchain's own checkers.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  log "installing rustfmt and clippy"
  rustup component add rustfmt clippy
fi

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

log "cargo test"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cargo test --workspace 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
# One closing line for the whole suite (cargo prints one per test binary, the last often
# a crate's empty doc-test run).
passed=$(grep -E '^test result:' "$out" | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s+=$1} END {print s+0}')
failed=$(grep -E '^test result:' "$out" | sed -E 's/.* ([0-9]+) failed.*/\1/' | awk '{s+=$1} END {print s+0}')
echo "tests: ${passed} passed, ${failed} failed"
exit "$status"
