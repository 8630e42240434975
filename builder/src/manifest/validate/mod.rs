//! The composed raw manifest into the typed [`Manifest`]: defaults filled in,
//! every value checked.
//!
//! Errors are one line, `<manifest>: <key>: <message>`, naming the top-level
//! manifest file and the key (with its index for list items, as in
//! `packages.include[2]` or `users[0].groups[1]`; indices count in the
//! composed lists).

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, Error, Result};
use sha2::{Digest, Sha256};

mod checks;
pub(super) mod overlays;
mod sections;
mod targets;
#[cfg(test)]
mod tests;
mod update;

pub use checks::*;
use overlays::*;
use sections::*;
use targets::*;
use update::*;

use super::compose::Composed;
use super::load::{Loaded, OverlayError};
use super::raw::{
    RawHealth, RawImage, RawKernel, RawManifest, RawPackages, RawPerArch, RawSize, RawUnits,
    RawUpdate, RawUser, RawWindow,
};
use super::{
    Arch, Health, ImageSize, Kernel, Manifest, Overlay, Packages, Target, TrustedKey, Units,
    Update, UpdateAgent, User,
};

pub const DEFAULT_STREAM: &str = "stable";
pub const DEFAULT_SUITE: &str = "trixie";
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// The kernel package when the manifest names none for `arch`: Debian's
/// cloud flavour, which leaves out drivers for hardware a VM never sees.
pub fn default_kernel(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "linux-image-cloud-amd64",
        Arch::Aarch64 => "linux-image-cloud-arm64",
    }
}
pub const DEFAULT_IMAGE_SIZE: u64 = 4 << 30;
pub const DEFAULT_ESP_SIZE: u64 = 256 << 20;
/// The smallest ESP hull accepts.
pub const MIN_ESP_SIZE: u64 = 64 << 20;
/// The disk must be larger than the ESP by more than this.
pub const MIN_ROOT_SIZE: u64 = 512 << 20;
/// Boot tries a new deployment gets when the manifest does not say.
pub const DEFAULT_BOOT_TRIES: u32 = 3;
/// systemd-boot counts tries in the entry's file name; more than this many
/// failed boots in a row only delays the rollback.
pub const MAX_BOOT_TRIES: u32 = 9;
/// The directory, next to the manifest or in one of its ancestors, that
/// holds the overlay directories.
pub const OVERLAY_ROOT: &str = "rootfs-overlays";
/// The longest host name Linux keeps (`HOST_NAME_MAX`); systemd refuses longer.
pub const HOST_NAME_MAX: usize = 64;
/// systemd's `UNIT_NAME_MAX`, the terminating NUL included.
pub const UNIT_NAME_MAX: usize = 256;
/// The accounts every Debian system has (base-passwd's passwd.master): a
/// `[[users]]` entry of one of these names fails in useradd.
pub const BASE_PASSWD_USERS: &[&str] = &[
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
    "www-data", "backup", "list", "irc", "_apt", "nobody",
];
/// The groups every Debian system has (base-passwd's group.master): each
/// user gets a group of its own name, which useradd refuses to make twice.
pub const BASE_PASSWD_GROUPS: &[&str] = &[
    "root", "daemon", "bin", "sys", "adm", "tty", "disk", "lp", "mail", "news", "uucp", "man",
    "proxy", "kmem", "dialout", "fax", "voice", "cdrom", "floppy", "tape", "sudo", "audio", "dip",
    "www-data", "backup", "operator", "list", "irc", "src", "shadow", "utmp", "video", "sasl",
    "plugdev", "staff", "games", "users", "nogroup",
];
/// Unit types hull can enable, disable or mask.
pub const UNIT_SUFFIXES: &[&str] = &[
    ".service",
    ".socket",
    ".timer",
    ".target",
    ".mount",
    ".path",
    ".slice",
    ".scope",
    ".automount",
    ".swap",
    ".device",
];

/// Checks `composed` (read from the manifest at `path`) and fills defaults,
/// taking every file it names from `loaded` ([`super::load::load`]): no I/O.
/// A read failure kept in `loaded` is reported when its key is reached.
pub fn validate(path: &Path, composed: Composed, loaded: &Loaded) -> Result<Manifest> {
    let cx = Cx {
        file: path.display().to_string(),
    };
    let Composed {
        raw,
        files,
        bytes,
        overlay_origins: _,
    } = composed;
    let RawManifest {
        include: _,
        name,
        version,
        stream,
        suite,
        mirror,
        updates,
        security,
        security_mirror,
        arch,
        hostname,
        overlays,
        packages,
        kernel,
        units,
        users,
        image,
        hardening,
        update,
        health,
        containers,
        per_arch,
    } = raw;

    let name = name.ok_or_else(|| cx.err("name", "required"))?;
    check_name(&name).map_err(|m| cx.err("name", m))?;
    let version = version.ok_or_else(|| cx.err("version", "required"))?;
    check_version(&version).map_err(|m| cx.err("version", m))?;
    let stream = stream.unwrap_or_else(|| DEFAULT_STREAM.to_owned());
    check_ident(&stream).map_err(|m| cx.err("stream", m))?;
    let suite = suite.unwrap_or_else(|| DEFAULT_SUITE.to_owned());
    check_ident(&suite).map_err(|m| cx.err("suite", m))?;
    let mirror = mirror.unwrap_or_else(|| DEFAULT_MIRROR.to_owned());
    check_mirror(&mirror).map_err(|m| cx.err("mirror", m))?;
    let updates = updates.unwrap_or(true);
    let security_mirror = match (security.unwrap_or(true), security_mirror) {
        (false, Some(_)) => {
            return Err(cx.err(
                "security-mirror",
                "set, but security = false turns the security archive off: remove one of them",
            ))
        }
        (false, None) => None,
        (true, Some(m)) => {
            check_mirror(&m).map_err(|e| cx.err("security-mirror", e))?;
            Some(m)
        }
        (true, None) => {
            Some(security_mirror_of(&mirror).map_err(|e| cx.err("security-mirror", e))?)
        }
    };
    let arches = arches(&cx, arch)?;
    let hostname = match hostname {
        Some(h) => {
            check_hostname(&h).map_err(|m| cx.err("hostname", m))?;
            h
        }
        None => {
            check_hostname(&name).map_err(|m| {
                cx.err(
                    "hostname",
                    format!("{m} (the default, taken from name; set hostname)"),
                )
            })?;
            name.clone()
        }
    };
    let per_arch = per_arch.unwrap_or_default();
    let mut targets = targets_of(
        &cx,
        packages.unwrap_or_default(),
        kernel.unwrap_or_default(),
        per_arch,
    )?;
    let containers = super::containers::validate(containers, &loaded.image_keys, &mut targets)
        .map_err(|(key, m)| cx.err(&key, m))?;
    let units = units_of(&cx, units.unwrap_or_default())?;
    let users = users_of(&cx, users.unwrap_or_default())?;
    let mut image = image.unwrap_or_default();
    let image_formats = super::image_formats::formats_of(&cx.file, image.formats.take())?;
    let image = image_of(&cx, image)?;
    let overlays = overlays_of(&cx, loaded, overlays.unwrap_or_default())?;
    // The profile's items need their packages on every architecture built.
    let mut checked = None;
    for (arch, target) in &targets {
        let h = super::hardening::hardening_of(hardening.clone(), &target.packages, &users)
            .map_err(|(key, m)| {
                let m = if targets.len() > 1 {
                    format!("{m} (for {arch})")
                } else {
                    m
                };
                cx.err(&format!("hardening.{key}"), m)
            })?;
        checked = Some(h);
    }
    let hardening = checked.expect("targets has an entry per architecture");
    let update = update.map(|u| update_of(&cx, u, loaded)).transpose()?;
    let health = health_of(&cx, health.unwrap_or_default())?;
    let sha256 = manifest_sha256(&bytes);

    Ok(Manifest {
        path: path.to_path_buf(),
        files,
        sha256,
        name,
        version,
        stream,
        suite,
        mirror,
        updates,
        security_mirror,
        arches,
        targets,
        overlays,
        units,
        users,
        hostname,
        image,
        image_formats,
        hardening,
        update,
        health,
        containers,
    })
}

/// Names the manifest file in every error.
struct Cx {
    file: String,
}

impl Cx {
    fn err(&self, key: &str, message: impl std::fmt::Display) -> Error {
        anyhow!("{}: {key}: {message}", self.file)
    }
}

/// sha256 over every file's bytes (as composed, in order), each framed by
/// its length (8 bytes, big-endian) so that the concatenation is unambiguous.
fn manifest_sha256(files: &[Vec<u8>]) -> String {
    let mut h = Sha256::new();
    for bytes in files {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }
    hex::encode(h.finalize())
}

fn arches(cx: &Cx, arch: Option<Vec<String>>) -> Result<Vec<Arch>> {
    let Some(list) = arch else {
        return Ok(vec![Arch::X86_64]);
    };
    if list.is_empty() {
        return Err(cx.err(
            "arch",
            "lists no architecture (leave it out for the default, [\"x86_64\"])",
        ));
    }
    let mut out = Vec::new();
    for (i, a) in list.iter().enumerate() {
        let arch = arch_named(a).map_err(|m| cx.err(&format!("arch[{i}]"), m))?;
        if !out.contains(&arch) {
            out.push(arch);
        }
    }
    Ok(out)
}

/// hull's architecture names, as `arch` and `[per-arch.<arch>]` spell them.
fn arch_named(a: &str) -> Result<Arch, String> {
    a.parse()
}

/// A list item and the key it was written under, for errors about the
/// merged lists.
struct Item<'a> {
    key: String,
    value: &'a str,
}

/// `items` of `list` at `key`, each checked with `check`.
fn items<'a>(
    cx: &Cx,
    key: &str,
    list: &'a [String],
    check: fn(&str) -> Result<(), String>,
) -> Result<Vec<Item<'a>>> {
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let key = format!("{key}[{i}]");
            check(v).map_err(|m| cx.err(&key, m))?;
            Ok(Item { key, value: v })
        })
        .collect()
}
