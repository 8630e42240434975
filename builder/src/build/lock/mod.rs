//! The lockfile: exactly which `.deb`s an image is built from.
//!
//! `hull lock MANIFEST` resolves the manifest against the signed archive,
//! installs it (or takes the installed tree a build left in out/cache) and
//! writes `MANIFEST` with the extension `.lock` (manifests/minimal.toml →
//! manifests/minimal.lock): per architecture, each source's URL, suite,
//! InRelease sha256 and `Date:`, and every installed package's name,
//! version, architecture, sha256, size and pool path, from the signed
//! `Packages` index. `hull lock --update` resolves again and prints what
//! moved.
//!
//! With a lock beside the manifest, `hull build` checks it first (nothing
//! is downloaded or written when it does not hold): every package the
//! manifest names must be locked, and every locked version must still be in
//! the mirror's signed index (Debian's mirror keeps only current versions)
//! or in the build's `.deb` cache, `out/cache/debs`, at the locked sha256
//! ([`cached`]: those are installed from a local repository). apt is then pinned to the locked versions (priority 1001), and the
//! installed set is compared with the lock: a package apt added or moved is
//! an error, so what is installed is exactly what is locked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::manifest::Arch;

/// The lockfile format this hull writes and reads.
pub const FORMAT: u32 = 1;

/// A lockfile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockFile {
    /// [`FORMAT`].
    pub format: u32,
    /// One entry per architecture locked, in the manifest's order.
    #[serde(default, rename = "arch")]
    pub arches: Vec<ArchLock>,
}

/// What one architecture's image is built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ArchLock {
    /// hull's name of the architecture: `x86_64`, `aarch64`.
    pub name: String,
    /// What the lock was made for: the manifest's packages (the kernel
    /// first) and exclusions; `hull lock --update` keeps a lock made for
    /// the same request while no locked package moved (`current`).
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub source: Vec<SourceLock>,
    #[serde(default)]
    pub package: Vec<LockedPackage>,
}

/// One signed source (an InRelease file) at the time of locking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceLock {
    /// Mirror root URL.
    pub url: String,
    pub suite: String,
    /// sha256 of the InRelease file, lowercase hex.
    pub inrelease_sha256: String,
    /// Its `Date:` field, as written.
    pub date: String,
}

/// One installed `.deb`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    /// Debian architecture: `amd64`, `arm64`, `all`.
    pub arch: String,
    /// sha256 of the `.deb`, lowercase hex.
    pub sha256: String,
    /// Size of the `.deb`, bytes.
    pub size: u64,
    /// Path on the mirror (`pool/main/...`).
    pub path: String,
}

/// The lockfile of a manifest: the same path with the extension `.lock`.
pub fn lock_path(manifest: &Path) -> PathBuf {
    manifest.with_extension("lock")
}

/// Reads a lockfile; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<LockFile>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let de = toml::Deserializer::new(&text);
    let lock: LockFile = serde_path_to_error::deserialize(de).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}: {}",
            path.display(),
            e.path(),
            e.inner().message().trim()
        )
    })?;
    if lock.format != FORMAT {
        bail!(
            "{}: format {} is not the one this hull reads ({FORMAT}): make it again with `hull lock --update`",
            path.display(),
            lock.format
        );
    }
    Ok(Some(lock))
}

/// Writes a lockfile (temp file, then rename).
pub fn write(path: &Path, lock: &LockFile) -> Result<()> {
    let body = toml::to_string(lock).context("serializing the lock")?;
    let text = format!(
        "# Written by `hull lock`: the exact packages `hull build` installs.\n\
         # `hull lock --update MANIFEST` moves it forward. Do not edit.\n\n{body}"
    );
    crate::util::write_atomic(path, text.as_bytes())
}

impl ArchLock {
    /// Package name → locked version.
    pub fn versions(&self) -> BTreeMap<String, String> {
        self.package
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect()
    }
}

impl LockFile {
    /// The entry of `arch`.
    pub fn arch(&self, arch: Arch) -> Option<&ArchLock> {
        self.arches.iter().find(|a| a.name == arch.as_str())
    }
}

pub mod cached;
mod check;
mod command;
mod current;
mod seed;

pub use check::{apply, diff, verify_installed};
pub use command::{arch_lock, run, LockOptions};

#[cfg(test)]
mod tests;
