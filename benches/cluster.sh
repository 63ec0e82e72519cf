#!/usr/bin/env bash
# Several gateway instances on one PostgreSQL, not a test: builds the release binary, starts a
# PostgreSQL server of its own (initdb into a temporary directory, default settings: fsync and
# synchronous_commit on, a loopback port chosen now; as the `postgres` user when run as root)
# and one OCS simulator (`gateway ocs-sim`, conf/ocs-sim-bench.toml: accounts made on first
# use), then for 1, 2 and 3 instances (`gateway serve -c conf/bench.toml`, each its own
# Origin-Host and REST port, a fresh database each time) drives them with one `gateway bench`
# per instance at once (the connections shared out, each on its own end users) and adds their
# throughputs: the charge scenario, then reserve/charge/release. Everything shares this
# machine's cores: the figures say what N instances give on one host, not on N hosts.
# Usage: bash benches/cluster.sh [connections] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS="${1:-64}"
SECS="${2:-10}"
PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
[ -x "$PG_BIN/postgres" ] || { echo "no PostgreSQL server binaries (set PG_BIN)" >&2; exit 1; }
cargo build --release --locked --quiet
BIN=./target/release/gateway

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK="$(mktemp -d /tmp/cgw-bench-cluster.XXXXXX)"
AS=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$WORK"
  AS=(setpriv --reuid=postgres --regid=postgres --clear-groups --)
fi
PGPORT="$(free_port)"
"${AS[@]}" "$PG_BIN/initdb" -D "$WORK/data" -U gateway -A trust -E UTF8 --locale=C >/dev/null
"${AS[@]}" "$PG_BIN/postgres" -D "$WORK/data" -c listen_addresses=127.0.0.1 -p "$PGPORT" \
  -k "$WORK" >"$WORK/pg.log" 2>&1 &
PG=$!
SIM=
SERVERS=()
stop_servers() {
  for s in "${SERVERS[@]}"; do kill -TERM "$s" 2>/dev/null || true; done
  for s in "${SERVERS[@]}"; do wait "$s" 2>/dev/null || true; done
  SERVERS=()
}
cleanup() {
  stop_servers
  [ -n "$SIM" ] && { kill -INT "$SIM" 2>/dev/null || true; wait "$SIM" 2>/dev/null || true; }
  kill -INT "$PG" 2>/dev/null || true
  wait "$PG" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" && break
  sleep 0.1
done

# One OCS for every instance, on a port chosen now, its journal in the scratch directory.
OCS="$(free_port)"
sed -e "s|^listen = .*|listen = \"127.0.0.1:$OCS\"|" \
    -e "s|^journal_path = .*|journal_path = \"$WORK/ocs-journal.jsonl\"|" \
    conf/ocs-sim-bench.toml >"$WORK/ocs-sim.toml"
RUST_LOG=warn "$BIN" ocs-sim -c "$WORK/ocs-sim.toml" &
SIM=$!

run() { # instances scenario
  local n="$1" scenario="$2" db="bench_${1}_${2}" ports=()
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U gateway "$db"
  for i in $(seq 1 "$n"); do
    local port; port="$(free_port)"
    ports+=("$port")
    sed -e "s|^origin_host = \"gw.charging.local\"|origin_host = \"gw$i.charging.local\"|" \
        -e "s|^address = .*|address = \"127.0.0.1:$OCS\"|" \
        -e "s|^enabled = true|enabled = false|" \
        conf/bench.toml >"$WORK/gw-$i.toml"
    GATEWAY__STORE__BACKEND=postgres \
    GATEWAY__STORE__URL="postgresql://gateway@127.0.0.1:$PGPORT/$db?sslmode=disable" \
    GATEWAY__HTTP__LISTEN="127.0.0.1:$port" RUST_LOG=warn \
      "$BIN" serve -c "$WORK/gw-$i.toml" &
    SERVERS+=($!)
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 1 100); do
      curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  local each=$(( CONNS / n )) outs=() pids=()
  for i in $(seq 1 "$n"); do
    local out="$WORK/bench-$n-$scenario-$i.txt"
    outs+=("$out")
    "$BIN" bench --url "http://127.0.0.1:${ports[$((i - 1))]}" --scenario "$scenario" \
      -c "$each" -d "${SECS}s" --warmup 2s --msisdn-prefix "34${i}9" >"$out" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  local total=0
  for out in "${outs[@]}"; do
    local t; t="$(sed -nE 's/^throughput ([0-9]+) .*/\1/p' "$out")"
    total=$(( total + t ))
    printf '   instance: %s\n' "$(grep -E '^throughput|^latency' "$out" | tr '\n' ' ')"
  done
  echo "== $n instance(s), $scenario: $total/s in all ($CONNS connections)"
  stop_servers
}
nproc | sed 's/^/cores: /'
"$PG_BIN/postgres" --version
for n in 1 2 3; do
  for scenario in charge reservation; do
    run "$n" "$scenario"
  done
done
