# What the benchmark scripts share, sourced by core.sh, cluster.sh and
# suite.sh once they have set ROOT: the release build (skipped with
# SKIP_BUILD=1), the binaries, the benchmark hubs' credentials and limits,
# and free loopback ports.

# need PROGRAM...: stops at once, saying what to install, unless every
# PROGRAM is on the PATH (scripts/test installs them all on Debian).
need() {
    local missing=()
    for program in "$@"; do command -v "$program" >/dev/null 2>&1 || missing+=("$program"); done
    ((${#missing[@]} == 0)) && return 0
    echo "this benchmark needs ${missing[*]}: run scripts/test once, which installs what it needs," >&2
    echo "or install the Debian packages yourself (redis-server for redis-server, nodejs and npm for node)" >&2
    exit 1
}
need curl python3

if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release --locked -p telehub -p telehub-loadtest
fi
HUB=${HUB:-$ROOT/target/release/telehub}
LOAD=${LOAD:-$ROOT/target/release/telehub-loadtest}
KEY=bench-api-key
SECRET=bench-secret-0123456789abcdef

# The environment of every benchmark hub. The load generator's sessions each
# send well under these limits; they are raised so that saturation steps
# measure the hub, not its limiter, and so that setting up thousands of
# rooms over HTTP is not throttled.
BENCH_ENV=(
    TELEHUB_JWT_SECRET=$SECRET TELEHUB_API_KEY=$KEY
    TELEHUB_RATE_PER_S=1000 TELEHUB_RATE_BURST=1000
    TELEHUB_HTTP_RATE_PER_S=1000000 TELEHUB_HTTP_RATE_BURST=1000000
    RUST_LOG=${HUB_LOG:-warn}
)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_ready URL LOG: waits up to 15 s until GET URL answers 2xx; otherwise
# prints LOG and exits.
wait_ready() {
    local url=$1 log=$2
    for _ in $(seq 1 150); do
        curl -fsS "$url" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "no answer from $url"; cat "$log"; exit 1
}

# wait_port PORT LOG: the same for a server that takes TCP connections on
# PORT (the bare relay, which has no health check).
wait_port() {
    local port=$1 log=$2
    for _ in $(seq 1 150); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $port"; cat "$log"; exit 1
}
