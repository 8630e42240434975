#!/usr/bin/env bash
# Power-cut soak: kill QEMU N times during `hull update` (each stage in turn,
# delays spread from 0 to 4.5 s after the stage starts), boot the same disk
# again each time, and count how often the host came up (on A or B) with a
# working `hull update`. Prints "N cuts, M bootable". About 3 minutes per cut
# under TCG. Needs what the QEMU tests need (root, QEMU, nginx, socat).
#   bash bench/power-cut-soak.sh [N]   (default 14: every stage twice)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-14}
export HULL_TEST_OUT=${HULL_TEST_OUT:-$PWD/out/test}
export HULL_TEST_LOGS=${HULL_TEST_LOGS:-$PWD/out/soak-logs}
cargo build --release -p hull
start=$(date +%s)
log=$(mktemp)
HULL_QEMU_TESTS=1 HULL_POWER_CUTS=$n cargo test -p hull-qemu-tests --test power_cut -- --ignored --nocapture 2>&1 | tee "$log" || true
echo "== soak took $(( $(date +%s) - start )) s"
grep -E '^cut [0-9]+ at ' "$log" || true
grep -E '^power cuts: ' "$log" | sed 's/^power cuts: //'
