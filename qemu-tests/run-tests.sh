#!/usr/bin/env bash
# The test command of the README: every test level, with the time of each step.
#   1. formatting and lints
#   2. unit tests (no root, no network)
#   3. privileged + package + QEMU boot tests: a real build of manifests/minimal.toml
#      from the Debian mirror (once, shared by the boot tests), booted under TCG;
#      the update tests build three versions of an updatable image and serve
#      them with nginx on 127.0.0.1.
# Needs root and the packages of .ci/install-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export HULL_TEST_OUT=${HULL_TEST_OUT:-$PWD/out/test}
export HULL_TEST_LOGS=${HULL_TEST_LOGS:-$PWD/out/test-logs}

step() {
  local name=$1; shift
  echo "== step: $name"
  local t0; t0=$(date +%s)
  if "$@"; then
    echo "== step: $name took $(( $(date +%s) - t0 )) s"
  else
    local rc=$?
    echo "== step: $name FAILED after $(( $(date +%s) - t0 )) s"
    return $rc
  fi
}

print_logs() {
  # On a failed boot test, show the end of every serial console log.
  if [ -d "$HULL_TEST_LOGS" ]; then
    for f in "$HULL_TEST_LOGS"/*.log; do
      [ -f "$f" ] || continue
      echo "---- last 80 lines of $f"
      tail -n 80 "$f"
    done
  fi
}

step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
step "unit tests" cargo test --workspace
if [ "$(id -u)" -ne 0 ]; then
  echo "not root: skipping the build and QEMU boot tests (they need root)" >&2
  exit 1
fi
trap print_logs ERR
# The images carry this binary as /usr/bin/hull, the on-host agent.
step "build the hull agent (release)" cargo build --release -p hull
step "build + boot tests" env HULL_QEMU_TESTS=1 cargo test -p hull-qemu-tests -- --nocapture --test-threads=1
