#!/usr/bin/env bash
# The test command of the README: every test level, with the time of each step.
#   1. formatting and lints
#   2. unit tests (no root, no network)
#   3. privileged + package + QEMU boot tests: a real build of manifests/minimal.toml
#      from the Debian mirror (once, shared by the boot tests), booted under TCG;
#      the update tests build three versions of an updatable image and serve
#      them with nginx on 127.0.0.1; the aarch64 tests build one updatable
#      arm64 image (and its update B) under qemu-user-static and boot it
#      under qemu-system-aarch64, in a second lane beside the x86_64 tests.
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
# The aarch64 images carry a cross-built one (docs/aarch64.md).
step "build the hull agent for aarch64 (release)" cargo build --release -p hull --target aarch64-unknown-linux-gnu
step "build the test binaries" cargo test -p hull-qemu-tests --no-run

# Two lanes, one per core: the aarch64 image is built under qemu-user
# (~20 min of one core) and booted under qemu-system-aarch64 while the
# x86_64 guests boot on the other core. The aarch64 lane has its own build
# directory (no .deb cache or OSTree repo written by both at once) and its
# own log, printed when it has ended.
mkdir -p "$HULL_TEST_LOGS"
aarch64_log=$HULL_TEST_LOGS/aarch64-lane.log
(
  step "aarch64 build + boot tests" env HULL_QEMU_TESTS=1 HULL_TEST_OUT="$HULL_TEST_OUT-aarch64" \
    cargo test -p hull-qemu-tests --test aarch64 -- --nocapture --test-threads=1
) >"$aarch64_log" 2>&1 &
aarch64_lane=$!
echo "== aarch64 lane started in the background (log $aarch64_log)"
x86_rc=0
step "x86_64 build + boot tests" env HULL_QEMU_TESTS=1 \
  cargo test -p hull-qemu-tests -- --nocapture --test-threads=1 --skip aarch64 || x86_rc=$?
t0=$(date +%s)
aarch64_rc=0
wait "$aarch64_lane" || aarch64_rc=$?
echo "== waited $(( $(date +%s) - t0 )) s for the aarch64 lane; its output:"
cat "$aarch64_log"
if [ "$x86_rc" -ne 0 ] || [ "$aarch64_rc" -ne 0 ]; then
  echo "== FAILED: x86_64 lane exit $x86_rc, aarch64 lane exit $aarch64_rc"
  print_logs
  exit 1
fi
