#!/usr/bin/env bash
# Load benchmark of the Payment API, not a test: builds the release binary, starts
# `gateway serve -c conf/bench.toml` (durable SQLite store in data/bench, the embedded OCS
# simulator with accounts created on first use), and drives it with `gateway bench` over
# loopback HTTP/1.1 keep-alive connections: charge-amount, then reserve/charge/release cycles.
# Usage: bash benches/load.sh [connections] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS="${1:-64}"
SECS="${2:-10}"
cargo build --release --locked --quiet
rm -rf data/bench
RUST_LOG=warn ./target/release/gateway serve -c conf/bench.toml &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:8080/health/ready >/dev/null 2>&1 && break
  sleep 0.1
done
nproc | sed 's/^/cores: /'
./target/release/gateway bench --scenario charge -c "$CONNS" -d "${SECS}s" --warmup 2s
./target/release/gateway bench --scenario reservation -c "$CONNS" -d "${SECS}s" --warmup 2s
