#!/usr/bin/env bash
# Builds a FROM scratch image around one binary and the libraries it links, so the tests can
# run programs Debian ships (Prometheus, Alertmanager) in containers without a pull.
# Usage: scripts/scratch-image.sh TAG BINARY NAME [PATH...]
# The entrypoint is /bin/NAME; each PATH (a file or directory the binary reads) is copied as is.
set -euo pipefail
tag="$1" binary="$2" name="$3"
shift 3
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/rootfs/bin" "$context/rootfs/tmp"
cp "$binary" "$context/rootfs/bin/$name"
for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
  mkdir -p "$context/rootfs$(dirname "$lib")"
  cp -L "$lib" "$context/rootfs$lib"
done
for path in "$@"; do
  mkdir -p "$context/rootfs$(dirname "$path")"
  cp -rL "$path" "$context/rootfs$path"
done
chmod 1777 "$context/rootfs/tmp"
printf 'FROM scratch\nCOPY rootfs/ /\nENTRYPOINT ["/bin/%s"]\n' "$name" > "$context/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$context" >/dev/null
