//! The mmdebstrap command line: computed as plain data, then run.
//!
//! mmdebstrap drives apt and dpkg (signature and hash checks, maintainer
//! scripts); hull only says what to install and where the caches are.

use std::path::{Path, PathBuf};

use crate::build::archive::{PackagePlan, DEBIAN_KEYRING};
use crate::util::cmd::Cmd;

/// Files dpkg never unpacks into a hull tree: documentation, manuals and
/// translations have no reader on an appliance host (licences stay), and the
/// udev hardware database (22 MB with its compiled form) only names desktop
/// hardware: keyboards, mice, USB vendors. Of AppArmor's policy only the
/// parts a container profile is built from stay (abi, abstractions,
/// tunables: podman writes and loads its own profile at run time): the ~100
/// application profiles Debian ships (browsers, desktop apps) confine nothing
/// a container host runs, and apparmor.service compiled them on every first
/// boot, 30-50 s under TCG. podman's `podman-testing` (35 MB, the helper
/// of podman's own end-to-end test suite) is never run by a host.
pub const DPKG_PATH_EXCLUDES: &[&str] = &[
    "path-exclude=/usr/libexec/podman/podman-testing",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/share/bug/*",
    "path-exclude=/usr/lib/udev/hwdb.d/*",
    "path-exclude=/etc/apparmor.d/*",
    "path-include=/etc/apparmor.d/abi/*",
    "path-include=/etc/apparmor.d/abstractions/*",
    "path-include=/etc/apparmor.d/tunables/*",
];

/// Feeds the path excludes into a cache key: a change to them is a new tree.
pub fn digest_path_excludes(h: &mut sha2::Sha256) {
    use sha2::Digest;
    for e in DPKG_PATH_EXCLUDES {
        h.update(format!("dpkg {e}\n"));
    }
}

/// Everything the mmdebstrap run needs to know.
#[derive(Debug, Clone)]
pub struct MmdebstrapSpec<'a> {
    pub plan: &'a PackagePlan,
    /// Empty directory the tree is built in.
    pub target: PathBuf,
    /// Persistent .deb cache: synced in before and out after the run.
    pub deb_cache: PathBuf,
    /// How the .debs go between the cache and the tree ([`DebSync`]).
    pub deb_sync: DebSync,
    /// hull's dracut settings, copied into /etc/dracut.conf.d before packages install.
    pub dracut_conf: PathBuf,
    /// apt preferences that pin excluded packages to -1.
    pub apt_preferences: PathBuf,
    /// Where the installed package list (name, version, arch; tab-separated) is written.
    pub package_list: PathBuf,
    /// Where the hooks note when each phase of the run began (see
    /// [`phase_times`]): `<mark> <unix seconds>` lines.
    pub timings: PathBuf,
    /// A flat repository of cached `.deb`s the mirror no longer lists (see
    /// [`super::local_repo`]), added as one more source when there is one.
    pub local_repo: Option<PathBuf>,
    /// A directory holding `mmtarfilter`, hull's own
    /// ([`super::tar_filter::shim`]): put first in mmdebstrap's `PATH`.
    /// `None`: mmdebstrap's own.
    pub tar_filter: Option<PathBuf>,
    /// apt's lists, already checked (see [`super::apt_lists`]): moved into
    /// the tree by a setup hook, and mmdebstrap skips its `apt-get update`.
    pub apt_lists: Option<PathBuf>,
}

/// How the `.deb` cache is brought into the tree's `/var/cache/apt/archives`
/// before the install and its new files taken back after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebSync {
    /// Hard links, when the cache and the tree are on one file system: apt
    /// never writes into a `.deb` it has (a new download is renamed into
    /// place, a new inode), so the cache's files cannot change through them.
    /// Only the tree's files the cache does not hold (by inode) go back.
    Link,
    /// mmdebstrap's `sync-in`/`sync-out` hooks, which copy every file both ways.
    Copy,
}

impl DebSync {
    /// [`DebSync::Link`] when `cache` and `tree`'s parent are on one file
    /// system (same device), else [`DebSync::Copy`].
    pub fn for_dirs(cache: &Path, tree_parent: &Path) -> DebSync {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(cache), std::fs::metadata(tree_parent)) {
            (Ok(a), Ok(b)) if a.dev() == b.dev() => DebSync::Link,
            _ => DebSync::Copy,
        }
    }

    /// The setup hook that fills the tree's archive directory, and the
    /// customize hook that takes the new `.deb`s back, for `cache`.
    fn hooks(self, cache: &Path) -> (String, String) {
        let cache = quote(cache);
        match self {
            DebSync::Link => (
                format!(
                    "find {cache} -maxdepth 1 -name '*.deb' -exec cp -l -t \
                     \"$1/var/cache/apt/archives\" {{}} +"
                ),
                format!(
                    "for f in \"$1\"/var/cache/apt/archives/*.deb; do \
                     [ -e \"$f\" ] || continue; t={cache}/\"${{f##*/}}\"; \
                     [ \"$f\" -ef \"$t\" ] || ln -f \"$f\" \"$t\"; done"
                ),
            ),
            DebSync::Copy => (
                format!("sync-in {cache} /var/cache/apt/archives/"),
                format!("sync-out /var/cache/apt/archives {cache}"),
            ),
        }
    }
}

/// The marks the hooks write, in run order, and the phase each one ends:
/// mmdebstrap's setup (apt's indexes), then the download and unpacking of
/// the essential set, its configuration, the install of the manifest's
/// packages (download, unpack, maintainer scripts), and the initramfs.
pub const PHASES: &[(&str, &str)] = &[
    ("setup", "start: directories, apt and dpkg settings"),
    (
        "extracted",
        "apt update; essential packages: download and unpack",
    ),
    ("essential", "essential packages: configure"),
    (
        "installed",
        "the manifest's packages: download, unpack, configure",
    ),
    (
        "initramfs",
        ".deb cache sync-out and the initramfs (dracut)",
    ),
];

/// The time each phase of an mmdebstrap run took, from the marks the hooks
/// wrote (`<mark> <unix seconds>` lines, [`PHASES`] order) and the run's
/// start and end (unix seconds): `(phase, seconds)` in run order, the last
/// one running to `end` ("the rest": package list, cache sync, cleanup).
/// Unknown or missing marks are skipped, so a partial file still reads.
pub fn phase_times(marks: &str, start: f64, end: f64) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut prev = start;
    for line in marks.lines() {
        let mut it = line.split_whitespace();
        let (Some(mark), Some(t)) = (it.next(), it.next().and_then(|t| t.parse::<f64>().ok()))
        else {
            continue;
        };
        if let Some((_, phase)) = PHASES.iter().find(|(m, _)| *m == mark) {
            out.push((phase.to_string(), (t - prev).max(0.0)));
            prev = t;
        }
    }
    out.push((
        "the rest: package list, cache sync, cleanup".to_string(),
        (end - prev).max(0.0),
    ));
    out
}

/// apt preferences that make every excluded package uninstallable, so apt
/// picks another provider or fails naming the package.
pub fn exclude_preferences(exclude: &[String]) -> String {
    exclude
        .iter()
        .map(|p| format!("Package: {p}\nPin: release *\nPin-Priority: -1\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// apt preferences of a plan: the excluded packages made uninstallable,
/// and with a lock, every locked package pinned to its version (priority
/// 1001 installs it even over a newer candidate).
pub fn preferences(plan: &PackagePlan) -> String {
    let mut parts = vec![exclude_preferences(&plan.exclude)];
    parts.extend(plan.locked.iter().map(|(name, version)| {
        format!("Package: {name}\nPin: version {version}\nPin-Priority: 1001\n")
    }));
    parts.retain(|p| !p.is_empty());
    parts.join("\n")
}

/// The shell run inside the tree once packages are in: build the initramfs
/// of every kernel, once, now that every dracut module (ostree's among them)
/// is installed. During the install Debian's kernel hook is told not to
/// (`INITRD=No`, see [`command`]): it and dracut's own trigger would each
/// build one, about 15 s apiece, and the first before ostree-boot is in.
pub(super) const BUILD_INITRAMFS: &str = r#"set -e
for m in /usr/lib/modules/*; do
  k=${m##*/}
  i=/boot/initrd.img-$k
  dracut --force --kver "$k" "$i"
  if ! lsinitrd "$i" | grep -q ostree-prepare-root; then
    echo "the initramfs for $k has no ostree-prepare-root: is ostree-boot installed?" >&2
    exit 1
  fi
done"#;

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// The full mmdebstrap invocation.
pub fn command(spec: &MmdebstrapSpec) -> Cmd {
    let plan = spec.plan;
    let mut args: Vec<String> = vec![
        "--mode=root".into(),
        "--variant=essential".into(),
        "--format=directory".into(),
        format!("--architectures={}", plan.arch.debian()),
        format!("--keyring={DEBIAN_KEYRING}"),
        "--aptopt=APT::Install-Recommends \"false\"".into(),
        "--aptopt=Acquire::Retries \"3\"".into(),
        format!("--include={}", plan.include.join(",")),
    ];
    args.extend(DPKG_PATH_EXCLUDES.iter().map(|e| format!("--dpkgopt={e}")));
    let mark = |m: &str| format!("echo \"{m} $(date +%s.%N)\" >> {}", quote(&spec.timings));
    let (debs_in, debs_out) = spec.deb_sync.hooks(&spec.deb_cache);
    let hooks = [
        ("setup", mark("setup")),
        ("extract", mark("extracted")),
        ("essential", mark("essential")),
        ("customize", mark("installed")),
        ("setup", r#"mkdir -p "$1/var/cache/apt/archives" "$1/etc/apt/preferences.d""#.to_string()),
        ("setup", debs_in),
        (
            "setup",
            format!("copy-in {} /etc/apt/preferences.d/", quote(&spec.apt_preferences)),
        ),
        ("essential", r#"mkdir -p "$1/etc/dracut.conf.d""#.to_string()),
        ("essential", format!("copy-in {} /etc/dracut.conf.d/", quote(&spec.dracut_conf))),
        ("customize", debs_out),
        (
            "customize",
            format!(
                "chroot \"$1\" /bin/sh -c {}",
                // Left uncompressed for super::initramfs::finish.
                quote(Path::new(super::initramfs::BUILD_UNCOMPRESSED))
            ),
        ),
        ("customize", mark("initramfs")),
        (
            "customize",
            format!(
                "chroot \"$1\" dpkg-query -W -f='${{Package}}\\t${{Version}}\\t${{Architecture}}\\n' > {}",
                quote(&spec.package_list)
            ),
        ),
    ];
    for (kind, hook) in hooks {
        args.push(format!("--{kind}-hook={hook}"));
    }
    if let Some(dir) = &spec.apt_lists {
        args.push("--skip=update".into());
        args.push(format!(
            "--setup-hook=mv {}/* \"$1/var/lib/apt/lists/\"",
            quote(dir)
        ));
    }
    args.push(plan.suite.clone());
    args.push(spec.target.display().to_string());
    // Every source: apt installs the highest version any of them has.
    for (mirror, suite) in plan.source_list() {
        args.push(format!(
            "deb [signed-by={DEBIAN_KEYRING}] {mirror} {suite} main"
        ));
    }
    if let Some(dir) = &spec.local_repo {
        args.push(super::local_repo::source_line(dir));
    }
    // Honoured by /etc/kernel/postinst.d/dracut, which both the kernel's
    // postinst and dracut's trigger call: no initramfs until the hook above.
    let mut cmd = Cmd::new("mmdebstrap").env("INITRD", "No");
    // The essential packages' extraction filters each one through
    // `mmtarfilter`: hull's native one instead of the Python script.
    if let Some(dir) = &spec.tar_filter {
        let mut path = std::ffi::OsString::from(dir.as_os_str());
        path.push(":");
        path.push(
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        );
        cmd = cmd.env("PATH", path);
    }
    cmd.args(args)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::manifest::Arch;
    use std::collections::BTreeMap;

    /// A resolved plan, for the tests of the rootfs stage.
    pub(crate) fn plan() -> PackagePlan {
        PackagePlan {
            mirror: "http://deb.debian.org/debian".into(),
            suite: "trixie".into(),
            arch: Arch::X86_64,
            include: vec!["linux-image-cloud-amd64".into(), "podman".into()],
            exclude: vec!["containernetworking-plugins".into()],
            release_date: "d".into(),
            release_sha256: "s".into(),
            versions: BTreeMap::new(),
            sources: vec![],
            locked: BTreeMap::new(),
            local_debs: vec![],
        }
    }

    #[test]
    fn phase_times_table() {
        let marks = "setup 100.5\nextracted 110\nessential 112\ninstalled 140\ninitramfs 155\n";
        let got = phase_times(marks, 100.0, 156.0);
        let secs: Vec<f64> = got.iter().map(|(_, s)| *s).collect();
        assert_eq!(secs, [0.5, 9.5, 2.0, 28.0, 15.0, 1.0]);
        assert_eq!(got[4].0, ".deb cache sync-out and the initramfs (dracut)");
        // A run that stopped early, and lines that are not marks.
        let got = phase_times("setup 101\nnoise\nbogus 105\nextracted x\n", 100.0, 103.0);
        assert_eq!(
            got,
            [
                ("start: directories, apt and dpkg settings".to_string(), 1.0),
                (
                    "the rest: package list, cache sync, cleanup".to_string(),
                    2.0
                )
            ]
        );
        assert_eq!(phase_times("", 5.0, 4.0)[0].1, 0.0);
    }

    /// The hard-link hooks, run as mmdebstrap runs hooks (`sh -c HOOK exec
    /// TREE`): the cache's .debs appear in the tree as the same files, and
    /// afterwards the cache gains the tree's new ones and any the tree
    /// replaced, and nothing else.
    #[test]
    fn linked_debs_go_in_and_new_ones_come_back() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let (cache, tree) = (t.path().join("debs"), t.path().join("tree"));
        let archives = tree.join("var/cache/apt/archives");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::create_dir_all(&archives).unwrap();
        assert_eq!(DebSync::for_dirs(&cache, t.path()), DebSync::Link);
        let (debs_in, debs_out) = DebSync::Link.hooks(&cache);
        let hook = |script: &str| {
            let ok = std::process::Command::new("sh")
                .args(["-c", script, "exec"])
                .arg(&tree)
                .status()
                .unwrap()
                .success();
            assert!(ok, "{script}");
        };
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        // An empty cache: nothing in, nothing out.
        hook(&debs_in);
        hook(&debs_out);
        assert_eq!(std::fs::read_dir(&archives).unwrap().count(), 0);
        std::fs::write(cache.join("a_1_amd64.deb"), "a").unwrap();
        std::fs::write(cache.join("b_1_amd64.deb"), "b").unwrap();
        std::fs::write(cache.join("lock"), "").unwrap();
        hook(&debs_in);
        assert_eq!(
            ino(&archives.join("a_1_amd64.deb")),
            ino(&cache.join("a_1_amd64.deb"))
        );
        assert!(!archives.join("lock").exists());
        // apt downloads c and, its copy of b failing its hash, b again.
        std::fs::write(archives.join("c_1_amd64.deb"), "c").unwrap();
        std::fs::remove_file(archives.join("b_1_amd64.deb")).unwrap();
        std::fs::write(archives.join("b_1_amd64.deb"), "b, whole").unwrap();
        std::fs::create_dir_all(archives.join("partial")).unwrap();
        hook(&debs_out);
        for name in ["a_1_amd64.deb", "b_1_amd64.deb", "c_1_amd64.deb"] {
            assert_eq!(ino(&archives.join(name)), ino(&cache.join(name)), "{name}");
        }
        assert_eq!(
            std::fs::read(cache.join("b_1_amd64.deb")).unwrap(),
            b"b, whole"
        );
        assert!(!cache.join("partial").exists());
    }

    #[test]
    fn command_line() {
        let plan = plan();
        let spec = MmdebstrapSpec {
            plan: &plan,
            target: "/w/rootfs".into(),
            deb_cache: "/c/debs".into(),
            deb_sync: DebSync::Copy,
            dracut_conf: "/w/10-hull.conf".into(),
            apt_preferences: "/w/hull-exclude.pref".into(),
            package_list: "/w/packages.tsv".into(),
            timings: "/w/phases".into(),
            local_repo: None,
            tar_filter: Some("/w/bin".into()),
            apt_lists: None,
        };
        let line = command(&spec).display();
        for want in [
            "mmdebstrap --mode=root --variant=essential",
            "--architectures=amd64",
            "--include=linux-image-cloud-amd64,podman",
            "'--dpkgopt=path-exclude=/usr/share/doc/*'",
            "sync-in '\\''/c/debs'\\'' /var/cache/apt/archives/",
            "copy-in '\\''/w/10-hull.conf'\\'' /etc/dracut.conf.d/",
            "trixie /w/rootfs",
            "--extract-hook=echo \"extracted $(date +%s.%N)\" >> '\\''/w/phases'\\''",
            "'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main'",
        ] {
            assert!(line.contains(want), "missing {want} in {line}");
        }
        let mut plan = plan.clone();
        plan.sources = ["trixie", "trixie-security"]
            .iter()
            .map(|s| crate::build::archive::SignedSource {
                url: if s.ends_with("security") {
                    "http://deb.debian.org/debian-security".into()
                } else {
                    "http://deb.debian.org/debian".into()
                },
                suite: s.to_string(),
                date: "d".into(),
                sha256: "s".into(),
            })
            .collect();
        let spec = MmdebstrapSpec {
            plan: &plan,
            ..spec
        };
        let line = command(&spec).display();
        assert!(
            line.ends_with(
                "'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main' \
                 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security trixie-security main'"
            ),
            "{line}"
        );
        let spec = MmdebstrapSpec {
            local_repo: Some("/w/local-debs".into()),
            ..spec
        };
        let line = command(&spec).display();
        assert!(
            line.ends_with("trixie-security main' 'deb [trusted=yes] copy:///w/local-debs ./'"),
            "{line}"
        );
        // dracut leaves the initramfs uncompressed, for hull to compress.
        assert!(
            line.contains("INITRD_COMPRESS=cat dracut --force --kver"),
            "{line}"
        );
        assert!(!line.contains("lsinitrd"), "{line}");
        assert!(!line.contains("--skip=update"), "{line}");
        let spec = MmdebstrapSpec {
            apt_lists: Some("/w/apt-lists".into()),
            ..spec
        };
        let line = command(&spec).display();
        assert!(
            line.contains(
                "--skip=update '--setup-hook=mv '\\''/w/apt-lists'\\''/* \"$1/var/lib/apt/lists/\"'"
            ),
            "{line}"
        );
    }

    #[test]
    fn preferences_pin_each_excluded_package() {
        let p = exclude_preferences(&["a".into(), "b".into()]);
        assert_eq!(
            p,
            "Package: a\nPin: release *\nPin-Priority: -1\n\nPackage: b\nPin: release *\nPin-Priority: -1\n"
        );
        assert_eq!(exclude_preferences(&[]), "");
        let mut plan = plan();
        assert_eq!(preferences(&plan), exclude_preferences(&plan.exclude));
        plan.locked
            .insert("bsdutils".into(), "1:2.41.5-0+deb13u1".into());
        plan.exclude.clear();
        assert_eq!(
            preferences(&plan),
            "Package: bsdutils\nPin: version 1:2.41.5-0+deb13u1\nPin-Priority: 1001\n"
        );
    }
}
