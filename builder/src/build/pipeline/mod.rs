//! `hull build`: runs the stages in order, for each architecture, and writes
//! `out/build-<arch>.json` (and out/build.json, the last one built).
//!
//! manifest → packages → rootfs → commit → deploy → image, each timed. The
//! commit is written without moving its ref; only once the image is written
//! is the commit signed, the ref moved and the summary regenerated, so a
//! failed build leaves a served repository advertising what it did before. A
//! digest of every input (the manifest files, the overlays, hull's own tree
//! format) is stored in the commit; when the ref's newest commit carries the
//! same digest, and the archive has not moved under it ([`crate::build::freshness`]:
//! the InRelease files are read again, the lock decides when there is one),
//! the tree is not rebuilt, and when build.json already describes an image
//! of that commit the image is kept too. `--refresh` resolves packages
//! against the mirror again.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::build::deploy_cache::DeployCache;
use crate::build::{archive, binfmt, deploy, image, lock, rootfs};
use crate::manifest::{Arch, Manifest};
use crate::repo::checksum_cache::ChecksumCache;
use crate::repo::{commit, sign};

mod agents;
mod inputs;
mod outputs;
mod report;

pub use agents::{agent_for, default_agents};
pub use inputs::{input_digest, kernel_args, ref_binding};
pub use report::{arch_report_path, read_report, read_report_at, report_path, BuildReport};

use inputs::fresh;
use outputs::{publish, write_image, write_out_sbom, write_tree_sbom};
use report::{write_json_atomically, Stages};

/// What `hull build` was asked to do.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub manifest: PathBuf,
    pub out: PathBuf,
    /// Build only this architecture (default: the manifest's).
    pub arch: Option<Arch>,
    /// Ignore the cached tree and resolve packages from the mirror again.
    pub refresh: bool,
    /// hull binaries to install as the on-host agent (/usr/bin/hull), at
    /// most one per architecture: each build takes the one whose ELF header
    /// names its architecture.
    pub agents: Vec<PathBuf>,
    /// Secret ed25519 key that signs the commit and the repository's
    /// summary (never copied anywhere).
    pub sign_key: Option<PathBuf>,
    /// Seconds the signed summary holds (see [`crate::repo::summary`]).
    pub summary_lifetime: u64,
    /// `--rollout`: the commit's rollout period in seconds (`host::wave`).
    pub rollout: Option<u64>,
}

/// The architectures a build makes: `--arch` when given, else every one the
/// manifest lists, in its order.
pub fn build_arches(manifest: &Manifest, asked: Option<Arch>) -> Vec<Arch> {
    match asked {
        Some(a) => vec![a],
        None => manifest.arches.clone(),
    }
}

/// Loads and validates the manifest, then decides what needs no mirror:
/// each architecture's kernel command line. `hull check` stops here;
/// `hull build` starts here, so a bad manifest fails before any download.
pub fn load(path: &Path) -> Result<Manifest> {
    let manifest = Manifest::load(path)?;
    for arch in &manifest.arches {
        kernel_args(&manifest, *arch)?;
    }
    Ok(manifest)
}

/// Builds every architecture of [`build_arches`], one after the other, into
/// the same out/repo; returns one report per architecture.
pub fn run_builds(opts: &BuildOptions) -> Result<Vec<BuildReport>> {
    let mut stages = Stages::default();
    let manifest = stages.run("manifest", || load(&opts.manifest))?;
    let arches = build_arches(&manifest, opts.arch);
    let mut reports = Vec::new();
    for arch in arches {
        let agent = agent_for(opts, arch)?;
        let mut arch_stages = Stages(stages.0.clone());
        reports.push(
            build_arch(opts, &manifest, arch, &agent, &mut arch_stages)
                .with_context(|| format!("building {arch}"))?,
        );
    }
    Ok(reports)
}

/// Builds one architecture: `--arch` when given, else the manifest's first.
/// Returns the report also written to `out/build.json`.
pub fn run_build(opts: &BuildOptions) -> Result<BuildReport> {
    let mut stages = Stages::default();
    let manifest = stages.run("manifest", || load(&opts.manifest))?;
    let arch = opts.arch.unwrap_or(manifest.arches[0]);
    let agent = agent_for(opts, arch)?;
    build_arch(opts, &manifest, arch, &agent, &mut stages)
}

fn build_arch(
    opts: &BuildOptions,
    manifest: &Manifest,
    arch: Arch,
    agent: &Path,
    stages: &mut Stages,
) -> Result<BuildReport> {
    if !manifest.arches.contains(&arch) {
        log::info!("building {arch}, which the manifest does not list, as asked");
    }
    let sign_key = match &opts.sign_key {
        Some(p) => Some(sign::load_secret(p)?),
        None if manifest.update.is_some() => bail!(
            "{}: update: an updatable image needs signed commits: give --sign-key (`hull keygen` makes a key pair)",
            manifest.path.display()
        ),
        None => None,
    };
    if let (Some(key), Some(update)) = (&sign_key, &manifest.update) {
        let public = sign::public_text(&key.public()).trim().to_string();
        if !update.keys.iter().any(|k| k.public == public) {
            log::warn!(
                "{} is not among update.keys of {}: hosts built from it will refuse this commit",
                key.path.display(),
                manifest.path.display()
            );
        }
    }
    if !rustix::process::geteuid().is_root() {
        bail!("hull build needs root (it runs mmdebstrap, chroot and an OSTree deployment): run it as root or with sudo");
    }
    fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    let out = opts
        .out
        .canonicalize()
        .with_context(|| format!("resolving {}", opts.out.display()))?;
    let cache = out.join("cache");
    let work = out.join(".work").join(arch.as_str());
    let _cleanup = RemoveOnDrop(work.clone());
    let ostree_ref = manifest.ostree_ref(arch);
    let repo_path = out.join("repo");
    let repo = commit::open_or_create(&repo_path)?;
    let head = commit::head(&repo, &ostree_ref)?;
    let parent = head.clone();
    let mut delta = None;
    // Trees removed on threads of their own, joined before publishing.
    let mut removals = rootfs::Removals::default();
    // Accounts keep the ids the previous commit gave them.
    let parent_ids = match &head {
        Some(c) => rootfs::accounts::Ids::read_commit(&repo, c)?,
        None => Default::default(),
    };
    let accounts = rootfs::accounts::plan(&parent_ids, &rootfs::accounts::names(manifest));
    let input = input_digest(manifest, arch, agent, &accounts)?;

    let cached = match head {
        Some(c)
            if !opts.refresh
                && commit::metadata_string(&repo, &c, commit::META_INPUT_SHA256)?.as_deref()
                    == Some(&input)
                // A new rollout is a new commit: its timestamp starts the wave.
                && opts.rollout.is_none()
                && commit::metadata_u64(&repo, &c, commit::META_ROLLOUT)?.is_none() =>
        {
            Some(c)
        }
        _ => None,
    };
    // Same inputs: reused only while the archive has not moved under it.
    let cached = match cached {
        Some(c) => match fresh(manifest, arch, &cache, &repo, &c)? {
            crate::build::freshness::Freshness::Reuse(why) => {
                log::info!("{why}");
                Some(c)
            }
            crate::build::freshness::Freshness::Rebuild(why) => {
                log::info!("{why}");
                None
            }
        },
        None => None,
    };

    let (checksum, packages, tree_reused) = match cached {
        Some(c) => {
            log::info!("{ostree_ref} is at {c}, built from the same inputs: reusing it");
            let pkgs = commit::metadata_packages(&repo, &c)?;
            (c, pkgs, true)
        }
        None => {
            // Before anything is downloaded: can this machine run the tree's programs?
            binfmt::ensure(arch)?;
            let lock_file = lock::lock_path(&manifest.path);
            let locked = lock::read(&lock_file)?;
            let (plan, index) = stages.run("packages", || {
                let names = locked
                    .as_ref()
                    .and_then(|l| l.arch(arch))
                    .map(|a| a.versions());
                let (mut plan, mut index) =
                    archive::resolve_locked(manifest, arch, &cache, &names.unwrap_or_default())?;
                if let Some(l) = &locked {
                    let a = l.arch(arch).ok_or_else(|| {
                        anyhow!(
                            "{}: no lock for {arch}: run `hull lock --update {}`",
                            lock_file.display(),
                            manifest.path.display()
                        )
                    })?;
                    lock::apply(
                        a,
                        &mut plan,
                        &mut index,
                        &lock_file,
                        manifest,
                        &cache.join("debs"),
                    )?;
                }
                Ok((plan, index))
            })?;
            crate::build::reproducible::pin_environment(
                locked.as_ref().and_then(|l| l.arch(arch)),
                &plan,
            )?;
            let tree = stages.run("rootfs", || {
                rootfs::build(
                    manifest,
                    &plan,
                    &work,
                    &cache,
                    agent,
                    !opts.refresh,
                    &accounts,
                )
            })?;
            if let Some(a) = locked.as_ref().and_then(|l| l.arch(arch)) {
                lock::verify_installed(a, &tree.packages, &lock_file)?;
            }
            write_tree_sbom(manifest, arch, &plan, &index, &input, agent, &tree)?;
            drop(index);
            let meta = commit::CommitMeta {
                version: manifest.version.clone(),
                manifest_sha256: manifest.sha256.clone(),
                input_sha256: input.clone(),
                packages: tree.packages.clone(),
                kver: tree.kver.clone(),
                boot_bytes: tree.boot_bytes,
                kargs: kernel_args(manifest, arch)?,
                ref_binding: ref_binding(manifest, arch),
                arch: arch.to_string(),
                rollout: opts.rollout,
                release: plan
                    .sources
                    .iter()
                    .map(archive::SignedSource::to_line)
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            let mut tree = tree;
            let working_copy = tree.working_copy.take();
            let previous = working_copy
                .as_ref()
                .map(|w| ChecksumCache::load(&w.checksums_path()))
                .unwrap_or_default();
            let (info, checksums) = stages.run("commit", || {
                commit::commit_tree_cached(&repo, &tree.dir, &ostree_ref, &meta, previous)
            })?;
            match working_copy {
                // Kept for the next build, made durable in the background.
                Some(w) => w.keep(&tree.dir, checksums.to_json(), &mut removals)?,
                // Removing the tree (hundreds of MB) overlaps the deploy and image.
                None => removals.remove(&tree.dir)?,
            }
            delta = parent.map(|p| {
                crate::repo::delta::Background::spawn(repo_path.clone(), p, info.checksum.clone())
            });
            (info.checksum, tree.packages, false)
        }
    };

    let image_path = out.join(format!("{}-{}.raw", manifest.name, arch));
    let previous = read_report_at(&arch_report_path(&out, arch))
        .or_else(|_| read_report(&out))
        .ok();
    let image_current = tree_reused
        && previous.as_ref().is_some_and(|r| {
            r.commit == checksum
                && r.image == image_path
                && fs::metadata(&image_path)
                    .map(|m| m.len() == r.image_size)
                    .unwrap_or(false)
        });

    let (image_size, rootfs_size) = if image_current {
        let r = previous.as_ref().expect("checked above");
        log::info!(
            "{} already holds commit {checksum}: keeping it",
            image_path.display()
        );
        (r.image_size, r.rootfs_size)
    } else {
        let sysroot = work.join("sysroot");
        rootfs::remove_tree(&sysroot)?;
        let kargs = kernel_args(manifest, arch)?;
        let remote = manifest
            .update
            .as_ref()
            .map(|_| (rootfs::agent::REMOTE, manifest.update_ref(arch)));
        let deploy_cache = DeployCache::at(&cache, arch);
        let deployed = stages.run("deploy", || {
            let from = deploy_cache.prepare(&repo_path, &checksum, opts.refresh)?;
            deploy::deploy(&deploy::DeploySpec {
                sysroot: &sysroot,
                source: from.as_deref().unwrap_or(&repo_path),
                ostree_ref: &ostree_ref,
                commit: &checksum,
                osname: &manifest.name,
                kargs: &kargs,
                remote: remote.as_ref().map(|(r, f)| (*r, f.as_str())),
            })
        })?;
        let rootfs_size = rootfs::tree_size(&Dir::open_ambient_dir(
            &deployed.deployment,
            ambient_authority(),
        )?)?;
        let report = stages.run("image", || {
            write_image(manifest, arch, &deployed, &checksum, &image_path)
        })?;
        deploy_cache.keep(&sysroot, &mut removals)?;
        removals.remove(&sysroot)?;
        (report.size, rootfs_size)
    };
    let kept = match previous.as_ref() {
        Some(r) if image_current => r.outputs.as_slice(),
        _ => &[],
    };
    let outputs = stages.run("formats", || {
        image::formats::reuse_or_write(&image_path, &manifest.image_formats, kept)
    })?;
    removals.finish()?;
    if let Some(d) = delta {
        let d = d.wait()?;
        log::info!("{}", d.describe());
        stages.0.push(("delta".into(), d.seconds));
    }
    publish(
        &repo,
        &repo_path,
        &ostree_ref,
        &checksum,
        sign_key.as_ref(),
        opts.summary_lifetime,
    )?;

    let sources = commit::metadata_string(&repo, &checksum, commit::META_RELEASE)?
        .unwrap_or_default()
        .lines()
        .filter_map(archive::SignedSource::from_line)
        .collect();
    let report = BuildReport {
        name: manifest.name.clone(),
        // A reused commit was built from the same manifest, so the same version.
        version: manifest.version.clone(),
        arch: arch.to_string(),
        ostree_ref,
        commit: checksum,
        image: image_path,
        image_size,
        rootfs_size,
        package_count: packages.len(),
        stage_seconds: stages.0.clone(),
        up_to_date: image_current,
        sources,
        outputs,
    };
    write_out_sbom(&repo, &report, &out)?;
    write_json_atomically(&arch_report_path(&out, arch), &report)?;
    write_json_atomically(&report_path(&out), &report)?;
    Ok(report)
}

/// Scratch space that goes away whether the build succeeds or fails.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if std::env::var_os("HULL_KEEP_WORK").is_some() {
            return;
        }
        if let Err(e) = rootfs::remove_tree(&self.0) {
            log::warn!("{e:#}");
        }
        // out/.work itself goes too once no other architecture uses it.
        if let Some(parent) = self.0.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command line too long for the kernel fails `hull check` and
    /// `hull build` before any download, naming the file and the key.
    #[test]
    fn too_long_command_line_names_the_key() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("demo.toml");
        let long = format!("x={}", "a".repeat(1800));
        let load_with = |extra: &str| {
            fs::write(
                &path,
                format!("name = \"demo\"\nversion = \"1.0\"\n{extra}"),
            )
            .unwrap();
            load(&path)
        };
        load_with("[kernel]\ncmdline = [\"quiet\"]\n").unwrap();
        let e = load_with(&format!("[kernel]\ncmdline = [{long:?}]\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("demo.toml: kernel.cmdline: "), "{e}");
        assert!(e.contains("keeps 2047") && !e.contains('\n'), "{e}");
        let e = load_with(&format!("[per-arch.x86_64.kernel]\ncmdline = [{long:?}]\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("per-arch.x86_64.kernel.cmdline: the x86_64 kernel"),
            "{e}"
        );
    }

    #[test]
    fn arches_built() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("m.toml");
        fs::write(
            &path,
            "name = \"m\"\nversion = \"1\"\narch = [\"aarch64\", \"x86_64\"]\n",
        )
        .unwrap();
        let m = Manifest::load(&path).unwrap();
        // (--arch, architectures built)
        let cases = [
            (None, vec![Arch::Aarch64, Arch::X86_64]),
            (Some(Arch::X86_64), vec![Arch::X86_64]),
            (Some(Arch::Aarch64), vec![Arch::Aarch64]),
        ];
        for (asked, want) in cases {
            assert_eq!(build_arches(&m, asked), want, "{asked:?}");
        }
    }
}
