//! The update tests' fixture: a signing key, image A and two later versions
//! of the same manifest (B, healthy; C, whose health check fails) built by
//! `hull build` into repositories that share A's history, and repositories
//! a test can tamper with.
//!
//! Layout under `$HULL_TEST_OUT/update/`: `keys/` (trusted, other),
//! `manifests/` (a.toml, b.toml, c.toml and their overlays), `a/`, `b/`, `c/`
//! (build outputs; b and c start from a copy of a's repository, so their
//! commits are A's children), `tamper/<kind>/repo`. The package cache is
//! `$HULL_TEST_OUT/cache`, shared with the minimal image's build.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hull::build::{run_build, BuildOptions, BuildReport};
use hull::sign;
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

use crate::{agent, test_out, workspace_root};

/// Boot tries the test images give a new deployment.
pub const BOOT_TRIES: u32 = 2;

pub struct Fixture {
    pub dir: PathBuf,
    pub a: BuildReport,
    pub b: BuildReport,
    pub c: BuildReport,
    /// The key A trusts, and one it does not.
    pub trusted: PathBuf,
    pub other: PathBuf,
}

impl Fixture {
    pub fn repo(&self, which: &str) -> PathBuf {
        self.dir.join(which).join("repo")
    }
}

/// Builds (or finds up to date) A, B and C.
pub fn fixture() -> Result<Fixture> {
    let dir = test_out().join("update");
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys)?;
    for name in ["trusted", "other"] {
        if !keys.join(name).exists() {
            sign::write_keypair(&keys.join(name))?;
        }
    }
    let manifests = dir.join("manifests");
    write_manifests(&manifests)?;
    // The same cache as the minimal image's build: A, B and C install the
    // same packages, so they start from its installed tree.
    let cache = test_out().join("cache");
    std::fs::create_dir_all(&cache)?;

    let a = build_into(
        &dir.join("a"),
        &manifests.join("a.toml"),
        &keys,
        &cache,
        None,
    )?;
    // B and C must be newer than A and its children: when A was rebuilt,
    // so are they.
    for later in ["b", "c"] {
        let stamp = dir.join(later).join(".parent-commit");
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(a.commit.as_str()) {
            hull::rootfs::remove_tree(&dir.join(later))?;
        }
    }
    let b = build_into(
        &dir.join("b"),
        &manifests.join("b.toml"),
        &keys,
        &cache,
        Some(&a),
    )?;
    let c = build_into(
        &dir.join("c"),
        &manifests.join("c.toml"),
        &keys,
        &cache,
        Some(&a),
    )?;
    Ok(Fixture {
        trusted: keys.join("trusted"),
        other: keys.join("other"),
        dir,
        a,
        b,
        c,
    })
}

fn build_into(
    out: &Path,
    manifest: &Path,
    keys: &Path,
    cache: &Path,
    parent: Option<&BuildReport>,
) -> Result<BuildReport> {
    std::fs::create_dir_all(out)?;
    if let Some(parent) = parent {
        let repo = out.join("repo");
        if !repo.exists() {
            let from = parent
                .image
                .parent()
                .context("parent out dir")?
                .join("repo");
            // Hard links: OSTree never rewrites an object or a ref in place.
            hull::cmd::Cmd::new("cp")
                .arg("-al")
                .arg(&from)
                .arg(&repo)
                .run()?;
        }
        std::fs::write(out.join(".parent-commit"), &parent.commit)?;
    }
    let link = out.join("cache");
    if std::fs::read_link(&link).ok().as_deref() != Some(cache) {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(cache, &link)?;
    }
    let opts = BuildOptions {
        manifest: manifest.to_path_buf(),
        out: out.to_path_buf(),
        arch: None,
        refresh: false,
        agent: agent()?,
        sign_key: Some(keys.join("trusted")),
    };
    let start = std::time::Instant::now();
    let r = run_build(&opts).with_context(|| format!("building {}", manifest.display()))?;
    eprintln!(
        "built {} {} (commit {}) in {:.0} s",
        manifest.display(),
        r.version,
        r.commit,
        start.elapsed().as_secs_f64()
    );
    Ok(r)
}

fn write_manifests(dir: &Path) -> Result<()> {
    let minimal = workspace_root().join("manifests/minimal.toml");
    let files = [
        (
            "a.toml".to_string(),
            format!(
                "# Image A of the update tests: the minimal image, updatable.\n\
                 include = [{minimal:?}]\nversion = \"1.0.0\"\n\n[update]\n\
                 url = \"http://10.0.2.100/repo\"\nkeys = [\"../keys/trusted.pub\"]\n\
                 boot-tries = {BOOT_TRIES}\n",
                minimal = minimal.display().to_string()
            ),
        ),
        (
            "b.toml".into(),
            "# B: A's next version, with one more file in /usr.\n\
             include = [\"a.toml\"]\nversion = \"2.0.0\"\noverlays = [\"update-b\"]\n"
                .into(),
        ),
        (
            "c.toml".into(),
            "# C: a version whose health check always fails.\n\
             include = [\"a.toml\"]\nversion = \"3.0.0\"\noverlays = [\"update-broken\"]\n"
                .into(),
        ),
        (
            "rootfs-overlays/update-b/usr/lib/hull-test/marker".into(),
            "hull update test: B\n".into(),
        ),
        (
            "rootfs-overlays/update-broken/usr/lib/hull-test/marker".into(),
            "hull update test: C\n".into(),
        ),
        (
            "rootfs-overlays/update-broken/etc/hull/health.d/50-always-fails".into(),
            "#!/bin/sh\necho 'this version is broken on purpose' >&2\nexit 1\n".into(),
        ),
    ];
    for (name, text) in files {
        let path = dir.join(&name);
        std::fs::create_dir_all(path.parent().unwrap())?;
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, &text)?;
        }
        if name.contains("health.d") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

/// A fresh copy of B's repository under `tamper/<kind>/repo` (hard links,
/// so cheap), for a test to spoil.
fn tamper_copy(f: &Fixture, kind: &str) -> Result<(PathBuf, ostree::Repo)> {
    let dir = f.dir.join("tamper").join(kind);
    hull::rootfs::remove_tree(&dir)?;
    std::fs::create_dir_all(&dir)?;
    let repo_path = dir.join("repo");
    hull::cmd::Cmd::new("cp")
        .arg("-al")
        .arg(f.repo("b"))
        .arg(&repo_path)
        .run()?;
    let repo = hull::commit::open_or_create(&repo_path)?;
    Ok((repo_path, repo))
}

/// A new commit of B's tree on top of B, with version `version`, moved to
/// the ref; signed with `key` when given.
fn recommit(repo: &ostree::Repo, f: &Fixture, version: &str, key: Option<&Path>) -> Result<String> {
    let b = &f.b.commit;
    let (root, _) = repo.read_commit(b, gio::Cancellable::NONE)?;
    let root = root
        .downcast::<ostree::RepoFile>()
        .map_err(|_| anyhow::anyhow!("not a RepoFile"))?;
    let dict = glib::VariantDict::new(None);
    dict.insert("version", version);
    repo.prepare_transaction(gio::Cancellable::NONE)?;
    let c = repo.write_commit(
        Some(b),
        Some(version),
        None,
        Some(&dict.end()),
        &root,
        gio::Cancellable::NONE,
    )?;
    repo.transaction_set_ref(None, &f.b.ostree_ref, Some(&c));
    repo.commit_transaction(gio::Cancellable::NONE)?;
    if let Some(key) = key {
        sign::sign_commit(repo, &c, &sign::load_secret(key)?)?;
    }
    repo.regenerate_summary(None, gio::Cancellable::NONE)?;
    Ok(c.to_string())
}

/// The spoiled repositories: `unsigned` (a newer commit with no signature),
/// `wrongkey` (signed by a key A does not trust), `corrupt` (B, correctly
/// signed, with one of its new objects damaged on the server).
pub fn tamper_repos(f: &Fixture) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let (path, repo) = tamper_copy(f, "unsigned")?;
    recommit(&repo, f, "2.0.1", None)?;
    out.push(("unsigned".to_string(), path));

    let (path, repo) = tamper_copy(f, "wrongkey")?;
    recommit(&repo, f, "2.0.2", Some(&f.other))?;
    out.push(("wrongkey".to_string(), path));

    let (path, repo) = tamper_copy(f, "corrupt")?;
    let (root, _) = repo.read_commit(&f.b.commit, gio::Cancellable::NONE)?;
    let marker = root.resolve_relative_path("usr/lib/hull-test/marker");
    let marker = marker
        .downcast::<ostree::RepoFile>()
        .map_err(|_| anyhow::anyhow!("not a RepoFile"))?;
    marker.ensure_resolved()?;
    let csum = marker.checksum().to_string();
    let object = path.join(format!("objects/{}/{}.filez", &csum[..2], &csum[2..]));
    let mut bytes =
        std::fs::read(&object).with_context(|| format!("reading {}", object.display()))?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    bytes[last / 2] ^= 0xff;
    // A new file, not the hard-linked original B's repository shares.
    let tmp = object.with_extension("tmp");
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, &object)?;
    out.push(("corrupt".to_string(), path));
    Ok(out)
}
