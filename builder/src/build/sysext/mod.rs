//! `hull sysext`: a systemd system extension (an EROFS image that
//! systemd-sysext overlays onto /usr at boot) for an image hull built, made
//! from Debian packages, from a directory, or both. docs/provisioning-images.md.
//!
//! Packages are resolved against the image's own sources (the same signed
//! InRelease and hash-checked Packages index as `hull build`, through
//! [`crate::build::archive`]), with everything the image's commit already has left
//! out ([`resolve`]); each `.deb` is downloaded and checked against the
//! sha256 the signed index names before `dpkg-deb -x` unpacks it. The
//! extension-release file names the image's os-release `ID=` and
//! `VERSION_ID=` and its architecture, so systemd-sysext merges it on that
//! image only.

pub mod resolve;

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, PermissionsExt};
use serde::Serialize;

use crate::manifest::{Arch, Manifest};
use crate::util::cmd::{require_program, Cmd};

/// Top-level directories systemd-sysext merges; an extension holds nothing else.
pub const HIERARCHIES: [&str; 2] = ["usr", "opt"];
/// Top-level directories of a `.deb` that are /usr on a merged-/usr system.
const USR_MERGED: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// What to make.
#[derive(Debug, Clone)]
pub struct SysextSpec {
    pub manifest: PathBuf,
    pub name: String,
    pub packages: Vec<String>,
    pub dir: Option<PathBuf>,
    pub out: PathBuf,
    pub arch: Option<Arch>,
}

/// What was made.
#[derive(Debug, Clone, Serialize)]
pub struct SysextReport {
    /// `<out>/sysext/<name>.raw`.
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    /// The commit the extension was made for.
    pub commit: String,
    /// `name version` of each package it carries.
    pub packages: Vec<String>,
    /// The extension-release file's text.
    pub extension_release: String,
}

/// Checks an extension name: it is a file name and a suffix of a file name.
pub fn check_name(name: &str) -> Result<()> {
    if name.len() > 64 || !crate::manifest::node::extensions::is_plain_name(name) {
        bail!("--name {name:?}: 1 to 64 of A-Z a-z 0-9 . _ -, not starting with a dot");
    }
    Ok(())
}

/// systemd's name for an architecture (`ARCHITECTURE=` in extension-release).
pub fn systemd_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86-64",
        Arch::Aarch64 => "arm64",
    }
}

/// `KEY` of an os-release file's text, unquoted.
pub fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.trim().strip_prefix(key)?.strip_prefix('=')?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        Some(v.to_string())
    })
}

/// The extension-release file for an image whose os-release is
/// `os_release`: its `ID=`, and its `SYSEXT_LEVEL=` when it has one, else
/// its `VERSION_ID=` (what systemd-sysext compares), and the architecture.
pub fn extension_release(os_release: &str, arch: Arch) -> Result<String> {
    let id = os_release_value(os_release, "ID")
        .ok_or_else(|| anyhow!("the image's os-release has no ID="))?;
    let mut text = format!("ID={id}\n");
    match (
        os_release_value(os_release, "SYSEXT_LEVEL"),
        os_release_value(os_release, "VERSION_ID"),
    ) {
        (Some(level), _) => text.push_str(&format!("SYSEXT_LEVEL={level}\n")),
        (None, Some(v)) => text.push_str(&format!("VERSION_ID={v}\n")),
        (None, None) => bail!("the image's os-release has neither SYSEXT_LEVEL= nor VERSION_ID="),
    }
    text.push_str(&format!("ARCHITECTURE={}\n", systemd_arch(arch)));
    Ok(text)
}

/// Makes the extension: see the module's documentation. Needs root (the
/// unpacked files keep their owners and modes) and mkfs.erofs.
pub fn build(spec: &SysextSpec) -> Result<SysextReport> {
    check_name(&spec.name)?;
    if spec.packages.is_empty() && spec.dir.is_none() {
        bail!("hull sysext: give --package PACKAGE (repeatable) or --dir DIR, or both");
    }
    require_program("mkfs.erofs", "erofs-utils")?;
    let manifest = Manifest::load(&spec.manifest)?;
    let arch = spec.arch.unwrap_or(manifest.arches[0]);
    let out = spec
        .out
        .canonicalize()
        .with_context(|| format!("resolving {}", spec.out.display()))?;
    let report_path = crate::build::pipeline::arch_report_path(&out, arch);
    let built = crate::build::pipeline::read_report_at(&report_path).with_context(|| {
        format!(
            "no build of {arch} in {}: run hull build first",
            out.display()
        )
    })?;
    let repo_path = out.join("repo");
    let repo = crate::repo::commit::open_or_create(&repo_path)?;
    let base: BTreeSet<String> = crate::repo::commit::metadata_packages(&repo, &built.commit)?
        .iter()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    let (root, _) = repo
        .read_commit(&built.commit, ostree::gio::Cancellable::NONE)
        .with_context(|| format!("reading commit {} in {}", built.commit, repo_path.display()))?;
    let os_release =
        crate::build::rootfs::accounts::read_commit_file(&repo, &root, "usr/lib/os-release")?
            .ok_or_else(|| anyhow!("commit {} has no /usr/lib/os-release", built.commit))?;
    let release = extension_release(&String::from_utf8_lossy(&os_release), arch)?;

    let work = out.join(".work");
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!("sysext-{}-", spec.name))
        .tempdir_in(&work)
        .with_context(|| format!("creating a directory in {}", work.display()))?;
    let tree = staging.path().join("tree");
    fs::create_dir(&tree).with_context(|| format!("creating {}", tree.display()))?;

    let mut carried = Vec::new();
    if !spec.packages.is_empty() {
        carried = add_packages(&manifest, arch, &out, &spec.packages, &base, &tree)?;
    }
    if let Some(dir) = &spec.dir {
        copy_dir(dir, &tree)?;
    }
    let tree_dir = Dir::open_ambient_dir(&tree, ambient_authority())
        .with_context(|| format!("opening {}", tree.display()))?;
    let release_dir = "usr/lib/extension-release.d";
    tree_dir
        .create_dir_all(release_dir)
        .with_context(|| format!("creating {release_dir} in {}", tree.display()))?;
    tree_dir
        .write(
            format!("{release_dir}/extension-release.{}", spec.name),
            &release,
        )
        .with_context(|| format!("writing {release_dir}/extension-release.{}", spec.name))?;

    let dest_dir = out.join("sysext");
    fs::create_dir_all(&dest_dir).with_context(|| format!("creating {}", dest_dir.display()))?;
    let dest = dest_dir.join(format!("{}.raw", spec.name));
    write_erofs(&tree, &dest, &format!("{} {}", built.commit, spec.name))?;
    let size = fs::metadata(&dest)
        .with_context(|| format!("reading {}", dest.display()))?
        .len();
    log::info!("wrote {} ({} KiB)", dest.display(), size >> 10);
    Ok(SysextReport {
        sha256: crate::build::archive::sha256_file(&dest)?,
        path: dest,
        size,
        commit: built.commit,
        packages: carried,
        extension_release: release,
    })
}

/// Resolves, downloads, checks and unpacks `wanted` into `tree`; returns
/// `name version` of each package unpacked.
fn add_packages(
    manifest: &Manifest,
    arch: Arch,
    out: &Path,
    wanted: &[String],
    base: &BTreeSet<String>,
    tree: &Path,
) -> Result<Vec<String>> {
    require_program("dpkg-deb", "dpkg")?;
    let cache = out.join("cache");
    let (_, index) = crate::build::archive::resolve_with_index(manifest, arch, &cache)?;
    let chosen = resolve::closure(&index, wanted, base).with_context(|| {
        format!(
            "resolving the extension's packages against {}",
            manifest.path.display()
        )
    })?;
    let debs = cache.join("sysext-debs");
    fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    let mut carried = Vec::new();
    for (name, version) in &chosen {
        let deb = index
            .deb(name, version, arch.debian())
            .or_else(|| index.deb(name, version, "all"))
            .ok_or_else(|| anyhow!("the signed index lists no .deb of {name} {version}"))?;
        let file_name = deb.filename.rsplit('/').next().unwrap_or(&deb.filename);
        let path = debs.join(file_name);
        let url = format!("{}/{}", deb.mirror.trim_end_matches('/'), deb.filename);
        let cached = path.is_file() && crate::build::archive::sha256_file(&path)? == deb.sha256;
        if !cached {
            crate::build::archive::download(&url, &path, Some(deb.size))?;
            let got = crate::build::archive::sha256_file(&path)?;
            if got != deb.sha256 {
                let _ = fs::remove_file(&path);
                bail!(
                    "sha256 mismatch for {url}: the signed index says {}, got {got}",
                    deb.sha256
                );
            }
        }
        Cmd::new("dpkg-deb").arg("-x").arg(&path).arg(tree).run()?;
        log::info!("unpacked {name} {version} ({url})");
        carried.push(format!("{name} {version}"));
    }
    log::info!(
        "maintainer scripts of {} are not run: a system extension is files only",
        carried.join(", ")
    );
    confine_to_hierarchies(tree)?;
    Ok(carried)
}

/// Moves what unpacked packages put under /bin, /lib, ... into /usr (the
/// image's /bin is /usr/bin), and removes, naming each, what lies outside
/// /usr and /opt: systemd-sysext merges nothing else.
fn confine_to_hierarchies(tree: &Path) -> Result<()> {
    let dir = Dir::open_ambient_dir(tree, ambient_authority())
        .with_context(|| format!("opening {}", tree.display()))?;
    let mut names: Vec<String> = dir
        .entries()?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for name in names {
        if HIERARCHIES.contains(&name.as_str()) {
            continue;
        }
        let is_dir = dir.symlink_metadata(&name)?.is_dir();
        if USR_MERGED.contains(&name.as_str()) && is_dir {
            dir.create_dir_all(format!("usr/{name}"))?;
            merge_into(&dir, &name, &format!("usr/{name}"))
                .with_context(|| format!("moving /{name} of the packages to /usr/{name}"))?;
            dir.remove_dir_all(&name)?;
        } else {
            log::warn!(
                "/{name} of the packages is left out of the extension: systemd-sysext merges only /usr and /opt"
            );
            if is_dir {
                dir.remove_dir_all(&name)?;
            } else {
                dir.remove_file(&name)?;
            }
        }
    }
    Ok(())
}

/// Renames every entry of `from` into `to` (both in `dir`), merging
/// directories that exist in both; a file already at the destination is an error.
fn merge_into(dir: &Dir, from: &str, to: &str) -> Result<()> {
    for e in dir.read_dir(from)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        let (src, dst) = (format!("{from}/{name}"), format!("{to}/{name}"));
        match dir.symlink_metadata(&dst) {
            Ok(m) if m.is_dir() && dir.symlink_metadata(&src)?.is_dir() => {
                merge_into(dir, &src, &dst)?
            }
            Ok(_) => bail!("/{dst} and /{src} both exist"),
            Err(e) if e.kind() == ErrorKind::NotFound => dir.rename(&src, dir, &dst)?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Copies the directory `src` (only usr/ and opt/ at its top, else an error
/// naming the entry) into `tree`: directories, files, symlinks, modes.
fn copy_dir(src: &Path, tree: &Path) -> Result<()> {
    let from = Dir::open_ambient_dir(src, ambient_authority())
        .with_context(|| format!("opening --dir {}", src.display()))?;
    let to = Dir::open_ambient_dir(tree, ambient_authority())
        .with_context(|| format!("opening {}", tree.display()))?;
    for e in from.entries()? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if !HIERARCHIES.contains(&name.as_str()) {
            bail!(
                "--dir {}: {name}: a system extension holds only usr/ and opt/ (systemd-sysext merges nothing else)",
                src.display()
            );
        }
        copy_entry(&from, &to, Path::new(&name))
            .with_context(|| format!("copying {}", src.join(&name).display()))?;
    }
    Ok(())
}

fn copy_entry(from: &Dir, to: &Dir, rel: &Path) -> Result<()> {
    let meta = from.symlink_metadata(rel)?;
    if meta.is_symlink() {
        let target = from.read_link_contents(rel)?;
        if to.symlink_metadata(rel).is_ok() {
            to.remove_file(rel)?;
        }
        to.symlink_contents(target, rel)?;
    } else if meta.is_dir() {
        if !to.symlink_metadata(rel).is_ok_and(|m| m.is_dir()) {
            to.create_dir(rel)?;
        }
        to.set_permissions(
            rel,
            cap_std::fs::Permissions::from_mode(meta.permissions().mode()),
        )?;
        for e in from.read_dir(rel)? {
            copy_entry(from, to, &rel.join(e?.file_name()))?;
        }
    } else if meta.is_file() {
        let mut src = from.open(rel)?;
        let mut dst = to.create(rel)?;
        std::io::copy(&mut src, &mut dst)?;
        dst.set_permissions(cap_std::fs::Permissions::from_mode(
            meta.permissions().mode(),
        ))?;
    } else {
        bail!("{}: not a file, directory or symlink", rel.display());
    }
    Ok(())
}

/// mkfs.erofs `tree` into `dest` through a temp file: lz4hc-compressed,
/// every file owned by root, timestamps and UUID fixed (from `seed`), so the
/// same inputs give the same image.
fn write_erofs(tree: &Path, dest: &Path, seed: &str) -> Result<()> {
    let dir = dest.parent().expect("dest is in a directory");
    let tmp = tempfile::Builder::new()
        .prefix(".sysext.tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    let uuid = crate::build::image::layout::derived_uuid(seed, "sysext");
    Cmd::new("mkfs.erofs")
        .args(["--quiet", "-zlz4hc", "-T0", "--all-root"])
        .arg(format!("-U{uuid}"))
        .arg(tmp.path())
        .arg(tree)
        .run()?;
    // tempfile makes it 0600; systemd-sysext needs only root, but an
    // image is readable like the disk images.
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("syncing {}", tmp.path().display()))?;
    tmp.persist(dest)
        .map_err(|e| anyhow!("renaming into {}: {}", dest.display(), e.error))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests;
