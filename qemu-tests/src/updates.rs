//! The update tests' fixture: a signing key, image A and two later versions
//! of the same manifest (B, healthy; C, whose health check fails) built by
//! `hull build` into repositories that share A's history, and repositories
//! a test can tamper with.
//!
//! A's update agent is on (`auto = true`, fleet-lock at
//! [`crate::fleet::GUEST_URL`], a week between checks, so only the tests
//! start it); B and C include A's manifest.
//!
//! Layout under `$HULL_TEST_OUT/update/` (`update-aarch64/` for aarch64's A and B): `keys/` (trusted, other),
//! `manifests/` (a.toml, b.toml, c.toml and their overlays), `a/`, `b/`, `c/`
//! (build outputs; b and c start from a copy of a's repository, so their
//! commits are A's children), `tamper/<kind>/repo`. The package cache is
//! `$HULL_TEST_OUT/cache`, shared with the minimal image's build.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hull::build::pipeline::{run_build, BuildOptions, BuildReport};
use hull::manifest::Arch;
use hull::repo::sign;
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

use crate::{test_out, workspace_root};

/// Boot tries the test images give a new deployment.
pub const BOOT_TRIES: u32 = 1;

pub struct Fixture {
    pub dir: PathBuf,
    pub a: BuildReport,
    pub b: BuildReport,
    /// Built by [`fixture`], not by [`fixture_ab`].
    pub c: Option<BuildReport>,
    /// The key A trusts, and one it does not.
    pub trusted: PathBuf,
    pub other: PathBuf,
}

impl Fixture {
    pub fn repo(&self, which: &str) -> PathBuf {
        self.dir.join(which).join("repo")
    }

    /// C, the version whose health check fails.
    pub fn c(&self) -> Result<&BuildReport> {
        self.c
            .as_ref()
            .context("this fixture was built without C (fixture_ab)")
    }
}

/// Builds (or finds up to date) A, B and C for x86_64.
pub fn fixture() -> Result<Fixture> {
    build_fixture(Arch::X86_64, true)
}

/// Builds (or finds up to date) A and B for `arch`, under
/// `$HULL_TEST_OUT/update-<arch>/` for an architecture other than x86_64.
/// A is also the image of that architecture's boot checks, so it is built once.
pub fn fixture_ab(arch: Arch) -> Result<Fixture> {
    build_fixture(arch, false)
}

fn build_fixture(arch: Arch, with_c: bool) -> Result<Fixture> {
    let dir = match arch {
        Arch::X86_64 => test_out().join("update"),
        other => test_out().join(format!("update-{other}")),
    };
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys)?;
    for name in ["trusted", "other"] {
        if !keys.join(name).exists() {
            sign::write_keypair(&keys.join(name))?;
        }
    }
    let manifests = dir.join("manifests");
    write_manifests(&manifests, arch)?;
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
        arch,
    )?;
    // B and C must be newer than A and its children: when A was rebuilt,
    // so are they.
    for later in ["b", "c"] {
        let stamp = dir.join(later).join(".parent-commit");
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(a.commit.as_str()) {
            hull::build::rootfs::remove_tree(&dir.join(later))?;
        }
    }
    let b = build_into(
        &dir.join("b"),
        &manifests.join("b.toml"),
        &keys,
        &cache,
        Some(&a),
        arch,
    )?;
    let c = if with_c {
        Some(build_into(
            &dir.join("c"),
            &manifests.join("c.toml"),
            &keys,
            &cache,
            Some(&a),
            arch,
        )?)
    } else {
        None
    };
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
    arch: Arch,
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
            hull::util::cmd::Cmd::new("cp")
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
        arch: Some(arch),
        sign_key: Some(keys.join("trusted")),
        ..crate::build_options(manifest, out)?
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

fn write_manifests(dir: &Path, arch: Arch) -> Result<()> {
    let minimal = workspace_root().join("manifests/minimal.toml");
    // A, B and C install minimal.toml's packages: from its lock, as the
    // minimal build does (one installed tree in the cache for all), when the
    // lock holds `arch` (the shipped one holds x86_64 only); else from the
    // mirror, as an unlocked manifest does.
    let lock = hull::build::lock::lock_path(&minimal);
    let locked = hull::build::lock::read(&lock)?.is_some_and(|l| l.arch(arch).is_some());
    std::fs::create_dir_all(dir)?;
    for m in ["a", "b", "c"] {
        let copy = dir.join(format!("{m}.lock"));
        if locked {
            std::fs::copy(&lock, &copy)?;
        } else if copy.exists() {
            std::fs::remove_file(&copy)?;
        }
    }
    let files = [
        (
            "a.toml".to_string(),
            format!(
                "# Image A of the update tests: the minimal image, updatable.\n\
                 include = [{minimal:?}]\nversion = \"1.0.0\"\n\n[update]\n\
                 url = \"http://10.0.2.100/repo\"\nkeys = [\"../keys/trusted.pub\"]\n\
                 boot-tries = {BOOT_TRIES}\n\
                 # The agent: run by the tests by hand (the timer's week never passes).\n\
                 auto = true\ninterval = \"7d\"\nstrategy = \"fleet-lock\"\n\
                 fleet-lock-url = \"{lock}\"\n",
                lock = crate::fleet::GUEST_URL,
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
    hull::build::rootfs::remove_tree(&dir)?;
    std::fs::create_dir_all(&dir)?;
    let repo_path = dir.join("repo");
    hull::util::cmd::Cmd::new("cp")
        .arg("-al")
        .arg(f.repo("b"))
        .arg(&repo_path)
        .run()?;
    let repo = hull::repo::commit::open_or_create(&repo_path)?;
    Ok((repo_path, repo))
}

/// How a test commit differs from B.
#[derive(Default)]
struct Spoil<'a> {
    /// Its `version`.
    version: &'a str,
    /// Signed with this key; unsigned when `None`.
    key: Option<&'a Path>,
    /// `ostree.ref-binding` instead of B's.
    binding: Option<&'a str>,
    /// `hull.arch` instead of B's.
    arch: Option<&'a str>,
    /// Seconds to add to B's commit time (negative: older than A).
    age: i64,
    /// Make `usr/etc/issue.net` a directory.
    etc_dir: bool,
}

/// A new commit of B's tree (changed as `spoil` says) on top of B, carrying
/// B's metadata (sizes, boot bytes, binding, arch) unless told otherwise,
/// moved to the ref; the summary is then signed with the trusted key, as the
/// publisher would, so each spoiled commit meets the defence meant for it.
fn recommit(repo: &ostree::Repo, f: &Fixture, spoil: &Spoil) -> Result<String> {
    let b = &f.b.commit;
    let (b_commit, _) = repo.load_commit(b)?;
    let dict = glib::VariantDict::new(Some(&b_commit.child_value(0)));
    dict.insert("version", spoil.version);
    if let Some(r) = spoil.binding {
        dict.insert_value(
            hull::repo::commit::META_REF_BINDING,
            &vec![r.to_string()].to_variant(),
        );
    }
    if let Some(a) = spoil.arch {
        dict.insert(hull::repo::commit::META_ARCH, a);
    }
    let mtree = ostree::MutableTree::from_commit(repo, b)?;
    if spoil.etc_dir {
        let subdir = |t: &ostree::MutableTree, name: &str| -> Result<ostree::MutableTree> {
            t.lookup(name)?
                .1
                .with_context(|| format!("B's tree has no directory {name}"))
        };
        let etc = subdir(&subdir(&mtree, "usr")?, "etc")?;
        let (file, _) = etc.lookup("issue.net")?;
        let file = file.context("B has no usr/etc/issue.net")?;
        etc.remove("issue.net", false)?;
        let dir = etc.ensure_dir("issue.net")?;
        dir.set_metadata_checksum(&etc.metadata_checksum());
        dir.replace_file("x", &file)?;
    }
    repo.prepare_transaction(gio::Cancellable::NONE)?;
    let root = repo.write_mtree(&mtree, gio::Cancellable::NONE)?;
    let root = root
        .downcast::<ostree::RepoFile>()
        .map_err(|_| anyhow::anyhow!("not a RepoFile"))?;
    let time = (ostree::commit_get_timestamp(&b_commit) as i64 + spoil.age + 1) as u64;
    let c = repo.write_commit_with_time(
        Some(b),
        Some(spoil.version),
        None,
        Some(&dict.end()),
        &root,
        time,
        gio::Cancellable::NONE,
    )?;
    repo.transaction_set_ref(None, &f.b.ostree_ref, Some(&c));
    repo.commit_transaction(gio::Cancellable::NONE)?;
    if let Some(key) = spoil.key {
        sign::sign_commit(repo, &c, &sign::load_secret(key)?)?;
    }
    publish(repo, f, 3600)?;
    Ok(c.to_string())
}

/// Signs `repo`'s summary with the trusted key, expiring `lifetime` seconds
/// from now (in the past when negative).
fn publish(repo: &ostree::Repo, f: &Fixture, lifetime: i64) -> Result<()> {
    let expires = (hull::host::state::now() as i64 + lifetime) as u64;
    hull::repo::summary::publish(repo, &sign::load_secret(&f.trusted)?, expires)?;
    Ok(())
}

/// The spoiled repositories, each served as `/<kind>/repo/`:
/// - `unsigned`: a newer commit with no signature;
/// - `wrongkey`: signed by a key A does not trust;
/// - `corrupt`: B, correctly signed, with one of its new objects damaged
///   (and no static delta, so the object travels on its own);
/// - `misref`: signed by the trusted key but bound to the k8s-node image's ref;
/// - `misarch`: signed by the trusted key but built for aarch64;
/// - `downgrade`: signed, bound right, but older than A;
/// - `stale`: B, with a signed summary that expired an hour ago;
/// - `unsigned-summary`: B, with a summary nobody signed;
/// - `etc-conflict`: a good newer commit (2.0.5) that makes /etc/issue.net a
///   directory (the test edits that file first).
pub fn tamper_repos(f: &Fixture) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let trusted = f.trusted.as_path();
    let spoils: [(&str, Spoil); 6] = [
        (
            "unsigned",
            Spoil {
                version: "2.0.1",
                ..Default::default()
            },
        ),
        (
            "wrongkey",
            Spoil {
                version: "2.0.2",
                key: Some(&f.other),
                ..Default::default()
            },
        ),
        (
            "misref",
            Spoil {
                version: "2.0.3",
                key: Some(trusted),
                binding: Some("hull/k8s-node/x86_64/stable"),
                ..Default::default()
            },
        ),
        (
            "misarch",
            Spoil {
                version: "2.0.4",
                key: Some(trusted),
                arch: Some("aarch64"),
                ..Default::default()
            },
        ),
        (
            "downgrade",
            Spoil {
                version: "0.9.0",
                key: Some(trusted),
                age: -30 * 86400,
                ..Default::default()
            },
        ),
        (
            "etc-conflict",
            Spoil {
                version: "2.0.5",
                key: Some(trusted),
                etc_dir: true,
                ..Default::default()
            },
        ),
    ];
    for (kind, spoil) in &spoils {
        let (path, repo) = tamper_copy(f, kind)?;
        recommit(&repo, f, spoil).with_context(|| format!("making the {kind} repository"))?;
        out.push((kind.to_string(), path));
    }

    let (path, repo) = tamper_copy(f, "stale")?;
    publish(&repo, f, -3600)?;
    out.push(("stale".to_string(), path));

    let (path, repo) = tamper_copy(f, "unsigned-summary")?;
    repo.regenerate_summary(None, gio::Cancellable::NONE)?;
    std::fs::remove_file(path.join(hull::repo::summary::SIGNATURE_FILE)).ok();
    out.push(("unsigned-summary".to_string(), path));

    let (path, repo) = tamper_copy(f, "corrupt")?;
    // Without B's static delta, which would carry the object below intact.
    for dir in ["deltas", "delta-indexes"] {
        if path.join(dir).exists() {
            std::fs::remove_dir_all(path.join(dir))?;
        }
    }
    publish(&repo, f, 3600)?;
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
