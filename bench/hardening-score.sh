#!/usr/bin/env bash
# Hardening benchmark (not a test): builds and boots hull's minimal image and a
# stock-Debian baseline (bench/manifests/, same suite, kernel and podman, no
# hardening) in QEMU, runs the outside checkers inside each (KSPP command line
# and sysctls, lynis, systemd-analyze security, ss -tulpn, /proc/self/status
# in a rootless container) and prints one Markdown table (docs/hardening.md).
# Usage: bench/hardening-score.sh ; needs root and the packages of .ci/install-deps.
# Two builds (~2 min each) and two boots (~5 min each under TCG).
set -euo pipefail
cd "$(dirname "$0")/.."
export HULL_QEMU_TESTS=1
export HULL_TEST_OUT=${BENCH_OUT:-$PWD/out/bench-hardening}
export HULL_TEST_LOGS=${BENCH_LOGS:-$HULL_TEST_OUT/logs}
log=$HULL_TEST_OUT.log
mkdir -p "$HULL_TEST_OUT"
if ! cargo test -q -p hull-qemu-tests --test hardening_score -- --ignored --nocapture >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "hardening-score: failed; full output in $log" >&2
  exit 1
fi
sed -n '/^HARDENING-SCORE-TABLE-BEGIN$/,/^HARDENING-SCORE-TABLE-END$/p' "$log" | sed '1d;$d'
