//! Checking a lock against what a build is about to do: against the
//! manifest's package plan before the install ([`apply`], which pins the
//! plan), against the installed set after it ([`verify_installed`]), and
//! against an older lock ([`diff`], what `hull lock --update` prints).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};

use super::{cached, ArchLock, LockedPackage};
use crate::build::archive::{PackageIndex, PackagePlan};
use crate::manifest::Manifest;

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
