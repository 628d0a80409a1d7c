#!/usr/bin/env bash
# Runs hookd's whole test suite on a fresh Debian machine with a Rust toolchain, as root:
# installs what the tests need, checks formatting and lints, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# Debian packages the suite needs, as "command:package" pairs; installed only when missing.
NEEDED=(
  "sleep:coreutils"
  "sh:dash"
  "prometheus:prometheus"
  "prometheus-alertmanager:prometheus-alertmanager"
  "amtool:prometheus-alertmanager"
  "dockerd:docker.io"
  "busybox:busybox-static"
  "docker-compose:docker-compose"
  "chromium:chromium"
  "chromedriver:chromium-driver"
  "socat:socat"
  "jq:jq"
  "openssl:openssl"
  "ip:iproute2"
  "systemd-analyze:systemd"
)

missing=()
for pair in "${NEEDED[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
# PostgreSQL's server programs are not on the PATH.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's kubectl (kubernetes-client), unpacked rather than installed: another package may
# own /usr/bin/kubectl. The kubectl test runs every kubectl in HOOKD_TEST_KUBECTL against the
# test Kubernetes API server.
kubectl_dir=target/kubernetes-client
if [ ! -x "$kubectl_dir/usr/bin/kubectl" ]; then
  log "fetching Debian's kubernetes-client"
  rm -rf "$kubectl_dir" && mkdir -p "$kubectl_dir"
  if ! (cd "$kubectl_dir" && apt-get download kubernetes-client 2>/dev/null); then
    apt-get update -qq
    (cd "$kubectl_dir" && apt-get download kubernetes-client)
  fi
  dpkg -x "$kubectl_dir"/kubernetes-client_*.deb "$kubectl_dir"
fi
HOOKD_TEST_KUBECTL="$PWD/$kubectl_dir/usr/bin/kubectl"
# The machine's own kubectl as well, when it has a working one: a newer client of the protocol.
if command -v kubectl >/dev/null 2>&1 && kubectl version --client >/dev/null 2>&1; then
  HOOKD_TEST_KUBECTL+=":$(command -v kubectl)"
fi
export HOOKD_TEST_KUBECTL

# The .deb test packages hookd with cargo-deb (from crates.io).
if ! command -v cargo-deb >/dev/null 2>&1; then
  log "installing cargo-deb"
  cargo install cargo-deb --locked --version 3.8.0
fi

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings


log "starting a Docker engine for the tests (swarm manager)"
docker_dir=$(mktemp -d /tmp/hookd-docker.XXXXXX)
pg_dir=$(mktemp -d /tmp/hookd-pg.XXXXXX)
cleanup() {
  ./scripts/docker-engine.sh stop "$docker_dir" || true
  ./scripts/postgres.sh stop "$pg_dir" || true
  rm -rf "$pg_dir"
  rm -f "${results:-}"
}
trap cleanup EXIT
# On a bridge of its own: the outage test's private engine (--bridge=none) deletes docker0.
./scripts/docker-engine.sh start "$docker_dir" --swarm --bridge=hookd-test0
export HOOKD_TEST_DOCKER_HOST="unix://$docker_dir/docker.sock"

# What /tmp holds before the tests: whatever they add and leave is a fault (issue 13).
tmp_before=target/tmp-before.txt
ls -A /tmp | sort > "$tmp_before"

log "starting PostgreSQL for the tests (a throwaway cluster; a database per test)"
HOOKD_TEST_POSTGRES=$(./scripts/postgres.sh start "$pg_dir")
export HOOKD_TEST_POSTGRES

log "cargo test"
results=$(mktemp)
# Tests that need a real component (or root) are #[ignore]d with the reason in a bare
# `cargo test`; here everything they need is installed and started, so they all run.
# Rancher's tests of drivers hookd lacks yet stay ignored, listed with their reasons.
awaiting=rancher_compat::awaiting_driver
cargo test --all-targets --locked -- --include-ignored --skip "$awaiting" 2>&1 | tee "$results"
cargo test --test api --locked -- "$awaiting" 2>&1 | tee -a "$results"

log "cargo test again, every test app on PostgreSQL"
# The same integration suite with each spawned hookd on a fresh PostgreSQL database. Left
# out: the store contract and the replica tests (they pick their store already), and the
# tests of build artifacts (the .deb, the image, the Compose example), which no store changes,
# the swarm pool test (a minute of engines joining; the command pools' tests cover the store),
# and the two-mode closed loop (two minutes of real timers; target.rs covers the store).
HOOKD_TEST_STORE=postgres cargo test --test api --locked -- --include-ignored --skip "$awaiting" \
  --skip store_contract:: --skip replicas:: --skip packaging:: --skip image:: --skip compose_example:: \
  --skip swarm_hosts:: --skip target_loop:: \
  2>&1 | tee -a "$results"

# Test directories, sockets and browser profiles the tests left in /tmp fail the suite;
# anything else new there (made by other programs meanwhile) is only listed.
new_in_tmp=$(ls -A /tmp | sort | comm -13 "$tmp_before" - | grep -vx "$(basename "$results")" || true)
left=$(grep -E '^(\.tmp|hookd|\.org\.chromium|chromedriver)' <<<"$new_in_tmp" || true)
[ -z "$new_in_tmp" ] || printf '\nnew in /tmp during the tests:\n%s\n' "$new_in_tmp"
if [ -n "$left" ]; then
  printf 'the tests left these in /tmp:\n%s\n' "$left"
  exit 1
fi

# One closing line for the whole suite, summed over the test binaries.
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, s }' "$results"
