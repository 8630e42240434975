//! What a tree is built from: the kernel command line, the refs a commit
//! is bound to, the digest of every input (which decides whether a cached
//! commit is reused), and whether the archive moved under a cached commit.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use sha2::{Digest, Sha256};

use crate::boot;
use crate::build::{archive, lock, rootfs};
use crate::manifest::profile;
use crate::manifest::{Arch, Manifest};
use crate::repo::commit;

/// Bumped whenever hull changes what it puts into a tree, so that cached
/// commits from an older hull are not reused.
const TREE_FORMAT: u32 = 5;

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
    h.update(boot::esp_repair_unit().as_bytes());
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

/// [`crate::build::freshness::check`] of commit `c`, from its recorded sources and packages.
pub(super) fn fresh(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
