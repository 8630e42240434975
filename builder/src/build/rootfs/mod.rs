//! Stage 3: the root filesystem tree.
//!
//! [`mmdebstrap`] installs the packages (maintainer scripts run, initramfs
//! built by dracut in the tree), [`customize`] lays the manifest over it and
//! [`ostree_layout`] gives it the shape OSTree deploys.

pub mod accounts;
pub mod agent;
pub mod apt_lists;
pub mod containers;
pub mod customize;
pub mod hardening;
pub mod initramfs;
pub mod local_repo;
pub mod mmdebstrap;
pub mod ostree_layout;
pub mod overlay;
pub mod tar_filter;
pub mod update_agent;
pub mod working_copy;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::boot;
use crate::build::archive::PackagePlan;
use crate::manifest::Manifest;
use crate::util::cmd::{require_program, Cmd};
use crate::util::progress;
use sha2::{Digest, Sha256};

/// A finished tree, ready to commit.
#[derive(Debug, Clone)]
pub struct Rootfs {
    pub dir: PathBuf,
    pub kver: String,
    /// `name version arch` of every installed package.
    pub packages: Vec<String>,
    /// Bytes of the kernel and initramfs: what a deployment puts on the ESP.
    pub boot_bytes: u64,
    /// Every installed package as the dpkg database (dropped from the
    /// tree by the layout stage) listed it, with its licence: the SBOM's.
    pub installed: Vec<crate::build::sbom::Installed>,
    /// The cache entry `dir` came from, when `dir` is kept for the next
    /// build as the installed tree's working copy ([`working_copy`]).
    pub working_copy: Option<working_copy::WorkingCopy>,
}

/// Where installed trees are kept, by [`installed_key`], under the cache.
const INSTALLED_DIR: &str = "installed";
/// How many installed trees the cache keeps (each is a few hundred MB).
const INSTALLED_KEEP: usize = 2;
/// Bumped when the install step (mmdebstrap options, hooks) changes.
/// 2: the initramfs is compressed by hull (zstd), not by dracut (gzip).
const INSTALL_FORMAT: u32 = 2;

/// Builds the tree in `work/rootfs` (replacing what was there).
///
/// Installing packages is most of a build. The installed tree (packages,
/// maintainer scripts, initramfs; nothing of the manifest's own) is kept in
/// `cache/installed/<key>`, keyed by the resolved package plan, so that a
/// new version of a manifest that changes only overlays, users, units or
/// hull itself starts from a copy of it (mkosi calls this incremental).
/// `reuse_installed = false` (`--refresh`) installs again. `accounts` are the
/// ids planned for the accounts hull makes ([`accounts::plan`]).
///
/// Overlays are laid on the copy, after the install, and what reads their
/// install-time configuration runs again ([`overlay::CONSUMERS`]): so the
/// installed tree depends on the package plan only, and its key needs no
/// overlay file.
pub fn build(
    manifest: &Manifest,
    plan: &PackagePlan,
    work: &Path,
    cache: &Path,
    agent: &Path,
    reuse_installed: bool,
    accounts: &[accounts::Account],
) -> Result<Rootfs> {
    let target = work.join("rootfs");
    // Where the stage's time goes, at -v (docs/benchmarks.md).
    let timed = |step: &str, t: std::time::Instant| {
        log::debug!("rootfs: {step}: {:.1} s", t.elapsed().as_secs_f64());
    };
    let t = std::time::Instant::now();
    let (list, working_copy) = install_or_reuse(
        plan,
        work,
        cache,
        reuse_installed,
        &tar_filter::candidates(Some((agent, plan.arch))),
        true,
    )?;
    timed("install (or copy of the cached installed tree)", t);
    let packages = list
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.replace('\t', " "))
        .collect::<Vec<_>>();

    let root = Dir::open_ambient_dir(&target, ambient_authority())
        .with_context(|| format!("opening {}", target.display()))?;
    let installed = crate::build::sbom::read_installed(&root)?;
    let t = std::time::Instant::now();
    let laid = customize::apply(&target, &root, manifest, agent, plan.arch, accounts)?;
    timed("customize (overlays, accounts, hardening, agent, units)", t);
    let t = std::time::Instant::now();
    let report = ostree_layout::convert(&root, &list, &laid)?;
    timed("the OSTree layout", t);
    log_layout(&report);
    log::info!(
        "tree ready: kernel {}, {} packages, {} tmpfiles lines for /var",
        report.kver,
        packages.len(),
        report.tmpfiles_lines,
    );
    let mut boot_bytes = 0;
    for file in ["vmlinuz", "initramfs.img"] {
        let path = format!("usr/lib/modules/{}/{file}", report.kver);
        boot_bytes += root
            .metadata(&path)
            .with_context(|| format!("reading /{path}"))?
            .len();
    }
    Ok(Rootfs {
        dir: target,
        kver: report.kver,
        packages,
        boot_bytes,
        installed,
        working_copy,
    })
}

/// Puts the installed tree of `plan` in `work/rootfs` (replacing what was
/// there): when `reuse_installed` and the cache has it, the cached tree's
/// working copy put back to its state ([`working_copy`], with
/// `working_copy`), else a copy of the cached tree; without it, a fresh
/// install, then cached. Returns the installed package list
/// (`name\tversion\tarch` lines) and, with `working_copy`, the working copy
/// `work/rootfs` now is, to keep after the commit. `hull_exes`: hull
/// executables that may run `hull tar-filter` for the install
/// ([`tar_filter::shim`]).
pub fn install_or_reuse(
    plan: &PackagePlan,
    work: &Path,
    cache: &Path,
    reuse_installed: bool,
    hull_exes: &[PathBuf],
    working_copy: bool,
) -> Result<(String, Option<working_copy::WorkingCopy>)> {
    let target = work.join("rootfs");
    remove_tree(&target)?;
    fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let key = installed_key(plan)?;
    let saved = cache.join(INSTALLED_DIR).join(&key);
    if reuse_installed && saved.join(".complete").is_file() {
        log::info!("starting from the installed tree {}", saved.display());
        let list = fs::read_to_string(saved.join("packages.tsv"))
            .with_context(|| format!("reading {}/packages.tsv", saved.display()))?;
        if working_copy {
            if let Some(w) = working_copy::take(&saved, &target)? {
                return Ok((list, Some(w)));
            }
        }
        let bar = progress::spinner("copying the cached installed tree");
        let copied = Cmd::new("cp")
            .arg("-a")
            .arg(saved.join("tree"))
            .arg(&target)
            .run();
        bar.finish_and_clear();
        copied?;
        let w = match working_copy {
            true => Some(working_copy::WorkingCopy::fresh(&saved, &target)?),
            false => None,
        };
        Ok((list, w))
    } else {
        let list = install(plan, work, &target, cache, hull_exes)?;
        let w = match save_installed(cache, &key, &target, &list) {
            Ok(()) if working_copy => Some(working_copy::WorkingCopy::fresh(&saved, &target)?),
            Ok(()) => None,
            Err(e) => {
                log::warn!("keeping the installed tree for the next build: {e:#}");
                None
            }
        };
        Ok((list, w))
    }
}

/// Says what became of content that cannot stay where it was in an OSTree tree.
fn log_layout(r: &ostree_layout::LayoutReport) {
    for (from, to) in &r.relocated {
        log::info!("relocated {from} to {to}, linked from its place in /var (see docs/manifest.md, overlays)");
    }
    if !r.seeded.is_empty() {
        log::info!(
            "/var: {} files kept in /{}/var, copied to /var at boot when missing: {}",
            r.seeded.len(),
            ostree_layout::FACTORY,
            overlay::sample(r.seeded.iter().cloned())
        );
    }
    if !r.made_by_tmpfiles.is_empty() {
        log::info!(
            "/var: {} files left to the tree's own tmpfiles.d lines, which make them at boot: {}",
            r.made_by_tmpfiles.len(),
            overlay::sample(r.made_by_tmpfiles.iter().cloned())
        );
    }
    if !r.build_state_dropped.is_empty() {
        log::info!(
            "/var: dropped as build state: {}",
            r.build_state_dropped
                .iter()
                .map(|(dir, n)| format!("{n} files of /var/{dir}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

/// Installs the packages with mmdebstrap into `target`; returns the
/// package list (`name\tversion\tarch` lines).
fn install(
    plan: &PackagePlan,
    work: &Path,
    target: &Path,
    cache: &Path,
    hull_exes: &[PathBuf],
) -> Result<String> {
    require_program("mmdebstrap", "mmdebstrap")?;
    let deb_cache = &cache.join("debs");
    fs::create_dir_all(deb_cache).with_context(|| format!("creating {}", deb_cache.display()))?;
    let dracut_conf = work.join("50-hull.conf");
    fs::write(&dracut_conf, boot::DRACUT_CONF)
        .with_context(|| format!("writing {}", dracut_conf.display()))?;
    let prefs = work.join("hull-exclude.pref");
    fs::write(&prefs, mmdebstrap::preferences(plan))
        .with_context(|| format!("writing {}", prefs.display()))?;
    // Locked versions the mirror no longer lists: served from the cache.
    let local_repo = match plan.local_debs.is_empty() {
        true => None,
        false => {
            let dir = work.join("local-debs");
            local_repo::write(&dir, &plan.local_debs)?;
            Some(dir)
        }
    };
    let apt_lists = apt_lists::prepare(plan, cache, local_repo.as_deref(), &work.join("apt-lists"));
    let package_list = work.join("packages.tsv");
    let timings = work.join("mmdebstrap-phases");
    match fs::remove_file(&timings) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", timings.display()))
        }
        _ => {}
    }

    let spec = mmdebstrap::MmdebstrapSpec {
        plan,
        tar_filter: tar_filter::shim(&work.join("bin"), hull_exes)?,
        target: target.to_path_buf(),
        deb_cache: deb_cache.to_path_buf(),
        deb_sync: mmdebstrap::DebSync::for_dirs(deb_cache, work),
        dracut_conf,
        apt_preferences: prefs,
        package_list: package_list.clone(),
        timings: timings.clone(),
        local_repo,
        apt_lists,
    };
    let bar = progress::spinner(&format!(
        "installing {} packages and their dependencies from {} {}",
        plan.include.len(),
        plan.suite,
        plan.arch.debian()
    ));
    let start = crate::util::now_secs_f64();
    let result = mmdebstrap::command(&spec).run();
    bar.finish_and_clear();
    result.context("installing packages with mmdebstrap")?;
    // Where the install's time went (-v): the hooks marked each phase.
    let marks = fs::read_to_string(&timings).unwrap_or_default();
    for (phase, secs) in mmdebstrap::phase_times(&marks, start, crate::util::now_secs_f64()) {
        log::debug!("mmdebstrap: {phase}: {secs:.1} s");
    }
    let t = crate::util::now_secs_f64();
    initramfs::finish_default(target)?;
    log::debug!(
        "initramfs: checked and compressed: {:.1} s",
        crate::util::now_secs_f64() - t
    );
    fs::read_to_string(&package_list).with_context(|| format!("reading {}", package_list.display()))
}

/// The cache key of an installed tree: everything the install step reads.
pub fn installed_key(plan: &PackagePlan) -> Result<String> {
    let mut h = Sha256::new();
    h.update(format!("install-format {INSTALL_FORMAT}\n"));
    h.update(serde_json::to_vec(plan).context("serializing the package plan")?);
    h.update(boot::DRACUT_CONF.as_bytes());
    h.update(mmdebstrap::preferences(plan).as_bytes());
    mmdebstrap::digest_path_excludes(&mut h);
    Ok(hex::encode(h.finalize()))
}

/// Copies the freshly installed tree into the cache (through a temp name),
/// dropping the oldest entries beyond `INSTALLED_KEEP`.
pub fn save_installed(cache: &Path, key: &str, tree: &Path, list: &str) -> Result<()> {
    let dir = cache.join(INSTALLED_DIR);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".{key}.tmp"));
    remove_tree(&tmp)?;
    fs::create_dir_all(&tmp)?;
    Cmd::new("cp")
        .arg("-a")
        .arg(tree)
        .arg(tmp.join("tree"))
        .run()?;
    fs::write(tmp.join("packages.tsv"), list)?;
    fs::write(tmp.join(".complete"), "")?;
    let final_dir = dir.join(key);
    remove_tree(&final_dir)?;
    fs::rename(&tmp, &final_dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), final_dir.display()))?;
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    entries.sort();
    entries.reverse();
    for (_, old) in entries.into_iter().skip(INSTALLED_KEEP) {
        remove_tree(&old)?;
    }
    Ok(())
}

/// Removes a tree that may hold OSTree deployments (immutable directories).
pub fn remove_tree(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    if fs::remove_dir_all(path).is_err() {
        // OSTree marks deployment roots immutable; clear that and retry.
        let _ = Cmd::new("chattr").args(["-R", "-f", "-i"]).arg(path).run();
        fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// Trees being removed on threads of their own, so that removing hundreds
/// of MB overlaps the stages after. [`Removals::finish`] waits for them and
/// returns the first error; dropped unfinished (a stage failed), it still
/// waits, so nothing removes the work directory under them.
#[derive(Default)]
pub struct Removals(Vec<std::thread::JoinHandle<Result<()>>>);

impl Removals {
    /// Moves `path` aside (a rename, at once) and removes it in the background.
    pub fn remove(&mut self, path: &Path) -> Result<()> {
        let aside = path.with_extension(format!("removing-{}", self.0.len()));
        remove_tree(&aside)?;
        if path.exists() {
            fs::rename(path, &aside)
                .with_context(|| format!("renaming {} to {}", path.display(), aside.display()))?;
        }
        self.0.push(std::thread::spawn(move || remove_tree(&aside)));
        Ok(())
    }

    /// Runs other background work of the build's tail (e.g. syncing a
    /// cache) alongside the removals; [`Removals::finish`] waits for it too.
    pub fn spawn(&mut self, work: impl FnOnce() -> Result<()> + Send + 'static) {
        self.0.push(std::thread::spawn(work));
    }

    /// Waits for every removal; the first error.
    pub fn finish(mut self) -> Result<()> {
        let mut first = Ok(());
        for h in self.0.drain(..) {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("removing a work tree panicked")));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl Drop for Removals {
    fn drop(&mut self) {
        for h in self.0.drain(..) {
            let _ = h.join();
        }
    }
}

/// Bytes used by the regular files of a tree (hard links counted once).
pub fn tree_size(root: &Dir) -> Result<u64> {
    use cap_std::fs::MetadataExt;
    use std::collections::HashSet;
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let entries = if rel.as_os_str().is_empty() {
            root.entries()?
        } else {
            root.read_dir(&rel)?
        };
        for entry in entries {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            let meta = root.symlink_metadata(&path)?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The installed tree is reused only for the same resolved plan.
    #[test]
    fn installed_key_follows_the_plan() {
        use super::mmdebstrap::tests::plan;
        let a = installed_key(&plan()).unwrap();
        assert_eq!(a, installed_key(&plan()).unwrap());
        let mut p = plan();
        p.include.push("podman".into());
        assert_ne!(a, installed_key(&p).unwrap());
        let mut p = plan();
        p.release_sha256 = "cd".repeat(32);
        assert_ne!(
            a,
            installed_key(&p).unwrap(),
            "a new archive state installs again"
        );
        let mut p = plan();
        p.exclude.push("nano".into());
        assert_ne!(a, installed_key(&p).unwrap());
    }

    #[test]
    fn tree_size_counts_hard_links_once() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open_ambient_dir(t.path(), ambient_authority()).unwrap();
        d.create_dir_all("a/b").unwrap();
        d.write("a/one", vec![0u8; 1000]).unwrap();
        d.write("a/b/two", vec![0u8; 24]).unwrap();
        d.hard_link("a/one", &d, "a/b/link").unwrap();
        d.symlink("one", "a/sym").unwrap();
        assert_eq!(tree_size(&d).unwrap(), 1024);
    }
}
