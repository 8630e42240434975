#!/usr/bin/env bash
# Reproducibility check (not a test; qemu-tests/tests/reproducible.rs is the
# CI one): builds a manifest twice from its lock, into two out directories,
# the second two days later (faketime), with umask 077 and another time zone,
# and compares the two OSTree commit checksums. When they differ, checks
# both commits out and runs diffoscope on the two trees, printing where.
# Usage: bench/reproducible.sh [manifest]   (needs root, the packages of
# .ci/install-deps, and diffoscope or diffoscope-minimal to explain a difference)
set -euo pipefail
cd "$(dirname "$0")/.."
manifest=${1:-manifests/minimal.toml}
out=${REPRO_OUT:-$PWD/out/repro}
cargo build --release -q -p hull
hull=$PWD/target/release/hull
lock=${manifest%.toml}.lock
[ -f "$lock" ] || "$hull" lock "$manifest" --out "$out/a"

mkdir -p "$out/a" "$out/b"
rm -rf "$out/a/repo" "$out/b/repo" "$out/a/cache/installed" "$out/b/cache/installed"
# The .debs only (apt checks each against the lock's index): nothing installed is shared.
mkdir -p "$out/a/cache/debs" "$out/b/cache/debs"
t0=$(date +%s)
"$hull" build "$manifest" --out "$out/a" 2>"$out/a.log"
t1=$(date +%s)
cp -a "$out/a/cache/debs/." "$out/b/cache/debs/"
faketime -f '+2d' env TZ=Pacific/Kiritimati LANG=de_DE.UTF-8 \
  sh -c 'umask 077 && exec "$0" build "$1" --out "$2"' "$hull" "$manifest" "$out/b" 2>"$out/b.log"
t2=$(date +%s)
a=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["commit"])' "$out/a/build.json")
b=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["commit"])' "$out/b/build.json")
echo "first build:  $a ($((t1 - t0)) s)"
echo "second build: $b ($((t2 - t1)) s, two days later, umask 077, TZ=Pacific/Kiritimati)"
if [ "$a" = "$b" ]; then
  echo "reproducible: the same commit"
  exit 0
fi
echo "NOT reproducible: the commits differ; checking both out"
for x in a b; do
  rm -rf "$out/$x/checkout"
  c=$([ $x = a ] && echo "$a" || echo "$b")
  ostree --repo="$out/$x/repo" checkout "$c" "$out/$x/checkout"
done
if command -v diffoscope >/dev/null; then
  diffoscope --exclude-directory-metadata=recursive --text "$out/diff.txt" \
    "$out/a/checkout" "$out/b/checkout" || true
  grep -E '^(│ )*(├──|--- |\+\+\+ )' "$out/diff.txt" | head -100
  echo "the whole report: $out/diff.txt"
else
  echo "diffoscope not installed (apt-get install diffoscope-minimal): files that differ:"
  diff -rq --no-dereference "$out/a/checkout" "$out/b/checkout" | head -100 || true
fi
exit 1
