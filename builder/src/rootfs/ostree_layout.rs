//! Turns an installed Debian tree into the shape OSTree deploys.
//!
//! - the kernel and initramfs go to `/usr/lib/modules/$KVER/{vmlinuz,initramfs.img}`
//!   and `/boot` is left empty;
//! - `/var` is not part of a commit: its directories and symlinks become a
//!   tmpfiles.d snippet that recreates them at boot, and the rest is dropped
//!   (the dpkg database's package list is kept in `/usr/lib/hull/packages.tsv`);
//! - `/etc` moves to `/usr/etc`, from which OSTree's three-way merge makes the
//!   deployment's `/etc`;
//! - `/home`, `/root`, `/opt`, `/srv`, `/mnt` and `/usr/local` point into `/var`;
//!   `/sysroot` and `/efi` are empty mount points and `/ostree` points into `/sysroot`.
//!
//! Everything goes through a `cap_std::fs::Dir` of the tree: nothing here can
//! touch a path outside it.

use cap_std::fs::MetadataExt;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cap_std::fs::Dir;

/// Subtrees of `/var` that describe how the tree was built, not what it needs
/// at run time; they are dropped without a tmpfiles line.
const VAR_BUILD_STATE: &[&str] = &[
    "lib/dpkg",
    "lib/apt",
    "cache/apt",
    "cache/debconf",
    "cache/ldconfig",
    "lib/ucf",
    "lib/systemd/deb-systemd-helper-enabled",
    "lib/systemd/deb-systemd-user-helper-enabled",
    "log/apt",
    "backups",
];

/// Top-level directories that live in `/var` on an OSTree system.
pub const VAR_LINKS: &[(&str, &str)] = &[
    ("home", "var/home"),
    ("root", "var/roothome"),
    ("opt", "var/opt"),
    ("srv", "var/srv"),
    ("mnt", "var/mnt"),
];

/// API filesystems and scratch space: emptied, kept as mount points.
const EMPTIED: &[(&str, u32)] = &[
    ("dev", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("run", 0o755),
    ("tmp", 0o1777),
];

/// The tmpfiles.d file hull writes.
pub const VAR_TMPFILES: &str = "usr/lib/tmpfiles.d/hull-var.conf";
/// Where the installed package list is kept inside the tree.
pub const PACKAGE_LIST: &str = "usr/lib/hull/packages.tsv";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutReport {
    pub kver: String,
    /// Regular files under /var that were dropped (they were build state or
    /// logs; anything needed at run time is made by tmpfiles or its owner).
    pub var_files_dropped: usize,
    pub tmpfiles_lines: usize,
}

/// Converts the tree in place.
pub fn convert(root: &Dir, package_list: &str) -> Result<LayoutReport> {
    let kver = move_kernel(root)?;
    let (lines, dropped) = var_to_tmpfiles(root)?;
    let tmpfiles_lines = lines.len();
    write_file(root, VAR_TMPFILES, lines.concat().as_bytes(), 0o644)?;
    write_file(root, PACKAGE_LIST, package_list.as_bytes(), 0o644)?;
    empty_dir(root, "var")?;
    move_etc(root)?;
    link_into_var(root)?;
    for (dir, mode) in EMPTIED {
        empty_dir(root, dir)?;
        set_mode(root, dir, *mode)?;
    }
    for dir in ["sysroot", "efi", "boot"] {
        root.create_dir_all(dir)
            .with_context(|| format!("creating /{dir}"))?;
    }
    replace_with_symlink(root, "ostree", "sysroot/ostree")?;
    Ok(LayoutReport {
        kver,
        var_files_dropped: dropped,
        tmpfiles_lines,
    })
}

/// Moves the one kernel and its initramfs from /boot to /usr/lib/modules/$KVER.
fn move_kernel(root: &Dir) -> Result<String> {
    let mut kernels = Vec::new();
    for entry in root.read_dir("boot").context("reading /boot")? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(k) = name.strip_prefix("vmlinuz-") {
            kernels.push(k.to_string());
        }
    }
    let kver = match kernels.as_slice() {
        [k] => k.clone(),
        [] => bail!("no kernel (/boot/vmlinuz-*) in the tree: is kernel.package a kernel image?"),
        many => bail!("more than one kernel in the tree: {}", many.join(", ")),
    };
    let moddir = format!("usr/lib/modules/{kver}");
    if !root.is_dir(&moddir) {
        bail!("kernel {kver} has no /{moddir}");
    }
    root.rename(
        format!("boot/vmlinuz-{kver}"),
        root,
        format!("{moddir}/vmlinuz"),
    )
    .with_context(|| format!("moving /boot/vmlinuz-{kver} to /{moddir}/vmlinuz"))?;
    let initrd = format!("boot/initrd.img-{kver}");
    if !root.is_file(&initrd) {
        bail!("no initramfs /{initrd}: dracut did not run");
    }
    root.rename(&initrd, root, format!("{moddir}/initramfs.img"))
        .with_context(|| format!("moving /{initrd} to /{moddir}/initramfs.img"))?;
    set_mode(root, &format!("{moddir}/initramfs.img"), 0o644)?;
    empty_dir(root, "boot")?;
    Ok(kver)
}

/// Paths that the tree's own tmpfiles.d files already create.
fn known_tmpfiles_paths(root: &Dir) -> Result<BTreeSet<String>> {
    let mut known = BTreeSet::new();
    let dir = "usr/lib/tmpfiles.d";
    if !root.is_dir(dir) {
        return Ok(known);
    }
    for entry in root.read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".conf") {
            continue;
        }
        let text = root
            .read_to_string(format!("{dir}/{name}"))
            .with_context(|| format!("reading /{dir}/{name}"))?;
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            if let (Some(kind), Some(path)) = (fields.next(), fields.next()) {
                if !kind.starts_with('#') {
                    known.insert(path.trim_end_matches('/').to_string());
                }
            }
        }
    }
    Ok(known)
}

/// tmpfiles.d lines recreating /var's directories and symlinks; returns the
/// lines and the number of regular files left out.
pub fn var_to_tmpfiles(root: &Dir) -> Result<(Vec<String>, usize)> {
    let known = known_tmpfiles_paths(root)?;
    let mut lines = Vec::new();
    let mut dropped = 0;
    let mut add_var_dirs = VAR_LINKS
        .iter()
        .map(|(_, t)| t.to_string())
        .collect::<Vec<_>>();
    add_var_dirs.push("var/usrlocal".into());
    walk_var(root, Path::new("var"), &known, &mut lines, &mut dropped)?;
    for t in add_var_dirs {
        let path = format!("/{t}");
        let listed = lines
            .iter()
            .any(|l| l.split_whitespace().nth(1) == Some(path.as_str()));
        if !known.contains(&path) && !listed {
            let mode = if t == "var/roothome" { "0700" } else { "0755" };
            lines.push(format!("d {path} {mode} root root -\n"));
        }
    }
    Ok((lines, dropped))
}

fn walk_var(
    root: &Dir,
    rel: &Path,
    known: &BTreeSet<String>,
    lines: &mut Vec<String>,
    dropped: &mut usize,
) -> Result<()> {
    let mut entries: Vec<_> = root
        .read_dir(rel)
        .with_context(|| format!("reading /{}", rel.display()))?
        .collect::<std::result::Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = rel.join(entry.file_name());
        let in_var = path.strip_prefix("var").unwrap_or(&path);
        if VAR_BUILD_STATE.iter().any(|s| in_var == Path::new(s)) {
            continue;
        }
        let abs = format!("/{}", path.display());
        let meta = root.symlink_metadata(&path)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            if !known.contains(&abs) {
                lines.push(format!(
                    "d {abs} {:04o} {} {} -\n",
                    meta.mode() & 0o7777,
                    meta.uid(),
                    meta.gid()
                ));
            }
            walk_var(root, &path, known, lines, dropped)?;
        } else if ft.is_symlink() {
            if !known.contains(&abs) {
                let target = root.read_link_contents(&path)?;
                lines.push(format!("L {abs} - - - - {}\n", target.display()));
            }
        } else {
            *dropped += 1;
        }
    }
    Ok(())
}

fn move_etc(root: &Dir) -> Result<()> {
    if root.exists("usr/etc") {
        bail!("the tree already has /usr/etc: it would be lost when /etc moves there");
    }
    root.rename("etc", root, "usr/etc")
        .context("moving /etc to /usr/etc")
}

fn link_into_var(root: &Dir) -> Result<()> {
    for (name, target) in VAR_LINKS {
        replace_with_symlink(root, name, target)?;
    }
    replace_with_symlink(root, "usr/local", "../var/usrlocal")
}

/// Replaces whatever is at `path` with a symlink to `target`.
fn replace_with_symlink(root: &Dir, path: &str, target: &str) -> Result<()> {
    if let Ok(meta) = root.symlink_metadata(path) {
        if meta.is_dir() {
            root.remove_dir_all(path)
        } else {
            root.remove_file(path)
        }
        .with_context(|| format!("removing /{path}"))?;
    }
    root.symlink(target, path)
        .with_context(|| format!("linking /{path} to {target}"))
}

/// Removes everything inside `path`, keeping (or creating) the directory.
pub fn empty_dir(root: &Dir, path: &str) -> Result<()> {
    if !root.exists(path) {
        return root
            .create_dir(path)
            .with_context(|| format!("creating /{path}"));
    }
    for entry in root
        .read_dir(path)
        .with_context(|| format!("reading /{path}"))?
    {
        let entry = entry?;
        let child = PathBuf::from(path).join(entry.file_name());
        if entry.file_type()?.is_dir() {
            root.remove_dir_all(&child)
        } else {
            root.remove_file(&child)
        }
        .with_context(|| format!("removing /{}", child.display()))?;
    }
    Ok(())
}

fn set_mode(root: &Dir, path: &str, mode: u32) -> Result<()> {
    use cap_std::fs::PermissionsExt;
    root.set_permissions(path, cap_std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of /{path}"))
}

/// Writes a file through a temp name and a rename, creating parents.
pub fn write_file(root: &Dir, path: &str, contents: &[u8], mode: u32) -> Result<()> {
    let p = Path::new(path);
    if let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
        root.create_dir_all(parent)
            .with_context(|| format!("creating /{}", parent.display()))?;
    }
    let tmp = format!("{path}.hull-tmp");
    let mut f = root
        .create(&tmp)
        .with_context(|| format!("creating /{tmp}"))?;
    f.write_all(contents)
        .with_context(|| format!("writing /{tmp}"))?;
    drop(f);
    set_mode(root, &tmp, mode)?;
    root.rename(&tmp, root, path)
        .with_context(|| format!("renaming /{tmp} to /{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::ambient_authority;

    /// A tiny tree shaped like what mmdebstrap leaves behind.
    fn fixture() -> (tempfile::TempDir, Dir) {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open_ambient_dir(t.path(), ambient_authority()).unwrap();
        for dir in [
            "boot",
            "etc/systemd",
            "usr/lib/modules/6.12.1-cloud-amd64",
            "usr/lib/tmpfiles.d",
            "usr/local/bin",
            "var/lib/dpkg/info",
            "var/lib/systemd/coredump",
            "var/log/journal",
            "var/spool/mail",
            "var/opt",
            "var/cache/apt/archives",
            "home",
            "root",
            "dev",
            "tmp/junk",
            "run",
            "proc",
            "sys",
        ] {
            d.create_dir_all(dir).unwrap();
        }
        d.write("boot/vmlinuz-6.12.1-cloud-amd64", "kernel")
            .unwrap();
        d.write("boot/initrd.img-6.12.1-cloud-amd64", "initrd")
            .unwrap();
        d.write("boot/config-6.12.1-cloud-amd64", "config").unwrap();
        d.write("etc/hostname", "h\n").unwrap();
        d.write("var/lib/dpkg/status", "Package: x\n").unwrap();
        d.write("var/log/wtmp", "").unwrap();
        d.write("root/.bashrc", "").unwrap();
        d.write("tmp/junk/file", "").unwrap();
        d.write(
            "usr/lib/tmpfiles.d/systemd.conf",
            "d /var/log/journal 2755 root systemd-journal - -\n",
        )
        .unwrap();
        d.symlink_contents("/run/lock", "var/lock").unwrap();
        (t, d)
    }

    #[test]
    fn converts_a_debian_tree() {
        let (_t, d) = fixture();
        let report = convert(&d, "base-files\t13\tamd64\n").unwrap();
        assert_eq!(report.kver, "6.12.1-cloud-amd64");
        assert_eq!(
            d.read_to_string("usr/lib/modules/6.12.1-cloud-amd64/vmlinuz")
                .unwrap(),
            "kernel"
        );
        assert_eq!(
            d.read_to_string("usr/lib/modules/6.12.1-cloud-amd64/initramfs.img")
                .unwrap(),
            "initrd"
        );
        assert_eq!(d.read_dir("boot").unwrap().count(), 0);
        assert_eq!(d.read_dir("var").unwrap().count(), 0);
        assert!(!d.exists("etc"));
        assert_eq!(d.read_to_string("usr/etc/hostname").unwrap(), "h\n");
        for (name, target) in VAR_LINKS {
            assert_eq!(
                d.read_link_contents(name).unwrap(),
                Path::new(target),
                "{name}"
            );
        }
        assert_eq!(
            d.read_link_contents("usr/local").unwrap(),
            Path::new("../var/usrlocal")
        );
        assert_eq!(
            d.read_link_contents("ostree").unwrap(),
            Path::new("sysroot/ostree")
        );
        assert!(d.is_dir("sysroot") && d.is_dir("efi"));
        assert_eq!(d.read_dir("tmp").unwrap().count(), 0);
        assert_eq!(
            d.read_to_string(PACKAGE_LIST).unwrap(),
            "base-files\t13\tamd64\n"
        );

        let tmpfiles = d.read_to_string(VAR_TMPFILES).unwrap();
        assert!(
            tmpfiles.contains("d /var/lib/systemd/coredump 0755 "),
            "{tmpfiles}"
        );
        assert!(tmpfiles.contains("d /var/spool/mail "), "{tmpfiles}");
        assert!(
            tmpfiles.contains("L /var/lock - - - - /run/lock"),
            "{tmpfiles}"
        );
        assert!(
            tmpfiles.contains("d /var/home 0755 root root -"),
            "{tmpfiles}"
        );
        assert!(
            tmpfiles.contains("d /var/roothome 0700 root root -"),
            "{tmpfiles}"
        );
        assert_eq!(tmpfiles.matches(" /var/opt ").count(), 1, "{tmpfiles}");
        // already created by the tree's own tmpfiles.d, and build state: no line
        assert!(!tmpfiles.contains("/var/log/journal "), "{tmpfiles}");
        assert!(!tmpfiles.contains("dpkg"), "{tmpfiles}");
        assert!(!tmpfiles.contains("cache/apt"), "{tmpfiles}");
        assert_eq!(report.var_files_dropped, 1); // var/log/wtmp
    }

    #[test]
    fn no_kernel_or_two_kernels_are_errors() {
        let (_t, d) = fixture();
        d.remove_file("boot/vmlinuz-6.12.1-cloud-amd64").unwrap();
        let err = convert(&d, "").unwrap_err().to_string();
        assert!(err.contains("no kernel"), "{err}");

        let (_t, d) = fixture();
        d.write("boot/vmlinuz-6.13", "k").unwrap();
        let err = convert(&d, "").unwrap_err().to_string();
        assert!(err.contains("more than one kernel"), "{err}");
    }

    #[test]
    fn missing_initramfs_is_an_error() {
        let (_t, d) = fixture();
        d.remove_file("boot/initrd.img-6.12.1-cloud-amd64").unwrap();
        let err = convert(&d, "").unwrap_err().to_string();
        assert!(err.contains("no initramfs"), "{err}");
    }

    #[test]
    fn write_file_creates_parents_and_sets_mode() {
        let (_t, d) = fixture();
        write_file(&d, "a/b/c.conf", b"x", 0o600).unwrap();
        assert_eq!(d.read_to_string("a/b/c.conf").unwrap(), "x");
        assert_eq!(d.metadata("a/b/c.conf").unwrap().mode() & 0o777, 0o600);
        assert!(!d.exists("a/b/c.conf.hull-tmp"));
    }
}
