//! Where each locked `.deb` comes from: the mirror, or the build's `.deb`
//! cache (`out/cache/debs`) once the mirror has dropped that version.
//!
//! Debian's mirror keeps only current versions, so a lock goes stale within
//! weeks; the `.deb`s a previous build downloaded stay in the cache (apt's
//! `/var/cache/apt/archives`, synced out after every install). A locked
//! version the mirror's signed index no longer lists at the locked sha256 is
//! taken from there when a file of the cache has exactly that sha256, and
//! is installed from a local repository made of those files for that build
//! ([`crate::build::rootfs::local_repo`]). One that is in neither is gone.
//!
//! Plan (plain data, [`plan`]) then look (the only I/O: [`cache_hashes`]
//! hashes the few candidate files of the packages the mirror lacks).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{ArchLock, LockedPackage};
use crate::build::archive::PackageIndex;

/// Where the locked packages of one architecture come from.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Origins {
    /// How many the mirror's signed index lists at the locked sha256.
    pub mirror: usize,
    /// Gone from the mirror, in the cache at the locked sha256: the file's
    /// path, with the package, in the lock's order.
    pub cache: Vec<(LockedPackage, PathBuf)>,
    /// In neither: `name version` of each, in the lock's order.
    pub gone: Vec<String>,
}

impl Origins {
    /// `name version` of the packages taken from the cache, comma-joined.
    pub fn cache_text(&self) -> String {
        self.cache
            .iter()
            .map(|(p, _)| format!("{} {}", p.name, p.version))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether the mirror's signed index lists `p` at the locked sha256.
fn on_mirror(index: &PackageIndex, p: &LockedPackage) -> bool {
    index
        .deb(&p.name, &p.version, &p.arch)
        .is_some_and(|d| d.sha256 == p.sha256)
}

/// The names a locked `.deb` may have in the cache: apt's
/// (`name_version_arch.deb`, the epoch's `:` written `%3a`), then the
/// pool's (the lock's `path`, whose file name has no epoch).
pub fn cache_names(p: &LockedPackage) -> Vec<String> {
    let apt = format!(
        "{}_{}_{}.deb",
        p.name,
        p.version.replace(':', "%3a"),
        p.arch
    );
    let mut names = vec![apt];
    if let Some(pool) = p.path.rsplit('/').next().filter(|n| n.ends_with(".deb")) {
        if !names.iter().any(|n| n == pool) {
            names.push(pool.to_string());
        }
    }
    names
}

/// Decides where each locked package comes from. `hashes`: file name in
/// `deb_cache` → sha256 (lowercase hex) of the cache files looked at
/// ([`cache_hashes`]); a package the mirror lacks is taken from the first
/// of its [`cache_names`] whose hash is the locked one.
pub fn plan(
    lock: &ArchLock,
    index: &PackageIndex,
    deb_cache: &Path,
    hashes: &BTreeMap<String, String>,
) -> Origins {
    let mut out = Origins::default();
    for p in &lock.package {
        if on_mirror(index, p) {
            out.mirror += 1;
            continue;
        }
        let hit = cache_names(p)
            .into_iter()
            .find(|n| hashes.get(n) == Some(&p.sha256));
        match hit {
            Some(n) => out.cache.push((p.clone(), deb_cache.join(n))),
            None => out.gone.push(format!("{} {}", p.name, p.version)),
        }
    }
    out
}

/// Hashes the cache files that may hold the locked packages the mirror
/// lacks (each of their [`cache_names`] that is a file in `deb_cache`):
/// file name → sha256. Nothing is read for a lock the mirror fully serves.
/// Errors: a candidate file that exists but cannot be read.
pub fn cache_hashes(
    lock: &ArchLock,
    index: &PackageIndex,
    deb_cache: &Path,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for p in lock.package.iter().filter(|p| !on_mirror(index, p)) {
        for name in cache_names(p) {
            let path = deb_cache.join(&name);
            if path.is_file() && !out.contains_key(&name) {
                out.insert(name, crate::build::archive::sha256_file(&path)?);
            }
        }
    }
    Ok(out)
}

/// [`cache_hashes`] then [`plan`].
pub fn origins(lock: &ArchLock, index: &PackageIndex, deb_cache: &Path) -> Result<Origins> {
    let hashes = cache_hashes(lock, index, deb_cache)?;
    Ok(plan(lock, index, deb_cache, &hashes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str, sha: &str, path: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            sha256: sha.into(),
            size: 1,
            path: path.into(),
        }
    }

    const INDEX: &str = "Package: zstd
Version: 1.5.7-1+deb13u1
Architecture: amd64
Filename: pool/main/z/zstd/zstd_1.5.7-1+deb13u1_amd64.deb
Size: 10
SHA256: 22

Package: bsdutils
Version: 1:2.41.5-0+deb13u1
Architecture: amd64
Filename: pool/main/u/util-linux/bsdutils_2.41.5-0+deb13u1_amd64.deb
Size: 10
SHA256: bb
";

    #[test]
    fn names_in_the_cache() {
        let p = pkg(
            "bsdutils",
            "1:2.41.5-0+deb13u1",
            "bb",
            "pool/main/u/util-linux/bsdutils_2.41.5-0+deb13u1_amd64.deb",
        );
        assert_eq!(
            cache_names(&p),
            [
                "bsdutils_1%3a2.41.5-0+deb13u1_amd64.deb",
                "bsdutils_2.41.5-0+deb13u1_amd64.deb"
            ]
        );
        let p = pkg(
            "zstd",
            "1.5.7-1",
            "11",
            "pool/main/z/zstd/zstd_1.5.7-1_amd64.deb",
        );
        assert_eq!(cache_names(&p), ["zstd_1.5.7-1_amd64.deb"]);
        // A lock made by hand without a pool path.
        assert_eq!(cache_names(&pkg("a", "1", "1", "")), ["a_1_amd64.deb"]);
    }

    #[test]
    fn plan_table() {
        let index = PackageIndex::parse(INDEX.as_bytes()).unwrap();
        let cache = Path::new("/o/cache/debs");
        let zstd_old = pkg(
            "zstd",
            "1.5.7-1",
            "11",
            "pool/main/z/zstd/zstd_1.5.7-1_amd64.deb",
        );
        let zstd_new = pkg("zstd", "1.5.7-1+deb13u1", "22", "p");
        let bsd = pkg("bsdutils", "1:2.41.5-0+deb13u1", "bb", "p");
        let bsd_rebuilt = pkg("bsdutils", "1:2.41.5-0+deb13u1", "b2", "p");
        let own = pkg("hull-test-cached", "1.0", "cc", "");
        let h = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(n, s)| (n.to_string(), s.to_string()))
                .collect()
        };
        let locked = |ps: &[&LockedPackage]| ArchLock {
            name: "x86_64".into(),
            include: vec![],
            exclude: vec![],
            source: vec![],
            package: ps.iter().map(|p| (*p).clone()).collect(),
        };
        let at = |n: &str| cache.join(n);
        // (lock, cache hashes, mirror count, from the cache, gone)
        #[allow(clippy::type_complexity)]
        let table: Vec<(
            ArchLock,
            BTreeMap<String, String>,
            usize,
            Vec<PathBuf>,
            Vec<&str>,
        )> = vec![
            // All current: the cache is not consulted.
            (locked(&[&zstd_new, &bsd]), h(&[]), 2, vec![], vec![]),
            // An old version gone from the mirror, in the cache at its hash.
            (
                locked(&[&zstd_old, &bsd]),
                h(&[("zstd_1.5.7-1_amd64.deb", "11")]),
                1,
                vec![at("zstd_1.5.7-1_amd64.deb")],
                vec![],
            ),
            // In the cache with another hash: gone.
            (
                locked(&[&zstd_old]),
                h(&[("zstd_1.5.7-1_amd64.deb", "12")]),
                0,
                vec![],
                vec!["zstd 1.5.7-1"],
            ),
            // Same version on the mirror with another hash (rebuilt): the
            // cache's file at the locked hash, found under apt's name.
            (
                locked(&[&bsd_rebuilt]),
                h(&[("bsdutils_1%3a2.41.5-0+deb13u1_amd64.deb", "b2")]),
                0,
                vec![at("bsdutils_1%3a2.41.5-0+deb13u1_amd64.deb")],
                vec![],
            ),
            // A package the mirror never had, and one in neither place.
            (
                locked(&[&own, &zstd_old, &bsd]),
                h(&[("hull-test-cached_1.0_amd64.deb", "cc")]),
                1,
                vec![at("hull-test-cached_1.0_amd64.deb")],
                vec!["zstd 1.5.7-1"],
            ),
        ];
        for (i, (lock, hashes, mirror, cached, gone)) in table.into_iter().enumerate() {
            let o = plan(&lock, &index, cache, &hashes);
            assert_eq!(o.mirror, mirror, "row {i}");
            let paths: Vec<PathBuf> = o.cache.iter().map(|(_, p)| p.clone()).collect();
            assert_eq!(paths, cached, "row {i}");
            assert_eq!(o.gone, gone, "row {i}");
        }
    }

    #[test]
    fn only_the_files_of_packages_the_mirror_lacks_are_hashed() {
        let index = PackageIndex::parse(INDEX.as_bytes()).unwrap();
        let t = tempfile::tempdir().unwrap();
        let old = pkg(
            "zstd",
            "1.5.7-1",
            "",
            "pool/main/z/zstd/zstd_1.5.7-1_amd64.deb",
        );
        let cur = pkg("zstd", "1.5.7-1+deb13u1", "22", "p");
        std::fs::write(t.path().join("zstd_1.5.7-1_amd64.deb"), b"old").unwrap();
        std::fs::write(t.path().join("zstd_1.5.7-1+deb13u1_amd64.deb"), b"new").unwrap();
        let sha = crate::build::archive::sha256_hex(b"old");
        let lock = ArchLock {
            name: "x86_64".into(),
            include: vec![],
            exclude: vec![],
            source: vec![],
            package: vec![
                LockedPackage {
                    sha256: sha.clone(),
                    ..old
                },
                cur,
            ],
        };
        let hashes = cache_hashes(&lock, &index, t.path()).unwrap();
        assert_eq!(
            hashes.into_iter().collect::<Vec<_>>(),
            [("zstd_1.5.7-1_amd64.deb".to_string(), sha)]
        );
        let o = origins(&lock, &index, t.path()).unwrap();
        assert_eq!((o.mirror, o.cache.len(), o.gone.len()), (1, 1, 0));
        assert_eq!(o.cache_text(), "zstd 1.5.7-1");
    }
}
