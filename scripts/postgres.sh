#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL cluster in a directory (no systemd, no Debian
# cluster config): `postgres.sh start DIR [PORT]` prints the admin URL;
# `postgres.sh stop DIR`; `postgres.sh restart DIR` (same port). With HOOKD_PG_TLS=1, the
# server also speaks TLS, with a certificate signed by a throwaway CA in DIR/ca.crt.
# The server runs as the `postgres` user the Debian package creates (initdb refuses root).
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
[ -n "$bin" ] || { echo "postgres.sh: PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
as_pg() { runuser -u postgres -- "$@"; }

cmd=${1:?usage: postgres.sh start|stop|restart DIR [PORT]}
dir=${2:?usage: postgres.sh start|stop|restart DIR [PORT]}
mkdir -p "$dir"
dir=$(realpath "$dir")

case "$cmd" in
  start)
    port=${3:-}
    fixed=${3:+yes}
    if [ -z "$port" ]; then
      # A free port below the kernel's ephemeral range, from a pid-based start; a start that
      # loses a race for it tries the next ones.
      port=$((10000 + $$ % 20000))
      while ss -Hltn "sport = :$port" | grep -q .; do port=$((port + 1)); done
    fi
    mkdir -p "$dir"
    chown postgres "$dir"
    as_pg test -x "$dir" || { echo "postgres.sh: the postgres user cannot reach $dir (a parent is private)" >&2; exit 1; }
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    tls=""
    if [ "${HOOKD_PG_TLS:-}" = 1 ]; then
      # A throwaway CA and a certificate for 127.0.0.1 it signed: clients verify the server
      # with sslrootcert=DIR/ca.crt.
      if [ ! -f "$dir/server.crt" ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=hookd-test-ca \
          -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$dir/server.ext"
        openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
          -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
        chown postgres "$dir/server.key" "$dir/server.crt"
        chmod 600 "$dir/server.key"
      fi
      tls="-c ssl=on -c ssl_cert_file='$dir/server.crt' -c ssl_key_file='$dir/server.key'"
    fi
    for attempt in 1 2 3 4 5; do
      echo "$port" >"$dir/port"
      if as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 60 \
        -o "-p $port -k '$dir' -c listen_addresses=127.0.0.1 -c max_connections=600 -c shared_buffers=64MB $tls" \
        start >/dev/null; then
        break
      fi
      if [ -n "$fixed" ] || [ "$attempt" = 5 ]; then
        cat "$dir/data/server.log" >&2
        exit 1
      fi
      port=$((port + 7))
    done
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
