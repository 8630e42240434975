//! Whether a lock still is what `hull lock --update` would write, without
//! installing anything: so CI can refresh the shipped locks before every
//! run in a second or two, and a lock (and so the image built from it) is
//! left byte for byte as it is while Debian has not moved.
//!
//! A lock is current when it was made for the same request (the manifest's
//! packages, the kernel first, and its exclusions, recorded in the lock)
//! and every locked package is still the archive's candidate at the locked
//! sha256: apt, given the same request and the same candidates, installs
//! the same set. Otherwise `hull lock --update` installs to find the new set.

use super::ArchLock;
use crate::build::archive::{PackageIndex, PackagePlan};

/// Why a lock is not current: empty when it is. One short reason per item
/// (`packages.include changed`, `zstd: 1.5.7-1 → 1.5.7-1+deb13u1`), sorted
/// after the request's.
pub fn stale_reasons(lock: &ArchLock, plan: &PackagePlan, index: &PackageIndex) -> Vec<String> {
    let mut out = Vec::new();
    if lock.include != plan.include {
        out.push("packages.include changed".to_string());
    }
    if lock.exclude != plan.exclude {
        out.push("packages.exclude changed".to_string());
    }
    let mut moved: Vec<String> = lock
        .package
        .iter()
        .filter_map(|p| match index.version(&p.name) {
            Some(v) if v != p.version => Some(format!("{}: {} → {v}", p.name, p.version)),
            Some(_) => match index.deb(&p.name, &p.version, &p.arch) {
                Some(d) if d.sha256 == p.sha256 => None,
                _ => Some(format!("{}: {} rebuilt or gone", p.name, p.version)),
            },
            None => Some(format!("{}: {} → gone", p.name, p.version)),
        })
        .collect();
    moved.sort();
    out.extend(moved);
    out
}

/// `hull lock --update`'s first look: when every architecture's lock is
/// current ([`stale_reasons`]), the lines to print (the lock is left as it
/// is); `None` when one is not (the reasons are logged), and then the
/// caller installs to lock again.
pub fn unmoved(
    old: &super::LockFile,
    manifest: &crate::manifest::Manifest,
    cache: &std::path::Path,
    lock_file: &std::path::Path,
) -> anyhow::Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    for &arch in &manifest.arches {
        let Some(a) = old.arch(arch) else {
            log::info!("{}: no lock for {arch} yet", lock_file.display());
            return Ok(None);
        };
        let (plan, index) = crate::build::archive::resolve_with_index(manifest, arch, cache)?;
        let stale = stale_reasons(a, &plan, &index);
        if !stale.is_empty() {
            log::info!("{arch}: locking again: {}", stale.join(", "));
            return Ok(None);
        }
        lines.push(format!(
            "{arch}: no package moved (every locked version is still the archive's candidate)"
        ));
    }
    lines.push(format!("{} left as it is", lock_file.display()));
    Ok(Some(lines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::lock::LockedPackage;

    const INDEX: &str = "Package: zstd\nVersion: 1.5.7-1\nArchitecture: amd64\n\
Filename: pool/main/z/zstd.deb\nSize: 2\nSHA256: bb\n\n\
Package: adduser\nVersion: 3.152\nArchitecture: all\nFilename: pool/main/a/a.deb\nSize: 1\nSHA256: aa\n";

    fn pkg(name: &str, version: &str, arch: &str, sha: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            sha256: sha.into(),
            size: 1,
            path: "pool/x".into(),
        }
    }

    fn lock(package: Vec<LockedPackage>) -> ArchLock {
        ArchLock {
            name: "x86_64".into(),
            include: vec!["linux-image-cloud-amd64".into(), "zstd".into()],
            exclude: vec![],
            source: vec![],
            package,
        }
    }

    #[test]
    fn current_or_why_not() {
        let index = PackageIndex::parse(INDEX.as_bytes()).unwrap();
        let mut plan = crate::build::rootfs::mmdebstrap::tests::plan();
        plan.include = vec!["linux-image-cloud-amd64".into(), "zstd".into()];
        plan.exclude = vec![];
        let good = || {
            vec![
                pkg("adduser", "3.152", "all", "aa"),
                pkg("zstd", "1.5.7-1", "amd64", "bb"),
            ]
        };
        // (lock's packages, plan's include, reasons)
        let cases: [(Vec<LockedPackage>, &[&str], Vec<&str>); 5] = [
            (good(), &["linux-image-cloud-amd64", "zstd"], vec![]),
            (
                vec![
                    pkg("adduser", "3.152", "all", "aa"),
                    pkg("zstd", "1.5.6-1", "amd64", "bb"),
                ],
                &["linux-image-cloud-amd64", "zstd"],
                vec!["zstd: 1.5.6-1 → 1.5.7-1"],
            ),
            (
                vec![
                    pkg("adduser", "3.152", "all", "a0"),
                    pkg("zstd", "1.5.7-1", "amd64", "bb"),
                ],
                &["linux-image-cloud-amd64", "zstd"],
                vec!["adduser: 3.152 rebuilt or gone"],
            ),
            (
                vec![
                    pkg("nano", "8.4-1", "amd64", "cc"),
                    pkg("zstd", "1.5.7-1", "amd64", "bb"),
                ],
                &["linux-image-cloud-amd64", "zstd"],
                vec!["nano: 8.4-1 → gone"],
            ),
            (
                good(),
                &["linux-image-cloud-amd64", "zstd", "podman"],
                vec!["packages.include changed"],
            ),
        ];
        for (package, include, want) in cases {
            let mut p = plan.clone();
            p.include = include.iter().map(|s| s.to_string()).collect();
            assert_eq!(
                stale_reasons(&lock(package.clone()), &p, &index),
                want,
                "{package:?}"
            );
        }
        let mut p = plan.clone();
        p.exclude = vec!["nano".into()];
        assert_eq!(
            stale_reasons(&lock(good()), &p, &index),
            vec!["packages.exclude changed"]
        );
    }
}
