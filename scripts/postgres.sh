#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL cluster in a directory (no systemd, no Debian
# cluster config): `postgres.sh start DIR [PORT]` prints the admin URL;
# `postgres.sh stop DIR`; `postgres.sh restart DIR` (same port).
# The server runs as the `postgres` user the Debian package creates (initdb refuses root).
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] || { echo "postgres.sh: PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
as_pg() { runuser -u postgres -- "$@"; }

cmd=${1:?usage: postgres.sh start|stop|restart DIR [PORT]}
dir=${2:?usage: postgres.sh start|stop|restart DIR [PORT]}

case "$cmd" in
  start)
    port=${3:-}
    if [ -z "$port" ]; then
      # A free port: the first from a pid-based start that nothing listens on.
      port=$((20000 + $$ % 20000))
      while ss -Hltn "sport = :$port" | grep -q .; do port=$((port + 1)); done
    fi
    mkdir -p "$dir"
    chown postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    echo "$port" >"$dir/port"
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=600 -c shared_buffers=64MB" start >/dev/null \
      || { cat "$dir/data/server.log" >&2; exit 1; }
    echo "postgres://postgres@127.0.0.1:$port"
    ;;
  stop)
    [ -f "$dir/data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    ;;
  restart)
    port=$(cat "$dir/port")
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    "$0" start "$dir" "$port" >/dev/null
    ;;
  *) echo "postgres.sh: unknown command $cmd" >&2; exit 2 ;;
esac
