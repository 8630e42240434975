//! Turns an installed Debian tree into the shape OSTree deploys.
//!
//! - the kernel and initramfs go to `/usr/lib/modules/$KVER/{vmlinuz,initramfs.img}`
//!   and `/boot` is left empty;
//! - `/var` is not part of a commit: its directories and symlinks become a
//!   tmpfiles.d snippet that recreates them at boot, its regular files move
//!   to `/usr/share/factory/var` and a `C` line copies each back when it is
//!   missing, the systemd way; build state (dpkg and apt databases and
//!   caches, logs) is dropped and counted (the dpkg database's package list
//!   is kept in `/usr/lib/hull/packages.tsv`);
//! - what the tree has in `/home`, `/root`, `/srv` and `/mnt` moves into
//!   their places in `/var` first and is seeded the same way; top-level
//!   entries of `/opt` and `/usr/local` that hold files move to
//!   `/usr/lib/opt` and `/usr/lib/usrlocal` (image content, updated with it)
//!   with links from `/var/opt` and `/var/usrlocal`;
//! - `/etc` moves to `/usr/etc`, from which OSTree's three-way merge makes the
//!   deployment's `/etc`;
//! - `/home`, `/root`, `/opt`, `/srv`, `/mnt` and `/usr/local` point into `/var`;
//!   `/sysroot` and `/efi` are empty mount points and `/ostree` points into `/sysroot`.
//!
//! Everything goes through a `cap_std::fs::Dir` of the tree: nothing here can
//! touch a path outside it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cap_std::fs::Dir;

use super::accounts::Ids;

mod relocate;
mod var;

use relocate::{move_into, relocate};
use var::{add_var_dirs, known_tmpfiles_paths, VarWalk};

/// Subtrees of `/var` that describe how the tree was built, not what it needs
/// at run time: dropped on purpose (the log counts them). An overlay file in
/// one of them is refused.
const VAR_BUILD_STATE: &[&str] = &[
    "lib/dpkg",
    "lib/apt",
    "cache/apt",
    "cache/debconf",
    "cache/ldconfig",
    "lib/ucf",
    "lib/systemd/deb-systemd-helper-enabled",
    "lib/systemd/deb-systemd-user-helper-enabled",
    // pam-auth-update's and update-shells' records of what they did
    "lib/pam",
    "lib/shells.state",
    "backups",
];

/// Subtrees of `/var` whose files are the install's logs and login records:
/// their files are dropped like build state, but their directories and
/// symlinks stay (auditd, for one, will not start without /var/log/audit).
const VAR_LOGS: &[&str] = &["log", "lib/wtmpdb"];

/// Top-level directories that live in `/var` on an OSTree system. What the
/// tree holds in them moves to their place in /var first, and is seeded
/// from there like the rest of /var.
pub const VAR_LINKS: &[(&str, &str)] = &[
    ("home", "var/home"),
    ("root", "var/roothome"),
    ("opt", "var/opt"),
    ("srv", "var/srv"),
    ("mnt", "var/mnt"),
];

/// Software trees that point into /var but whose shipped contents belong to
/// the image (updated with it, read-only), as rpm-ostree does it: a
/// top-level entry holding files moves under /usr and its place in /var
/// becomes a tmpfiles.d link to it. `(directory, its place in /var, where
/// the contents go)`.
pub const RELOCATED: &[(&str, &str, &str)] = &[
    ("opt", "var/opt", "usr/lib/opt"),
    ("usr/local", "var/usrlocal", "usr/lib/usrlocal"),
];

/// Where regular files of /var are kept in the commit; a tmpfiles.d `C`
/// line copies each to /var at boot when it is missing there.
pub const FACTORY: &str = "usr/share/factory";

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

/// What the conversion did with content that cannot stay where it was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayoutReport {
    pub kver: String,
    pub tmpfiles_lines: usize,
    /// Top-level entries of /opt and /usr/local moved under /usr: `(from, to)`.
    pub relocated: Vec<(String, String)>,
    /// Regular files of /var (with those of /home, /root, /srv, /mnt) copied
    /// to [`FACTORY`] and seeded by a `C` line.
    pub seeded: Vec<String>,
    /// Files dropped as build state, counted by the `VAR_BUILD_STATE` or
    /// `VAR_LOGS` entry.
    pub build_state_dropped: Vec<(&'static str, usize)>,
    /// Files of /var that the tree's own tmpfiles.d lines make at boot: the
    /// installed copy is dropped in favour of the line.
    pub made_by_tmpfiles: Vec<String>,
}

/// Converts the tree in place. `laid` lists the non-directories each overlay
/// laid, by overlay name: one in /var's build state is refused.
pub fn convert(
    root: &Dir,
    package_list: &str,
    laid: &[(String, Vec<String>)],
) -> Result<LayoutReport> {
    let mut report = LayoutReport {
        kver: move_kernel(root)?,
        ..LayoutReport::default()
    };
    let mut lines = Vec::new();
    for (dir, var_dir, usr_dir) in RELOCATED {
        relocate(
            root,
            dir,
            var_dir,
            usr_dir,
            &mut lines,
            &mut report.relocated,
        )?;
    }
    for (dir, var_dir) in VAR_LINKS {
        move_into(root, Path::new(dir), Path::new(var_dir))?;
    }
    if let Some((overlay, file, state)) = refused_build_state(laid) {
        bail!(
            "overlay {overlay}: /{file} is in /var/{state}, build state that hull leaves out of \
             the image (see docs/manifest.md, overlays)"
        );
    }
    let users = if root.exists("etc/passwd") {
        Ids::read_tree(root, "etc")?
    } else {
        Ids::default()
    };
    let mut walk = VarWalk {
        root,
        known: known_tmpfiles_paths(root)?,
        users: users.passwd.iter().map(|(n, _, _)| n.clone()).collect(),
        lines: Vec::new(),
        report: &mut report,
    };
    walk.walk(Path::new("var"), None)?;
    let mut var_lines = std::mem::take(&mut walk.lines);
    add_var_dirs(&walk.known, &mut var_lines);
    lines.splice(0..0, var_lines);
    report.tmpfiles_lines = lines.len();
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
    Ok(report)
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

/// The first overlay file (overlay, file, build-state entry) that lies in
/// /var's build state.
fn refused_build_state(laid: &[(String, Vec<String>)]) -> Option<(&str, &str, &'static str)> {
    laid.iter().find_map(|(overlay, files)| {
        files.iter().find_map(|f| {
            let in_var = Path::new(f.strip_prefix("var/")?);
            let state = VAR_BUILD_STATE
                .iter()
                .chain(VAR_LOGS)
                .find(|s| in_var.starts_with(s))?;
            Some((overlay.as_str(), f.as_str(), *state))
        })
    })
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
    use cap_std::fs::MetadataExt;

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
            "var/log/audit",
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
        set_mode(&d, "var/log/audit", 0o750).unwrap();
        // Debian's /root: /var/roothome takes its mode.
        set_mode(&d, "root", 0o700).unwrap();
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
        let report = convert(&d, "base-files\t13\tamd64\n", &[]).unwrap();
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
        assert!(tmpfiles.contains("d /var/home 0755 "), "{tmpfiles}");
        assert!(tmpfiles.contains("d /var/roothome 0700 "), "{tmpfiles}");
        assert_eq!(tmpfiles.matches(" /var/opt ").count(), 1, "{tmpfiles}");
        // already created by the tree's own tmpfiles.d, and build state: no line
        assert!(!tmpfiles.contains("/var/log/journal "), "{tmpfiles}");
        assert!(!tmpfiles.contains("dpkg"), "{tmpfiles}");
        assert!(!tmpfiles.contains("cache/apt"), "{tmpfiles}");
        assert_eq!(report.build_state_dropped, [("lib/dpkg", 1), ("log", 1)]);
        // The log directories stay, without their files.
        assert!(tmpfiles.contains("d /var/log/audit 0750 "), "{tmpfiles}");
        assert!(!tmpfiles.contains("wtmp"), "{tmpfiles}");
        // /root's files are seeded into /var/roothome at boot.
        assert_eq!(report.seeded, ["/var/roothome/.bashrc"]);
        assert!(
            tmpfiles.contains(
                "C /var/roothome/.bashrc - - - - /usr/share/factory/var/roothome/.bashrc\n"
            ),
            "{tmpfiles}"
        );
        assert!(d.is_file("usr/share/factory/var/roothome/.bashrc"));
    }

    /// Content outside /usr and /etc: (path laid in the tree, where it is in
    /// the commit, tmpfiles line that brings it back at boot).
    #[test]
    fn content_outside_usr_is_relocated_or_seeded() {
        let (_t, d) = fixture();
        d.write("etc/passwd", "core:x:1000:1000::/home/core:/bin/bash\n")
            .unwrap();
        d.write("etc/group", "core:x:1000:\n").unwrap();
        let rows: &[(&str, &str, &str)] = &[
            (
                "var/www/html/index.html",
                "usr/share/factory/var/www/html/index.html",
                "C /var/www/html/index.html - - - - /usr/share/factory/var/www/html/index.html",
            ),
            (
                "opt/tool/bin/tool",
                "usr/lib/opt/tool/bin/tool",
                "L /var/opt/tool - - - - /usr/lib/opt/tool",
            ),
            (
                "usr/local/bin/hello",
                "usr/lib/usrlocal/bin/hello",
                "L /var/usrlocal/bin - - - - /usr/lib/usrlocal/bin",
            ),
            (
                "root/.ssh/config",
                "usr/share/factory/var/roothome/.ssh/config",
                "C /var/roothome/.ssh/config - - - - /usr/share/factory/var/roothome/.ssh/config",
            ),
            (
                "home/core/.bashrc",
                "usr/share/factory/var/home/core/.bashrc",
                "C /var/home/core/.bashrc - core core - /usr/share/factory/var/home/core/.bashrc",
            ),
            (
                "srv/site/a b.txt",
                "usr/share/factory/var/srv/site/a b.txt",
                "C /var/srv/site/a\\x20b.txt - - - - /usr/share/factory/var/srv/site/a\\x20b.txt",
            ),
        ];
        for (path, _, _) in rows {
            d.create_dir_all(Path::new(path).parent().unwrap()).unwrap();
            d.write(path, "x").unwrap();
        }
        // A directory only (Debian's /usr/local skeleton) stays a /var directory.
        d.create_dir_all("usr/local/share/man").unwrap();
        let report = convert(&d, "", &[]).unwrap();
        let tmpfiles = d.read_to_string(VAR_TMPFILES).unwrap();
        for (path, kept, line) in rows {
            assert_eq!(d.read_to_string(kept).unwrap(), "x", "{path}");
            assert!(tmpfiles.lines().any(|l| l == *line), "{line}\n{tmpfiles}");
        }
        assert!(
            tmpfiles.contains("d /var/usrlocal/share/man 0755 "),
            "{tmpfiles}"
        );
        assert_eq!(
            report.relocated,
            [
                ("/opt/tool".to_string(), "/usr/lib/opt/tool".to_string()),
                ("/usr/local/bin".into(), "/usr/lib/usrlocal/bin".into())
            ]
        );
        assert_eq!(report.seeded.len(), 5, "{:?}", report.seeded);
    }

    #[test]
    fn overlay_files_in_build_state_are_refused() {
        let (_t, d) = fixture();
        let laid = [(
            "site".to_string(),
            vec![
                "etc/motd".to_string(),
                "var/lib/dpkg/status.d/x".to_string(),
            ],
        )];
        let err = convert(&d, "", &laid).unwrap_err().to_string();
        assert_eq!(
            err,
            "overlay site: /var/lib/dpkg/status.d/x is in /var/lib/dpkg, build state that hull \
             leaves out of the image (see docs/manifest.md, overlays)"
        );
        let (_t, d) = fixture();
        let laid = [("site".to_string(), vec!["var/lib/myapp/db".to_string()])];
        d.create_dir_all("var/lib/myapp").unwrap();
        d.write("var/lib/myapp/db", "").unwrap();
        assert!(convert(&d, "", &laid).is_ok());
    }

    #[test]
    fn no_kernel_or_two_kernels_are_errors() {
        let (_t, d) = fixture();
        d.remove_file("boot/vmlinuz-6.12.1-cloud-amd64").unwrap();
        let err = convert(&d, "", &[]).unwrap_err().to_string();
        assert!(err.contains("no kernel"), "{err}");

        let (_t, d) = fixture();
        d.write("boot/vmlinuz-6.13", "k").unwrap();
        let err = convert(&d, "", &[]).unwrap_err().to_string();
        assert!(err.contains("more than one kernel"), "{err}");
    }

    #[test]
    fn missing_initramfs_is_an_error() {
        let (_t, d) = fixture();
        d.remove_file("boot/initrd.img-6.12.1-cloud-amd64").unwrap();
        let err = convert(&d, "", &[]).unwrap_err().to_string();
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
