//! `hull lock`: resolving and installing the manifest's packages to write
//! (or renew) its lock, and the lock of one architecture made from an
//! install ([`arch_lock`]).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::{
    apply, current, diff, lock_path, read, seed, write, ArchLock, LockFile, LockedPackage,
    SourceLock, FORMAT,
};
use crate::build::archive::{PackageIndex, PackagePlan};
use crate::manifest::Manifest;

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
        source: plan
            .signed_sources()
            .into_iter()
            .map(|s| SourceLock {
                url: s.url,
                suite: s.suite,
                inrelease_sha256: s.sha256,
                date: s.date,
            })
            .collect(),
        package,
    })
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
        // `hull lock` has no agent: its own executable runs tar-filter.
        let exes = crate::build::rootfs::tar_filter::candidates(None);
        let list = crate::build::rootfs::install_or_reuse(&plan, &work, &cache, true, &exes, false)
            .map(|(list, _)| list);
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
