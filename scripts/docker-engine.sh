#!/usr/bin/env bash
# Starts a throwaway Docker engine for hookd's tests (no systemd needed) and builds the
# test image on it. Usage: scripts/docker-engine.sh start DIR [--swarm] [dockerd flags...]
#                          scripts/docker-engine.sh halt DIR   (stop dockerd, keep its data)
#                          scripts/docker-engine.sh stop DIR   (stop dockerd, remove DIR)
# After `start`, DIR/docker.sock is the engine's socket. `--bridge=NAME` (NAME not `none`)
# creates that bridge when missing: an engine on a bridge of its own is not disturbed by
# another engine started with `--bridge=none`, which deletes `docker0` at start.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
action="$1"
dir="$2"
shift 2

case "$action" in
start)
  swarm=no
  if [ "${1:-}" = "--swarm" ]; then swarm=yes; shift; fi
  mkdir -p "$dir"
  for flag in "$@"; do
    case "$flag" in
    --bridge=none) ;;
    --bridge=*)
      bridge="${flag#--bridge=}"
      if ! ip link show "$bridge" >/dev/null 2>&1; then
        ip link add "$bridge" type bridge
        ip addr add "${HOOKD_TEST_BRIDGE_CIDR:-10.213.0.1/16}" dev "$bridge"
        ip link set "$bridge" up
      fi
      ;;
    esac
  done
  # TMPDIR inside DIR: what the engine and its containerd write there (stack dumps when
  # killed) goes with DIR, not into /tmp.
  mkdir -p "$dir/tmp"
  TMPDIR="$dir/tmp" dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
    -H "unix://$dir/docker.sock" "$@" >"$dir/dockerd.log" 2>&1 &
  export DOCKER_HOST="unix://$dir/docker.sock"
  for _ in $(seq 1 60); do
    docker version >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker version >/dev/null 2>&1 || { cat "$dir/dockerd.log" >&2; echo "dockerd did not start" >&2; exit 1; }
  if [ "$swarm" = yes ]; then
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null
  fi
  build="$dir/image"
  mkdir -p "$build"
  cp "$here/tests/docker-image/Dockerfile" "$build/"
  cp "$(command -v busybox)" "$build/busybox"
  DOCKER_BUILDKIT=0 docker build -q -t hookd-test/sleeper:1 "$build" >/dev/null 2>"$dir/build.log" \
    || { cat "$dir/build.log" >&2; exit 1; }
  ;;
halt | stop)
  if [ -f "$dir/dockerd.pid" ]; then
    pid=$(cat "$dir/dockerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  [ "$action" = halt ] && exit 0
  # Overlay and netns mounts can outlive dockerd: unmount everything below DIR, deepest first.
  # (grep finds nothing when dockerd unmounted all: not an error, whatever pipefail says.)
  { grep -F " $dir/" /proc/mounts || true; } | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for _ in 1 2 3 4 5; do rm -rf "$dir" 2>/dev/null && break; sleep 1; done
  [ ! -e "$dir" ] || { echo "could not remove $dir" >&2; exit 1; }
  ;;
*)
  echo "usage: $0 start|halt|stop DIR [--swarm] [dockerd flags...]" >&2
  exit 2
  ;;
esac
