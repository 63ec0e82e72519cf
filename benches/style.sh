#!/usr/bin/env bash
# What the units style costs (not a test): charge-amount throughput of the release binary with
# `credit_control.style` pinned to "mscc" and with "auto" (learnt in the warm-up, then one map
# look-up per answer), interleaved round by round in one run so that the machine's drift hits
# both alike. Each run starts `gateway serve -c conf/bench.toml` afresh (durable SQLite in
# data/bench, the embedded simulator) and drives it with `gateway bench`.
# Usage: bash benches/style.sh [rounds] [connections] [seconds]
# GATEWAY_BIN=path runs another build (e.g. an older commit's) in place of this one's.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-3}"
CONNS="${2:-64}"
SECS="${3:-10}"
BIN="${GATEWAY_BIN:-./target/release/gateway}"
if [ -z "${GATEWAY_BIN:-}" ]; then cargo build --release --locked --quiet; fi
run() {
  local style="$1"
  rm -rf data/bench
  GATEWAY__CREDIT_CONTROL__STYLE="$style" RUST_LOG=warn "$BIN" serve -c conf/bench.toml &
  local server=$!
  for _ in $(seq 1 100); do
    curl -sf http://127.0.0.1:8080/health/ready >/dev/null 2>&1 && break
    sleep 0.1
  done
  printf '%-6s ' "$style"
  "$BIN" bench --scenario charge -c "$CONNS" -d "${SECS}s" --warmup 2s | grep -E 'throughput|p99 ' | tr '\n' ' '
  echo
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
nproc | sed 's/^/cores: /'
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  run mscc
  run auto
done
