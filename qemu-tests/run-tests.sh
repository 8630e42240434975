#!/usr/bin/env bash
# The test command of the README: every test level, with the time of each step.
#   1. formatting and lints
#   2. unit tests (no root, no network)
#   3. privileged + package + QEMU boot tests: real builds from the Debian
#      mirror, booted under TCG, one boot per image checking everything that
#      image is for: the update tests build three versions of an updatable
#      image (A runs the image's own boot checks too) and serve them with
#      nginx on 127.0.0.1; the aarch64 test builds one updatable arm64 image
#      (and its update B) under qemu-user-static and boots it under
#      qemu-system-aarch64; it, the hardening checks and the provisioned
#      nodes (both on manifests/minimal.toml) and the reproducibility build
#      run in a second lane beside the other tests.
# Needs root and the packages of .ci/install-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export HULL_TEST_OUT=${HULL_TEST_OUT:-$PWD/out/test}
export HULL_TEST_LOGS=${HULL_TEST_LOGS:-$PWD/out/test-logs}

mkdir -p "$HULL_TEST_LOGS"
# Every step's time, printed as a table when the run ends (both lanes).
STEP_TIMES=$HULL_TEST_LOGS/step-times.tsv
: >"$STEP_TIMES"
: >"$HULL_TEST_LOGS/boot-times.tsv"
: >"$HULL_TEST_LOGS/boot-retries.tsv"
# The lanes' logs, which print_failures reads: none from an earlier run.
: >"$HULL_TEST_LOGS/foreground-lane.log"
: >"$HULL_TEST_LOGS/background-lane.log"
run_start=$(date +%s)

step() {
  local name=$1; shift
  echo "== step: $name"
  local t0; t0=$(date +%s)
  if "$@"; then
    echo "== step: $name took $(( $(date +%s) - t0 )) s"
    printf '%s\t%s\tok\n' "$name" "$(( $(date +%s) - t0 ))" >>"$STEP_TIMES"
  else
    local rc=$?
    echo "== step: $name FAILED after $(( $(date +%s) - t0 )) s"
    printf '%s\t%s\tFAILED\n' "$name" "$(( $(date +%s) - t0 ))" >>"$STEP_TIMES"
    return $rc
  fi
}

print_step_times() {
  echo "== step times (the two lanes run side by side)"
  printf '%-70s %8s  %s\n' "step" "seconds" "result"
  while IFS=$'\t' read -r name secs result; do
    printf '%-70s %8s  %s\n' "$name" "$secs" "$result"
  done <"$STEP_TIMES"
  printf '%-70s %8s\n' "tests in all (wall clock)" "$(( $(date +%s) - run_start ))"
  # Each boot's time to multi-user.target (systemd-analyze in the guest).
  if [ -s "$HULL_TEST_LOGS/boot-times.tsv" ]; then
    echo "== boot times (systemd-analyze time, inside each guest)"
    while IFS=$'\t' read -r boot arch said; do
      printf '%-24s %-8s %s\n' "$boot" "$arch" "$said"
    done <"$HULL_TEST_LOGS/boot-times.tsv"
  fi
  # Boots run a second time because the first died before any check
  # (qemu-tests/src/lib.rs, Boot::run): none, on a healthy run.
  if [ -s "$HULL_TEST_LOGS/boot-retries.tsv" ]; then
    echo "== boots retried (the first try died before the guest's first check)"
    while IFS=$'\t' read -r boot arch why; do
      printf '%-24s %-8s %s\n' "$boot" "$arch" "$why"
    done <"$HULL_TEST_LOGS/boot-retries.tsv"
  fi
}

# Why each failed test failed, from the lanes' output: the error (anyhow's
# `Error:` and its causes) or the panic message, without the backtraces
# that follow, so that the end of a failed run says it.
print_failures() {
  local f
  for f in "$HULL_TEST_LOGS/foreground-lane.log" "$HULL_TEST_LOGS/background-lane.log"; do
    [ -s "$f" ] || continue
    grep -q -e '^Error: ' -e 'panicked at' -e '^test result: FAILED' "$f" || continue
    echo "== why tests failed, from $f"
    awk '
      /^failures:$/ { list = 1; next }
      list && /^    [A-Za-z0-9_:]+$/ { print "failed:" $0; next }
      /^test result:/ { list = 0; if ($0 ~ /FAILED/) print; next }
      /^Error: |panicked at/ { n = 14 }
      n > 0 && /^(Stack backtrace:|stack backtrace:|note: run with)/ { n = 0 }
      n > 0 { print; n-- }
    ' "$f" | cut -c1-600
  done
}

on_exit() {
  local rc=$?
  print_step_times
  [ "$rc" -eq 0 ] || print_failures
}
trap on_exit EXIT

print_logs() {
  # On a failed boot test, show the end of every serial console log.
  if [ -d "$HULL_TEST_LOGS" ]; then
    for f in "$HULL_TEST_LOGS"/*.log; do
      [ -f "$f" ] || continue
      # The lanes' own output is on the terminal already, whole.
      case $f in *-lane.log) continue ;; esac
      echo "---- last 80 lines of $f"
      tail -n 80 "$f"
    done
  fi
}

step "cargo fmt --check" cargo fmt --all -- --check
# The images carry the release build as /usr/bin/hull, the on-host agent. It
# builds beside the lints and unit tests: cargo locks target/release and
# target/debug apart, and one compiler often leaves a core idle (a crate's
# front end runs on one thread).
release_log=$HULL_TEST_LOGS/release-build.log
release_build=
if [ "$(id -u)" -eq 0 ]; then
  ( step "build the hull agent (release, beside the next steps)" cargo build --release -p hull ) >"$release_log" 2>&1 &
  release_build=$!
fi
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
step "cargo doc (no warnings)" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p hull
step "unit tests" cargo test --workspace
# The SBOM checked by the SPDX project's validator (pyspdxtools, .ci/install-deps).
step "SPDX validation" cargo test -p hull --lib sbom::tests::outside_validator -- --ignored
if [ "$(id -u)" -ne 0 ]; then
  echo "not root: skipping the build and QEMU boot tests (they need root)" >&2
  exit 1
fi
trap print_logs ERR
t0=$(date +%s)
release_rc=0
wait "$release_build" || release_rc=$?
echo "== waited $(( $(date +%s) - t0 )) s for the release build; its output:"
cat "$release_log"
[ "$release_rc" -eq 0 ] || exit "$release_rc"
# The aarch64 images carry a cross-built one (docs/aarch64.md): built at the
# start of the background lane, which alone builds aarch64 images, in a
# target directory of its own (so the foreground's cargo never waits on it).
cross_target_dir=$PWD/target/cross
aarch64_agent=$cross_target_dir/aarch64-unknown-linux-gnu/release/hull
step "build the test binaries" cargo test -p hull-qemu-tests --no-run
# The images build from the locks shipped beside the manifests; Debian's
# mirror keeps only current versions, so first move them forward (a second
# or two when nothing moved: the lock is then left byte for byte as it is).
refresh_locks() {
  target/release/hull lock --update manifests/minimal.toml --out "$HULL_TEST_OUT" &&
    target/release/hull lock --update manifests/k8s-node.toml --out "$HULL_TEST_OUT"
}
step "refresh the shipped locks (hull lock --update)" refresh_locks

# Two lanes, one per core, of about equal length. The background lane
# builds the aarch64 agent and image (the image's packages configured under
# qemu-user) and boots it, then builds manifests/minimal.toml once for the
# hardening checks, the two provisioned nodes and the reproducibility test
# (which builds it a second time from its lock); the foreground lane runs
# every other test (build errors, the delta pull, overlays, k8s_node, the
# power cuts, signed_images, the updates). The background lane has its own
# build directory (no .deb cache or OSTree repository written by both lanes
# at once) and its own log, printed once both have ended.
background_tests=(aarch64 hardening provision reproducible)
background_log=$HULL_TEST_LOGS/background-lane.log
background_args=()
foreground_skips=()
for t in "${background_tests[@]}"; do
  background_args+=(--test "$t")
  foreground_skips+=(--skip "$t")
done
(
  step "background lane: build the hull agent for aarch64 (release)" env CARGO_TARGET_DIR="$cross_target_dir" \
    cargo build --release -p hull --target aarch64-unknown-linux-gnu
  step "background lane: ${background_tests[*]}" env HULL_QEMU_TESTS=1 HULL_TEST_OUT="$HULL_TEST_OUT-background" \
    HULL_AGENT_AARCH64="$aarch64_agent" RUST_LIB_BACKTRACE=0 \
    cargo test -p hull-qemu-tests "${background_args[@]}" -- --ignored --skip hardening_score --nocapture --test-threads=1
) >"$background_log" 2>&1 &
background_lane=$!
echo "== background lane started: ${background_tests[*]} (log $background_log)"
foreground_rc=0
# Its output goes to the terminal and to a log, which print_failures reads.
step "foreground lane: the other build + boot tests" env HULL_QEMU_TESTS=1 RUST_LIB_BACKTRACE=0 \
  cargo test -p hull-qemu-tests -- --ignored --skip hardening_score --nocapture --test-threads=1 "${foreground_skips[@]}" \
  2>&1 | tee "$HULL_TEST_LOGS/foreground-lane.log" || foreground_rc=$?
t0=$(date +%s)
background_rc=0
wait "$background_lane" || background_rc=$?
echo "== waited $(( $(date +%s) - t0 )) s for the background lane; its output:"
cat "$background_log"
if [ "$foreground_rc" -ne 0 ] || [ "$background_rc" -ne 0 ]; then
  echo "== FAILED: foreground lane exit $foreground_rc, background lane exit $background_rc"
  print_logs
  exit 1
fi
