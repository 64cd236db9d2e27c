#!/usr/bin/env bash
# The core benchmark of one Telehub node, with the load generator beside it
# on the same machine. Writes JSON and HTML reports to bench-results/ and
# prints the tables that docs/benchmarks.md quotes.
#
#   scripts/bench/core.sh                 # everything (about 6 minutes)
#   ROOMS=1000 RATE=25000 scripts/bench/core.sh chat
#
# Steps:
#   chat        1,000 rooms x 2 sessions at a fixed offered rate (sends/s;
#               also the CPU of each thread of hub and generator, cpu.py;
#               every message is delivered to both sessions of its room)
#   saturation  the same connections, stepping the offered rate up
#   idle        10,000 joined idle sessions: hub RSS per session, join rate
#   baseline    the chat step against `telehub-loadtest baseline`, a bare
#               tokio-tungstenite relay without storage: what this machine
#               and this generator can do at all (not in the default steps)
#   floor       the idle step against examples/actix_floor.rs, the hub's
#               WebSocket stack (actix-web, actix-ws, jemalloc) with nothing
#               of the hub: the RSS per session any server on it pays (not
#               in the default steps)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
OUT=${OUT:-$ROOT/bench-results}
ROOMS=${ROOMS:-1000}
RATE=${RATE:-25000}
SATURATION=${SATURATION:-5000,10000,12500,15000,20000}
DURATION=${DURATION:-20s}
IDLE_ROOMS=${IDLE_ROOMS:-5000}
# Generator processes that hold the idle sessions (the open-file limit is
# per process; one process may hold about 19,000).
IDLE_PROCESSES=${IDLE_PROCESSES:-1}
steps=${*:-chat saturation idle}
mkdir -p "$OUT"

# shellcheck source=scripts/bench/common.sh
. "$ROOT/scripts/bench/common.sh"

start_hub() {
    tmp=$(mktemp -d)
    port=$(free_port)
    env "${BENCH_ENV[@]}" TELEHUB_BIND=127.0.0.1:$port TELEHUB_DATABASE_URL="sqlite://$tmp/telehub.db" \
        "$HUB" >"$OUT/hub-$1.log" 2>&1 &
    hub=$!
    wait_ready "http://127.0.0.1:$port/healthz" "$OUT/hub-$1.log"
}

stop_hub() {
    [ -n "${hub:-}" ] || return 0  # the baseline and floor steps start none
    kill "$hub" 2>/dev/null || true
    wait "$hub" 2>/dev/null || true
    rm -rf "$tmp"
    hub=
}
trap stop_hub EXIT

# The chat scenario at $RATE against URL, with the CPU of every thread of
# SERVER_PID and of the generator over 8 s inside the measured window (setup
# and the 5 s warm-up take about 7 s). Reports go to $OUT/NAME.json and
# $OUT/cpu-NAME.txt (with the server's disk writes); fails when the run fails its checks.
chat_with_cpu() {
    local name=$1 url=$2 server=$3 load cpu result=0
    "$LOAD" chat --url "$url" --api-key $KEY --rooms "$ROOMS" --rate "$RATE" \
        --duration "$DURATION" --warmup 5s --drain 30s --json "$OUT/$name.json" --html "$OUT/$name.html" &
    load=$!
    # The server's disk writes over the same 8 s, from /proc (what the
    # storage costs in bytes: the log and the checkpoints).
    (sleep 10 && w0=$(awk '/^write_bytes/ {print $2}' "/proc/$server/io") &&
        python3 scripts/bench/cpu.py 8 "$server" "$load" >"$OUT/cpu-$name.txt" 2>&1 &&
        w1=$(awk '/^write_bytes/ {print $2}' "/proc/$server/io") &&
        echo "server disk writes: $(((w1 - w0) / 8 / 1000000)) MB/s" >>"$OUT/cpu-$name.txt") &
    cpu=$!
    wait "$load" || result=1
    wait "$cpu" || true
    echo "CPU during the measured window (cores of 2):"
    cat "$OUT/cpu-$name.txt"
    return "$result"
}

# A failed check (lost messages, failed sessions) is reported at the end, after
# every step has run.
status=0
for step in $steps; do
    case $step in
    chat)
        echo "== chat: $ROOMS rooms, offered $RATE sends/s (x2 deliveries)"
        start_hub chat
        chat_with_cpu chat "http://127.0.0.1:$port" "$hub" || status=1
        grep VmRSS "/proc/$hub/status" || true
        stop_hub
        ;;
    saturation)
        echo "== saturation: $ROOMS rooms, offered $SATURATION sends/s"
        start_hub saturation
        "$LOAD" chat --url "http://127.0.0.1:$port" --api-key $KEY --rooms "$ROOMS" --rate "$SATURATION" \
            --duration 10s --warmup 3s --drain 30s --json "$OUT/saturation.json" --html "$OUT/saturation.html" || true
        stop_hub
        ;;
    baseline)
        echo "== baseline: $ROOMS rooms, offered $RATE sends/s against a bare relay"
        bport=$(free_port)
        "$LOAD" baseline --bind "127.0.0.1:$bport" >"$OUT/baseline-server.log" 2>&1 &
        relay=$!
        wait_port "$bport" "$OUT/baseline-server.log"
        chat_with_cpu baseline "http://127.0.0.1:$bport" "$relay" || status=1
        kill "$relay" 2>/dev/null || true
        wait "$relay" 2>/dev/null || true
        ;;
    idle)
        echo "== idle: $IDLE_ROOMS rooms, $((IDLE_ROOMS * 2)) sessions"
        start_hub idle
        "$LOAD" idle --url "http://127.0.0.1:$port" --api-key $KEY --rooms "$IDLE_ROOMS" --pid "$hub" \
            --processes "$IDLE_PROCESSES" --hold 2s --json "$OUT/idle.json" || status=1
        stop_hub
        ;;
    floor)
        echo "== floor: $IDLE_ROOMS rooms, $((IDLE_ROOMS * 2)) sessions on the bare actix-web stack"
        [ -n "${SKIP_BUILD:-}" ] || cargo build --release --locked --example actix_floor
        fport=$(free_port)
        "$ROOT/target/release/examples/actix_floor" "127.0.0.1:$fport" >"$OUT/floor-server.log" 2>&1 &
        floor=$!
        wait_port "$fport" "$OUT/floor-server.log"
        "$LOAD" idle --url "http://127.0.0.1:$fport" --api-key $KEY --rooms "$IDLE_ROOMS" --pid "$floor" \
            --processes "$IDLE_PROCESSES" --hold 2s --json "$OUT/floor.json" || status=1
        kill "$floor" 2>/dev/null || true
        wait "$floor" 2>/dev/null || true
        ;;
    *) echo "unknown step $step"; exit 2 ;;
    esac
done
exit "$status"
