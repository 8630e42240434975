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
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{archive, binfmt, deploy, image, lock, rootfs, sbom};
use crate::boot::{self, bls};
use crate::manifest::profile;
use crate::manifest::{Arch, Manifest};
use crate::repo::{commit, sign};

/// Bumped whenever hull changes what it puts into a tree, so that cached
/// commits from an older hull are not reused.
const TREE_FORMAT: u32 = 5;

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

/// out/build.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuildReport {
    pub name: String,
    pub version: String,
    pub arch: String,
    #[serde(rename = "ref")]
    pub ostree_ref: String,
    pub commit: String,
    pub image: PathBuf,
    pub image_size: u64,
    pub rootfs_size: u64,
    pub package_count: usize,
    /// Seconds per stage, in the order the stages ran.
    pub stage_seconds: Vec<(String, f64)>,
    /// True when nothing had to be rebuilt.
    pub up_to_date: bool,
    /// The signed sources the packages came from, each with its InRelease
    /// `Date:` and sha256.
    #[serde(default)]
    pub sources: Vec<archive::SignedSource>,
    /// Every image file written (`[image] formats`), the raw one first.
    #[serde(default)]
    pub outputs: Vec<image::formats::OutputFile>,
}

/// Times stages in order.
#[derive(Default)]
struct Stages(Vec<(String, f64)>);

impl Stages {
    fn run<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        log::info!("stage {name}");
        let start = Instant::now();
        let out = f();
        let secs = (start.elapsed().as_secs_f64() * 100.0).round() / 100.0;
        log::info!("stage {name} took {secs:.2} s");
        self.0.push((name.to_string(), secs));
        out.with_context(|| format!("stage {name}"))
    }
}

/// The JSON file describing the last build in `out`, of any architecture.
pub fn report_path(out: &Path) -> PathBuf {
    out.join("build.json")
}

/// The JSON file describing the last build of `arch` in `out`.
pub fn arch_report_path(out: &Path, arch: Arch) -> PathBuf {
    out.join(format!("build-{arch}.json"))
}

/// Reads out/build.json.
pub fn read_report(out: &Path) -> Result<BuildReport> {
    read_report_at(&report_path(out))
}

/// Reads one build report (`build.json`, `build-<arch>.json`).
pub fn read_report_at(path: &Path) -> Result<BuildReport> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
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

/// The agents a `hull build` finds by itself, after those given with
/// `--agent`: this binary (for its own architecture), then the ones cargo
/// cross-built beside it — `<target>/<triple>/release/hull` when this one is
/// `<target>/release/hull` — so `hull build --arch aarch64` works after
/// `cargo build --release --target aarch64-unknown-linux-gnu -p hull` with no
/// `--agent`.
pub fn default_agents(this: &Path) -> Vec<PathBuf> {
    let mut out = vec![this.to_path_buf()];
    let target = this
        .parent()
        .filter(|d| d.file_name().is_some_and(|n| n == "release"))
        .and_then(Path::parent);
    if let Some(target) = target {
        for triple in ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"] {
            let p = target.join(triple).join("release/hull");
            if p.is_file() {
                out.push(p);
            }
        }
    }
    out
}

/// The agent of `opts.agents` built for `arch`.
pub fn agent_for(opts: &BuildOptions, arch: Arch) -> Result<PathBuf> {
    let mut seen = Vec::new();
    for path in &opts.agents {
        let found = rootfs::agent::file_arch(path)?;
        if found == Some(arch) {
            return Ok(path.clone());
        }
        seen.push(format!(
            "{} ({})",
            path.display(),
            found.map_or("not an x86_64 or aarch64 ELF executable", Arch::as_str)
        ));
    }
    bail!(
        "no hull agent built for {arch} among {}: build one (cargo build --release -p hull{}); \
         target/release/hull finds it beside itself, or give it with --agent PATH",
        if seen.is_empty() {
            "none".to_owned()
        } else {
            seen.join(", ")
        },
        match arch {
            Arch::X86_64 => " --target x86_64-unknown-linux-gnu",
            Arch::Aarch64 => " --target aarch64-unknown-linux-gnu",
        }
    )
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
            let info = stages.run("commit", || {
                commit::commit_tree(&repo, &tree.dir, &ostree_ref, &meta)
            })?;
            // Removing the tree (hundreds of MB) overlaps the deploy and image.
            removals.remove(&tree.dir)?;
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
        let deployed = stages.run("deploy", || {
            deploy::deploy(&deploy::DeploySpec {
                sysroot: &sysroot,
                source: &repo_path,
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

/// [`crate::build::freshness::check`] of commit `c`, from its recorded sources and packages.
fn fresh(
    manifest: &Manifest,
    arch: Arch,
    cache: &Path,
    repo: &ostree::Repo,
    c: &str,
) -> Result<crate::build::freshness::Freshness> {
    let recorded: Vec<archive::SignedSource> =
        commit::metadata_string(repo, c, commit::META_RELEASE)?
            .unwrap_or_default()
            .lines()
            .filter_map(archive::SignedSource::from_line)
            .collect();
    let locked = lock::lock_path(&manifest.path).is_file();
    let installed = commit::metadata_packages(repo, c)?;
    crate::build::freshness::check(manifest, arch, cache, locked, &recorded, &installed)
}

/// Ships the SBOM in the tree (/usr/share/hull/sbom.spdx.json).
fn write_tree_sbom(
    manifest: &Manifest,
    arch: Arch,
    plan: &archive::PackagePlan,
    index: &archive::PackageIndex,
    input: &str,
    agent: &Path,
    tree: &rootfs::Rootfs,
) -> Result<()> {
    let doc = sbom::document(&sbom::SbomInput {
        name: &manifest.name,
        version: &manifest.version,
        arch,
        suite: &plan.suite,
        mirror: &plan.mirror,
        ostree_ref: &manifest.ostree_ref(arch),
        input_sha256: input,
        agent_sha256: &archive::sha256_file(agent)?,
        installed: &tree.installed,
        index: Some(index),
        created: sbom::creation_time(),
    })?;
    let root = Dir::open_ambient_dir(&tree.dir, ambient_authority())
        .with_context(|| format!("opening {}", tree.dir.display()))?;
    sbom::write_into_tree(&root, &doc)
}

/// Writes out/<name>-<arch>.spdx.json: the commit's own SBOM, with the
/// commit's checksum added.
fn write_out_sbom(repo: &ostree::Repo, report: &BuildReport, out: &Path) -> Result<()> {
    let path = sbom::out_path(out, &report.name, &report.arch);
    match sbom::read_commit(repo, &report.commit)? {
        Some(doc) => {
            sbom::write_file(&path, &sbom::with_commit(doc, &report.commit))?;
            log::info!("wrote the SBOM {}", path.display());
        }
        None => log::warn!(
            "commit {} carries no SBOM (/{}): {} not written; rebuild with --refresh",
            report.commit,
            sbom::TREE_PATH,
            path.display()
        ),
    }
    Ok(())
}

fn write_image(
    manifest: &Manifest,
    arch: Arch,
    deployed: &deploy::Deployed,
    commit: &str,
    image_path: &Path,
) -> Result<image::DiskReport> {
    let sysroot = Dir::open_ambient_dir(&deployed.sysroot, ambient_authority())
        .with_context(|| format!("opening {}", deployed.sysroot.display()))?;
    let (efi_in_tree, _) = boot::systemd_boot_paths(arch);
    let systemd_boot = deployed.deployment.join(efi_in_tree);
    if !systemd_boot.is_file() {
        bail!(
            "{}: packages: the tree has no /{efi_in_tree}: add systemd-boot-efi to packages.include",
            manifest.path.display()
        );
    }
    let esp_files = bls::plan(&sysroot, &deployed.sysroot, arch, &systemd_boot)?.into_files();
    let spec = image::DiskSpec {
        arch,
        size: image::formats::disk_size(manifest.image.size, &manifest.image_formats),
        esp_size: manifest.image.esp_size,
        esp_files,
        root_dir: &deployed.sysroot,
        root_label: boot::ROOT_LABEL.to_string(),
        esp_label: boot::ESP_LABEL.to_string(),
        // Not the boot checksum, which only the kernel and initramfs move:
        // every image would share its root file system UUID.
        seed: commit.to_string(),
    };
    image::write_disk(&spec, image_path).map_err(|e| {
        match e.downcast_ref::<image::fit::TooSmall>() {
            Some(small) => anyhow!("{}: {small}", manifest.path.display()),
            None => e,
        }
    })
}

/// Makes a commit whose image was written public: signs it with `key`,
/// moves `ostree_ref` to it, deletes the static deltas no ref leads to and
/// regenerates the summary (which lets `ostree remote refs` and pulls list
/// the refs and the deltas). Runs last, so that a failure in
/// any stage before leaves the ref, the signatures and the summary as they were.
fn publish(
    repo: &ostree::Repo,
    repo_path: &Path,
    ostree_ref: &str,
    checksum: &str,
    key: Option<&sign::SecretKey>,
    summary_lifetime: u64,
) -> Result<()> {
    if let Some(key) = key {
        sign::sign_commit(repo, checksum, key)?;
        log::info!("signed {checksum} with {}", key.path.display());
    }
    commit::move_ref(repo, ostree_ref, checksum)?;
    for to in crate::repo::delta::prune(repo)? {
        log::info!("deleted the static deltas to {to}: no ref leads to it any more");
    }
    // The summary lets `ostree remote refs` and pulls list the refs; signed,
    // it is what hosts take a ref's head from, until it expires.
    match key {
        Some(key) => {
            let p =
                crate::repo::summary::publish(repo, key, crate::util::now() + summary_lifetime)?;
            log::info!(
                "signed the summary of {} until {}",
                repo_path.display(),
                crate::repo::summary::utc(p.expires)
            );
            Ok(())
        }
        None => repo
            .regenerate_summary(None, ostree::gio::Cancellable::NONE)
            .with_context(|| format!("writing the summary of {}", repo_path.display())),
    }
}

/// The image's kernel command line ([`boot::cmdline::compose`]) from the
/// manifest's parts. Errors: too long for the kernel, naming the manifest
/// file and the key that added the last arguments.
pub fn kernel_args(manifest: &Manifest, arch: Arch) -> Result<Vec<String>> {
    let kernel = &manifest.target(arch).kernel;
    boot::cmdline::compose(
        &manifest.name,
        arch,
        &manifest.hardening.kernel_args(arch),
        &kernel.cmdline,
    )
    .map_err(|m| anyhow::anyhow!("{}: {}: {m}", manifest.path.display(), kernel.cmdline_key))
}

/// The refs a commit of `manifest` is bound to (`ostree.ref-binding`): the
/// ref it is built for and, when `[update] ref` names another, that one.
pub fn ref_binding(manifest: &Manifest, arch: Arch) -> Vec<String> {
    let mut refs = vec![manifest.ostree_ref(arch)];
    let follow = manifest.update_ref(arch);
    if !refs.contains(&follow) {
        refs.push(follow);
    }
    refs
}

/// Digest of everything a tree is built from, for reuse of a cached commit;
/// `accounts` are the ids planned for the accounts hull makes.
pub fn input_digest(
    manifest: &Manifest,
    arch: Arch,
    agent: &Path,
    accounts: &[rootfs::accounts::Account],
) -> Result<String> {
    let mut h = Sha256::new();
    h.update(format!(
        "hull {} tree-format {TREE_FORMAT} arch {arch}\n",
        env!("CARGO_PKG_VERSION")
    ));
    h.update(manifest.sha256.as_bytes());
    h.update(boot::DRACUT_CONF.as_bytes());
    rootfs::mmdebstrap::digest_path_excludes(&mut h);
    // The profile's files are compiled in: a change to them is a new tree.
    profile::digest(&mut h);
    rootfs::containers::digest(&manifest.containers, &mut h);
    h.update(boot::HEALTH_UNIT.as_bytes());
    h.update(boot::RECONCILE_UNIT.as_bytes());
    h.update(kernel_args(manifest, arch)?.join(" ").as_bytes());
    h.update(boot::efi_mount().as_bytes());
    h.update(rootfs::update_agent::digest_text(manifest).as_bytes());
    // The agent is part of the tree; so are the keys it trusts.
    let agent_bytes =
        fs::read(agent).with_context(|| format!("reading the hull agent {}", agent.display()))?;
    h.update(format!(
        "agent {}\n",
        hex::encode(Sha256::digest(&agent_bytes))
    ));
    for key in manifest.update.iter().flat_map(|u| &u.keys) {
        h.update(format!("trusted {}\n", key.public));
    }
    // A renewed lock is a new tree.
    let lock_file = lock::lock_path(&manifest.path);
    if lock_file.is_file() {
        let bytes =
            fs::read(&lock_file).with_context(|| format!("reading {}", lock_file.display()))?;
        h.update(format!("lock {}\n", hex::encode(Sha256::digest(&bytes))));
    }
    for a in accounts {
        h.update(format!("account {} {} {}\n", a.name, a.uid, a.gid));
    }
    for overlay in &manifest.overlays {
        h.update(format!("overlay {}\n", overlay.name));
        let dir = Dir::open_ambient_dir(&overlay.dir, ambient_authority())
            .with_context(|| format!("opening overlay {}", overlay.dir.display()))?;
        hash_tree(&dir, Path::new(""), &mut h)
            .with_context(|| format!("reading overlay {}", overlay.dir.display()))?;
    }
    Ok(hex::encode(h.finalize()))
}

fn hash_tree(dir: &Dir, rel: &Path, h: &mut Sha256) -> Result<()> {
    use cap_std::fs::PermissionsExt;
    let entries = if rel.as_os_str().is_empty() {
        dir.entries()?
    } else {
        dir.read_dir(rel)?
    };
    let mut names: Vec<_> = entries
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for name in names {
        let path = rel.join(&name);
        let meta = dir.symlink_metadata(&path)?;
        h.update(format!(
            "{}\0{:o}\0",
            path.display(),
            meta.permissions().mode()
        ));
        if !meta.is_symlink() {
            // File capabilities and other attributes are laid too.
            let xattrs = if meta.is_dir() {
                rootfs::overlay::read_xattrs(rootfs::overlay::open_dir_fd(dir, &path)?)?
            } else {
                rootfs::overlay::read_xattrs(dir.open(&path)?)?
            };
            for (name, value) in xattrs {
                h.update(format!("xattr {name} {}\0", hex::encode(value)));
            }
        }
        if meta.is_dir() {
            hash_tree(dir, &path, h)?;
        } else if meta.is_symlink() {
            h.update(dir.read_link_contents(&path)?.to_string_lossy().as_bytes());
        } else {
            // Streamed, not read whole: an overlay file can be larger than
            // memory (a sparse disk image). The same bytes as before.
            let mut file = dir.open(&path)?;
            std::io::copy(&mut file, h)?;
        }
        h.update(b"\n");
    }
    Ok(())
}

fn write_json_atomically<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    crate::util::write_atomic(path, text.as_bytes())
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

    fn elf(dir: &Path, name: &str, machine: u16) -> PathBuf {
        let mut bytes = b"\x7fELF".to_vec();
        bytes.resize(20, 0);
        bytes[18..20].copy_from_slice(&machine.to_le_bytes());
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        p
    }

    fn opts(agents: Vec<PathBuf>) -> BuildOptions {
        BuildOptions {
            manifest: "m.toml".into(),
            out: "out".into(),
            arch: None,
            refresh: false,
            agents,
            sign_key: None,
            summary_lifetime: crate::repo::summary::DEFAULT_LIFETIME_SECS,
            rollout: None,
        }
    }

    /// A real repository: a commit written by the commit stage stays
    /// unpublished (ref, signature, summary) when a later stage fails, and
    /// is published once they succeed.
    #[test]
    fn only_a_commit_with_an_image_is_published() {
        let (t, repo, first) = commit::test_repo_with_commit(b"one");
        let r = "hull/t/x86_64/stable";
        let repo_path = t.path().join("repo");
        let tree = t.path().join("tree");
        fs::write(tree.join("usr/file"), "two").unwrap();
        let meta = commit::test_meta("2");
        let second = commit::commit_tree(&repo, &tree, r, &meta)
            .unwrap()
            .checksum;
        let key_path = t.path().join("secret");
        fs::write(&key_path, sign::secret_text(&sign::generate().unwrap())).unwrap();
        let key = sign::load_secret(&key_path).unwrap();
        let summary = repo_path.join("summary");

        // The stages after the commit, as build_arch runs them: a failing
        // image stage, then publishing.
        let run = |image: Result<()>| -> Result<()> {
            image?;
            publish(&repo, &repo_path, r, &second, Some(&key), 3600)
        };
        run(Err(anyhow!("mkfs.ext4 failed"))).unwrap_err();
        assert_eq!(
            commit::head(&repo, r).unwrap().as_deref(),
            Some(first.as_str())
        );
        assert!(!summary.exists(), "no summary written");
        let detached = repo
            .read_commit_detached_metadata(&second, ostree::gio::Cancellable::NONE)
            .unwrap();
        assert!(detached.is_none(), "not signed");

        run(Ok(())).unwrap();
        assert_eq!(
            commit::head(&repo, r).unwrap().as_deref(),
            Some(second.as_str())
        );
        let bytes = fs::read(&summary).unwrap();
        let raw = hex::decode(&second).unwrap();
        assert!(bytes.windows(32).any(|w| w == raw), "the summary lists it");
        let keys = [key.public()];
        // Ok(index of the key that signed it)
        assert_eq!(sign::verify_in_repo(&repo, &second, &keys).unwrap(), 0);
    }

    /// Overlay files are hashed as streams: the digest is the one of the
    /// bytes as before (so cached commits stay valid), and a large sparse
    /// file does not land in memory.
    #[test]
    fn overlay_hash_streams_the_same_bytes() {
        use cap_std::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("etc")).unwrap();
        fs::write(t.path().join("etc/motd"), "hello\n").unwrap();
        std::os::unix::fs::symlink("motd", t.path().join("etc/link")).unwrap();
        let dir = Dir::open_ambient_dir(t.path(), ambient_authority()).unwrap();
        let mode = |p: &str| dir.symlink_metadata(p).unwrap().permissions().mode();
        let mut want = Sha256::new();
        want.update(format!("etc\0{:o}\0", mode("etc")));
        want.update(format!("etc/link\0{:o}\0", mode("etc/link")));
        want.update(b"motd\n");
        want.update(format!("etc/motd\0{:o}\0", mode("etc/motd")));
        want.update(b"hello\n\n");
        want.update(b"\n");
        let mut got = Sha256::new();
        hash_tree(&dir, Path::new(""), &mut got).unwrap();
        assert_eq!(hex::encode(got.finalize()), hex::encode(want.finalize()));

        const SPARSE: u64 = 512 << 20;
        let f = fs::File::create(t.path().join("etc/disk.img")).unwrap();
        f.set_len(SPARSE).unwrap();
        let before = peak_rss();
        let mut h = Sha256::new();
        hash_tree(&dir, Path::new(""), &mut h).unwrap();
        let grown = peak_rss().saturating_sub(before);
        assert!(grown < SPARSE / 4, "peak RSS grew by {} MiB", grown >> 20);
    }

    /// VmHWM of this process, bytes.
    fn peak_rss() -> u64 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        kib << 10
    }

    /// `target/release/hull` finds `target/aarch64-unknown-linux-gnu/release/hull`.
    #[test]
    fn cross_built_agents_are_found_beside_this_one() {
        let t = tempfile::tempdir().unwrap();
        let release = t.path().join("target/release");
        let cross = t.path().join("target/aarch64-unknown-linux-gnu/release");
        fs::create_dir_all(&release).unwrap();
        fs::create_dir_all(&cross).unwrap();
        let this = elf(&release, "hull", 62);
        assert_eq!(default_agents(&this), vec![this.clone()]);
        let arm = elf(&cross, "hull", 183);
        let found = default_agents(&this);
        assert_eq!(found, vec![this.clone(), arm.clone()]);
        assert_eq!(agent_for(&opts(found), Arch::Aarch64).unwrap(), arm);
        // Installed elsewhere: only itself.
        let other = elf(t.path(), "hull", 62);
        assert_eq!(default_agents(&other), vec![other.clone()]);
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

    #[test]
    fn each_arch_gets_the_agent_built_for_it() {
        let t = tempfile::tempdir().unwrap();
        let x86 = elf(t.path(), "hull-x86", 62);
        let arm = elf(t.path(), "hull-arm", 183);
        let o = opts(vec![arm.clone(), x86.clone()]);
        assert_eq!(agent_for(&o, Arch::X86_64).unwrap(), x86);
        assert_eq!(agent_for(&o, Arch::Aarch64).unwrap(), arm);
        let e = format!(
            "{:#}",
            agent_for(&opts(vec![x86.clone()]), Arch::Aarch64).unwrap_err()
        );
        assert!(
            e.contains("no hull agent built for aarch64")
                && e.contains("hull-x86 (x86_64)")
                && e.contains("--target aarch64-unknown-linux-gnu"),
            "{e}"
        );
    }
}
