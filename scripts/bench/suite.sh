#!/usr/bin/env bash
# The benchmark suite: the same chat load, from the same load generator, on
# this machine, against
#
#   limit       the bare relay (`telehub-loadtest baseline`): tokio-tungstenite,
#               no auth, no storage, no checks; what this machine can do at all
#   telehub-1   one Telehub node on SQLite (the embedded default)
#   telehub-2   two Telehub nodes on PostgreSQL (fsync on) and Redis, each
#               room's patient on one node and its doctor on the other
#   socketio-1  Socket.IO 4 on Node.js (loadtest/peers/socketio), one process
#   socketio-2  two of them with @socket.io/redis-adapter, split like telehub-2
#
# For each: the chat scenario stepping the offered rate up on 1,000 rooms
# (throughput is the best step's deliveries/s, latency is compared at the
# COMMON rate), then, for the one-node servers, IDLE_ROOMS x 2 idle joined
# sessions (19,000 by default) for the join rate and the memory per session. Writes every JSON and HTML report to
# bench-results/suite/ and the tables with the ratios to
# bench-results/suite/summary.md (scripts/bench/suite_report.py).
#
#   scripts/bench/suite.sh                          # everything, about 20 minutes
#   SKIP_BUILD=1 TARGETS="limit telehub-1" scripts/bench/suite.sh
#   RATES=5000,10000 COMMON=5000 ROOMS=500 scripts/bench/suite.sh
#   STEPS=idle TARGETS="telehub-1 socketio-1" scripts/bench/suite.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
OUT=${OUT:-$ROOT/bench-results/suite}
ROOMS=${ROOMS:-1000}
RATES=${RATES:-5000,10000,15000,20000,25000,30000}
COMMON=${COMMON:-5000}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
# 19,000 idle sessions: as many as one process may hold here (the hard
# open-file limit is 20,000), so the generator needs only one.
IDLE_ROOMS=${IDLE_ROOMS:-9500}
IDLE_PROCESSES=${IDLE_PROCESSES:-1}  # generator processes holding them
TARGETS=${TARGETS:-limit telehub-1 telehub-2 socketio-1 socketio-2}
STEPS=${STEPS:-chat idle}
mkdir -p "$OUT"

case ",$RATES," in *",$COMMON,"*) ;; *) echo "COMMON=$COMMON must be one of RATES=$RATES"; exit 2 ;; esac

# shellcheck source=scripts/bench/common.sh
. "$ROOT/scripts/bench/common.sh"
need redis-server node npm
(cd loadtest/peers/socketio && npm ci --no-audit --no-fund --loglevel=error)

work=$(mktemp -d)
pgdir=$(mktemp -d)
pg=
servers=()
stop_servers() {
    for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${servers[@]}"; do wait "$pid" 2>/dev/null || true; done
    servers=()
}
cleanup() {
    stop_servers
    [ -z "${redis:-}" ] || { kill "$redis" 2>/dev/null || true; wait "$redis" 2>/dev/null || true; }
    [ -z "$pg" ] || scripts/postgres.sh stop "$pgdir" 2>/dev/null || true
    rm -rf "$work" "$pgdir"
}
trap cleanup EXIT

# A fresh Redis for each clustered target, so that nothing carries over.
start_redis() {
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
        --logfile "$work/redis.log" &
    redis=$!
    for _ in $(seq 1 100); do
        redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "redis did not start"; exit 1
}
stop_redis() { kill "$redis" 2>/dev/null || true; wait "$redis" 2>/dev/null || true; redis=; }

# start_telehub NAME PORT [DATABASE_URL REDIS_URL]
start_telehub() {
    local name=$1 port=$2 db=${3:-sqlite://$work/$1.db} redis_url=${4:-}
    env "${BENCH_ENV[@]}" TELEHUB_BIND=127.0.0.1:$port TELEHUB_DATABASE_URL="$db" TELEHUB_REDIS_URL="$redis_url" \
        TELEHUB_NODE_ID=$name "$HUB" >"$OUT/server-$name.log" 2>&1 &
    servers+=($!)
    wait_ready "http://127.0.0.1:$port/readyz" "$OUT/server-$name.log"
}

# start_socketio NAME PORT [REDIS_URL]
start_socketio() {
    local name=$1 port=$2 redis_url=${3:-}
    PORT=$port NODE_ID=$name REDIS_URL=$redis_url node loadtest/peers/socketio/server.js >"$OUT/server-$name.log" 2>&1 &
    servers+=($!)
    wait_ready "http://127.0.0.1:$port/healthz" "$OUT/server-$name.log"
}

start_limit() {
    local port=$1
    "$LOAD" baseline --bind "127.0.0.1:$port" >"$OUT/server-limit.log" 2>&1 &
    servers+=($!)
    wait_port "$port" "$OUT/server-limit.log"
}

# Starts TARGET's servers; sets urls (comma-separated) and protocol, and
# leaves the first server's pid in first_pid.
start_target() {
    local target=$1 a b
    a=$(free_port)
    protocol=telehub
    case $target in
    limit) start_limit "$a"; urls=http://127.0.0.1:$a ;;
    telehub-1) start_telehub telehub-1 "$a"; urls=http://127.0.0.1:$a ;;
    telehub-2)
        [ -n "$pg" ] || pg=$(DURABLE=1 scripts/postgres.sh start "$pgdir")
        # Each run on an empty database.
        psql "$pg" -qc "DROP DATABASE IF EXISTS suite WITH (FORCE)" -c "CREATE DATABASE suite" >/dev/null
        start_redis
        b=$(free_port)
        db=${pg%/*}/suite
        start_telehub telehub-2a "$a" "$db" "redis://127.0.0.1:$redis_port/"
        start_telehub telehub-2b "$b" "$db" "redis://127.0.0.1:$redis_port/"
        urls=http://127.0.0.1:$a,http://127.0.0.1:$b
        ;;
    socketio-1) start_socketio socketio-1 "$a"; urls=http://127.0.0.1:$a; protocol=socketio ;;
    socketio-2)
        start_redis
        b=$(free_port)
        start_socketio socketio-2a "$a" "redis://127.0.0.1:$redis_port"
        start_socketio socketio-2b "$b" "redis://127.0.0.1:$redis_port"
        urls=http://127.0.0.1:$a,http://127.0.0.1:$b
        protocol=socketio
        ;;
    *) echo "unknown target $target"; exit 2 ;;
    esac
    first_pid=${servers[0]}
}

stop_target() {
    stop_servers
    [ -z "${redis:-}" ] || stop_redis
}

has_step() { case " $STEPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

for target in $TARGETS; do
    if has_step chat; then
        echo "== $target: chat, $ROOMS rooms, offered $RATES sends/s"
        rm -f "$OUT/chat-$target.json"
        start_target "$target"
        # A run that loses, doubles or reorders messages exits non-zero; the
        # summary shows those counts, so the suite goes on.
        "$LOAD" chat --protocol "$protocol" --url "$urls" --api-key $KEY --rooms "$ROOMS" --rate "$RATES" \
            --duration "$DURATION" --warmup "$WARMUP" --drain 30s \
            --json "$OUT/chat-$target.json" --html "$OUT/chat-$target.html" || echo "   ($target: the run failed its checks)"
        stop_target
    fi
    # Memory per session is measured on one node only.
    case $target in limit | telehub-1 | socketio-1) ;; *) continue ;; esac
    if has_step idle; then
        echo "== $target: idle, $((IDLE_ROOMS * 2)) sessions"
        rm -f "$OUT/idle-$target.json"
        start_target "$target"
        "$LOAD" idle --protocol "$protocol" --url "$urls" --api-key $KEY --rooms "$IDLE_ROOMS" \
            --pid "$first_pid" --processes "$IDLE_PROCESSES" --hold 2s --json "$OUT/idle-$target.json" \
            || echo "   ($target: the idle run failed)"
        stop_target
    fi
done

python3 scripts/bench/suite_report.py "$OUT" "$COMMON" | tee "$OUT/summary.md"
