#!/usr/bin/env bash
# Builds hookd's container image without pulling anything: a FROM scratch image holding the
# binary, the shared libraries `ldd` says it needs, and the system's CA certificates.
# Usage: packaging/build-image.sh [TAG]   (HOOKD_BINARY: the binary, default target/release/hookd)
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-hookd:local}"
binary="${HOOKD_BINARY:-target/release/hookd}"
[ -x "$binary" ] || cargo build --release --locked --bin hookd
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/rootfs/usr/bin" "$context/rootfs/tmp" "$context/data"
cp "$binary" "$context/rootfs/usr/bin/hookd"
# Every library the binary loads, at the path the loader looks for it.
for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
  mkdir -p "$context/rootfs$(dirname "$lib")"
  cp -L "$lib" "$context/rootfs$lib"
done
# The system's certificate authorities: hookd trusts them for https (PostgreSQL with
# sslmode, Kubernetes, a registry), and a scratch image has none of its own.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$context/rootfs/etc/ssl/certs"
  cp -L /etc/ssl/certs/ca-certificates.crt "$context/rootfs/etc/ssl/certs/"
fi
chmod 1777 "$context/rootfs/tmp"
cp packaging/Dockerfile "$context/"
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$context"
