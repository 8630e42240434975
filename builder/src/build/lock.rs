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

use crate::build::archive::{PackageIndex, PackagePlan};
use crate::manifest::{Arch, Manifest};

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

/// The lock of one architecture from a resolved plan, its index and the
/// installed package list (`name\tversion\tarch` lines). A package the
/// index does not list at its installed version is an error naming it.
pub fn arch_lock(plan: &PackagePlan, index: &PackageIndex, installed: &str) -> Result<ArchLock> {
    let mut package = Vec::new();
    let mut unknown = Vec::new();
    for line in installed.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split('\t');
        let (Some(name), Some(version), Some(arch)) = (f.next(), f.next(), f.next()) else {
            bail!("installed package list: bad line `{line}`");
        };
        match index.deb(name, version, arch) {
            Some(d) => package.push(LockedPackage {
                name: name.into(),
                version: version.into(),
                arch: arch.into(),
                sha256: d.sha256.clone(),
                size: d.size,
                path: d.filename.clone(),
            }),
            None => unknown.push(format!("{name} {version} {arch}")),
        }
    }
    if !unknown.is_empty() {
        bail!(
            "installed packages not in the signed indexes of {}: {}",
            plan.sources_text(),
            unknown.join(", ")
        );
    }
    package.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    Ok(ArchLock {
        name: plan.arch.to_string(),
        include: plan.include.clone(),
        exclude: plan.exclude.clone(),
        source: if plan.sources.is_empty() {
            vec![SourceLock {
                url: plan.mirror.clone(),
                suite: plan.suite.clone(),
                inrelease_sha256: plan.release_sha256.clone(),
                date: plan.release_date.clone(),
            }]
        } else {
            plan.sources
                .iter()
                .map(|s| SourceLock {
                    url: s.url.clone(),
                    suite: s.suite.clone(),
                    inrelease_sha256: s.sha256.clone(),
                    date: s.date.clone(),
                })
                .collect()
        },
        package,
    })
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

/// Checks a lock against the manifest's plan and the mirror's index, and
/// pins the plan to it. A locked version the mirror's index no longer lists
/// at the locked sha256 is taken from the `.deb` cache `deb_cache` when a
/// file there has that sha256 ([`cached`]): the plan's `local_debs`, which
/// the install serves from a local repository. Errors (one line each): a
/// package the manifest names that is not locked; locked versions in
/// neither the mirror nor `deb_cache`. The cached ones are then listed in
/// `index` too ([`PackageIndex::insert_cached`], for the SBOM).
pub fn apply(
    lock: &ArchLock,
    plan: &mut PackagePlan,
    index: &mut PackageIndex,
    lock_file: &Path,
    manifest: &Manifest,
    deb_cache: &Path,
) -> Result<()> {
    let locked: BTreeMap<&str, &LockedPackage> =
        lock.package.iter().map(|p| (p.name.as_str(), p)).collect();
    let unlocked: Vec<&str> = plan
        .include
        .iter()
        .filter(|n| !locked.contains_key(n.as_str()))
        // A virtual name (oci-runtime) is locked as what provides it.
        .filter(|n| plan.versions.get(*n).map(String::as_str) != Some("virtual"))
        .map(String::as_str)
        .collect();
    if !unlocked.is_empty() {
        bail!(
            "{}: {} in {} but not locked: run `hull lock --update {}`",
            lock_file.display(),
            unlocked.join(", "),
            manifest.path.display(),
            manifest.path.display()
        );
    }
    let origins = cached::origins(lock, index, deb_cache)?;
    if !origins.gone.is_empty() {
        bail!(
            "{}: locked version{} gone from {} and not in {}: {} (Debian's mirror keeps only \
             current versions): refresh the lock with `hull lock --update {}`",
            lock_file.display(),
            if origins.gone.len() > 1 { "s" } else { "" },
            plan.sources_text(),
            deb_cache.display(),
            origins.gone.join(", "),
            manifest.path.display()
        );
    }
    if !origins.cache.is_empty() {
        log::info!(
            "{}: {} locked package{} no longer on the mirror, taken from {}: {}",
            lock_file.display(),
            origins.cache.len(),
            if origins.cache.len() > 1 { "s" } else { "" },
            deb_cache.display(),
            origins.cache_text()
        );
    }
    for (p, _) in &origins.cache {
        index.insert_cached(&p.name, &p.version, &p.arch, &p.sha256, p.size);
    }
    plan.local_debs = origins.cache.into_iter().map(|(_, p)| p).collect();
    plan.locked = lock
        .package
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    Ok(())
}

/// Checks that the installed packages (`name version arch` strings) are
/// exactly the locked ones.
pub fn verify_installed(lock: &ArchLock, installed: &[String], lock_file: &Path) -> Result<()> {
    let want: BTreeMap<(String, String), String> = lock
        .package
        .iter()
        .map(|p| ((p.name.clone(), p.arch.clone()), p.version.clone()))
        .collect();
    let mut got = BTreeMap::new();
    for line in installed {
        let f: Vec<&str> = line.split(' ').collect();
        if let [name, version, arch] = f[..] {
            got.insert((name.to_string(), arch.to_string()), version.to_string());
        }
    }
    let changes = diff_maps(&want, &got);
    if !changes.is_empty() {
        bail!(
            "{}: apt installed other packages than the lock names ({}): run `hull lock --update`",
            lock_file.display(),
            changes.join(", ")
        );
    }
    Ok(())
}

fn versions(lock: &ArchLock) -> BTreeMap<(String, String), String> {
    lock.package
        .iter()
        .map(|p| ((p.name.clone(), p.arch.clone()), p.version.clone()))
        .collect()
}

fn diff_maps(
    old: &BTreeMap<(String, String), String>,
    new: &BTreeMap<(String, String), String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for ((name, arch), v) in old {
        match new.get(&(name.clone(), arch.clone())) {
            Some(n) if n != v => out.push(format!("{name}: {v} → {n}")),
            Some(_) => {}
            None => out.push(format!("{name}: {v} → removed")),
        }
    }
    for ((name, arch), v) in new {
        if !old.contains_key(&(name.clone(), arch.clone())) {
            out.push(format!("{name}: added {v}"));
        }
    }
    out.sort();
    out
}

/// What moved between two locks of one architecture: `pkg: old → new`,
/// `pkg: added new`, `pkg: old → removed`, sorted by package.
pub fn diff(old: &ArchLock, new: &ArchLock) -> Vec<String> {
    diff_maps(&versions(old), &versions(new))
}

/// What `hull lock` was asked to do.
#[derive(Debug, Clone)]
pub struct LockOptions {
    pub manifest: PathBuf,
    /// The build output directory whose cache (indexes, .debs, installed
    /// trees) the lock shares with `hull build`.
    pub out: PathBuf,
    /// Resolve again even though a lock exists, and say what moved.
    pub update: bool,
}

/// `hull lock`: writes (or, with `update`, renews) the manifest's lock;
/// returns the lines to print.
pub fn run(opts: &LockOptions) -> Result<Vec<String>> {
    let manifest = Manifest::load(&opts.manifest)?;
    let path = lock_path(&manifest.path);
    let old = read(&path)?;
    // Absolute, as the build's: mmdebstrap's hooks get these paths.
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let out = opts
        .out
        .canonicalize()
        .with_context(|| format!("resolving {}", opts.out.display()))?;
    let cache = out.join("cache");
    if let (Some(old), false) = (&old, opts.update) {
        // Kept as it is while it still locks what the manifest names.
        for &arch in &manifest.arches {
            let a = old.arch(arch).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: no lock for {arch}: run `hull lock --update {}`",
                    path.display(),
                    manifest.path.display()
                )
            })?;
            let (mut plan, mut index) =
                crate::build::archive::resolve_locked(&manifest, arch, &cache, &a.versions())?;
            apply(
                a,
                &mut plan,
                &mut index,
                &path,
                &manifest,
                &cache.join("debs"),
            )?;
        }
        return Ok(vec![format!(
            "{} holds every package of {} and every locked version is on the mirror or in its .deb cache: nothing to do (`--update` moves it forward)",
            path.display(),
            manifest.path.display()
        )]);
    }
    if let (Some(old), true) = (&old, opts.update) {
        if let Some(lines) = current::unmoved(old, &manifest, &cache, &path)? {
            return Ok(lines);
        }
    }
    if !rustix::process::geteuid().is_root() {
        bail!("hull lock needs root (it installs the packages with mmdebstrap to know the full set): run it as root or with sudo");
    }
    let mut arches = Vec::new();
    for &arch in &manifest.arches {
        crate::build::binfmt::ensure(arch)?;
        let (plan, index) = crate::build::archive::resolve_with_index(&manifest, arch, &cache)?;
        let work = out.join(".work").join(format!("lock-{arch}"));
        // As a build of the new lock would: its tree is cached for that build.
        crate::build::reproducible::pin_environment(None, &plan)?;
        let list = crate::build::rootfs::install_or_reuse(&plan, &work, &cache, true);
        let locked = list
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .and_then(|l| arch_lock(&plan, &index, l));
        if let Ok(a) = &locked {
            let tree = work.join("rootfs");
            let list = list.as_deref().unwrap_or_default();
            if let Err(e) = seed::cache_pinned(&seed::pinned(&plan, a), &tree, &cache, list) {
                log::warn!("keeping the locked tree for the next build: {e:#}");
            }
        }
        let removed = crate::build::rootfs::remove_tree(&work);
        let locked = locked.with_context(|| format!("installing {arch} to lock it"))?;
        removed?;
        arches.push(locked);
    }
    let new = LockFile {
        format: FORMAT,
        arches,
    };
    let mut lines = Vec::new();
    for a in &new.arches {
        match old
            .as_ref()
            .and_then(|o| o.arches.iter().find(|o| o.name == a.name))
        {
            Some(o) => {
                let d = diff(o, a);
                if d.is_empty() {
                    lines.push(format!("{}: no package moved", a.name));
                }
                lines.extend(d.into_iter().map(|l| format!("{}: {l}", a.name)));
            }
            None => lines.push(format!("{}: {} packages locked", a.name, a.package.len())),
        }
    }
    write(&path, &new)?;
    lines.push(format!("wrote {}", path.display()));
    Ok(lines)
}

pub mod cached;
mod current;
mod seed;

#[cfg(test)]
mod tests;
