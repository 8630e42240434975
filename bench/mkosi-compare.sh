#!/usr/bin/env bash
# Cold-build comparison with mkosi (issue 18, goal 2: hull's cold build at most
# 0.8 x mkosi's cold build in the same run). Not a test. Runs back to back, on
# the same machine and mirror:
#   1. mkosi's tools tree, once (only when $out has none yet; timed apart:
#      Debian 12's systemd-repart 252 is too old for mkosi 25.3, which needs
#      254 to make a disk image, so mkosi builds its own trixie tools with
#      ToolsTree=default; a one-time host set-up, like apt-installing hull's);
#   2. mkosi cold: `mkosi -fff build` (output, image cache, default-initrd cache
#      and package cache removed: every .deb downloaded again);
#   3. hull cold: `hull build manifests/minimal.toml` into an empty --out
#      (cargo build --release -p hull first, not timed);
#   4. mkosi cached: `mkosi -f build` (Incremental=yes: the cached trees);
# then prints one JSON object.
#
# The mkosi job is manifests/minimal.toml's: Debian trixie from the same
# sources as hull's (the suite, -updates and -security, main, binary only;
# mkosi's own default would add deb-src and -debug), the same package list
# (minimal.toml's packages.include plus those of the manifests it includes,
# and the kernel),
# bootable with systemd-boot, a GPT disk image (ESP + root). Not the same
# output: mkosi makes no OSTree commit, no users, units or hardening files,
# and it builds its initrd as a second image and a UKI; hull builds an OSTree
# commit, runs dracut once and lays out a BLS entry. packages.exclude becomes
# the same apt pins hull writes; mkosi gets no version pins from hull's lock.
#
# mkosi 25.3 is not on PyPI (https://pypi.org/pypi/mkosi/json is a 404); it is
# Debian trixie's mkosi_25.3-7_all.deb from the Debian mirror, its SHA-256
# checked, unpacked under $out (not installed) and run with the host's
# python3 (>= 3.9). Host packages it needs on Debian 12, all already in
# .ci/install-deps or Debian's base: python3, apt, dpkg, debian-archive-keyring,
# curl, util-linux (unshare); the script stops naming any that is missing.
#
# Usage: bench/mkosi-compare.sh [manifest] ; needs root. Output dir:
# $BENCH_OUT (default out/mkosi-compare); its tools tree is kept between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
manifest=${1:-manifests/minimal.toml}
out=${BENCH_OUT:-$PWD/out/mkosi-compare}
deb_url=http://deb.debian.org/debian/pool/main/m/mkosi/mkosi_25.3-7_all.deb
deb_sha256=ef56c81324fd47d65490e944ec4697bb3f6fb21326d0d071bfc2fb5ba5383252

for tool in python3 apt-get dpkg dpkg-deb curl unshare sha256sum; do
  command -v "$tool" >/dev/null || { echo "mkosi-compare: $tool is missing (apt-get install it)" >&2; exit 1; }
done
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] ||
  { echo "mkosi-compare: /usr/share/keyrings/debian-archive-keyring.gpg is missing (apt-get install debian-archive-keyring)" >&2; exit 1; }

mkdir -p "$out"
load() { cut -d' ' -f1-3 /proc/loadavg; }
load_before=$(load)

# mkosi itself.
pkg=$out/mkosi-pkg
if [ ! -d "$pkg/usr/lib/python3/dist-packages/mkosi" ]; then
  curl -fsS -o "$out/mkosi.deb" "$deb_url"
  echo "$deb_sha256  $out/mkosi.deb" | sha256sum -c --quiet - ||
    { echo "mkosi-compare: $deb_url: SHA-256 differs from $deb_sha256" >&2; exit 1; }
  rm -rf "$pkg.tmp" && dpkg-deb -x "$out/mkosi.deb" "$pkg.tmp" && mv "$pkg.tmp" "$pkg"
fi
mkosi() { PYTHONPATH=$pkg/usr/lib/python3/dist-packages python3 -m mkosi -C "$out/config" "$@"; }

# The mkosi config. The state directories must lie outside the config
# directory (mkosi refuses a workspace inside its build sources).
state=$out/state
mkdir -p "$out/config/mkosi.sandbox/etc/apt/sources.list.d" "$state"/{output,cache,pkgcache,work}
python3 - "$manifest" "$out/config" "$state" <<'PY'
import sys, tomllib
from pathlib import Path

manifest, config, state = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

def load(path, seen):
    """The manifest and its includes, includes first (lists accumulate)."""
    path = path.resolve()
    if path in seen:
        return []
    seen.add(path)
    doc = tomllib.load(open(path, "rb"))
    docs = []
    for inc in doc.get("include", []):
        docs += load(path.parent / inc, seen)
    return docs + [doc]

docs = load(manifest, set())
suite = mirror = kernel = security_mirror = None
updates = security = True
include, exclude = [], []
for d in docs:
    suite = d.get("suite", suite)
    mirror = d.get("mirror", mirror)
    updates = d.get("updates", updates)
    security = d.get("security", security)
    security_mirror = d.get("security-mirror", security_mirror)
    kernel = d.get("per-arch", {}).get("x86_64", {}).get("kernel", {}).get("package", kernel)
    include += [p for p in d.get("packages", {}).get("include", []) if p not in include]
    exclude += d.get("packages", {}).get("exclude", [])
if not (suite and mirror and kernel):
    sys.exit(f"mkosi-compare: {manifest}: suite, mirror or per-arch.x86_64.kernel.package not found")
packages = [kernel] + include
(config / "mkosi.conf").write_text(f"""\
[Distribution]
Distribution=debian
Release={suite}
Mirror={mirror}

[Output]
Format=disk
ImageId=minimal
OutputDirectory={state}/output

[Build]
ToolsTree=default
ToolsTreeDistribution=debian
ToolsTreeRelease={suite}
ToolsTreeMirror={mirror}
ToolsTreeSandboxTrees=mkosi.sandbox
CacheDirectory={state}/cache
PackageCacheDirectory={state}/pkgcache
WorkspaceDirectory={state}/work
Incremental=yes

[Content]
Bootable=yes
Bootloader=systemd-boot
Packages={",".join(packages)}
""")
# hull's sources (Manifest::sources, docs/manifest.md): the suite, -updates
# and -security, binary packages only. mkosi's default list would add deb-src,
# -debug (which this mirror does not serve) and security.debian.org.
if security and not security_mirror:
    if not mirror.rstrip("/").endswith("/debian"):
        sys.exit(f"mkosi-compare: {manifest}: security-mirror is needed (mirror does not end in /debian)")
    security_mirror = mirror.rstrip("/") + "-security"
suites = [suite] + ([f"{suite}-updates"] if updates else [])
stanza = "Types: deb\nURIs: {}\nSuites: {}\nComponents: main\n" \
    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
sources = [stanza.format(mirror, " ".join(suites))]
if security:
    sources.append(stanza.format(security_mirror, f"{suite}-security"))
(config / "mkosi.sandbox/etc/apt/sources.list.d/mkosi.sources").write_text("\n".join(sources))
# packages.exclude as hull applies it (build/rootfs/mmdebstrap.rs): apt pins
# that make each excluded package uninstallable; mkosi's apt reads the
# sandbox tree's /etc/apt.
prefs = config / "mkosi.sandbox/etc/apt/preferences.d"
prefs.mkdir(parents=True, exist_ok=True)
(prefs / "hull-exclude.pref").write_text(
    "\n".join(f"Package: {p}\nPin: release *\nPin-Priority: -1\n" for p in exclude)
)
(config / "packages.json").write_text(
    __import__("json").dumps({"packages": packages, "exclude": exclude})
)
PY
mkosi_version=$(mkosi --version | awk '{print $2}')

# Each log line starts with the seconds since its command started ("[  12.3] "),
# which gives mkosi's steps their times (mkosi prints none).
stamp='import sys, time
t0 = time.monotonic()
for line in sys.stdin.buffer:
    sys.stdout.buffer.write(b"[%7.1f] " % (time.monotonic() - t0) + line)
    sys.stdout.buffer.flush()'
timed() { # log, command...: prints wall seconds; the log keeps the output
  local log=$1 t0 t1; shift
  t0=$(date +%s.%N)
  if ! "$@" 2>&1 | python3 -c "$stamp" >"$log"; then
    echo "mkosi-compare: '$*' failed; the last lines of $log:" >&2
    tail -n 5 "$log" >&2
    exit 1
  fi
  t1=$(date +%s.%N)
  python3 -c 'import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))' "$t0" "$t1"
}

tools_seconds=null
if [ ! -d "$state/output/tools" ]; then
  # `sandbox` builds the tools tree (and only it) before running a command in it.
  tools_seconds=$(timed "$out/mkosi-tools.log" mkosi -f sandbox true)
fi

# Built first, not timed: the cold build is the image's, not the compiler's.
nice -n 10 cargo build --release -q -p hull
hull=$PWD/target/release/hull

mkosi_cold=$(timed "$out/mkosi-cold.log" mkosi -fff build)
mkosi_image=$state/output/minimal.raw
mkosi_image_bytes=$(stat -L -c %s "$mkosi_image")

rm -rf "$out/hull"
hull_cold=$(timed "$out/hull-cold.log" "$hull" -v build "$manifest" --out "$out/hull")

mkosi_cached=$(timed "$out/mkosi-cached.log" mkosi -f build)
load_after=$(load)

python3 - "$out" "$mkosi_version" "$tools_seconds" "$mkosi_cold" "$mkosi_cached" "$mkosi_image_bytes" \
  "$hull_cold" "$load_before" "$load_after" "$manifest" <<'PY'
import datetime, json, re, sys
(out, version, tools, cold, cached, image_bytes, hull_cold, load_before, load_after,
 manifest) = sys.argv[1:]
report = json.load(open(f"{out}/hull/build.json"))
packages = json.load(open(f"{out}/config/packages.json"))
# Packages in the image: its cached tree's dpkg status (Incremental=yes).
status = f"{out}/state/cache/debian~trixie~x86-64.cache/var/lib/dpkg/status"
installed = sum(1 for line in open(status) if line.startswith("Package: "))

def steps(log):
    """mkosi's steps of the image ("‣  X") and the default initrd's build as
    one, as [step, seconds until the next step], from the stamped log."""
    marks = []
    for line in open(log, encoding="utf-8", errors="replace"):
        m = re.match(r"\[ *([0-9.]+)\] ‣( +)(\S.*)", line)
        # Warnings ("aead2 is a dependency of …", "/usr/lib/firmware/…")
        # are not steps; nor are the initrd's own steps (three spaces).
        if not m or not m[3][0].isupper() or "not found" in m[3]:
            continue
        if len(m[2]) <= 2 or not marks or marks[-1][1] != "Building default initrd":
            marks.append((float(m[1]), m[3].split(" for ")[0].split(" /")[0]))
    end = float(re.match(r"\[ *([0-9.]+)\]", line)[1]) if marks else 0.0
    out = []
    for (t, text), nxt in zip(marks, [m[0] for m in marks[1:]] + [end]):
        if nxt - t >= 0.5:
            out.append([text, round(nxt - t, 1)])
    return out
print(json.dumps({
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "manifest": manifest,
    "loadavg_before": load_before,
    "loadavg_after": load_after,
    "mkosi": {
        "version": version,
        "format": "disk",
        "tools_tree_seconds": None if tools == "null" else float(tools),
        "cold_seconds": float(cold),
        "cached_seconds": float(cached),
        "cold_steps": steps(f"{out}/mkosi-cold.log"),
        "image_bytes": int(image_bytes),
        "package_count_requested": len(packages["packages"]),
        "exclude": packages["exclude"],
        "package_count": installed,
    },
    "hull": {
        "cold_seconds": float(hull_cold),
        "stage_seconds": dict(report["stage_seconds"]),
        "package_count": report["package_count"],
        "image_bytes": report["image_size"],
    },
    "ratio": round(float(hull_cold) / float(cold), 3),
}, indent=2))
PY
