#!/usr/bin/env bash
# The cross-node benchmark: two Telehub nodes sharing one PostgreSQL (fsync
# on) and one Redis, all on this machine with the load generator. Each
# room's patient is on node a and its doctor on node b, so every message is
# stored once and crosses to the other node through Redis. Writes JSON
# reports to bench-results/ and prints the table docs/benchmarks.md quotes.
#
#   scripts/bench/cluster.sh                      # 1,000 rooms, 2,500 to 10,000 sends/s
#   ROOMS=500 RATES=5000 scripts/bench/cluster.sh
#   ONE_NODE=1 scripts/bench/cluster.sh           # both sessions of each room on node a
#   WORKERS=1 scripts/bench/cluster.sh            # HTTP workers per node (default: one per core)
#   DURABLE= scripts/bench/cluster.sh             # PostgreSQL without fsync: how much of the tail is the disk
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
OUT=${OUT:-$ROOT/bench-results}
ROOMS=${ROOMS:-1000}
RATES=${RATES:-2500,5000,10000}
DURATION=${DURATION:-20s}
mkdir -p "$OUT"

# shellcheck source=scripts/bench/common.sh
. "$ROOT/scripts/bench/common.sh"
need redis-server

work=$(mktemp -d)
pgdir=$(mktemp -d)  # its own folder: the server may run as another user
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    scripts/postgres.sh stop "$pgdir" 2>/dev/null || true
    rm -rf "$work" "$pgdir"
}
trap cleanup EXIT

pg=$(DURABLE=${DURABLE-1} scripts/postgres.sh start "$pgdir")
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" --logfile "$work/redis.log" &
redis=$!
pids+=("$redis")

start_node() {
    local name=$1 port=$2
    env "${BENCH_ENV[@]}" TELEHUB_BIND=127.0.0.1:$port TELEHUB_DATABASE_URL="$pg" \
        TELEHUB_REDIS_URL="redis://127.0.0.1:$redis_port/" TELEHUB_NODE_ID=$name TELEHUB_HTTP_WORKERS=${WORKERS:-0} \
        "$HUB" >"$OUT/hub-cluster-$name.log" 2>&1 &
    pids+=($!)
    wait_ready "http://127.0.0.1:$port/readyz" "$OUT/hub-cluster-$name.log"
}
port_a=$(free_port)
start_node node-a "$port_a"
node_a=${pids[-1]}
port_b=$(free_port)
start_node node-b "$port_b"
node_b=${pids[-1]}

peer=(--peer-url "http://127.0.0.1:$port_b")
[ -z "${ONE_NODE:-}" ] || peer=()  # both sessions of each room on node a
"$LOAD" chat --url "http://127.0.0.1:$port_a" "${peer[@]}" --api-key $KEY \
    --rooms "$ROOMS" --rate "$RATES" --duration "$DURATION" --warmup 5s --drain 30s \
    --json "$OUT/cluster.json" --html "$OUT/cluster.html" &
load=$!
# CPU over 8 s inside the last step's measured window.
steps=$(awk -F, '{print NF}' <<<"$RATES")
window_end=$(( 2 + steps * (5 + ${DURATION%s}) ))
(sleep $(( window_end - 12 )) && python3 scripts/bench/cpu.py 8 "$node_a" "$node_b" "$redis" "$load" $(pgrep -u postgres -d " " postgres) \
    >"$OUT/cpu-cluster.txt" 2>&1) &
cpu=$!
result=0
wait "$load" || result=1
wait "$cpu" || true
echo "CPU during the last step (cores of 2): nodes a and b, redis, load generator, postgres"
cat "$OUT/cpu-cluster.txt"
exit "$result"
