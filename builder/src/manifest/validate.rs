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

use super::compose::Composed;
use super::raw::{
    RawHealth, RawImage, RawKernel, RawManifest, RawPackages, RawPerArch, RawSize, RawUnits,
    RawUpdate, RawUser, RawWindow,
};
use super::{
    Arch, Health, ImageSize, Kernel, Manifest, Overlay, Packages, SourceFile, Target, TrustedKey,
    Units, Update, UpdateAgent, User,
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
/// The kernel's command-line buffer on x86 and arm64 (`COMMAND_LINE_SIZE`),
/// the terminating NUL included: the longest command line is one byte less.
pub const COMMAND_LINE_SIZE: usize = 2048;
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

/// Checks `composed` (read from the manifest at `path`) and fills defaults.
pub fn validate(path: &Path, composed: Composed) -> Result<Manifest> {
    let cx = Cx {
        file: path.display().to_string(),
    };
    let Composed {
        raw,
        files,
        overlay_origins,
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
    // Architectures with a cmdline of their own, to name the key that
    // makes a command line too long.
    let per_arch_cmdline: HashSet<String> = per_arch
        .iter()
        .filter(|(_, t)| t.kernel.as_ref().is_some_and(|k| k.cmdline.is_some()))
        .map(|(a, _)| a.clone())
        .collect();
    let targets = targets_of(
        &cx,
        packages.unwrap_or_default(),
        kernel.unwrap_or_default(),
        per_arch,
    )?;
    let units = units_of(&cx, units.unwrap_or_default())?;
    let users = users_of(&cx, users.unwrap_or_default())?;
    let image = image_of(&cx, image.unwrap_or_default())?;
    let overlays = overlays_of(&cx, path, &overlay_origins, overlays.unwrap_or_default())?;
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
    check_cmdline_length(&cx, &name, &hardening, &targets, &per_arch_cmdline)?;
    let update = update.map(|u| update_of(&cx, u)).transpose()?;
    let health = health_of(&cx, health.unwrap_or_default())?;
    let sha256 = manifest_sha256(&cx, &files)?;

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
        hardening,
        update,
        health,
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

/// sha256 over every file's bytes, in order, each framed by its length (8
/// bytes, big-endian) so that the concatenation is unambiguous. The files
/// are read again; one that changed since it was composed is an error.
fn manifest_sha256(cx: &Cx, files: &[SourceFile]) -> Result<String> {
    let mut h = Sha256::new();
    for f in files {
        let bytes = std::fs::read(&f.path)
            .map_err(|e| anyhow!("{}: cannot read: {e}", f.path.display()))?;
        if hex::encode(Sha256::digest(&bytes)) != f.sha256 {
            return Err(anyhow!(
                "{}: {} changed while the manifest was being read; try again",
                cx.file,
                f.path.display()
            ));
        }
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
    }
    Ok(hex::encode(h.finalize()))
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

/// The top-level `[packages]` and `[kernel]` with each architecture's
/// `[per-arch.<arch>]` applied: its lists appended (duplicates dropped), its
/// `kernel.package` replacing the top-level one. Every architecture gets a
/// target, listed in `arch` or not, so `hull build --arch` can build any.
fn targets_of(
    cx: &Cx,
    packages: RawPackages,
    kernel: RawKernel,
    per_arch: BTreeMap<String, RawPerArch>,
) -> Result<BTreeMap<Arch, Target>> {
    let mut tables = BTreeMap::new();
    for (name, table) in per_arch {
        let arch = arch_named(&name).map_err(|m| cx.err(&format!("per-arch.{name}"), m))?;
        tables.insert(arch, table);
    }
    let include = packages.include.unwrap_or_default();
    let exclude = packages.exclude.unwrap_or_default();
    let cmdline = kernel.cmdline.unwrap_or_default();
    let common_include = items(cx, "packages.include", &include, check_package)?;
    let common_exclude = items(cx, "packages.exclude", &exclude, check_package)?;
    let common_cmdline = items(cx, "kernel.cmdline", &cmdline, check_karg)?;
    let mut out = BTreeMap::new();
    for arch in Arch::ALL {
        let table = tables.remove(&arch).unwrap_or_default();
        let p = table.packages.unwrap_or_default();
        let k = table.kernel.unwrap_or_default();
        let at = format!("per-arch.{arch}");
        let (arch_include, arch_exclude, arch_cmdline) = (
            p.include.unwrap_or_default(),
            p.exclude.unwrap_or_default(),
            k.cmdline.unwrap_or_default(),
        );
        let include = merged(
            &common_include,
            items(
                cx,
                &format!("{at}.packages.include"),
                &arch_include,
                check_package,
            )?,
        );
        let exclude = merged(
            &common_exclude,
            items(
                cx,
                &format!("{at}.packages.exclude"),
                &arch_exclude,
                check_package,
            )?,
        );
        let cmdline = merged(
            &common_cmdline,
            items(
                cx,
                &format!("{at}.kernel.cmdline"),
                &arch_cmdline,
                check_karg,
            )?,
        );
        let included: HashSet<&str> = include.iter().map(|i| i.value).collect();
        if let Some(e) = exclude.iter().find(|e| included.contains(e.value)) {
            let with = include.iter().find(|i| i.value == e.value).expect("found");
            return Err(cx.err(
                &e.key,
                format!("{} is also in {}", e.value, strip_index(&with.key)),
            ));
        }
        let (package_key, package) = match (k.package, &kernel.package) {
            (Some(p), _) => (format!("{at}.kernel.package"), p),
            (None, Some(p)) => ("kernel.package".to_owned(), p.clone()),
            (None, None) => ("kernel.package".to_owned(), default_kernel(arch).to_owned()),
        };
        check_package(&package).map_err(|m| cx.err(&package_key, m))?;
        if let Some(e) = exclude.iter().find(|e| e.value == package) {
            return Err(cx.err(
                &package_key,
                format!("{package} is also in {}", strip_index(&e.key)),
            ));
        }
        let values = |list: &[Item]| list.iter().map(|i| i.value.to_owned()).collect();
        out.insert(
            arch,
            Target {
                packages: Packages {
                    include: values(&include),
                    exclude: values(&exclude),
                },
                kernel: Kernel {
                    package,
                    cmdline: values(&cmdline),
                },
            },
        );
    }
    Ok(out)
}

/// The whole command line of each architecture, with what OSTree and the
/// boot loader add ([`cmdline_reserved`]), against the kernel's buffer: the
/// kernel cuts a longer one short, `ostree=` last.
fn check_cmdline_length(
    cx: &Cx,
    name: &str,
    hardening: &super::Hardening,
    targets: &BTreeMap<Arch, Target>,
    per_arch_cmdline: &HashSet<String>,
) -> Result<()> {
    for (arch, target) in targets {
        let args = super::kernel_args_of(hardening, target, *arch);
        let len = args.iter().map(|a| a.len()).sum::<usize>() + args.len().saturating_sub(1);
        let total = len + cmdline_reserved(name);
        if total >= COMMAND_LINE_SIZE {
            let key = if per_arch_cmdline.contains(arch.as_str()) {
                format!("per-arch.{arch}.kernel.cmdline")
            } else {
                "kernel.cmdline".to_owned()
            };
            return Err(cx.err(
                &key,
                format!(
                    "the {arch} kernel command line would be {total} bytes with hull's arguments,                      the hardening profile's, ostree= and the boot loader's initrd=; the kernel                      keeps {}",
                    COMMAND_LINE_SIZE - 1
                ),
            ));
        }
    }
    Ok(())
}

/// `common` then the items of `extra` not already in it.
fn merged<'a>(common: &[Item<'a>], extra: Vec<Item<'a>>) -> Vec<Item<'a>> {
    let mut out: Vec<Item<'a>> = common
        .iter()
        .map(|i| Item {
            key: i.key.clone(),
            value: i.value,
        })
        .collect();
    for item in extra {
        if !out.iter().any(|o| o.value == item.value) {
            out.push(item);
        }
    }
    out
}

/// `packages.include[3]` → `packages.include`.
fn strip_index(key: &str) -> &str {
    key.rsplit_once('[').map_or(key, |(k, _)| k)
}

fn units_of(cx: &Cx, u: RawUnits) -> Result<Units> {
    let units = Units {
        enable: u.enable.unwrap_or_default(),
        disable: u.disable.unwrap_or_default(),
        mask: u.mask.unwrap_or_default(),
    };
    for (key, list) in [
        ("units.enable", &units.enable),
        ("units.disable", &units.disable),
        ("units.mask", &units.mask),
    ] {
        for (i, unit) in list.iter().enumerate() {
            check_unit(unit).map_err(|m| cx.err(&format!("{key}[{i}]"), m))?;
        }
    }
    let enabled: HashSet<&String> = units.enable.iter().collect();
    for (key, list) in [
        ("units.mask", &units.mask),
        ("units.disable", &units.disable),
    ] {
        if let Some((i, unit)) = list.iter().enumerate().find(|(_, u)| enabled.contains(u)) {
            return Err(cx.err(
                &format!("{key}[{i}]"),
                format!("{unit} is also in units.enable"),
            ));
        }
    }
    Ok(units)
}

fn users_of(cx: &Cx, users: Vec<RawUser>) -> Result<Vec<User>> {
    let mut out = Vec::new();
    for (i, u) in users.into_iter().enumerate() {
        let at = format!("users[{i}]");
        let name = u
            .name
            .ok_or_else(|| cx.err(&format!("{at}.name"), "required"))?;
        check_account(&name).map_err(|m| cx.err(&format!("{at}.name"), m))?;
        if name == "root" {
            return Err(cx.err(
                &format!("{at}.name"),
                "root cannot be declared (its password is locked; add a user)",
            ));
        }
        if BASE_PASSWD_USERS.contains(&name.as_str()) {
            return Err(cx.err(
                &format!("{at}.name"),
                format!("{name} is one of Debian's system accounts (base-passwd): useradd would refuse it"),
            ));
        }
        if BASE_PASSWD_GROUPS.contains(&name.as_str()) {
            return Err(cx.err(
                &format!("{at}.name"),
                format!(
                    "{name} is one of Debian's system groups (base-passwd): useradd --user-group \
                     would refuse to make a group of that name (list it in groups instead)"
                ),
            ));
        }
        let groups = u.groups.unwrap_or_default();
        for (j, g) in groups.iter().enumerate() {
            check_account(g).map_err(|m| cx.err(&format!("{at}.groups[{j}]"), m))?;
        }
        let keys = u.ssh_authorized_keys.unwrap_or_default();
        for (j, k) in keys.iter().enumerate() {
            check_ssh_key(k).map_err(|m| cx.err(&format!("{at}.ssh-authorized-keys[{j}]"), m))?;
        }
        out.push(User {
            name,
            groups,
            ssh_authorized_keys: keys,
        });
    }
    Ok(out)
}

fn image_of(cx: &Cx, i: RawImage) -> Result<ImageSize> {
    let size = match &i.size {
        Some(s) => size_of(s).map_err(|m| cx.err("image.size", m))?,
        None => DEFAULT_IMAGE_SIZE,
    };
    let esp_size = match &i.esp_size {
        Some(s) => size_of(s).map_err(|m| cx.err("image.esp-size", m))?,
        None => DEFAULT_ESP_SIZE,
    };
    if esp_size < MIN_ESP_SIZE {
        return Err(cx.err(
            "image.esp-size",
            format!("{} is below the minimum of 64 MiB", human(esp_size)),
        ));
    }
    if size <= esp_size.saturating_add(MIN_ROOT_SIZE) {
        return Err(cx.err(
            "image.size",
            format!(
                "{} leaves no room: it must exceed image.esp-size ({}) by more than 512 MiB",
                human(size),
                human(esp_size)
            ),
        ));
    }
    Ok(ImageSize { size, esp_size })
}

fn update_of(cx: &Cx, u: RawUpdate) -> Result<Update> {
    let agent = agent_of(cx, &u)?;
    let url = u.url.ok_or_else(|| cx.err("update.url", "required"))?;
    check_update_url(&url).map_err(|m| cx.err("update.url", m))?;
    if let Some(r) = &u.ostree_ref {
        check_ref(r).map_err(|m| cx.err("update.ref", m))?;
    }
    let paths = u.keys.unwrap_or_default();
    if paths.is_empty() {
        return Err(cx.err(
            "update.keys",
            "at least one public key file is required: hosts refuse unsigned updates \
             (`hull keygen` makes a key pair)",
        ));
    }
    let mut keys = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let at = format!("update.keys[{i}]");
        if p.is_empty() {
            return Err(cx.err(&at, "empty path"));
        }
        let path = PathBuf::from(p);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| cx.err(&at, format!("cannot read {p}: {e}")))?;
        let parsed = crate::sign::parse_public_keys(&text, p).map_err(|e| cx.err(&at, e))?;
        if parsed.is_empty() {
            return Err(cx.err(&at, format!("{p} holds no key")));
        }
        for key in parsed {
            let public = crate::sign::public_text(&key).trim().to_string();
            if !keys.iter().any(|k: &TrustedKey| k.public == public) {
                keys.push(TrustedKey {
                    path: path.clone(),
                    public,
                });
            }
        }
    }
    let boot_tries = match u.boot_tries {
        None => DEFAULT_BOOT_TRIES,
        Some(n) if (1..=i64::from(MAX_BOOT_TRIES)).contains(&n) => n as u32,
        Some(n) => {
            return Err(cx.err(
                "update.boot-tries",
                format!("{n} is not between 1 and {MAX_BOOT_TRIES}"),
            ))
        }
    };
    Ok(Update {
        url,
        ostree_ref: u.ostree_ref,
        keys,
        boot_tries,
        agent,
    })
}

/// The agent's default interval between checks.
const DEFAULT_INTERVAL: u64 = 3600;

/// `auto`, `interval`, `strategy`, `[update.window]`, `fleet-lock-url`,
/// `group`: the agent's keys. Each setting is refused where it would do
/// nothing (without `auto = true`, or with another strategy).
fn agent_of(cx: &Cx, u: &RawUpdate) -> Result<Option<UpdateAgent>> {
    use crate::strategy::Strategy;
    if u.auto != Some(true) {
        let set = [
            ("update.interval", u.interval.is_some()),
            ("update.strategy", u.strategy.is_some()),
            ("update.window", u.window.is_some()),
            ("update.fleet-lock-url", u.fleet_lock_url.is_some()),
            ("update.group", u.group.is_some()),
        ];
        if let Some((key, _)) = set.iter().find(|(_, is)| *is) {
            return Err(cx.err(
                key,
                "only with auto = true: a host that does not update by itself does not reboot by itself",
            ));
        }
        return Ok(None);
    }
    let interval = match &u.interval {
        None => DEFAULT_INTERVAL,
        Some(i) => duration_in(i, 60, 7 * 86_400).map_err(|m| cx.err("update.interval", m))?,
    };
    let name = u.strategy.as_deref().unwrap_or("immediate");
    let only_with = |key: &str, strategy: &str| {
        cx.err(
            key,
            format!("only with strategy = \"{strategy}\" (this one is \"{name}\")"),
        )
    };
    if u.window.is_some() && name != "window" {
        return Err(only_with("update.window", "window"));
    }
    for (key, is) in [
        ("update.fleet-lock-url", u.fleet_lock_url.is_some()),
        ("update.group", u.group.is_some()),
    ] {
        if is && name != "fleet-lock" {
            return Err(only_with(key, "fleet-lock"));
        }
    }
    let strategy = match name {
        "immediate" => Strategy::Immediate,
        "kured" => Strategy::Kured,
        "window" => {
            let w = u
                .window
                .as_ref()
                .ok_or_else(|| cx.err("update.window", "required with strategy = \"window\""))?;
            Strategy::Window(window_of(cx, w)?)
        }
        "fleet-lock" => {
            let url = u.fleet_lock_url.clone().ok_or_else(|| {
                cx.err(
                    "update.fleet-lock-url",
                    "required with strategy = \"fleet-lock\"",
                )
            })?;
            check_update_url(&url).map_err(|m| cx.err("update.fleet-lock-url", m))?;
            let group = u.group.clone().unwrap_or_else(|| "default".to_string());
            if group.is_empty()
                || group.len() > 64
                || !group
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return Err(cx.err(
                    "update.group",
                    format!("{group:?} is not 1 to 64 of A-Z a-z 0-9 . _ -"),
                ));
            }
            Strategy::FleetLock { url, group }
        }
        other => {
            return Err(cx.err(
                "update.strategy",
                format!("unknown strategy {other:?} (immediate, window, fleet-lock or kured)"),
            ))
        }
    };
    Ok(Some(UpdateAgent { interval, strategy }))
}

/// `[update.window]`: `days` (`mon` … `sun`, each once), `start` (`HH:MM`,
/// UTC) and `length` (1 minute to 7 days).
fn window_of(cx: &Cx, w: &RawWindow) -> Result<crate::strategy::Window> {
    use crate::strategy::Weekday;
    let names = w
        .days
        .as_ref()
        .ok_or_else(|| cx.err("update.window.days", "required"))?;
    if names.is_empty() {
        return Err(cx.err("update.window.days", "at least one day is required"));
    }
    let mut days = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let at = format!("update.window.days[{i}]");
        let d = Weekday::parse(n).ok_or_else(|| {
            cx.err(
                &at,
                format!("{n:?} is not a day: mon, tue, wed, thu, fri, sat or sun"),
            )
        })?;
        if days.contains(&d) {
            return Err(cx.err(&at, format!("{n:?} is listed twice")));
        }
        days.push(d);
    }
    days.sort();
    let start = w
        .start
        .as_ref()
        .ok_or_else(|| cx.err("update.window.start", "required"))?;
    let start_minute = parse_hh_mm(start).ok_or_else(|| {
        cx.err(
            "update.window.start",
            format!("{start:?} is not a time HH:MM from 00:00 to 23:59 (UTC)"),
        )
    })?;
    let length = w
        .length
        .as_ref()
        .ok_or_else(|| cx.err("update.window.length", "required"))?;
    let length =
        duration_in(length, 60, 7 * 86_400).map_err(|m| cx.err("update.window.length", m))?;
    Ok(crate::strategy::Window {
        days,
        start_minute,
        length,
    })
}

/// `HH:MM` as minutes after midnight.
fn parse_hh_mm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// A duration such as `90m` or `1h 30m`, in whole seconds from `min` to `max`.
fn duration_in(s: &str, min: u64, max: u64) -> Result<u64, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration such as \"90m\" or \"2h\": {e}"))?;
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs < min || secs > max {
        return Err(format!(
            "{s:?} is not between {} and {}",
            humantime::format_duration(std::time::Duration::from_secs(min)),
            humantime::format_duration(std::time::Duration::from_secs(max))
        ));
    }
    Ok(secs)
}

fn health_of(cx: &Cx, h: RawHealth) -> Result<Health> {
    let required_units = h.required_units.unwrap_or_default();
    for (i, u) in required_units.iter().enumerate() {
        check_unit_instance(u).map_err(|m| cx.err(&format!("health.required-units[{i}]"), m))?;
    }
    Ok(Health { required_units })
}

/// An http(s) URL without whitespace, quotes or a fragment: it goes into an
/// OSTree remote config line.
fn check_update_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} has no host"));
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '#'))
    {
        return Err(format!(
            "{url:?} holds whitespace, a quote, a backslash or a #"
        ));
    }
    Ok(())
}

/// An OSTree ref: segments of `[A-Za-z0-9._-]` (and `{arch}`) separated by `/`.
fn check_ref(r: &str) -> Result<(), String> {
    let plain = r.replace("{arch}", "arch");
    if plain.is_empty() || plain.len() > 255 {
        return Err("a ref is 1 to 255 characters".into());
    }
    for seg in plain.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." || seg.starts_with('-') {
            return Err(format!("{r:?}: empty, dot or dash-leading segment"));
        }
        if !seg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(format!(
                "{r:?}: only letters, digits, '.', '_', '-', '/' and {{arch}}"
            ));
        }
    }
    Ok(())
}

fn size_of(s: &RawSize) -> Result<u64, String> {
    match s {
        RawSize::Bytes(n) => Ok(*n),
        RawSize::Text(t) => parse_size(t),
    }
}

fn overlays_of(
    cx: &Cx,
    manifest: &Path,
    origins: &BTreeMap<String, PathBuf>,
    overlays: Vec<String>,
) -> Result<Vec<Overlay>> {
    if overlays.is_empty() {
        return Ok(Vec::new());
    }
    for (i, o) in overlays.iter().enumerate() {
        check_overlay_name(o).map_err(|m| cx.err(&format!("overlays[{i}]"), m))?;
    }
    let mut out = Vec::new();
    for (i, name) in overlays.into_iter().enumerate() {
        let at = format!("overlays[{i}]");
        let declared_in = origins.get(&name).map(PathBuf::as_path).unwrap_or(manifest);
        let root = overlay_root(declared_in).map_err(|m| cx.err("overlays", m))?;
        let joined = root.join(&name);
        let dir = std::fs::canonicalize(&joined)
            .map_err(|e| cx.err(&at, format!("{}: {e}", joined.display())))?;
        if !dir.is_dir() {
            return Err(cx.err(&at, format!("{} is not a directory", joined.display())));
        }
        if dir == root || !dir.starts_with(&root) {
            return Err(cx.err(
                &at,
                format!(
                    "{} resolves to {}, outside {}",
                    joined.display(),
                    dir.display(),
                    root.display()
                ),
            ));
        }
        check_overlay_tree(&dir).map_err(|m| cx.err(&at, m))?;
        out.push(Overlay { name, dir });
    }
    Ok(out)
}

/// Every entry of the overlay at `dir` against what an OSTree commit can
/// hold (libostree's `ostree_validate_filename()` and its commit of a
/// directory): names and symlink targets in UTF-8 (the commit stores them
/// as GVariant strings), only directories, regular files and symlinks. The
/// message names the path; `.`, `..`, empty names and names with `/` never
/// come out of a directory listing.
fn check_overlay_tree(dir: &Path) -> Result<(), String> {
    use cap_std::ambient_authority;
    use cap_std::fs::Dir;
    let root = Dir::open_ambient_dir(dir, ambient_authority())
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let shown = |p: &Path| format!("{:?}", dir.join(p));
        let entries = if rel.as_os_str().is_empty() {
            root.entries()
        } else {
            root.read_dir(&rel)
        }
        .map_err(|e| format!("{}: {e}", shown(&rel)))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", shown(&rel)))?;
            let path = rel.join(entry.file_name());
            if entry.file_name().to_str().is_none() {
                return Err(format!(
                    "{}: the name is not UTF-8, which OSTree cannot store: rename it",
                    shown(&path)
                ));
            }
            let meta = root
                .symlink_metadata(&path)
                .map_err(|e| format!("{}: {e}", shown(&path)))?;
            let kind = meta.file_type();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_symlink() {
                let target = root
                    .read_link_contents(&path)
                    .map_err(|e| format!("{}: {e}", shown(&path)))?;
                if target.to_str().is_none() {
                    return Err(format!(
                        "{}: the symlink's target {target:?} is not UTF-8: OSTree would store \"[Invalid UTF-8]\" instead",
                        shown(&path)
                    ));
                }
            } else if !kind.is_file() {
                return Err(format!(
                    "{}: not a file, directory or symlink (a socket, FIFO or device node), which \
                     OSTree cannot store",
                    shown(&path)
                ));
            }
        }
    }
    Ok(())
}

/// The canonical `rootfs-overlays` directory in the nearest of the manifest's
/// directory and its ancestors that has one.
fn overlay_root(manifest: &Path) -> Result<PathBuf, String> {
    let parent = match manifest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let start = std::fs::canonicalize(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    for dir in start.ancestors() {
        let candidate = dir.join(OVERLAY_ROOT);
        if candidate.is_dir() {
            return std::fs::canonicalize(&candidate)
                .map_err(|e| format!("{}: {e}", candidate.display()));
        }
    }
    Err(format!(
        "no {OVERLAY_ROOT} directory in {} or any directory above it",
        start.display()
    ))
}

/// Parses a size: an integer, an optional space, an optional unit `K`, `M`,
/// `G` or `T` (powers of 1024; the letter in either case) optionally followed
/// by `iB` or `B`. A bare `B` means bytes. `"4G"`, `"512M"`, `"256MiB"`,
/// `"1GB"` (also 2^30), `"4096"`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a size (write e.g. \"4G\", \"512M\", \"256MiB\" or a number of bytes)"
        )
    };
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    if number.is_empty() {
        return Err(bad());
    }
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is too large"))?;
    let unit = unit.trim_start();
    let mut chars = unit.chars();
    let shift = match chars.next().map(|c| c.to_ascii_uppercase()) {
        None => 0,
        Some('B') if unit.len() == 1 => 0,
        Some('K') => 10,
        Some('M') => 20,
        Some('G') => 30,
        Some('T') => 40,
        Some(_) => return Err(bad()),
    };
    let rest = chars.as_str();
    if shift > 0 && !(rest.is_empty() || rest == "B" || rest == "iB") {
        return Err(bad());
    }
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

fn human(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        if bytes >= 1 << shift && bytes.trailing_zeros() >= shift {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > 64 {
        return Err(format!("{name:?} is longer than 64 characters"));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err(format!(
            "{name:?} is not a plain identifier ([a-z][a-z0-9-]*)"
        ));
    }
    Ok(())
}

fn check_version(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("is empty".into());
    }
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".+~_-".contains(c))
    {
        return Err(format!("{v:?} may only hold letters, digits and . + ~ _ -"));
    }
    Ok(())
}

/// Streams and suites: `[a-z0-9][a-z0-9._-]*`, at most 64 characters.
fn check_ident(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.len() > 64 {
        return Err(format!("{s:?} is longer than 64 characters"));
    }
    let lower_or_digit = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut chars = s.chars();
    if !chars.next().is_some_and(lower_or_digit)
        || !chars.all(|c| lower_or_digit(c) || "._-".contains(c))
    {
        return Err(format!("{s:?} is not an identifier ([a-z0-9][a-z0-9._-]*)"));
    }
    Ok(())
}

/// The security archive of a mirror: its `/debian` made `/debian-security`
/// (`http://deb.debian.org/debian` → `http://deb.debian.org/debian-security`).
pub fn security_mirror_of(mirror: &str) -> Result<String, String> {
    match mirror.trim_end_matches('/').strip_suffix("/debian") {
        Some(base) => Ok(format!("{base}/debian-security")),
        None => Err(format!(
            "not set, and mirror {mirror:?} does not end in /debian to derive it from: set \
             security-mirror, or security = false"
        )),
    }
}

fn check_mirror(m: &str) -> Result<(), String> {
    let rest = m
        .strip_prefix("http://")
        .or_else(|| m.strip_prefix("https://"));
    let Some(rest) = rest else {
        return Err(format!("{m:?} is not an http:// or https:// URL"));
    };
    if m.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{m:?} holds whitespace"));
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{m:?} names no host"));
    }
    Ok(())
}

/// Debian package names: `[a-z0-9][a-z0-9+.-]+`.
fn check_package(p: &str) -> Result<(), String> {
    let ok = p.len() >= 2
        && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c));
    if !ok {
        return Err(format!(
            "{p:?} is not a Debian package name ([a-z0-9][a-z0-9+.-]+)"
        ));
    }
    Ok(())
}

/// systemd's `unit_name_is_valid()`: at most 255 characters of
/// `[A-Za-z0-9:_.\\-]` and at most one `@`, not the first; a name before
/// the `@` (or the type) and a known type after the last dot. `foo@.service`
/// is a template, `foo@bar.service` an instance.
fn check_unit(u: &str) -> Result<(), String> {
    if u.is_empty()
        || !u
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_.@\\-".contains(c))
    {
        return Err(format!("{u:?} is not a unit name ([A-Za-z0-9:_.@\\-]+)"));
    }
    if u.len() >= UNIT_NAME_MAX {
        return Err(format!(
            "{u:?} is {} characters: systemd takes at most {}",
            u.len(),
            UNIT_NAME_MAX - 1
        ));
    }
    let Some(suffix) = UNIT_SUFFIXES.iter().find(|s| u.ends_with(*s)) else {
        return Err(format!(
            "{u:?} does not end with a unit type ({})",
            UNIT_SUFFIXES.join(" ")
        ));
    };
    let stem = &u[..u.len() - suffix.len()];
    let prefix = stem.split('@').next().unwrap_or(stem);
    if prefix.is_empty() {
        return Err(format!("{u:?} has no name before its @ or type"));
    }
    if stem.matches('@').count() > 1 {
        return Err(format!("{u:?} has more than one @"));
    }
    Ok(())
}

/// A unit that can be active: not a template (`foo@.service`).
fn check_unit_instance(u: &str) -> Result<(), String> {
    check_unit(u)?;
    if UNIT_SUFFIXES
        .iter()
        .any(|s| u.strip_suffix(s).is_some_and(|stem| stem.ends_with('@')))
    {
        return Err(format!(
            "{u:?} is a template, which is never active: name an instance (foo@bar.service)"
        ));
    }
    Ok(())
}

/// User and group names: `[a-z_][a-z0-9_-]*`, at most 32 characters.
pub(super) fn check_account(n: &str) -> Result<(), String> {
    if n.is_empty() {
        return Err("is empty".into());
    }
    if n.len() > 32 {
        return Err(format!("{n:?} is longer than 32 characters"));
    }
    let mut chars = n.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !first_ok
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(format!("{n:?} is not a valid name ([a-z_][a-z0-9_-]*)"));
    }
    Ok(())
}

fn check_ssh_key(k: &str) -> Result<(), String> {
    if k.contains(['\n', '\r']) {
        return Err("holds a line break (one key per list item)".into());
    }
    let mut parts = k.split_whitespace();
    let kind = parts.next().unwrap_or("");
    if !["ssh-", "ecdsa-", "sk-"]
        .iter()
        .any(|p| kind.starts_with(p))
    {
        return Err(format!(
            "does not start with a key type (ssh-…, ecdsa-… or sk-…): {:?}",
            abbreviate(k)
        ));
    }
    let body = parts.next().unwrap_or("");
    if body.is_empty()
        || !body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
    {
        return Err(format!("{kind} key has no base64 key body"));
    }
    Ok(())
}

fn abbreviate(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// systemd's `hostname_is_valid()` (what systemd-hostnamed and PID 1 read
/// /etc/hostname with) and the kernel's limit: at most 64 characters
/// (HOST_NAME_MAX), dot-separated labels of letters, digits and hyphens, no
/// empty label (no leading, trailing or doubled dot), no label starting or
/// ending with a hyphen; and DNS's 63 characters per label.
fn check_hostname(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("is empty".into());
    }
    if h.len() > HOST_NAME_MAX {
        return Err(format!(
            "{h:?} is {} characters: Linux and systemd take at most {HOST_NAME_MAX}",
            h.len()
        ));
    }
    for label in h.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{h:?} is not a valid host name (labels of 1-63 letters, digits and inner hyphens, joined by dots)"
            ));
        }
    }
    Ok(())
}

/// One kernel argument, as the kernel's parser (`next_arg()` in
/// lib/cmdline.c) will split it back out of the command line: ASCII without
/// control characters (the kernel's `isspace()` is Latin-1's, so some bytes
/// of UTF-8 characters split arguments); whitespace only inside double
/// quotes, which wrap either the whole argument (`"a=b c"`) or the whole
/// value (`a="b c"`), and nothing else (an unbalanced quote swallows every
/// argument after it, `ostree=` among them); no single quote (systemd's
/// parser of /proc/cmdline reads it as a quote, the kernel does not); not
/// `--` (everything after it goes to init, not the kernel); not `root=` or
/// `ostree=`, which hull sets.
fn check_karg(a: &str) -> Result<(), String> {
    if a.is_empty() {
        return Err("is empty".into());
    }
    if let Some(c) = a.chars().find(|c| !c.is_ascii() || c.is_ascii_control()) {
        return Err(format!(
            "{a:?} holds {c:?}: kernel arguments are printable ASCII (the kernel splits at bytes of some other characters)"
        ));
    }
    if a.contains('\'') {
        return Err(format!(
            "{a:?} holds a single quote, which systemd reads as a quote and the kernel does not: use double quotes"
        ));
    }
    if a == "--" {
        return Err("\"--\" hands every argument after it (ostree= among them) to init".into());
    }
    // The part outside quotes, which must hold no space.
    let quotes = a.matches('"').count();
    let bare = match quotes {
        0 => a,
        2 if a.len() > 2 && a.starts_with('"') && a.ends_with('"') => "",
        2 if a.ends_with('"') && a.find('"') == a.find('=').map(|i| i + 1) => {
            &a[..a.find('=').expect("found above")]
        }
        n if n % 2 == 1 => {
            return Err(format!(
                "{a:?} has an unbalanced quote: the kernel would read every argument after it, ostree= among them, as part of this one"
            ))
        }
        _ => {
            return Err(format!(
                "{a:?}: double quotes may only wrap the whole argument (\"a=b c\") or its whole value (a=\"b c\")"
            ))
        }
    };
    if bare.contains(' ') {
        return Err(format!(
            "{a:?} holds whitespace outside quotes (one argument per list item)"
        ));
    }
    let key = a.trim_start_matches('"').split('=').next().unwrap_or(a);
    if key == "root" || key == "ostree" {
        return Err(format!("{a:?}: hull sets {key}= itself"));
    }
    Ok(())
}

/// Bytes the command line holds besides the arguments hull and the manifest
/// give: OSTree's ` ostree=/ostree/boot.N/<name>/<sha256>/N` and the
/// ` initrd=\ostree\<name>-<sha256>\initramfs-<kver>.img` systemd-boot adds
/// for kernels without the initrd protocol (64 bytes allowed for `<kver>`).
pub fn cmdline_reserved(name: &str) -> usize {
    let ostree = " ostree=/ostree/boot.1//".len() + name.len() + 64 + "/0".len();
    let initrd = " initrd=\\ostree\\-\\initramfs-.img".len() + name.len() + 64 + 64;
    ostree + initrd
}

/// A relative path of plain components (no `..`, `.`, or root).
fn check_overlay_name(o: &str) -> Result<(), String> {
    let p = Path::new(o);
    if o.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!(
            "{o:?} must be a relative path of plain names under {OVERLAY_ROOT} (no \"..\", \".\", or leading \"/\")"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const MINIMAL: &str = "name = \"demo\"\nversion = \"1.0\"\n";

    /// Writes `text` as `<tmp>/m/demo.toml` and loads it.
    fn load_in(t: &Path, text: &str) -> Result<Manifest> {
        let dir = t.join("m");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("demo.toml");
        fs::write(&path, text).unwrap();
        Manifest::load(&path)
    }

    fn load(text: &str) -> Result<Manifest> {
        let t = tempfile::tempdir().unwrap();
        load_in(t.path(), text)
    }

    /// Asserts that `text` (after the minimal keys) fails, naming the file and `key`.
    fn fails(text: &str, key: &str) -> String {
        let e = load(text)
            .expect_err(&format!("no error for {text:?}"))
            .to_string();
        assert!(!e.contains('\n'), "error spans lines: {e:?}");
        assert!(
            e.contains("demo.toml: "),
            "error does not name the file: {e}"
        );
        assert!(
            e.contains(&format!(": {key}: ")),
            "error does not name {key}: {e}"
        );
        e
    }

    fn with(extra: &str) -> String {
        format!("{MINIMAL}{extra}")
    }

    fn write_key(path: &Path) -> String {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let key = crate::sign::generate().unwrap();
        let text = crate::sign::public_text(&key.verifying_key());
        fs::write(path, &text).unwrap();
        text.trim().to_string()
    }

    #[test]
    fn update_and_health_rules() {
        let t = tempfile::tempdir().unwrap();
        let public = write_key(&t.path().join("m/k.pub"));
        let base = "name = \"n\"\nversion = \"1\"\n";
        let ok = load_in(
            t.path(),
            &format!(
                "{base}[update]\nurl = \"https://u.example/r\"\nkeys = [\"k.pub\", \"k.pub\"]\n"
            ),
        )
        .unwrap();
        let u = ok.update.clone().unwrap();
        assert_eq!(u.boot_tries, DEFAULT_BOOT_TRIES);
        assert_eq!(u.ostree_ref, None);
        assert_eq!(u.keys.len(), 1, "the same key twice is one key");
        assert_eq!(u.keys[0].public, public);
        assert_eq!(ok.update_ref(Arch::X86_64), "hull/n/x86_64/stable");
        assert_eq!(load_in(t.path(), base).unwrap().update, None);
        assert!(load_in(t.path(), base)
            .unwrap()
            .health
            .required_units
            .is_empty());

        fs::write(
            t.path().join("m/secret"),
            crate::sign::secret_text(&crate::sign::generate().unwrap()),
        )
        .unwrap();
        fs::write(t.path().join("m/empty.pub"), "# none yet\n").unwrap();
        let cases = [
            ("keys = [\"k.pub\"]", "update.url: required"),
            (
                "url = \"ftp://x/r\"\nkeys = [\"k.pub\"]",
                "update.url: \"ftp://x/r\" is not an http",
            ),
            (
                "url = \"http://\"\nkeys = [\"k.pub\"]",
                "update.url: \"http://\" has no host",
            ),
            (
                "url = \"http://x/r#a\"\nkeys = [\"k.pub\"]",
                "update.url: \"http://x/r#a\" holds",
            ),
            (
                "url = \"http://x/r\"",
                "update.keys: at least one public key file is required",
            ),
            (
                "url = \"http://x/r\"\nkeys = []",
                "update.keys: at least one",
            ),
            (
                "url = \"http://x/r\"\nkeys = [\"missing.pub\"]",
                "update.keys[0]: cannot read",
            ),
            (
                "url = \"http://x/r\"\nkeys = [\"secret\"]",
                "is it the secret key?",
            ),
            (
                "url = \"http://x/r\"\nkeys = [\"empty.pub\"]",
                "holds no key",
            ),
            (
                "url = \"http://x/r\"\nkeys = [\"k.pub\"]\nboot-tries = 0",
                "update.boot-tries: 0 is not between 1 and 9",
            ),
            (
                "url = \"http://x/r\"\nkeys = [\"k.pub\"]\nboot-tries = 10",
                "update.boot-tries: 10",
            ),
            (
                "url = \"http://x/r\"\nkeys = [\"k.pub\"]\nref = \"a/../b\"",
                "update.ref:",
            ),
            (
                "url = \"http://x/r\"\nkeys = [\"k.pub\"]\nref = \"a b\"",
                "update.ref:",
            ),
            (
                "url = \"http://x/r\"\nkeys = [\"k.pub\"]\nsecret = 1",
                "unknown field `secret`",
            ),
        ];
        for (table, want) in cases {
            let err = load_in(t.path(), &format!("{base}[update]\n{table}\n"))
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{table}: {err}");
        }
        let err = load_in(
            t.path(),
            &format!("{base}[health]\nrequired-units = [\"nope\"]\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("health.required-units[0]"), "{err}");
        let err = load_in(t.path(), &format!("{base}[health]\ntimeout = 3\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `timeout`"), "{err}");
    }

    #[test]
    fn update_agent_rules() {
        use crate::strategy::{Strategy, Weekday, Window};
        let t = tempfile::tempdir().unwrap();
        write_key(&t.path().join("m/k.pub"));
        let head =
            "name = \"n\"\nversion = \"1\"\n[update]\nurl = \"http://x/r\"\nkeys = [\"k.pub\"]\n";
        let agent = |extra: &str| {
            load_in(t.path(), &format!("{head}{extra}\n"))
                .map(|m| m.update.unwrap().agent)
                .map_err(|e| e.to_string())
        };
        let fl = |url: &str, group: &str| Strategy::FleetLock {
            url: url.into(),
            group: group.into(),
        };
        let ok = [
            ("", None),
            ("auto = false", None),
            ("auto = true", Some((3600, Strategy::Immediate))),
            ("auto = true\ninterval = \"15m\"\nstrategy = \"kured\"", Some((900, Strategy::Kured))),
            (
                "auto = true\nstrategy = \"fleet-lock\"\nfleet-lock-url = \"http://lock:3333\"",
                Some((3600, fl("http://lock:3333", "default"))),
            ),
            (
                "auto = true\nstrategy = \"fleet-lock\"\nfleet-lock-url = \"https://lock/\"\ngroup = \"web-eu.1\"",
                Some((3600, fl("https://lock/", "web-eu.1"))),
            ),
            (
                "auto = true\nstrategy = \"window\"\n[update.window]\ndays = [\"sun\", \"sat\"]\nstart = \"23:30\"\nlength = \"1h 30m\"",
                Some((
                    3600,
                    Strategy::Window(Window {
                        days: vec![Weekday::Sat, Weekday::Sun],
                        start_minute: 23 * 60 + 30,
                        length: 5400,
                    }),
                )),
            ),
        ];
        for (extra, want) in ok {
            let got = agent(extra).unwrap_or_else(|e| panic!("{extra}: {e}"));
            assert_eq!(got.map(|a| (a.interval, a.strategy)), want, "{extra}");
        }
        let window = "auto = true\nstrategy = \"window\"\n[update.window]\n";
        let bad = [
            ("interval = \"1h\"", "update.interval: only with auto = true"),
            ("auto = false\nstrategy = \"kured\"", "update.strategy: only with auto = true"),
            ("group = \"g\"", "update.group: only with auto = true"),
            ("fleet-lock-url = \"http://l\"", "update.fleet-lock-url: only with auto = true"),
            ("[update.window]\nstart = \"01:00\"", "update.window: only with auto = true"),
            ("auto = true\ninterval = \"30s\"", "update.interval: \"30s\" is not between 1m and 7days"),
            ("auto = true\ninterval = \"8d\"", "update.interval: \"8d\" is not between"),
            ("auto = true\ninterval = \"soon\"", "update.interval: \"soon\" is not a duration"),
            ("auto = true\nstrategy = \"later\"", "update.strategy: unknown strategy \"later\" (immediate, window, fleet-lock or kured)"),
            ("auto = true\nstrategy = \"window\"", "update.window: required with strategy = \"window\""),
            ("auto = true\nstrategy = \"fleet-lock\"", "update.fleet-lock-url: required with strategy = \"fleet-lock\""),
            ("auto = true\nstrategy = \"fleet-lock\"\nfleet-lock-url = \"lock:3333\"", "update.fleet-lock-url: \"lock:3333\" is not an http"),
            ("auto = true\nstrategy = \"fleet-lock\"\nfleet-lock-url = \"http://l\"\ngroup = \"a b\"", "update.group: \"a b\" is not 1 to 64"),
            ("auto = true\nstrategy = \"fleet-lock\"\nfleet-lock-url = \"http://l\"\ngroup = \"\"", "update.group: \"\" is not 1 to 64"),
            ("auto = true\ngroup = \"g\"", "update.group: only with strategy = \"fleet-lock\" (this one is \"immediate\")"),
            ("auto = true\nstrategy = \"kured\"\nfleet-lock-url = \"http://l\"", "update.fleet-lock-url: only with strategy = \"fleet-lock\" (this one is \"kured\")"),
            ("auto = true\n[update.window]\ndays = [\"sat\"]", "update.window: only with strategy = \"window\""),
            (&format!("{window}start = \"01:00\"\nlength = \"1h\""), "update.window.days: required"),
            (&format!("{window}days = []\nstart = \"01:00\"\nlength = \"1h\""), "update.window.days: at least one day"),
            (&format!("{window}days = [\"sat\", \"Sun\"]\nstart = \"01:00\"\nlength = \"1h\""), "update.window.days[1]: \"Sun\" is not a day"),
            (&format!("{window}days = [\"sat\", \"sat\"]\nstart = \"01:00\"\nlength = \"1h\""), "update.window.days[1]: \"sat\" is listed twice"),
            (&format!("{window}days = [\"sat\"]\nlength = \"1h\""), "update.window.start: required"),
            (&format!("{window}days = [\"sat\"]\nstart = \"24:00\"\nlength = \"1h\""), "update.window.start: \"24:00\" is not a time HH:MM"),
            (&format!("{window}days = [\"sat\"]\nstart = \"1:00\"\nlength = \"1h\""), "update.window.start: \"1:00\" is not a time"),
            (&format!("{window}days = [\"sat\"]\nstart = \"01:00\""), "update.window.length: required"),
            (&format!("{window}days = [\"sat\"]\nstart = \"01:00\"\nlength = \"8d\""), "update.window.length: \"8d\" is not between"),
            (&format!("{window}days = [\"sat\"]\nstart = \"01:00\"\nlength = \"1h\"\ntimezone = \"CET\""), "unknown field `timezone`"),
        ];
        for (extra, want) in bad {
            let e = agent(extra)
                .err()
                .unwrap_or_else(|| panic!("{extra}: accepted"));
            assert!(e.contains(want), "{extra}:\n{e}\nwants {want}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    /// Key paths are relative to the file naming them; keys accumulate and
    /// scalars are replaced across includes.
    #[test]
    fn update_keys_resolve_next_to_the_file_naming_them() {
        let t = tempfile::tempdir().unwrap();
        write_key(&t.path().join("m/base/keys/one.pub"));
        write_key(&t.path().join("m/two.pub"));
        fs::write(
            t.path().join("m/base/base.toml"),
            "[update]\nurl = \"http://a/r\"\nkeys = [\"keys/one.pub\"]\nboot-tries = 2\n[health]\nrequired-units = [\"a.service\"]\n",
        )
        .unwrap();
        let m = load_in(
            t.path(),
            "include = [\"base/base.toml\"]\nname = \"n\"\nversion = \"1\"\n[update]\nurl = \"http://b/r\"\nkeys = [\"two.pub\"]\n[health]\nrequired-units = [\"b.service\"]\n",
        )
        .unwrap();
        let u = m.update.unwrap();
        assert_eq!(u.url, "http://b/r");
        assert_eq!(u.boot_tries, 2);
        let paths: Vec<_> = u.keys.iter().map(|k| k.path.clone()).collect();
        assert_eq!(
            paths,
            [
                t.path().join("m/base/keys/one.pub"),
                t.path().join("m/two.pub")
            ]
        );
        assert_eq!(m.health.required_units, ["a.service", "b.service"]);
    }

    /// The agent's keys are scalars across includes; the window is replaced
    /// whole, not merged key by key.
    #[test]
    fn update_agent_keys_compose() {
        use crate::strategy::Strategy;
        let t = tempfile::tempdir().unwrap();
        write_key(&t.path().join("m/k.pub"));
        fs::write(
            t.path().join("m/base.toml"),
            "[update]\nurl = \"http://a/r\"\nkeys = [\"k.pub\"]\nauto = true\ninterval = \"5m\"\nstrategy = \"window\"\n[update.window]\ndays = [\"sat\"]\nstart = \"01:00\"\nlength = \"1h\"\n",
        )
        .unwrap();
        let top = "include = [\"base.toml\"]\nname = \"n\"\nversion = \"1\"\n";
        let m = load_in(t.path(), &format!("{top}[update]\ninterval = \"10m\"\n")).unwrap();
        let a = m.update.unwrap().agent.unwrap();
        assert_eq!(a.interval, 600);
        assert!(matches!(a.strategy, Strategy::Window(ref w) if w.start_minute == 60));
        let e = load_in(
            t.path(),
            &format!("{top}[update.window]\ndays = [\"sun\"]\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("update.window.start: required"), "{e}");
        let m = load_in(
            t.path(),
            &format!("{top}[update]\nstrategy = \"fleet-lock\"\nfleet-lock-url = \"http://l\"\ngroup = \"g\"\n"),
        );
        // the base's window stays and is refused under fleet-lock: said, not dropped
        let e = m.unwrap_err().to_string();
        assert!(
            e.contains("update.window: only with strategy = \"window\""),
            "{e}"
        );
    }

    #[test]
    fn defaults() {
        let m = load(MINIMAL).unwrap();
        assert_eq!(m.name, "demo");
        assert_eq!(m.version, "1.0");
        assert_eq!(m.stream, "stable");
        assert_eq!(m.suite, "trixie");
        assert_eq!(m.mirror, "http://deb.debian.org/debian");
        assert_eq!(m.arches, [Arch::X86_64]);
        let x86 = m.target(Arch::X86_64);
        assert_eq!(x86.kernel.package, "linux-image-cloud-amd64");
        assert!(x86.kernel.cmdline.is_empty());
        assert_eq!(x86.packages, Packages::default());
        let arm = m.target(Arch::Aarch64);
        assert_eq!(arm.kernel.package, "linux-image-cloud-arm64");
        assert_eq!(arm.packages, Packages::default());
        assert_eq!(m.hostname, "demo");
        assert_eq!(
            m.image,
            ImageSize {
                size: 4 << 30,
                esp_size: 256 << 20
            }
        );
        assert_eq!(m.units, Units::default());
        assert!(m.users.is_empty());
        assert!(m.overlays.is_empty());
        assert_eq!(m.files.len(), 1);
        assert!(m.path.ends_with("m/demo.toml"));
        assert_eq!(m.ostree_ref(Arch::X86_64), "hull/demo/x86_64/stable");
    }

    #[test]
    fn every_key_is_carried_over() {
        let t = tempfile::tempdir().unwrap();
        write_key(&t.path().join("m/keys/a.pub"));
        fs::create_dir_all(t.path().join("rootfs-overlays/base")).unwrap();
        fs::create_dir_all(t.path().join("rootfs-overlays/site/extra")).unwrap();
        let m = load_in(
            t.path(),
            r#"
name = "demo"
version = "1.2.3+git~1"
stream = "testing"
suite = "bookworm-backports"
mirror = "https://deb.example.org/debian/"
arch = ["aarch64", "x86_64", "aarch64"]
hostname = "demo-1.example.org"
overlays = ["base", "site/extra"]
[packages]
include = ["podman", "g++", "libstdc++6"]
exclude = ["nano"]
[kernel]
package = "linux-image-amd64"
cmdline = ["quiet", "console=ttyS0,115200"]
[units]
enable = ["podman.socket", "getty@tty1.service"]
disable = ["ssh.service"]
mask = ["systemd-networkd-wait-online.service", "dev-sda\\x2d1.swap"]
[[users]]
name = "core"
groups = ["adm", "systemd-journal"]
ssh-authorized-keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB+x core@example", "sk-ssh-ed25519@openssh.com AAAA= k"]
[image]
size = 8589934592
esp-size = "512MiB"
[update]
url = "http://updates.example.org/hull/repo"
ref = "hull/demo/{arch}/testing"
keys = ["keys/a.pub"]
boot-tries = 5
[health]
required-units = ["podman.socket", "efi.mount"]
"#,
        )
        .unwrap();
        let u = m.update.as_ref().unwrap();
        assert_eq!(u.url, "http://updates.example.org/hull/repo");
        assert_eq!(m.update_ref(Arch::Aarch64), "hull/demo/aarch64/testing");
        assert_eq!(u.keys.len(), 1);
        assert_eq!(u.keys[0].path, t.path().join("m/keys/a.pub"));
        assert_eq!(u.boot_tries, 5);
        assert_eq!(m.health.required_units, ["podman.socket", "efi.mount"]);
        assert_eq!(m.version, "1.2.3+git~1");
        assert_eq!(m.stream, "testing");
        assert_eq!(m.suite, "bookworm-backports");
        assert_eq!(m.mirror, "https://deb.example.org/debian/");
        assert_eq!(m.arches, [Arch::Aarch64, Arch::X86_64]);
        assert_eq!(m.hostname, "demo-1.example.org");
        for arch in Arch::ALL {
            let t = m.target(arch);
            assert_eq!(t.packages.include, ["podman", "g++", "libstdc++6"]);
            assert_eq!(t.packages.exclude, ["nano"]);
            assert_eq!(t.kernel.package, "linux-image-amd64");
            assert_eq!(t.kernel.cmdline, ["quiet", "console=ttyS0,115200"]);
        }
        assert_eq!(m.units.enable, ["podman.socket", "getty@tty1.service"]);
        assert_eq!(m.units.disable, ["ssh.service"]);
        assert_eq!(m.units.mask.len(), 2);
        assert_eq!(m.users.len(), 1);
        assert_eq!(m.users[0].name, "core");
        assert_eq!(m.users[0].groups, ["adm", "systemd-journal"]);
        assert_eq!(m.users[0].ssh_authorized_keys.len(), 2);
        assert_eq!(
            m.image,
            ImageSize {
                size: 8 << 30,
                esp_size: 512 << 20
            }
        );
        let root = fs::canonicalize(t.path().join("rootfs-overlays")).unwrap();
        assert_eq!(
            m.overlays,
            [
                Overlay {
                    name: "base".into(),
                    dir: root.join("base")
                },
                Overlay {
                    name: "site/extra".into(),
                    dir: root.join("site/extra")
                },
            ]
        );
    }

    #[test]
    fn sha256_frames_each_file_with_its_length() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("m");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("a.toml"), "version = \"1\"\n").unwrap();
        fs::write(
            dir.join("demo.toml"),
            "include = [\"a.toml\"]\nname = \"demo\"\n",
        )
        .unwrap();
        let m = Manifest::load(&dir.join("demo.toml")).unwrap();
        let mut h = Sha256::new();
        for f in ["a.toml", "demo.toml"] {
            let bytes = fs::read(dir.join(f)).unwrap();
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(&bytes);
        }
        assert_eq!(m.sha256, hex::encode(h.finalize()));
        assert_eq!(m.files.len(), 2);
        assert_eq!(
            m.files[0].sha256,
            hex::encode(Sha256::digest(b"version = \"1\"\n"))
        );
    }

    #[test]
    fn sizes() {
        let table: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("4096", Some(4096)),
            ("512B", Some(512)),
            ("1K", Some(1024)),
            ("1k", Some(1024)),
            ("1KiB", Some(1024)),
            ("1KB", Some(1024)),
            ("512M", Some(512 << 20)),
            ("256MiB", Some(256 << 20)),
            ("4G", Some(4 << 30)),
            ("4 GiB", Some(4 << 30)),
            (" 2T ", Some(2 << 40)),
            ("1TB", Some(1 << 40)),
            ("", None),
            ("G", None),
            ("4X", None),
            ("4GiBs", None),
            ("4Gb", None),
            ("1.5G", None),
            ("-1G", None),
            ("4 G B", None),
            ("99999999999999999999", None),
            ("16777216T", None),
        ];
        for (text, want) in table {
            assert_eq!(parse_size(text).ok(), *want, "parse_size({text:?})");
        }
    }

    #[test]
    fn name_and_version_are_required() {
        fails("version = \"1\"\n", "name");
        fails("name = \"demo\"\n", "version");
    }

    #[test]
    fn name_rules() {
        for bad in ["", "Demo", "1demo", "de_mo", "de mo", &"a".repeat(65)] {
            fails(
                &format!("name = {bad:?}\nversion = \"1\"\nhostname = \"h\"\n"),
                "name",
            );
        }
        load(&format!(
            "name = {:?}\nversion = \"1\"\nhostname = \"h\"\n",
            "a".repeat(64)
        ))
        .unwrap();
    }

    #[test]
    fn version_rules() {
        for bad in ["", "1 0", "1/0", "1:0"] {
            fails(&format!("name = \"demo\"\nversion = {bad:?}\n"), "version");
        }
    }

    #[test]
    fn stream_suite_mirror_rules() {
        fails(&with("stream = \"Stable\"\n"), "stream");
        fails(&with("stream = \"\"\n"), "stream");
        fails(&with("stream = \"a/b\"\n"), "stream");
        fails(&with("suite = \"-trixie\"\n"), "suite");
        fails(
            &with("mirror = \"ftp://deb.debian.org/debian\"\n"),
            "mirror",
        );
        fails(&with("mirror = \"deb.debian.org/debian\"\n"), "mirror");
        fails(
            &with("mirror = \"http://deb.debian.org/ debian\"\n"),
            "mirror",
        );
        fails(&with("mirror = \"https://\"\n"), "mirror");
    }

    #[test]
    fn sources_rules() {
        let m = load(MINIMAL).unwrap();
        assert!(m.updates);
        assert_eq!(
            m.security_mirror.as_deref(),
            Some("http://deb.debian.org/debian-security")
        );
        assert_eq!(
            m.sources(),
            [
                (
                    "http://deb.debian.org/debian".to_string(),
                    "trixie".to_string()
                ),
                (
                    "http://deb.debian.org/debian".into(),
                    "trixie-updates".into()
                ),
                (
                    "http://deb.debian.org/debian-security".into(),
                    "trixie-security".into()
                ),
            ]
        );
        let m = load(&with(
            "mirror = \"https://ftp.de.debian.org/debian/\"\nupdates = false\n",
        ))
        .unwrap();
        assert_eq!(
            m.sources(),
            [
                (
                    "https://ftp.de.debian.org/debian/".to_string(),
                    "trixie".to_string()
                ),
                (
                    "https://ftp.de.debian.org/debian-security".into(),
                    "trixie-security".into()
                ),
            ]
        );
        let m = load(&with("security = false\nupdates = false\n")).unwrap();
        assert_eq!(m.sources().len(), 1);
        let m = load(&with("security-mirror = \"http://security.example/ds\"\n")).unwrap();
        assert_eq!(m.sources()[2].0, "http://security.example/ds");
        fails(
            &with("security = false\nsecurity-mirror = \"http://s.example/ds\"\n"),
            "security-mirror",
        );
        fails(
            &with("security-mirror = \"s.example\"\n"),
            "security-mirror",
        );
        let e = fails(
            &with("mirror = \"http://mirror.example/archive\"\n"),
            "security-mirror",
        );
        assert!(e.contains("does not end in /debian"), "{e}");
        let e = load(&with("updates = \"yes\"\n")).unwrap_err().to_string();
        assert!(
            e.contains("demo.toml:") && e.contains(": updates: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn arch_rules() {
        fails(&with("arch = []\n"), "arch");
        let e = fails(&with("arch = [\"x86_64\", \"amd64\"]\n"), "arch[1]");
        assert!(e.contains("amd64"), "{e}");
    }

    #[test]
    fn package_rules() {
        fails(
            &with("[packages]\ninclude = [\"ok\", \"Bad\"]\n"),
            "packages.include[1]",
        );
        fails(
            &with("[packages]\ninclude = [\"a\"]\n"),
            "packages.include[0]",
        );
        fails(
            &with("[packages]\nexclude = [\"-x\"]\n"),
            "packages.exclude[0]",
        );
        fails(
            &with("[packages]\ninclude = [\"foo:amd64\"]\n"),
            "packages.include[0]",
        );
        fails(
            &with("[kernel]\npackage = \"linux image\"\n"),
            "kernel.package",
        );
        let e = fails(
            &with("[packages]\ninclude = [\"nano\", \"vim\"]\nexclude = [\"vim\"]\n"),
            "packages.exclude[0]",
        );
        assert!(e.contains("vim"), "{e}");
        fails(
            &with("[packages]\nexclude = [\"linux-image-cloud-amd64\"]\n"),
            "kernel.package",
        );
    }

    #[test]
    fn hardening_needs_its_packages_on_every_architecture() {
        let profile = r#"
arch = ["x86_64", "aarch64"]
[hardening]
audit = false
rootless = false
[per-arch.x86_64.packages]
include = ["nftables"]
"#;
        let e = fails(&with(profile), "hardening.firewall");
        assert!(e.contains("nftables") && e.contains("(for aarch64)"), "{e}");
        let both = format!("{profile}[per-arch.aarch64.packages]\ninclude = [\"nftables\"]\n");
        assert!(load(&with(&both)).unwrap().hardening.firewall);
    }

    #[test]
    fn per_arch_tables_apply_to_their_architecture_only() {
        let m = load(&with(
            r#"
[packages]
include = ["podman"]
exclude = ["nano"]
[kernel]
cmdline = ["quiet"]
[per-arch.aarch64.packages]
include = ["u-boot-tools", "podman"]
exclude = ["vim"]
[per-arch.aarch64.kernel]
package = "linux-image-arm64"
cmdline = ["earlycon", "quiet"]
[per-arch.x86_64.kernel]
cmdline = ["mitigations=auto"]
"#,
        ))
        .unwrap();
        let arm = m.target(Arch::Aarch64);
        assert_eq!(arm.packages.include, ["podman", "u-boot-tools"]);
        assert_eq!(arm.packages.exclude, ["nano", "vim"]);
        assert_eq!(arm.kernel.package, "linux-image-arm64");
        assert_eq!(arm.kernel.cmdline, ["quiet", "earlycon"]);
        let x86 = m.target(Arch::X86_64);
        assert_eq!(x86.packages.include, ["podman"]);
        assert_eq!(x86.packages.exclude, ["nano"]);
        assert_eq!(x86.kernel.package, "linux-image-cloud-amd64");
        assert_eq!(x86.kernel.cmdline, ["quiet", "mitigations=auto"]);

        // A top-level kernel.package holds for every architecture without its own.
        let m = load(&with(
            "[kernel]\npackage = \"linux-image-amd64\"\n[per-arch.aarch64.kernel]\npackage = \"linux-image-cloud-arm64\"\n",
        ))
        .unwrap();
        assert_eq!(m.target(Arch::X86_64).kernel.package, "linux-image-amd64");
        assert_eq!(
            m.target(Arch::Aarch64).kernel.package,
            "linux-image-cloud-arm64"
        );
    }

    #[test]
    fn per_arch_rules() {
        // (manifest fragment, key named in the error, text the error holds)
        let cases = [
            ("[per-arch.mips.kernel]\ncmdline = []\n", "per-arch.mips", "unknown architecture"),
            ("[per-arch.aarch64.packages]\ninclude = [\"a\"]\n", "per-arch.aarch64.packages.include[0]", "\"a\""),
            ("[per-arch.aarch64.kernel]\npackage = \"bad name\"\n", "per-arch.aarch64.kernel.package", "bad name"),
            ("[per-arch.x86_64.kernel]\ncmdline = [\"root=/dev/sda\"]\n", "per-arch.x86_64.kernel.cmdline[0]", "hull sets root="),
            (
                "[packages]\ninclude = [\"vim\"]\n[per-arch.aarch64.packages]\nexclude = [\"vim\"]\n",
                "per-arch.aarch64.packages.exclude[0]",
                "vim is also in packages.include",
            ),
            (
                "[packages]\nexclude = [\"vim\"]\n[per-arch.aarch64.packages]\ninclude = [\"vim\"]\n",
                "packages.exclude[0]",
                "vim is also in per-arch.aarch64.packages.include",
            ),
            (
                "[per-arch.aarch64.packages]\nexclude = [\"linux-image-cloud-arm64\"]\n",
                "kernel.package",
                "also in per-arch.aarch64.packages.exclude",
            ),
            (
                "[packages]\nexclude = [\"k\\u0031\"]\n[per-arch.aarch64.kernel]\npackage = \"k1\"\n",
                "per-arch.aarch64.kernel.package",
                "k1 is also in packages.exclude",
            ),
        ];
        for (fragment, key, text) in cases {
            let e = fails(&with(fragment), key);
            assert!(e.contains(text), "{fragment:?}: {e}");
        }
    }

    #[test]
    fn unit_rules() {
        fails(&with("[units]\nenable = [\"ssh\"]\n"), "units.enable[0]");
        fails(
            &with("[units]\ndisable = [\"a b.service\"]\n"),
            "units.disable[0]",
        );
        fails(&with("[units]\nmask = [\".service\"]\n"), "units.mask[0]");
        fails(&with("[units]\nmask = [\"foo.conf\"]\n"), "units.mask[0]");
        // (unit, accepted): systemd's unit_name_is_valid()
        let long = format!("{}.service", "a".repeat(247));
        let too_long = format!("{}.service", "a".repeat(248));
        let table: &[(&str, bool)] = &[
            ("ssh.service", true),
            ("getty@tty1.service", true),
            ("getty@.service", true),
            ("dev-sda\\x2d1.swap", true),
            ("a:b_c.d-e.timer", true),
            (&long, true),
            (&too_long, false),
            ("@tty1.service", false),
            ("@.service", false),
            ("a@b@c.service", false),
            (".service", false),
            ("ssh", false),
            ("ssh.conf", false),
            ("a b.service", false),
            ("a/b.service", false),
            ("é.service", false),
        ];
        for (unit, ok) in table {
            let text = with(&format!("[units]\nmask = [{unit:?}]\n"));
            if *ok {
                assert_eq!(load(&text).unwrap().units.mask, [*unit]);
            } else {
                fails(&text, "units.mask[0]");
            }
        }
        // A template is never active, so it cannot be a required unit.
        let e = fails(
            &with("[health]\nrequired-units = [\"getty@.service\"]\n"),
            "health.required-units[0]",
        );
        assert!(e.contains("template"), "{e}");
        load(&with(
            "[health]\nrequired-units = [\"getty@tty1.service\"]\n",
        ))
        .unwrap();
        let e = fails(
            &with("[units]\nenable = [\"a.service\"]\nmask = [\"a.service\"]\n"),
            "units.mask[0]",
        );
        assert!(e.contains("a.service"), "{e}");
        fails(
            &with("[units]\nenable = [\"a.service\"]\ndisable = [\"a.service\"]\n"),
            "units.disable[0]",
        );
        // Disabled and masked is consistent.
        load(&with(
            "[units]\ndisable = [\"a.service\"]\nmask = [\"a.service\"]\n",
        ))
        .unwrap();
    }

    #[test]
    fn user_rules() {
        fails(&with("[[users]]\ngroups = []\n"), "users[0].name");
        fails(&with("[[users]]\nname = \"Core\"\n"), "users[0].name");
        fails(
            &with(&format!("[[users]]\nname = {:?}\n", "a".repeat(33))),
            "users[0].name",
        );
        fails(
            &with("[[users]]\nname = \"ok\"\n[[users]]\nname = \"root\"\n"),
            "users[1].name",
        );
        fails(
            &with("[[users]]\nname = \"core\"\ngroups = [\"adm\", \"9x\"]\n"),
            "users[0].groups[1]",
        );
        let key = "users[0].ssh-authorized-keys[0]";
        fails(
            &with("[[users]]\nname = \"core\"\nssh-authorized-keys = [\"AAAA core@x\"]\n"),
            key,
        );
        fails(
            &with("[[users]]\nname = \"core\"\nssh-authorized-keys = [\"ssh-ed25519\"]\n"),
            key,
        );
        fails(
            &with("[[users]]\nname = \"core\"\nssh-authorized-keys = [\"ssh-rsa !!\"]\n"),
            key,
        );
        fails(&with("[[users]]\nname = \"core\"\nssh-authorized-keys = [\"ssh-rsa AAAA\\nssh-rsa BBBB\"]\n"), key);
        load(&with("[[users]]\nname = \"_svc\"\nssh-authorized-keys = [\"ecdsa-sha2-nistp256 AAAAE2Vj\"]\n")).unwrap();
        // (name, text of the error; None: accepted) for names useradd refuses
        let table: &[(&str, Option<&str>)] = &[
            ("core", None),
            ("ops-1", None),
            (&"a".repeat(32), None),
            ("nobody", Some("system accounts")),
            ("www-data", Some("system accounts")),
            ("_apt", Some("system accounts")),
            ("adm", Some("system groups")),
            ("sudo", Some("system groups")),
            ("users", Some("system groups")),
        ];
        for (name, want) in table {
            let text = with(&format!("[[users]]\nname = {name:?}\n"));
            match want {
                None => assert_eq!(load(&text).unwrap().users[0].name, *name),
                Some(w) => {
                    let e = fails(&text, "users[0].name");
                    assert!(e.contains(w), "{name}: {e}");
                }
            }
        }
        let e = fails(
            &with("[[users]]\nname = \"core\"\n[[users]]\nname = \"ops\"\n[[users]]\nname = \"core\"\n"),
            "users[2].name",
        );
        assert!(
            e.contains("core is also users[0].name in the same file"),
            "{e}"
        );
    }

    #[test]
    fn hostname_rules() {
        // (host name, accepted): systemd's hostname_is_valid() and Linux's 64
        let long_label = "a".repeat(64);
        let at_limit = format!("{}.{}", "a".repeat(31), "b".repeat(32));
        let over_limit = format!("{}.{}", "a".repeat(32), "b".repeat(32));
        let table: &[(&str, bool)] = &[
            ("edge-01", true),
            ("Edge-01.example.org", true),
            ("0", true),
            (&at_limit, true),
            (&over_limit, false),
            (&"a".repeat(65), false),
            (&long_label, false),
            ("", false),
            ("-a", false),
            ("a-", false),
            ("a.-b", false),
            ("a-.b", false),
            ("a..b", false),
            (".a", false),
            ("a.", false),
            ("a_b", false),
            ("a b", false),
            ("é", false),
            (".host", false),
        ];
        for (h, ok) in table {
            let text = with(&format!("hostname = {h:?}\n"));
            if *ok {
                assert_eq!(load(&text).unwrap().hostname, *h);
            } else {
                fails(&text, "hostname");
            }
        }
        let e = fails(&with(&format!("hostname = {over_limit:?}\n")), "hostname");
        assert!(
            e.contains("65 characters") && e.contains("at most 64"),
            "{e}"
        );
        // The default comes from name, which may not be a valid host name.
        let e = fails("name = \"demo-\"\nversion = \"1\"\n", "hostname");
        assert!(e.contains("name"), "{e}");
    }

    #[test]
    fn image_rules() {
        fails(&with("[image]\nsize = \"4X\"\n"), "image.size");
        fails(&with("[image]\nesp-size = \"lots\"\n"), "image.esp-size");
        fails(&with("[image]\nesp-size = \"63M\"\n"), "image.esp-size");
        load(&with("[image]\nesp-size = \"64M\"\nsize = \"1G\"\n")).unwrap();
        fails(
            &with("[image]\nesp-size = \"256M\"\nsize = \"768M\"\n"),
            "image.size",
        );
        load(&with("[image]\nesp-size = \"256M\"\nsize = 805306369\n")).unwrap();
        fails(
            &with("[image]\nsize = \"16777215T\"\nesp-size = \"16777215T\"\n"),
            "image.size",
        );
    }

    /// Each argument as the kernel's next_arg() splits the command line.
    #[test]
    fn kernel_argument_table() {
        // (argument, accepted)
        let table: &[(&str, bool)] = &[
            ("quiet", true),
            ("console=ttyS0,115200", true),
            ("x.note=\"two words\"", true),
            ("\"x.note=two words\"", true),
            ("x.empty=\"\"", true),
            ("dyndbg=\"file foo.c +p\"", true),
            ("a=b=c", true),
            ("x.note=\"unterminated", false),
            ("\"unterminated", false),
            ("x=\"a\"b", false),
            ("x=a\"b\"", false),
            ("\"a\"=\"b\"", false),
            ("x=\"a\" y=\"b\"", false),
            ("\"\"", false),
            ("two words", false),
            ("x=two words", false),
            ("key with=\"space\"", false),
            ("tab\there", false),
            ("new\nline", false),
            ("x=\u{a0}", false),
            ("x=café", false),
            ("x='a b'", false),
            ("--", false),
            ("", false),
            ("root=/dev/sda", false),
            ("\"root=/dev/sda\"", false),
            ("ostree=/x", false),
            ("rootflags=ro", true),
        ];
        for (arg, ok) in table {
            assert_eq!(
                check_karg(arg).is_ok(),
                *ok,
                "{arg:?}: {:?}",
                check_karg(arg)
            );
        }
        let e = fails(
            &with("[kernel]\ncmdline = [\"quiet\", \"x.note=\\\"unterminated\"]\n"),
            "kernel.cmdline[1]",
        );
        assert!(e.contains("unbalanced quote"), "{e}");
        fails(
            &with("[per-arch.aarch64.kernel]\ncmdline = [\"x='y\"]\n"),
            "per-arch.aarch64.kernel.cmdline[0]",
        );
    }

    /// The whole command line, hull's and the profile's arguments and
    /// what OSTree and systemd-boot add included, stays within 2047 bytes.
    #[test]
    fn command_line_length() {
        let base = load(&with("[hardening]\nenable = false\n")).unwrap();
        let used: usize = base
            .kernel_args(Arch::X86_64)
            .iter()
            .map(|a| a.len() + 1)
            .sum::<usize>()
            + cmdline_reserved("demo");
        // `used` counts a space after each argument; the one after the last
        // stands for the space before the argument added here.
        let room = COMMAND_LINE_SIZE - 1 - used;
        let arg = |n: usize| format!("x={}", "a".repeat(n - 2));
        let fits = with(&format!(
            "[hardening]\nenable = false\n[kernel]\ncmdline = [{:?}]\n",
            arg(room)
        ));
        load(&fits).unwrap();
        let over = with(&format!(
            "[hardening]\nenable = false\n[kernel]\ncmdline = [{:?}]\n",
            arg(room + 1)
        ));
        let e = fails(&over, "kernel.cmdline");
        assert!(e.contains("2048 bytes") && e.contains("keeps 2047"), "{e}");
        // Too long on aarch64 only, by its own arguments: that key is named.
        let arm = with(&format!(
            "[hardening]\nenable = false\n[per-arch.aarch64.kernel]\ncmdline = [{:?}]\n",
            arg(room + 40)
        ));
        let e = fails(&arm, "per-arch.aarch64.kernel.cmdline");
        assert!(e.contains("aarch64 kernel command line"), "{e}");
        // The hardening profile's arguments count too.
        let profile = "[hardening]\nsysctl = false\nfirewall = false\naudit = false\ntmp = false\n\
                       ssh = false\ncontainers = false\nrootless = false\nprune-units = false\n\
                       sandbox = false\n";
        let hardened = load(&with(profile)).unwrap();
        assert!(hardened.kernel_args(Arch::X86_64).len() > base.kernel_args(Arch::X86_64).len());
        fails(
            &with(&format!("{profile}[kernel]\ncmdline = [{:?}]\n", arg(room))),
            "kernel.cmdline",
        );
        // Reserved: " ostree=/ostree/boot.1/demo/<64>/0" and
        // " initrd=\ostree\demo-<64>\initramfs-<64>.img".
        assert_eq!(cmdline_reserved("demo"), 94 + 164);
    }

    #[test]
    fn cmdline_rules() {
        fails(&with("[kernel]\ncmdline = [\"\"]\n"), "kernel.cmdline[0]");
        fails(
            &with("[kernel]\ncmdline = [\"quiet splash\"]\n"),
            "kernel.cmdline[0]",
        );
        fails(
            &with("[kernel]\ncmdline = [\"quiet\", \"a=b\\n\"]\n"),
            "kernel.cmdline[1]",
        );
        fails(
            &with("[kernel]\ncmdline = [\"root=/dev/sda2\"]\n"),
            "kernel.cmdline[0]",
        );
        fails(
            &with("[kernel]\ncmdline = [\"ostree=/ostree/boot.1\"]\n"),
            "kernel.cmdline[0]",
        );
        load(&with(
            "[kernel]\ncmdline = [\"rootflags=ro\", \"console=ttyS0\"]\n",
        ))
        .unwrap();
    }

    #[test]
    fn overlay_rules() {
        let t = tempfile::tempdir().unwrap();
        // No rootfs-overlays anywhere above the temporary directory, one hopes;
        // skip the check if the machine has one.
        let above = fs::canonicalize(t.path()).unwrap();
        if !above.ancestors().any(|d| d.join(OVERLAY_ROOT).is_dir()) {
            let e = load_in(t.path(), &with("overlays = [\"base\"]\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("demo.toml: overlays: no rootfs-overlays"), "{e}");
        }
        // Empty overlays need no overlay root.
        load_in(t.path(), &with("overlays = []\n")).unwrap();

        let root = t.path().join("rootfs-overlays");
        fs::create_dir_all(root.join("base")).unwrap();
        fs::write(root.join("file"), "").unwrap();
        fs::create_dir_all(t.path().join("outside")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("escape")).unwrap();
        std::os::unix::fs::symlink(".", root.join("self")).unwrap();
        std::os::unix::fs::symlink("base", root.join("alias")).unwrap();
        let check = |overlay: &str, key: &str| {
            let e = load_in(
                t.path(),
                &with(&format!("overlays = [\"base\", {overlay:?}]\n")),
            )
            .expect_err(overlay)
            .to_string();
            assert!(!e.contains('\n'), "{e:?}");
            assert!(e.contains(&format!("demo.toml: {key}: ")), "{overlay}: {e}");
        };
        check("../outside", "overlays[1]");
        check("/etc", "overlays[1]");
        check("./base", "overlays[1]");
        check("", "overlays[1]");
        check("missing", "overlays[1]");
        check("file", "overlays[1]");
        check("escape", "overlays[1]");
        check("self", "overlays[1]");
        // A symlink that stays inside is fine, resolved to its target.
        let m = load_in(t.path(), &with("overlays = [\"alias\"]\n")).unwrap();
        assert_eq!(m.overlays[0].name, "alias");
        assert_eq!(
            m.overlays[0].dir,
            fs::canonicalize(root.join("base")).unwrap()
        );
    }

    /// What libostree cannot commit is refused when the manifest is read,
    /// naming the overlay and the path.
    #[test]
    fn overlay_contents_ostree_cannot_store() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("rootfs-overlays");
        let ok = root.join("ok/etc");
        fs::create_dir_all(&ok).unwrap();
        fs::write(ok.join("motd"), "hi").unwrap();
        fs::write(ok.join("naïve"), "").unwrap();
        std::os::unix::fs::symlink("/dev/null", ok.join("masked.service")).unwrap();
        load_in(t.path(), &with("overlays = [\"ok\"]\n")).unwrap();

        let bad_name = root.join("name/etc");
        fs::create_dir_all(&bad_name).unwrap();
        fs::write(bad_name.join(OsStr::from_bytes(b"caf\xe9")), "").unwrap();
        let bad_link = root.join("link/usr");
        fs::create_dir_all(&bad_link).unwrap();
        std::os::unix::fs::symlink(OsStr::from_bytes(b"\xff"), bad_link.join("l")).unwrap();
        let socket = root.join("socket/run");
        fs::create_dir_all(&socket).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(socket.join("sock")).unwrap();
        // (overlay, text the error holds)
        let cases = [
            ("name", "etc/caf\\xE9\": the name is not UTF-8"),
            (
                "link",
                "usr/l\": the symlink's target \"\\xFF\" is not UTF-8",
            ),
            ("socket", "run/sock\": not a file, directory or symlink"),
        ];
        for (overlay, text) in cases {
            let e = load_in(
                t.path(),
                &with(&format!("overlays = [\"ok\", {overlay:?}]\n")),
            )
            .unwrap_err()
            .to_string();
            assert!(!e.contains('\n'), "{e:?}");
            assert!(e.contains("demo.toml: overlays[1]: "), "{e}");
            assert!(e.contains(&format!("rootfs-overlays/{overlay}/")), "{e}");
            assert!(e.contains(text), "{overlay}: {e}");
        }
    }

    #[test]
    fn nearest_overlay_root_wins() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("rootfs-overlays/outer")).unwrap();
        fs::create_dir_all(t.path().join("m/rootfs-overlays/inner")).unwrap();
        load_in(t.path(), &with("overlays = [\"inner\"]\n")).unwrap();
        let e = load_in(t.path(), &with("overlays = [\"outer\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("overlays[0]"), "{e}");
    }

    #[test]
    fn errors_from_includes_are_reported_against_the_top_level_file() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("m");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("base.toml"), "[packages]\ninclude = [\"Bad\"]\n").unwrap();
        let e = load_in(t.path(), &with("include = [\"base.toml\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("demo.toml: packages.include[0]: "), "{e}");
    }

    #[test]
    fn validate_never_panics_on_odd_input() {
        for text in [
            "",
            "name = \"\"\nversion = \"\"\n",
            "name = \"é\"\nversion = \"1\"\n",
            "name = \"demo\"\nversion = \"1\"\n[[users]]\n",
            "name = \"demo\"\nversion = \"1\"\n[image]\nsize = 0\nesp-size = 0\n",
            "name = \"demo\"\nversion = \"1\"\n[image]\nsize = 9223372036854775807\n",
            "name = \"demo\"\nversion = \"1\"\n[[users]]\nname = \"a\"\nssh-authorized-keys = [\"ssh-é\"]\n",
        ] {
            let _ = load(text);
        }
    }
}
