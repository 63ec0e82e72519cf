#!/usr/bin/env bash
# PostgreSQL against SQLite, not a test: builds the release binary, starts a PostgreSQL server
# of its own (initdb into a temporary directory, default settings: fsync and synchronous_commit
# on, a loopback port chosen now; as the `postgres` user when run as root), then runs the load
# of benches/load.sh (`gateway serve -c conf/bench.toml`, the embedded simulator, `gateway
# bench`) on SQLite and on PostgreSQL alternately, a fresh store each time, the charge scenario
# and the reservation scenario, so that the machine's drift hits both alike.
# Usage: bash benches/postgres.sh [rounds] [connections] [seconds]
# PG_BIN: the directory of initdb and postgres (default: the newest /usr/lib/postgresql/*/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-2}"
CONNS="${2:-64}"
SECS="${3:-10}"
PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
[ -x "$PG_BIN/postgres" ] || { echo "no PostgreSQL server binaries (set PG_BIN)" >&2; exit 1; }
cargo build --release --locked --quiet

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PGDIR="$(mktemp -d /tmp/cgw-bench-pg.XXXXXX)"
AS=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$PGDIR"
  AS=(setpriv --reuid=postgres --regid=postgres --clear-groups --)
fi
PGPORT="$(free_port)"
"${AS[@]}" "$PG_BIN/initdb" -D "$PGDIR/data" -U gateway -A trust -E UTF8 --locale=C >/dev/null
"${AS[@]}" "$PG_BIN/postgres" -D "$PGDIR/data" -c listen_addresses=127.0.0.1 -p "$PGPORT" \
  -k "$PGDIR" >"$PGDIR/log" 2>&1 &
PG=$!
SERVER=
cleanup() {
  [ -n "$SERVER" ] && { kill -TERM "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }
  kill -INT "$PG" 2>/dev/null || true
  wait "$PG" 2>/dev/null || true
  rm -rf "$PGDIR"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" && break
  sleep 0.1
done

HTTP="$(free_port)"
run() { # backend round
  local backend="$1" round="$2" env=()
  rm -rf data/bench
  if [ "$backend" = postgres ]; then
    local db="bench_${round}"
    "$PG_BIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U gateway "$db"
    env=(GATEWAY__STORE__BACKEND=postgres
      "GATEWAY__STORE__URL=postgresql://gateway@127.0.0.1:$PGPORT/$db?sslmode=disable")
  fi
  env "${env[@]}" GATEWAY__HTTP__LISTEN="127.0.0.1:$HTTP" RUST_LOG=warn \
    ./target/release/gateway serve -c conf/bench.toml &
  SERVER=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$HTTP/health/ready" >/dev/null 2>&1 && break
    sleep 0.1
  done
  for scenario in charge reservation; do
    echo "== round $round, $backend, $scenario"
    ./target/release/gateway bench --url "http://127.0.0.1:$HTTP" --scenario "$scenario" \
      -c "$CONNS" -d "${SECS}s" --warmup 2s
  done
  kill -TERM "$SERVER"
  wait "$SERVER" || true
  SERVER=
}
nproc | sed 's/^/cores: /'
"$PG_BIN/postgres" --version
for round in $(seq 1 "$ROUNDS"); do
  run sqlite "$round"
  run postgres "$round"
done
