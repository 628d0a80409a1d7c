#!/usr/bin/env bash
# Builds hookd's Debian package: the binary, a systemd unit, /etc/hookd/hookd.toml, the man
# pages and shell completions (generated from the CLI's own definition).
# Usage: packaging/build-deb.sh [OUTPUT_DIR]   (default target/debian)
# HOOKD_PROFILE=dev packages the debug build instead of a release build, and HOOKD_NO_BUILD=1
# packages the binary already built (the tests do both: cargo is busy running them).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/debian}"
profile="${HOOKD_PROFILE:-release}"
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version 3.8.0
[ -n "${HOOKD_NO_BUILD:-}" ] || cargo build --locked --profile "$profile" --bin hookd
dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
binary="target/$dir/hookd"
rm -rf target/packaging/man
mkdir -p target/packaging/man "$out"
"$binary" man --dir target/packaging/man
gzip -9n target/packaging/man/*.1
"$binary" completions bash > target/packaging/hookd.bash
"$binary" completions zsh > target/packaging/_hookd
"$binary" completions fish > target/packaging/hookd.fish
# Stripped: the line tables kept for backtraces would make the installed binary ~140 MB.
cargo deb --quiet --no-build --locked --strip --profile "$profile" --output "$out"
