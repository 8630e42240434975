//! What the manifest adds to the installed tree: overlays, hostname, users,
//! unit states.
//!
//! Files are laid down through a `cap_std::fs::Dir`; account and unit
//! changes run the tree's own `useradd`/`systemctl` under `chroot`, so they
//! are made by the same tool versions that will run on the host.

use std::path::Path;

use anyhow::{Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, PermissionsExt};

use super::accounts::{Account, Ids};
use super::ostree_layout::write_file;
use crate::cmd::Cmd;
use crate::manifest::{Arch, Manifest, Overlay, User};

/// sshd looks for keys here too, so keys given in the manifest live in
/// /etc (merged across updates) rather than in a home directory under /var.
pub const AUTHORIZED_KEYS_DIR: &str = "etc/ssh/authorized_keys.d";
const SSHD_DROPIN: &str = "etc/ssh/sshd_config.d/50-hull.conf";
const SSHD_DROPIN_TEXT: &str = "# written by hull: keys from the manifest, no passwords, no root\n\
AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/authorized_keys.d/%u\n\
PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n";
const USERS_TMPFILES: &str = "usr/lib/tmpfiles.d/hull-users.conf";

/// Applies everything in order: overlays first, so that units and files they
/// bring can be enabled and used by what follows. `accounts` are the
/// planned ids of the accounts made here and by [`super::hardening`].
pub fn apply(
    root_path: &Path,
    root: &Dir,
    manifest: &Manifest,
    agent: &Path,
    arch: Arch,
    accounts: &[Account],
) -> Result<()> {
    for overlay in &manifest.overlays {
        apply_overlay(root, overlay)?;
    }
    super::accounts::check_free(&Ids::read_tree(root, "etc")?, accounts)?;
    super::agent::install(root, manifest, agent, arch)?;
    let mut args = vec!["systemctl", "enable"];
    args.extend(super::agent::UNITS);
    chroot(root_path, &args)?;
    write_file(
        root,
        "etc/hostname",
        format!("{}\n", manifest.hostname).as_bytes(),
        0o644,
    )?;
    // Host keys made by openssh-server's postinst would be shared by every
    // machine booted from this image; sshd-keygen makes them at first boot.
    remove_ssh_host_keys(root)?;
    // Every machine gets its own machine-id at first boot.
    write_file(root, "etc/machine-id", b"", 0o444)?;
    chroot(root_path, &["passwd", "--lock", "root"])?;
    for user in &manifest.users {
        add_user(
            root_path,
            root,
            user,
            super::accounts::find(accounts, &user.name)?,
        )?;
    }
    if manifest
        .users
        .iter()
        .any(|u| !u.ssh_authorized_keys.is_empty())
    {
        write_file(root, SSHD_DROPIN, SSHD_DROPIN_TEXT.as_bytes(), 0o644)?;
    }
    let tmpfiles: String = manifest
        .users
        .iter()
        .map(|u| format!("d /var/home/{0} 0700 {0} {0} -\n", u.name))
        .collect();
    if !tmpfiles.is_empty() {
        write_file(root, USERS_TMPFILES, tmpfiles.as_bytes(), 0o644)?;
    }
    // Before [units], so that the manifest has the last word on unit states.
    super::hardening::apply(root_path, root, manifest, accounts)?;
    for (verb, units) in [
        ("enable", &manifest.units.enable),
        ("disable", &manifest.units.disable),
        ("mask", &manifest.units.mask),
    ] {
        if !units.is_empty() {
            let mut args = vec!["systemctl", verb];
            args.extend(units.iter().map(String::as_str));
            chroot(root_path, &args)?;
        }
    }
    Ok(())
}

/// Runs `args` under chroot in the tree, with the tree's own tools.
pub(super) fn chroot(root_path: &Path, args: &[&str]) -> Result<()> {
    Cmd::new("chroot").arg(root_path).args(args).run()
}

fn remove_ssh_host_keys(root: &Dir) -> Result<()> {
    if !root.is_dir("etc/ssh") {
        return Ok(());
    }
    for entry in root.read_dir("etc/ssh")? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with("ssh_host_") {
            root.remove_file(format!("etc/ssh/{name}"))
                .with_context(|| format!("removing /etc/ssh/{name}"))?;
        }
    }
    Ok(())
}

fn add_user(root_path: &Path, root: &Dir, user: &User, account: &Account) -> Result<()> {
    let home = format!("/home/{}", user.name);
    let mut args = vec![
        "--no-create-home",
        "--home-dir",
        &home,
        "--shell",
        "/bin/bash",
    ];
    let groups = user.groups.join(",");
    if !groups.is_empty() {
        args.extend(["--groups", &groups]);
    }
    super::accounts::create(root_path, account, &args)
        .with_context(|| format!("creating user {}", user.name))?;
    if !user.ssh_authorized_keys.is_empty() {
        let keys = user.ssh_authorized_keys.join("\n") + "\n";
        write_file(
            root,
            &format!("{AUTHORIZED_KEYS_DIR}/{}", user.name),
            keys.as_bytes(),
            0o644,
        )?;
    }
    Ok(())
}

/// Copies an overlay directory over the tree: directories are merged, files
/// and symlinks replace what was there, modes are kept, owners are root.
pub fn apply_overlay(root: &Dir, overlay: &Overlay) -> Result<()> {
    let src = Dir::open_ambient_dir(&overlay.dir, ambient_authority())
        .with_context(|| format!("opening overlay {}", overlay.dir.display()))?;
    copy_tree(&src, root, Path::new(""))
        .with_context(|| format!("applying overlay {}", overlay.dir.display()))
}

fn copy_tree(src: &Dir, dst: &Dir, rel: &Path) -> Result<()> {
    let read = if rel.as_os_str().is_empty() {
        src.entries()?
    } else {
        src.read_dir(rel)?
    };
    for entry in read {
        let entry = entry?;
        let path = rel.join(entry.file_name());
        let meta = src.symlink_metadata(&path)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            if !dst.is_dir(&path) {
                remove_any(dst, &path)?;
                dst.create_dir(&path)
                    .with_context(|| format!("creating /{}", path.display()))?;
            }
            dst.set_permissions(
                &path,
                cap_std::fs::Permissions::from_mode(meta.permissions().mode()),
            )?;
            copy_tree(src, dst, &path)?;
        } else if ft.is_symlink() {
            remove_any(dst, &path)?;
            let target = src.read_link_contents(&path)?;
            // Raw contents: absolute targets (`/dev/null` masks a unit) are
            // meant for the booted system, not resolved here.
            dst.symlink_contents(&target, &path)
                .with_context(|| format!("linking /{}", path.display()))?;
        } else if ft.is_file() {
            remove_any(dst, &path)?;
            src.copy(&path, dst, &path)
                .with_context(|| format!("copying {}", path.display()))?;
            dst.set_permissions(
                &path,
                cap_std::fs::Permissions::from_mode(meta.permissions().mode()),
            )?;
        } else {
            anyhow::bail!(
                "{}: overlays hold only files, directories and symlinks",
                path.display()
            );
        }
    }
    Ok(())
}

/// Removes a non-directory at `path` (or an empty spot: nothing to do).
fn remove_any(dst: &Dir, path: &Path) -> Result<()> {
    match dst.symlink_metadata(path) {
        Ok(m) if m.is_dir() => dst.remove_dir_all(path)?,
        Ok(_) => dst.remove_file(path)?,
        Err(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::fs::MetadataExt;

    #[test]
    fn overlay_merges_dirs_replaces_files_keeps_modes() {
        let src_t = tempfile::tempdir().unwrap();
        let dst_t = tempfile::tempdir().unwrap();
        let src = Dir::open_ambient_dir(src_t.path(), ambient_authority()).unwrap();
        let dst = Dir::open_ambient_dir(dst_t.path(), ambient_authority()).unwrap();
        src.create_dir_all("etc/sysctl.d").unwrap();
        src.write("etc/sysctl.d/50-hull.conf", "kernel.kptr_restrict = 2\n")
            .unwrap();
        src.create_dir_all("usr/local/bin").unwrap();
        src.write("usr/local/bin/tool", "#!/bin/sh\n").unwrap();
        src.set_permissions(
            "usr/local/bin/tool",
            cap_std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
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

        let overlay = Overlay {
            name: "t".into(),
            dir: src_t.path().to_path_buf(),
        };
        apply_overlay(&dst, &overlay).unwrap();
        assert_eq!(
            dst.read_to_string("etc/sysctl.d/10-keep.conf").unwrap(),
            "keep\n"
        );
        assert_eq!(dst.read_to_string("etc/motd").unwrap(), "new\n");
        assert_eq!(
            dst.read_to_string("etc/sysctl.d/50-hull.conf").unwrap(),
            "kernel.kptr_restrict = 2\n"
        );
        assert_eq!(
            dst.read_link_contents("etc/sysctl.d/99-link.conf").unwrap(),
            Path::new("50-hull.conf")
        );
        assert_eq!(
            dst.metadata("usr/local/bin/tool").unwrap().mode() & 0o777,
            0o750
        );
        assert_eq!(
            dst.read_link_contents("etc/systemd/system/debug-shell.service")
                .unwrap(),
            Path::new("/dev/null")
        );
    }

    #[test]
    fn overlay_symlink_cannot_lead_writes_outside() {
        // A symlink in the tree pointing outside must not let the overlay
        // write there: cap-std refuses to follow it out of the tree.
        let src_t = tempfile::tempdir().unwrap();
        let dst_t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let src = Dir::open_ambient_dir(src_t.path(), ambient_authority()).unwrap();
        let dst = Dir::open_ambient_dir(dst_t.path(), ambient_authority()).unwrap();
        src.create_dir_all("escape").unwrap();
        src.write("escape/file", "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), dst_t.path().join("escape")).unwrap();
        let overlay = Overlay {
            name: "t".into(),
            dir: src_t.path().to_path_buf(),
        };
        apply_overlay(&dst, &overlay).unwrap();
        // The symlink was replaced by a real directory inside the tree.
        assert!(dst.symlink_metadata("escape").unwrap().is_dir());
        assert!(!outside.path().join("file").exists());
    }
}
