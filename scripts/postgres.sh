#!/usr/bin/env bash
# Starts a throwaway PostgreSQL for the tests, on a free loopback port, with
# its data and socket in a fresh temporary folder; prints the URL of a
# superuser connection. Stop it with `scripts/postgres.sh stop DIR`.
#
#   url=$(scripts/postgres.sh start "$dir")   # dir: an empty folder
#   scripts/postgres.sh stop "$dir"
#
# PostgreSQL refuses to run as root, so as root it runs as the `postgres`
# user of Debian's packages (created if missing).
set -euo pipefail
cmd=${1:?start or stop}
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

case $cmd in
start)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U telehub --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    # Durability is not what these tests measure; fsync off keeps them fast.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=400" \
        start >/dev/null || { cat "$dir/postgres.log" >&2; exit 1; }
    echo "postgres://telehub@127.0.0.1:$port/postgres"
    ;;
stop)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
