#!/usr/bin/env bash
# Update download benchmark (not a test; qemu-tests/tests/delta_pull.rs is the
# CI one): builds a manifest derived from manifests/minimal.toml (A), changes
# one thing and builds again into the same out directory (B, a child commit,
# with its static delta), serves the repository with Debian's nginx on
# 127.0.0.1 and pulls B into a fresh bare repository holding A with the real
# agent code (`hull pull-commit`), once through the delta and once from a copy
# of the repository without deltas. Prints bytes and requests (nginx's access
# log) next to the compressed size of the files that changed, and appends the
# figures with the date to docs/benchmarks.md.
#
# Cases: (a) one overlay file changed (A → B, both built without the
# security archive); (c) a security update (B → C: C is B with
# `<suite>-security` on, which today moves the kernel, 6.12.117 →
# 6.12.118, and the libraries with a published fix). The packages C
# upgrades are printed. A lone library upgrade needs a package whose only
# newer version is a library: see docs/benchmarks.md.
# Usage: bench/update-bytes.sh ; needs root, nginx, ostree and the packages of
# .ci/install-deps. BENCH_OUT (default out/bench-updates) keeps the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${BENCH_OUT:-$PWD/out/bench-updates}
cargo build --release -q -p hull
hull=$PWD/target/release/hull
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$out/manifest
overlay=$work/rootfs-overlays/bench/usr/share/hull-bench
mkdir -p "$overlay"

# A 64 KiB text file (a configuration or data file), one line of which says VERSION.
write_overlay() {
  python3 - "$1" "$overlay/settings.conf" <<'PY'
import sys
version, path = sys.argv[1:]
lines = [f"key{i} = value {i * 7919 % 10007} of the benchmark's settings" for i in range(1300)]
lines[650] = f"version = {version}"
open(path, "w").write("\n".join(lines) + "\n")
PY
}

write_manifest() { # version security(true|false)
  cat >"$work/bench.toml" <<EOF
include = ["$root/manifests/minimal.toml"]
name = "bench-updates"
version = "$1"
security = $2
overlays = ["bench"]
EOF
}

build() { # label → prints the commit
  local t0 t1
  t0=$(date +%s.%N)
  "$hull" build "$work/bench.toml" --out "$out" >/dev/null 2>"$out/build-$1.log"
  t1=$(date +%s.%N)
  echo "built $1 in $(python3 -c "print(round($t1 - $t0, 1))") s; $(grep -o 'static delta.*' "$out/build-$1.log" | tail -n 1)" >&2
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["commit"])' "$out/build.json"
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ngx=$out/nginx
start_nginx() {
  rm -rf "$ngx"
  mkdir -p "$ngx"/{body,proxy,fastcgi,uwsgi,scgi}
  cat >"$ngx/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; user root;
pid $ngx/nginx.pid; error_log $ngx/error.log;
events { worker_connections 64; }
http {
  access_log $ngx/access.log; default_type application/octet-stream;
  client_body_temp_path $ngx/body; proxy_temp_path $ngx/proxy; fastcgi_temp_path $ngx/fastcgi;
  uwsgi_temp_path $ngx/uwsgi; scgi_temp_path $ngx/scgi;
  server {
    listen 127.0.0.1:$port;
    location /repo/ { alias $out/repo/; }
    location /nodelta/ { alias $out/nodelta/; }
  }
}
EOF
  nginx -c "$ngx/nginx.conf" -p "$ngx" &
  nginx_pid=$!
  for _ in $(seq 50); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nginx did not start: $(cat "$ngx/error.log")" >&2
  return 1
}
nginx_pid=
trap '[ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true' EXIT

# Compressed size (the archive repository's .filez objects) of the regular
# files B adds or changes against A.
changed_bytes() { # A B
  local total=0 n=0 path cs
  while read -r kind path; do
    [ "$kind" = M ] || [ "$kind" = A ] || continue
    # -d: the path itself, not a directory's contents.
    cs=$(ostree ls --repo="$out/repo" -d -C "$2" "$path" 2>/dev/null | awk '$1 ~ /^-/ {print $5}' | head -n 1)
    [ -n "$cs" ] || continue
    total=$((total + $(stat -c %s "$out/repo/objects/${cs:0:2}/${cs:2}.filez")))
    n=$((n + 1))
  done < <(ostree diff --repo="$out/repo" "$1" "$2")
  echo "$n $total"
}

pull() { # prefix A B → "requests bytes parts"
  local client=$out/client
  rm -rf "$client"
  ostree init --repo="$client" --mode=bare
  ostree pull-local --repo="$client" "$out/repo" "$2" >/dev/null
  ostree remote add --repo="$client" --no-gpg-verify hull "http://127.0.0.1:$port/$1"
  : >"$ngx/access.log"
  local stats
  stats=$("$hull" pull-commit --repo "$client" hull "$ref" "$3" | tail -n 1)
  ostree fsck --repo="$client" >/dev/null
  awk -v stats="$stats" '{ n++; b += $10 } END { printf "%d %d %s\n", n, b, stats }' "$ngx/access.log"
}

measure() { # case A B
  rm -rf "$out/nodelta"
  cp -al "$out/repo" "$out/nodelta"
  rm -rf "$out/nodelta/deltas" "$out/nodelta/delta-indexes" "$out/nodelta/summary"
  ostree summary -u --repo="$out/nodelta"
  read -r files compressed < <(changed_bytes "$2" "$3")
  read -r d_req d_bytes d_stats < <(pull repo "$2" "$3")
  read -r o_req o_bytes _ < <(pull nodelta "$2" "$3")
  local parts
  parts=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["delta-parts"])' "$d_stats")
  echo "$1: $files changed file(s), $compressed bytes compressed; through the delta: $d_bytes bytes in $d_req requests ($parts part(s)); objects only: $o_bytes bytes in $o_req requests"
  rows+="| $1 | $files | $compressed | **$d_bytes** in $d_req requests ($parts part) | $o_bytes in $o_req requests |"$'\n'
}

# The packages C upgrades against B (name: old → new), from the commits'
# hull.packages metadata.
upgraded() { # B C
  python3 - "$out/repo" "$1" "$2" <<'PY'
import subprocess, sys
repo, b, c = sys.argv[1:]
def pkgs(commit):
    out = subprocess.run(["ostree", "show", f"--repo={repo}", "--print-metadata-key=hull.packages", commit],
                         check=True, capture_output=True, text=True).stdout
    # a GVariant string array: ['name version arch', ...]
    items = [x.strip(" '\n") for x in out.strip().strip("[]").split("',")]
    return {i.split()[0]: i.split()[1] for i in items if i}
old, new = pkgs(b), pkgs(c)
moved = [f"{n}: {old[n]} → {v}" for n, v in sorted(new.items()) if n in old and old[n] != v]
print(f"{len(moved)} package(s) upgraded: " + "; ".join(moved))
PY
}

rows=
write_overlay 1
write_manifest 1.0.0 false
A=$(build a)
ref=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ref"])' "$out/build.json")
write_overlay 2
write_manifest 1.0.1 false
B=$(build b)
write_manifest 1.0.2 true
C=$(build c)
start_nginx
measure "one overlay file changed" "$A" "$B"
moved=$(upgraded "$B" "$C")
echo "security update: $moved"
measure "a security update (the kernel and every library with a fix)" "$B" "$C"

{
  echo
  echo "Measured $(date -u +%Y-%m-%d) with bench/update-bytes.sh (A $A, B $B, C $C; B → C: $moved):"
  echo
  echo "| change | files | compressed size of the changed files | pulled through the delta | objects only |"
  echo "|---|---|---|---|---|"
  printf '%s' "$rows"
} | tee -a docs/benchmarks.md
