#!/usr/bin/env bash
# hookd's benchmarks, side by side in one run on 127.0.0.1 (see bench/bench.py for what is
# measured). Installs what it needs, builds release binaries, prints one table.
# Knobs: BENCH_ROUNDS (3), BENCH_SECONDS (8), BENCH_REQUESTS (60000), BENCH_BIG_STORE (1000000).
# `bench/run.sh replicas`: executed triggers on Swarm with SQLite, PostgreSQL and three
# replicas on PostgreSQL (bench/replicas.py; BENCH_REQUESTS per scenario, 30000 by default).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pair in webhook:webhook wrk:wrk sqlite3:sqlite3 python3:python3 dockerd:docker.io busybox:busybox-static \
  psql:postgresql-client; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cargo build --release --locked --bin hookd --example bare_hyper --example load
if [ "${1:-}" = replicas ]; then
  exec python3 bench/replicas.py
fi
exec python3 bench/bench.py "$@"
