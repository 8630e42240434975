#!/usr/bin/env bash
# Build benchmark (not a test): builds a manifest cold, again unchanged (warm),
# and once more with --refresh (every stage re-run, .debs from the cache);
# then a manifest that includes it and adds one overlay, built twice with
# one overlay file changed in between (overlay-added, overlay-changed: the
# incremental build of issue 18, installed tree from the cache, a child
# commit that skips the objects the repository holds); then prints one JSON
# object with wall time, stage times, rootfs and image size of each run.
# Usage: bench/build.sh [manifest] ; needs root and the packages of .ci/install-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
manifest=${1:-manifests/minimal.toml}
out=${BENCH_OUT:-$PWD/out/bench}
cargo build --release -q -p hull
hull=$PWD/target/release/hull

run() { # label, extra args...
  local label=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$hull" -v build "${target:-$manifest}" --out "$out" "$@" >/dev/null 2>"$out.$label.log"
  t1=$(date +%s.%N)
  python3 - "$label" "$t0" "$t1" "$out/build.json" "$out" <<'PY'
import json, os, sys
label, t0, t1, report, out = sys.argv[1:]
r = json.load(open(report))
def du(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                total += os.stat(p).st_blocks * 512
    return total
img = r["image"]
print(json.dumps({
    "run": label,
    "wall_seconds": round(float(t1) - float(t0), 1),
    "stage_seconds": dict(r["stage_seconds"]),
    "up_to_date": r["up_to_date"],
    "rootfs_bytes": r["rootfs_size"],
    "image_bytes_apparent": r["image_size"],
    "image_bytes_allocated": os.stat(img).st_blocks * 512,
    "repo_bytes": du(os.path.join(out, "repo")),
    "package_count": r["package_count"],
}))
PY
}

# The derived manifest: the same packages (and lock), one overlay file of
# 64 KiB whose one line says the version.
derived=$out.manifest
overlay_file=$derived/rootfs-overlays/bench/usr/share/hull-bench/settings.conf
write_derived() { # version
  mkdir -p "$(dirname "$overlay_file")"
  python3 - "$1" "$overlay_file" <<'PY'
import sys
version, path = sys.argv[1:]
lines = [f"key{i} = value {i * 7919 % 10007} of the benchmark's settings" for i in range(1300)]
lines[650] = f"version = {version}"
open(path, "w").write("\n".join(lines) + "\n")
PY
  cat >"$derived/bench.toml" <<EOF
include = ["$(realpath "$manifest")"]
overlays = ["bench"]
EOF
  if [ -f "${manifest%.toml}.lock" ]; then cp "${manifest%.toml}.lock" "$derived/bench.lock"; fi
}

rm -rf "$out" "$derived"
mkdir -p "$out"
{
  echo "["
  run cold; echo ","
  run warm; echo ","
  run refresh --refresh; echo ","
  write_derived 1
  target=$derived/bench.toml run overlay-added; echo ","
  write_derived 2
  target=$derived/bench.toml run overlay-changed
  echo "]"
} > "$out.json.tmp"
python3 -c 'import json,sys; print(json.dumps({"manifest": sys.argv[2], "runs": json.load(open(sys.argv[1]))}, indent=2))' "$out.json.tmp" "$manifest"
rm -f "$out.json.tmp"
