//! Laying the manifest's overlays over the installed tree, and re-running
//! what reads configuration at install time.
//!
//! The rule for modes: a directory the tree already has keeps its mode and
//! owner; new directories, files and symlinks take the overlay's mode (owner
//! root). Git records no directory modes (and of a file's only the executable
//! bit), so the mode of an existing directory in a checkout says nothing on
//! purpose: it is the umask of whoever checked out. Under umask 077 it is
//! 0700, and laid over /etc it would lock networkd and every other
//! unprivileged reader out. Files and new directories that only their owner
//! can read are kept as they are (a secret may be meant so) but named in a
//! warning.
//!
//! Extended attributes (file capabilities among them) go with each file and
//! directory, except `security.selinux`: that is the label of the machine
//! that checked the overlay out, not of the image.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, MetadataExt, PermissionsExt};
use rustix::fd::AsFd;

use crate::manifest::Overlay;

/// What laying one overlay did, for the build log and the install-time runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayReport {
    /// Directories the tree had whose mode the overlay's differed from:
    /// `(path, kept mode, overlay's mode)`; the tree's mode was kept.
    pub kept_dir_modes: Vec<(String, u32, u32)>,
    /// Files and new directories that grant nothing to group and others
    /// (what a checkout under umask 077 makes), with their mode.
    pub owner_only: Vec<(String, u32)>,
    /// Files and directories that carried extended attributes.
    pub with_xattrs: Vec<String>,
    /// Every non-directory the overlay laid, relative to `/`.
    pub files: Vec<String>,
}

/// Copies an overlay directory over the tree: directories are merged, files
/// and symlinks replace what was there; see the module doc for modes.
pub fn apply(root: &Dir, overlay: &Overlay) -> Result<OverlayReport> {
    let src = Dir::open_ambient_dir(&overlay.dir, ambient_authority())
        .with_context(|| format!("opening overlay {}", overlay.dir.display()))?;
    let mut report = OverlayReport::default();
    copy_tree(&src, root, Path::new(""), &mut report)
        .with_context(|| format!("applying overlay {}", overlay.dir.display()))?;
    Ok(report)
}

/// Logs what the build log must say about one overlay's report.
pub fn log_report(overlay: &Overlay, r: &OverlayReport) {
    let name = &overlay.name;
    if !r.kept_dir_modes.is_empty() {
        log::info!(
            "overlay {name}: {} directories the tree already has keep their modes (the overlay's are \
             ignored, see docs/manifest.md, overlays): {}",
            r.kept_dir_modes.len(),
            sample(r.kept_dir_modes.iter().map(|(p, kept, theirs)| {
                format!("/{p} {kept:04o} (overlay {theirs:04o})")
            }))
        );
    }
    if !r.owner_only.is_empty() {
        log::warn!(
            "overlay {name}: {} paths are readable by their owner (root) only, as a checkout under \
             umask 077 makes them; services that drop root cannot read them (chmod them in {} if \
             that is not meant): {}",
            r.owner_only.len(),
            overlay.dir.display(),
            sample(r.owner_only.iter().map(|(p, m)| format!("/{p} {m:04o}")))
        );
    }
    if !r.with_xattrs.is_empty() {
        log::info!(
            "overlay {name}: extended attributes carried on {}",
            sample(r.with_xattrs.iter().map(|p| format!("/{p}")))
        );
    }
}

/// At most eight items joined by commas, then how many more.
pub fn sample(items: impl Iterator<Item = String>) -> String {
    let all: Vec<String> = items.collect();
    let mut text = all.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
    if all.len() > 8 {
        text.push_str(&format!(" and {} more", all.len() - 8));
    }
    text
}

fn copy_tree(src: &Dir, dst: &Dir, rel: &Path, report: &mut OverlayReport) -> Result<()> {
    let read = if rel.as_os_str().is_empty() {
        src.entries()?
    } else {
        src.read_dir(rel)?
    };
    let mut names: Vec<_> = read
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for name in names {
        let path = rel.join(&name);
        let shown = path.display().to_string();
        let meta = src.symlink_metadata(&path)?;
        let mode = meta.mode() & 0o7777;
        let ft = meta.file_type();
        if ft.is_dir() {
            // `metadata` follows symlinks inside the tree (merged /usr: /lib
            // is one): the overlay's lib/ goes into usr/lib.
            match dst.metadata(&path) {
                Ok(existing) if existing.is_dir() => {
                    let kept = existing.mode() & 0o7777;
                    if kept != mode {
                        report.kept_dir_modes.push((shown.clone(), kept, mode));
                    }
                }
                _ => {
                    remove_any(dst, &path)?;
                    dst.create_dir(&path)
                        .with_context(|| format!("creating /{shown}"))?;
                    set_mode(dst, &path, mode)?;
                    if mode & 0o077 == 0 {
                        report.owner_only.push((shown.clone(), mode));
                    }
                }
            }
            let from = open_dir_fd(src, &path)?;
            let to = open_dir_fd(dst, &path)?;
            if copy_xattrs(&from, &to).with_context(|| format!("/{shown}: extended attributes"))? {
                report.with_xattrs.push(shown.clone());
            }
            copy_tree(src, dst, &path, report)?;
        } else if ft.is_symlink() {
            remove_any(dst, &path)?;
            let target = src.read_link_contents(&path)?;
            // Raw contents: absolute targets (`/dev/null` masks a unit) are
            // meant for the booted system, not resolved here.
            dst.symlink_contents(&target, &path)
                .with_context(|| format!("linking /{shown}"))?;
            report.files.push(shown);
        } else if ft.is_file() {
            remove_any(dst, &path)?;
            src.copy(&path, dst, &path)
                .with_context(|| format!("copying {shown}"))?;
            set_mode(dst, &path, mode)?;
            // After the mode and the contents: writing a file drops its
            // capabilities.
            let from = src.open(&path)?;
            let to = dst.open(&path)?;
            if copy_xattrs(&from, &to).with_context(|| format!("/{shown}: extended attributes"))? {
                report.with_xattrs.push(shown.clone());
            }
            if mode & 0o077 == 0 {
                report.owner_only.push((shown.clone(), mode));
            }
            report.files.push(shown);
        } else {
            bail!("{shown}: overlays hold only files, directories and symlinks");
        }
    }
    Ok(())
}

/// A readable descriptor of the directory `path` (cap-std's own is O_PATH,
/// on which the kernel refuses attribute calls): `.` opened from it, so it
/// stays the directory cap-std resolved inside the tree.
pub fn open_dir_fd(dir: &Dir, path: &Path) -> Result<rustix::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let d = dir
        .open_dir(path)
        .with_context(|| format!("opening /{}", path.display()))?;
    rustix::fs::openat(
        &d,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening /{}", path.display()))
}

fn set_mode(dst: &Dir, path: &Path, mode: u32) -> Result<()> {
    dst.set_permissions(path, cap_std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of /{}", path.display()))
}

/// Copies the extended attributes of `from` onto `to` (but `security.selinux`);
/// says whether there were any.
pub fn copy_xattrs(from: impl AsFd, to: impl AsFd) -> Result<bool> {
    let attrs = read_xattrs(&from)?;
    for (name, value) in &attrs {
        rustix::fs::fsetxattr(&to, name.as_str(), value, rustix::fs::XattrFlags::empty())
            .with_context(|| format!("setting {name}"))?;
    }
    Ok(!attrs.is_empty())
}

/// The extended attributes of an open file, by name (but `security.selinux`).
pub fn read_xattrs(fd: impl AsFd) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut names = vec![0u8; 4096];
    let len = loop {
        match rustix::fs::flistxattr(&fd, &mut names) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(BTreeMap::new()),
            Err(e) => return Err(e).context("listing extended attributes"),
        }
    };
    let mut out = BTreeMap::new();
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if name == "security.selinux" {
            continue;
        }
        let mut value = vec![0u8; 256];
        let n = loop {
            match rustix::fs::fgetxattr(&fd, name.as_str(), &mut value) {
                Ok(n) => break n,
                Err(rustix::io::Errno::RANGE) => value.resize(value.len() * 16, 0),
                Err(e) => return Err(e).with_context(|| format!("reading {name}")),
            }
        };
        value.truncate(n);
        out.insert(name, value);
    }
    Ok(out)
}

/// Removes a non-directory at `path`, or a directory reached through a
/// symlink that leaves the tree (cap-std refuses to follow it): the overlay's
/// directory replaces it. An empty spot: nothing to do.
fn remove_any(dst: &Dir, path: &Path) -> Result<()> {
    match dst.symlink_metadata(path) {
        Ok(m) if m.is_dir() => dst.remove_dir_all(path)?,
        Ok(_) => dst.remove_file(path)?,
        Err(_) => {}
    }
    Ok(())
}

/// A program that reads configuration when packages install, and so must
/// run again when an overlay brings such configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consumer {
    /// What it makes, for the log.
    pub makes: &'static str,
    /// Paths (relative to `/`) it reads: a name ending in `/` is a directory
    /// and everything under it.
    pub reads: &'static [&'static str],
    /// The program, relative to `/`, and the package that brings it.
    pub program: &'static str,
    pub package: &'static str,
    /// The command run under chroot.
    pub command: &'static [&'static str],
    /// What hull does on the host after it.
    pub then: Then,
}

/// A consumer's step on the host after its command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    Nothing,
    /// The command left the initramfs uncompressed: check and compress it
    /// ([`super::initramfs::finish_default`]).
    CompressInitramfs,
}

/// Everything hull knows to be read at install time, in the order re-run.
/// (Files read at boot or by tools hull runs after the overlays, such as
/// `/etc/default/locale` or `/etc/login.defs`, need nothing.)
pub const CONSUMERS: &[Consumer] = &[
    Consumer {
        makes: "the compiled locales",
        reads: &["etc/locale.gen"],
        program: "usr/sbin/locale-gen",
        package: "locales",
        command: &["locale-gen"],
        then: Then::Nothing,
    },
    Consumer {
        makes: "the CA certificate bundle",
        reads: &[
            "etc/ca-certificates.conf",
            "usr/local/share/ca-certificates/",
            "etc/ca-certificates/update.d/",
        ],
        program: "usr/sbin/update-ca-certificates",
        package: "ca-certificates",
        command: &["update-ca-certificates"],
        then: Then::Nothing,
    },
    Consumer {
        makes: "the dynamic linker cache",
        reads: &["etc/ld.so.conf", "etc/ld.so.conf.d/"],
        program: "usr/sbin/ldconfig",
        package: "libc-bin",
        command: &["ldconfig"],
        then: Then::Nothing,
    },
    // Last: an initramfs may hold locales, certificates and libraries.
    Consumer {
        makes: "the initramfs",
        reads: &["etc/dracut.conf", "etc/dracut.conf.d/", "usr/lib/dracut/"],
        program: "usr/bin/dracut",
        package: "dracut",
        command: &["/bin/sh", "-c", super::initramfs::BUILD_UNCOMPRESSED],
        then: Then::CompressInitramfs,
    },
];

/// The consumers that `files` (laid by overlays, relative to `/`) touch,
/// each with the first file that touches it.
pub fn touched<'a>(files: impl IntoIterator<Item = &'a str>) -> Vec<(&'static Consumer, String)> {
    let mut found: Vec<(&'static Consumer, String)> = Vec::new();
    for file in files {
        // merged /usr: an overlay may write lib/dracut for usr/lib/dracut
        let file = if file.starts_with("lib/") {
            format!("usr/{file}")
        } else {
            file.to_string()
        };
        for c in CONSUMERS {
            let hit = c.reads.iter().any(|r| match r.strip_suffix('/') {
                Some(dir) => file.starts_with(r) && file.len() > dir.len() + 1,
                None => file == *r,
            });
            if hit && !found.iter().any(|(f, _)| std::ptr::eq(*f, c)) {
                found.push((c, file.clone()));
            }
        }
    }
    found.sort_by_key(|(c, _)| CONSUMERS.iter().position(|x| std::ptr::eq(x, *c)));
    found
}

/// Runs again, under chroot in the tree, every consumer whose configuration
/// the overlays (files by overlay name) brought. A consumer the tree lacks
/// is an error naming the file and the package.
pub fn rerun_consumers(
    root_path: &Path,
    root: &Dir,
    files: &[(String, Vec<String>)],
) -> Result<()> {
    for (overlay, list) in files {
        for (c, file) in touched(list.iter().map(String::as_str)) {
            if !root.exists(c.program) {
                bail!(
                    "overlay {overlay}: /{file} is read by /{} to make {}, which the tree does not \
                     have: add {} to packages.include",
                    c.program,
                    c.makes,
                    c.package
                );
            }
        }
    }
    let all = files.iter().flat_map(|(_, l)| l.iter().map(String::as_str));
    for (c, file) in touched(all) {
        log::info!(
            "making {} again: /{file} from an overlay is read by /{}",
            c.makes,
            c.program
        );
        super::customize::chroot(root_path, c.command)
            .and_then(|()| match c.then {
                Then::Nothing => Ok(()),
                Then::CompressInitramfs => super::initramfs::finish_default(root_path),
            })
            .with_context(|| format!("making {} again for /{file}", c.makes))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> (tempfile::TempDir, tempfile::TempDir, Dir, Dir) {
        let s = tempfile::tempdir().unwrap();
        let d = tempfile::tempdir().unwrap();
        let src = Dir::open_ambient_dir(s.path(), ambient_authority()).unwrap();
        let dst = Dir::open_ambient_dir(d.path(), ambient_authority()).unwrap();
        (s, d, src, dst)
    }

    fn overlay(t: &tempfile::TempDir) -> Overlay {
        Overlay {
            name: "t".into(),
            dir: t.path().to_path_buf(),
        }
    }

    fn mode(d: &Dir, p: &str) -> u32 {
        d.symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn merges_dirs_replaces_files_keeps_file_modes() {
        let (s, _d, src, dst) = dirs();
        src.create_dir_all("etc/sysctl.d").unwrap();
        src.write("etc/sysctl.d/50-hull.conf", "kernel.kptr_restrict = 2\n")
            .unwrap();
        src.create_dir_all("usr/local/bin").unwrap();
        src.write("usr/local/bin/tool", "#!/bin/sh\n").unwrap();
        set_mode(&src, Path::new("usr/local/bin/tool"), 0o750).unwrap();
        src.symlink("50-hull.conf", "etc/sysctl.d/99-link.conf")
            .unwrap();
        src.create_dir_all("etc/systemd/system").unwrap();
        src.symlink_contents("/dev/null", "etc/systemd/system/debug-shell.service")
            .unwrap();
        src.write("etc/motd", "new\n").unwrap();

        dst.create_dir_all("etc/sysctl.d").unwrap();
        dst.write("etc/sysctl.d/10-keep.conf", "keep\n").unwrap();
        dst.write("etc/motd", "old\n").unwrap();
        dst.symlink("elsewhere", "etc/sysctl.d/99-link.conf")
            .unwrap();

        let r = apply(&dst, &overlay(&s)).unwrap();
        let read = |p: &str| dst.read_to_string(p).unwrap();
        assert_eq!(read("etc/sysctl.d/10-keep.conf"), "keep\n");
        assert_eq!(read("etc/motd"), "new\n");
        assert_eq!(
            read("etc/sysctl.d/50-hull.conf"),
            "kernel.kptr_restrict = 2\n"
        );
        assert_eq!(
            dst.read_link_contents("etc/sysctl.d/99-link.conf").unwrap(),
            Path::new("50-hull.conf")
        );
        assert_eq!(mode(&dst, "usr/local/bin/tool"), 0o750);
        assert_eq!(
            dst.read_link_contents("etc/systemd/system/debug-shell.service")
                .unwrap(),
            Path::new("/dev/null")
        );
        assert!(r.files.contains(&"usr/local/bin/tool".to_string()));
        assert!(r.files.contains(&"etc/sysctl.d/99-link.conf".to_string()));
    }

    /// Existing directories keep their mode; new ones, and files, take the
    /// overlay's; what only the owner can read is reported. Rows: (path,
    /// mode in the tree before or None, mode in the overlay, mode after,
    /// reported as owner-only).
    #[test]
    fn modes_of_a_umask_077_checkout() {
        let rows: &[(&str, Option<u32>, u32, u32, bool)] = &[
            ("etc", Some(0o755), 0o700, 0o755, false),
            ("etc/systemd", Some(0o755), 0o700, 0o755, false),
            ("etc/systemd/network", Some(0o755), 0o700, 0o755, false),
            ("etc/ssl", Some(0o755), 0o755, 0o755, false),
            ("etc/ssl/private", Some(0o710), 0o700, 0o710, false),
            ("etc/myapp", None, 0o700, 0o700, true),
            ("etc/shared", None, 0o755, 0o755, false),
            ("etc/sticky", None, 0o1777, 0o1777, false),
        ];
        let files: &[(&str, u32, bool)] = &[
            ("etc/systemd/network/10-eth.network", 0o600, true),
            ("etc/myapp/secret", 0o640, false),
            ("etc/shared/tool", 0o755, false),
        ];
        let (s, _d, src, dst) = dirs();
        for (path, before, overlay_mode, _, _) in rows {
            src.create_dir(path).unwrap();
            set_mode(&src, Path::new(path), *overlay_mode).unwrap();
            if let Some(m) = before {
                dst.create_dir(path).unwrap();
                set_mode(&dst, Path::new(path), *m).unwrap();
            }
        }
        for (path, m, _) in files {
            src.write(path, "x").unwrap();
            set_mode(&src, Path::new(path), *m).unwrap();
        }
        let r = apply(&dst, &overlay(&s)).unwrap();
        for (path, before, overlay_mode, after, owner_only) in rows {
            assert_eq!(mode(&dst, path), *after, "{path}");
            let kept = r.kept_dir_modes.iter().any(|(p, _, _)| p == path);
            assert_eq!(kept, before.is_some_and(|b| b != *overlay_mode), "{path}");
            let reported = r.owner_only.iter().any(|(p, _)| p == path);
            assert_eq!(reported, *owner_only, "{path}");
        }
        for (path, m, owner_only) in files {
            assert_eq!(mode(&dst, path), *m, "{path}");
            assert_eq!(
                r.owner_only.iter().any(|(p, _)| p == path),
                *owner_only,
                "{path}"
            );
        }
        assert!(r.kept_dir_modes.contains(&("etc".into(), 0o755, 0o700)));
    }

    #[test]
    fn symlink_cannot_lead_writes_outside() {
        // A symlink in the tree pointing outside must not let the overlay
        // write there: cap-std refuses to follow it out of the tree.
        let (s, d, src, dst) = dirs();
        let outside = tempfile::tempdir().unwrap();
        src.create_dir_all("escape").unwrap();
        src.write("escape/file", "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("escape")).unwrap();
        apply(&dst, &overlay(&s)).unwrap();
        // The symlink was replaced by a real directory inside the tree.
        assert!(dst.symlink_metadata("escape").unwrap().is_dir());
        assert!(!outside.path().join("file").exists());
    }

    #[test]
    fn merged_usr_symlinks_are_followed_inside_the_tree() {
        let (s, _d, src, dst) = dirs();
        src.create_dir_all("lib/systemd").unwrap();
        src.write("lib/systemd/x.conf", "x").unwrap();
        dst.create_dir_all("usr/lib/systemd").unwrap();
        dst.symlink("usr/lib", "lib").unwrap();
        apply(&dst, &overlay(&s)).unwrap();
        assert_eq!(dst.read_to_string("usr/lib/systemd/x.conf").unwrap(), "x");
        assert!(dst.symlink_metadata("lib").unwrap().is_symlink());
    }

    /// `user.*` attributes can be set by anyone; file capabilities need
    /// root (the builder's case), so they are tried when the test is root.
    #[test]
    fn extended_attributes_are_carried() {
        let (s, _d, src, dst) = dirs();
        src.create_dir("bin").unwrap();
        src.write("bin/ping", "elf").unwrap();
        let f = src.open("bin/ping").unwrap();
        let user_ok =
            rustix::fs::fsetxattr(&f, "user.hull", b"yes", rustix::fs::XattrFlags::empty()).is_ok();
        // cap_net_raw+ep, as `setcap cap_net_raw+ep` writes it (VFS_CAP_REVISION_2)
        let cap: [u8; 20] = [
            0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0,
            0, 0, 0,
        ];
        let cap_ok = rustix::fs::fsetxattr(
            &f,
            "security.capability",
            &cap,
            rustix::fs::XattrFlags::empty(),
        )
        .is_ok();
        drop(f);
        if !user_ok && !cap_ok {
            eprintln!("skipped: the temp filesystem takes no extended attributes");
            return;
        }
        let r = apply(&dst, &overlay(&s)).unwrap();
        let got = read_xattrs(dst.open("bin/ping").unwrap()).unwrap();
        if user_ok {
            assert_eq!(got.get("user.hull").map(Vec::as_slice), Some(&b"yes"[..]));
        }
        if cap_ok {
            assert_eq!(
                got.get("security.capability").map(Vec::as_slice),
                Some(&cap[..])
            );
        }
        assert_eq!(r.with_xattrs, ["bin/ping"]);
    }

    #[test]
    fn install_time_files_name_their_consumer() {
        let name = |files: &[&str]| -> Vec<&str> {
            touched(files.iter().copied())
                .into_iter()
                .map(|(c, _)| c.package)
                .collect()
        };
        // (files an overlay laid, consumers run in order)
        let rows: &[(&[&str], &[&str])] = &[
            (&["etc/motd", "etc/default/locale"], &[]),
            (&["etc/dracut.conf.d/90-x.conf"], &["dracut"]),
            (&["etc/dracut.conf"], &["dracut"]),
            (&["lib/dracut/modules.d/99x/module-setup.sh"], &["dracut"]),
            (&["etc/dracut.conf.d"], &[]),
            (&["etc/dracut.conf.bak"], &[]),
            (
                &[
                    "etc/dracut.conf.d/a.conf",
                    "etc/locale.gen",
                    "etc/ld.so.conf.d/x.conf",
                ],
                &["locales", "libc-bin", "dracut"],
            ),
            (
                &["usr/local/share/ca-certificates/site.crt"],
                &["ca-certificates"],
            ),
        ];
        for (files, want) in rows {
            assert_eq!(name(files), *want, "{files:?}");
        }
        let (_, first) = &touched([
            "etc/x",
            "etc/dracut.conf.d/b.conf",
            "etc/dracut.conf.d/c.conf",
        ])[0];
        assert_eq!(first, "etc/dracut.conf.d/b.conf");
    }

    #[test]
    fn a_missing_consumer_is_an_error_naming_the_file_and_package() {
        let t = tempfile::tempdir().unwrap();
        let root = Dir::open_ambient_dir(t.path(), ambient_authority()).unwrap();
        let err = rerun_consumers(
            t.path(),
            &root,
            &[("site".into(), vec!["etc/locale.gen".into()])],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "overlay site: /etc/locale.gen is read by /usr/sbin/locale-gen to make the compiled \
             locales, which the tree does not have: add locales to packages.include"
        );
    }
}
