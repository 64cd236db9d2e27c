# What the benchmark scripts share, sourced by core.sh, cluster.sh and
# suite.sh once they have set ROOT: the release build (skipped with
# SKIP_BUILD=1), the binaries, the benchmark hubs' credentials and limits,
# and free loopback ports.

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
