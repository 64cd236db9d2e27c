#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests, on a free loopback port, with its
# data and socket in a folder of the caller's; `start` prints the URL of a
# superuser connection.
#
#   url=$(scripts/postgres.sh start "$dir")   # dir: an empty folder
#   scripts/postgres.sh pause "$dir"          # shut the server down (fast)
#   scripts/postgres.sh resume "$dir"         # start it again, same port
#   scripts/postgres.sh stop "$dir"
#   DURABLE=1 scripts/postgres.sh start "$dir" # fsync on (benchmarks)
#
# PostgreSQL refuses to run as root, so as root it runs as the `postgres`
# user of Debian's packages (created if missing).
set -euo pipefail
cmd=${1:?start, pause, resume or stop}
dir=${2:?a folder for the cluster}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); run scripts/test" >&2; exit 1; }

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chown -R postgres "$dir"
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

run_server() {
    # Durability is not what the tests measure; fsync off keeps them fast.
    # Benchmarks set DURABLE=1 for a server that syncs its commits.
    local sync="-c fsync=off -c synchronous_commit=off"
    [ -z "${DURABLE:-}" ] || sync=""
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
        -o "-p $(cat "$dir/port") -k $dir -c listen_addresses=127.0.0.1 $sync -c max_connections=400" \
        start >/dev/null
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

case $cmd in
start)
    mkdir -p "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U telehub --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    # The free port is found before the server binds it, so another
    # process may take it in between: then try another, a few times.
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        echo "$port" >"$dir/port"
        : >"$dir/postgres.log"
        if run_server; then
            echo "postgres://telehub@127.0.0.1:$port/postgres"
            exit 0
        fi
        grep -q "Address already in use" "$dir/postgres.log" || break
        echo "port $port was taken before PostgreSQL bound it (attempt $attempt); trying another" >&2
    done
    cat "$dir/postgres.log" >&2
    exit 1
    ;;
pause)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
resume)
    run_server || { cat "$dir/postgres.log" >&2; exit 1; }
    ;;
stop)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    ;;
*)
    echo "usage: $0 start|pause|resume|stop DIR" >&2
    exit 2
    ;;
esac
