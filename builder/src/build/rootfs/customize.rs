//! What the manifest adds to the installed tree: overlays, hostname, users,
//! unit states.
//!
//! Files are laid down through a `cap_std::fs::Dir`; account and unit
//! changes run the tree's own `useradd`/`systemctl` under `chroot`, so they
//! are made by the same tool versions that will run on the host.

use std::path::Path;

use anyhow::{Context, Result};
use cap_std::fs::Dir;

use super::accounts::{Account, Ids};
use super::ostree_layout::write_file;
use super::overlay;
use crate::manifest::{Arch, Manifest, User};
use crate::util::cmd::Cmd;

/// sshd looks for keys here too, so keys given in the manifest live in
/// /etc (merged across updates) rather than in a home directory under /var.
pub const AUTHORIZED_KEYS_DIR: &str = "etc/ssh/authorized_keys.d";
const SSHD_DROPIN: &str = "etc/ssh/sshd_config.d/50-hull.conf";
const SSHD_DROPIN_TEXT: &str = "# written by hull: keys from the manifest, no passwords, no root\n\
AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/authorized_keys.d/%u\n\
PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n";
const USERS_TMPFILES: &str = "usr/lib/tmpfiles.d/hull-users.conf";

/// Applies everything in order: overlays first, so that units and files they
/// bring can be enabled and used by what follows, then what reads their
/// install-time configuration runs again ([`overlay::CONSUMERS`]).
/// `accounts` are the planned ids of the accounts made here and by
/// [`super::hardening`]. Returns the non-directories each overlay laid
/// (relative to `/`), by overlay name.
pub fn apply(
    root_path: &Path,
    root: &Dir,
    manifest: &Manifest,
    agent: &Path,
    arch: Arch,
    accounts: &[Account],
) -> Result<Vec<(String, Vec<String>)>> {
    let mut laid = Vec::new();
    for o in &manifest.overlays {
        let report = overlay::apply(root, o)?;
        overlay::log_report(o, &report);
        laid.push((o.name.clone(), report.files));
    }
    overlay::rerun_consumers(root_path, root, &laid)?;
    super::accounts::check_free(&Ids::read_tree(root, "etc")?, accounts)?;
    super::agent::install(root, manifest, agent, arch)?;
    let agent_units = super::update_agent::install(root, manifest)?;
    let mut args = vec!["systemctl", "enable"];
    args.extend(super::agent::UNITS);
    args.extend(agent_units);
    chroot(root_path, &args)?;
    // A container host has no graphical session: it boots to
    // multi-user.target (Debian's default.target is graphical.target).
    chroot(
        root_path,
        &["systemctl", "set-default", "multi-user.target"],
    )?;
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
    super::containers::apply(root, manifest)?;
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
    Ok(laid)
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
        // Its sub-id range follows from its uid (set below), not from the
        // order accounts are made in.
        "-K",
        "SUB_UID_COUNT=0",
        "-K",
        "SUB_GID_COUNT=0",
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
    let subids = super::accounts::subid_command(account)?;
    chroot(
        root_path,
        &subids.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .with_context(|| format!("giving user {} its sub-id range", user.name))?;
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
