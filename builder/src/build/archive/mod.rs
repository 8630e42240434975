//! Stage 2: the package set, checked against the signed Debian archive.
//!
//! Before anything is installed, hull fetches the suite's `InRelease`, checks
//! its OpenPGP signature with `gpgv` against debian-archive-keyring, fetches
//! the `Packages` index the signed file names, checks its sha256, and makes
//! sure every package the manifest asks for exists for the target
//! architecture. apt (driven by mmdebstrap in the rootfs stage) then checks
//! each `.deb` against the same signed hashes. Indexes are cached by their
//! sha256, so a warm build re-downloads only the small `InRelease`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::manifest::{Arch, Manifest};

mod download;
mod index;
mod release;
mod unpacked;

pub use download::{download, sha256_file, sha256_hex};
pub use index::{fetch_index, Deb, PackageIndex};
#[cfg(test)]
pub(crate) use release::TestSigner;
pub use release::{fetch_release, parse_release, release_path, verify_signature, Release};
pub use unpacked::unpacked_path;

/// The keyring Debian's archive is signed with (package debian-archive-keyring).
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The components hull installs from.
const COMPONENT: &str = "main";

/// What the rootfs stage installs, resolved against the archive.
#[derive(Debug, Clone, Serialize)]
pub struct PackagePlan {
    pub mirror: String,
    pub suite: String,
    pub arch: Arch,
    /// The kernel package first, then the manifest's packages.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// `Date:` of the signed InRelease the plan was checked against.
    pub release_date: String,
    /// sha256 of that InRelease file.
    pub release_sha256: String,
    /// Candidate version of each requested package (virtual ones map to "virtual").
    pub versions: BTreeMap<String, String>,
    /// Every source the packages come from, the suite first (see
    /// [`Manifest::sources`]), as checked.
    #[serde(default)]
    pub sources: Vec<SignedSource>,
    /// With a lock (see [`crate::build::lock`]): the version apt is pinned to, by
    /// package name. Empty without one (and then not serialized, so the
    /// installed-tree cache keys of unlocked builds stay as they were).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub locked: BTreeMap<String, String>,
    /// With a lock: the `.deb` files, in the build's cache, of the locked
    /// versions the mirror no longer lists (each checked against the lock's
    /// sha256); the install serves them from a local repository. Not
    /// serialized: the installed tree is the same wherever a `.deb` came from.
    #[serde(skip)]
    pub local_debs: Vec<std::path::PathBuf>,
}

/// One source at the time its signed InRelease was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SignedSource {
    /// Mirror root URL.
    pub url: String,
    pub suite: String,
    /// `Date:` of the InRelease file.
    pub date: String,
    /// sha256 of the InRelease file, lowercase hex.
    pub sha256: String,
}

impl SignedSource {
    /// `URL SUITE SHA256 DATE`: how commit metadata stores it (the date,
    /// which holds spaces, last).
    pub fn to_line(&self) -> String {
        format!("{} {} {} {}", self.url, self.suite, self.sha256, self.date)
    }

    /// Parses [`SignedSource::to_line`].
    pub fn from_line(line: &str) -> Option<SignedSource> {
        let mut it = line.splitn(4, ' ');
        Some(SignedSource {
            url: it.next()?.into(),
            suite: it.next()?.into(),
            sha256: it.next()?.into(),
            date: it.next()?.into(),
        })
    }
}

impl PackagePlan {
    /// The sources with their signed InRelease: [`PackagePlan::sources`],
    /// or the plan's own mirror, suite and InRelease when it lists none.
    pub fn signed_sources(&self) -> Vec<SignedSource> {
        if self.sources.is_empty() {
            return vec![SignedSource {
                url: self.mirror.clone(),
                suite: self.suite.clone(),
                date: self.release_date.clone(),
                sha256: self.release_sha256.clone(),
            }];
        }
        self.sources.clone()
    }

    /// The sources as (mirror, suite), from [`PackagePlan::signed_sources`].
    pub fn source_list(&self) -> Vec<(String, String)> {
        self.signed_sources()
            .into_iter()
            .map(|s| (s.url, s.suite))
            .collect()
    }

    /// `MIRROR SUITE, ...`, for messages.
    pub fn sources_text(&self) -> String {
        self.source_list()
            .iter()
            .map(|(m, s)| format!("{m} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where a suite's files live on the mirror.
#[derive(Debug, Clone)]
pub struct Archive {
    pub mirror: String,
    pub suite: String,
    pub arch: Arch,
}

impl Archive {
    /// The URL of `rel` (`InRelease`, `main/binary-amd64/Packages.xz`) in
    /// the suite's directory on the mirror.
    pub fn url(&self, rel: &str) -> String {
        format!(
            "{}/dists/{}/{}",
            self.mirror.trim_end_matches('/'),
            self.suite,
            rel
        )
    }

    /// Path of the Packages index inside the release, as the Release file names it.
    fn packages_path(&self) -> String {
        format!("{}.xz", self.plain_packages_path())
    }

    /// Path of the uncompressed Packages index inside the release
    /// (`main/binary-amd64/Packages`), as the Release file names it.
    pub fn plain_packages_path(&self) -> String {
        format!("{COMPONENT}/binary-{}/Packages", self.arch.debian())
    }
}

/// Checks the manifest's packages against the archive and returns the plan.
pub fn resolve(manifest: &Manifest, arch: Arch, cache: &Path) -> Result<PackagePlan> {
    resolve_with_index(manifest, arch, cache).map(|(plan, _)| plan)
}

/// [`resolve`], also returning the signed index the plan was checked
/// against: it knows each `.deb`'s sha256, size and pool path (the SBOM
/// names them).
pub fn resolve_with_index(
    manifest: &Manifest,
    arch: Arch,
    cache: &Path,
) -> Result<(PackagePlan, PackageIndex)> {
    resolve_locked(manifest, arch, cache, &BTreeMap::new())
}

/// [`resolve_with_index`] for a locked build: `locked` (package name →
/// locked version) are known even when no index lists them, at the locked
/// version: their `.deb` may be in the cache (`crate::build::lock::apply`
/// decides, and names them when it is not).
pub fn resolve_locked(
    manifest: &Manifest,
    arch: Arch,
    cache: &Path,
    locked: &BTreeMap<String, String>,
) -> Result<(PackagePlan, PackageIndex)> {
    // The suite, then -updates and -security: each signed, each index
    // hash-checked; a package's candidate is the highest version of all.
    let mut index = PackageIndex::default();
    let mut sources = Vec::new();
    for (mirror, suite) in manifest.sources() {
        let archive = Archive {
            mirror: mirror.clone(),
            suite: suite.clone(),
            arch,
        };
        let release = fetch_release(&archive, cache, Path::new(DEBIAN_KEYRING))?;
        let mut one = fetch_index(&archive, &release, cache)?;
        one.set_mirror(&mirror);
        index.merge(one);
        sources.push(SignedSource {
            url: mirror,
            suite,
            date: release.date,
            sha256: release.sha256,
        });
    }
    let main = sources[0].clone();
    let archive = Archive {
        mirror: main.url.clone(),
        suite: main.suite.clone(),
        arch,
    };

    let target = manifest.target(arch);
    let mut include = vec![target.kernel.package.clone()];
    include.extend(target.packages.include.iter().cloned());
    let mut seen = HashSet::new();
    include.retain(|p| seen.insert(p.clone()));

    let (indexed, from_lock): (Vec<String>, Vec<String>) = include
        .iter()
        .cloned()
        .partition(|n| index.version(n).is_some() || !locked.contains_key(n));
    let mut versions = index.check(&indexed, &manifest.path, &archive)?;
    versions.extend(
        from_lock
            .into_iter()
            .map(|n| (n.clone(), locked[&n].clone())),
    );
    let plan = PackagePlan {
        mirror: archive.mirror,
        suite: archive.suite,
        arch,
        include,
        exclude: target.packages.exclude.clone(),
        release_date: main.date,
        release_sha256: main.sha256,
        versions,
        sources,
        locked: BTreeMap::new(),
        local_debs: Vec::new(),
    };
    Ok((plan, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_lines_round_trip() {
        let s = SignedSource {
            url: "http://deb.debian.org/debian-security".into(),
            suite: "trixie-security".into(),
            date: "Sun, 29 Nov 2026 18:03:11 UTC".into(),
            sha256: "ab".repeat(32),
        };
        assert_eq!(SignedSource::from_line(&s.to_line()), Some(s));
        assert_eq!(SignedSource::from_line("x y"), None);
    }
}
