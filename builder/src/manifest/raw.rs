//! One manifest file, as written: serde structs over the TOML text.
//!
//! Every field is optional so that a file can be a fragment that others
//! include; [`super::compose`] merges fragments and [`super::validate`] fills
//! defaults and checks values. Unknown keys are errors everywhere.
//!
//! Errors are one line: `<file>:<line>:<col>: <key path>: <message>`, the key
//! path as serde saw it (`packages.include[1]`, `users[0].name`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::{anyhow, Result};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// One manifest file. See `docs/manifest.md` for every key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawManifest {
    /// Files composed before this one, relative to this file's directory.
    pub include: Option<Vec<String>>,
    pub name: Option<String>,
    pub version: Option<String>,
    pub stream: Option<String>,
    pub suite: Option<String>,
    pub mirror: Option<String>,
    pub updates: Option<bool>,
    pub security: Option<bool>,
    pub security_mirror: Option<String>,
    pub arch: Option<Vec<String>>,
    pub hostname: Option<String>,
    pub overlays: Option<Vec<String>>,
    pub packages: Option<RawPackages>,
    pub kernel: Option<RawKernel>,
    pub units: Option<RawUnits>,
    pub users: Option<Vec<RawUser>>,
    pub image: Option<RawImage>,
    pub hardening: Option<RawHardening>,
    pub update: Option<RawUpdate>,
    pub health: Option<RawHealth>,
    /// `[containers]`: image trust and the sandboxed runtime.
    pub containers: Option<super::containers::RawContainers>,
    /// `[per-arch.<arch>]`: packages and kernel settings for one architecture,
    /// by hull's architecture name (checked in [`super::validate`]).
    pub per_arch: Option<BTreeMap<String, RawPerArch>>,
}

/// `[per-arch.<arch>]`: added to (lists) or replacing (scalars) the
/// top-level `[packages]` and `[kernel]` when building that architecture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPerArch {
    pub packages: Option<RawPackages>,
    pub kernel: Option<RawKernel>,
}

/// `[hardening]`: the hardening profile and its items (docs/hardening.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHardening {
    pub enable: Option<bool>,
    pub kernel_cmdline: Option<bool>,
    pub cmdline_exclude: Option<Vec<String>>,
    pub sysctl: Option<bool>,
    pub sysctl_overrides: Option<BTreeMap<String, String>>,
    pub firewall: Option<bool>,
    pub open_ports: Option<Vec<String>>,
    pub audit: Option<bool>,
    pub tmp: Option<bool>,
    pub ssh: Option<bool>,
    pub containers: Option<bool>,
    pub rootless: Option<bool>,
    pub rootless_user: Option<String>,
    pub prune_units: Option<bool>,
    pub sandbox: Option<bool>,
}

/// `[packages]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPackages {
    pub include: Option<Vec<String>>,
    pub exclude: Option<Vec<String>>,
}

/// `[kernel]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawKernel {
    pub package: Option<String>,
    pub cmdline: Option<Vec<String>>,
}

/// `[units]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawUnits {
    pub enable: Option<Vec<String>>,
    pub disable: Option<Vec<String>>,
    pub mask: Option<Vec<String>>,
}

/// One `[[users]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawUser {
    pub name: Option<String>,
    pub groups: Option<Vec<String>>,
    pub ssh_authorized_keys: Option<Vec<String>>,
}

/// `[image]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawImage {
    pub size: Option<RawSize>,
    pub esp_size: Option<RawSize>,
    /// Validated by [`super::image_formats::formats_of`].
    pub formats: Option<Vec<String>>,
}

/// `[update]`: where hosts look for updates and whom they trust.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawUpdate {
    pub url: Option<String>,
    #[serde(rename = "ref")]
    pub ostree_ref: Option<String>,
    /// Public key files, relative to the file naming them (made absolute by
    /// [`super::compose`]).
    pub keys: Option<Vec<String>>,
    pub boot_tries: Option<i64>,
    /// Whether hosts update by themselves (the update agent).
    pub auto: Option<bool>,
    /// How often the agent checks, e.g. `"1h"`.
    pub interval: Option<String>,
    /// `immediate`, `window`, `fleet-lock` or `kured`.
    pub strategy: Option<String>,
    /// The maintenance window of `strategy = "window"`.
    pub window: Option<RawWindow>,
    /// The FleetLock server of `strategy = "fleet-lock"`.
    pub fleet_lock_url: Option<String>,
    /// The FleetLock reboot group.
    pub group: Option<String>,
}

/// `[update.window]`: when `strategy = "window"` lets hosts reboot (UTC).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawWindow {
    pub days: Option<Vec<String>>,
    pub start: Option<String>,
    pub length: Option<String>,
}

/// `[health]`: what must work before a new deployment is marked good.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHealth {
    pub required_units: Option<Vec<String>>,
}

/// A size as written: a string such as `"4G"` or `"256MiB"`, or an integer
/// number of bytes. Parsed by [`super::validate::parse_size`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

impl fmt::Display for RawSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawSize::Bytes(n) => write!(f, "{n}"),
            RawSize::Text(s) => write!(f, "{s:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"4G\" or \"256MiB\", or an integer number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
                u64::try_from(v)
                    .map(RawSize::Bytes)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_owned()))
            }
        }
        d.deserialize_any(SizeVisitor)
    }
}

/// Reads and parses one file; returns the parsed file and its bytes.
pub fn read(path: &Path) -> Result<(RawManifest, Vec<u8>)> {
    let bytes = std::fs::read(path).map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
    let raw = parse_bytes(path, &bytes)?;
    Ok((raw, bytes))
}

/// Parses the bytes of one file; `path` is only used in error messages.
pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<RawManifest> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_str(path, text),
        Err(e) => {
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let (line, col) = line_col(valid, valid.len());
            Err(anyhow!(
                "{}:{line}:{col}: the file is not valid UTF-8",
                path.display()
            ))
        }
    }
}

/// Parses the text of one file; `path` is only used in error messages.
pub fn parse_str(path: &Path, text: &str) -> Result<RawManifest> {
    serde_path_to_error::deserialize(toml::Deserializer::new(text))
        .map_err(|e| anyhow!(format_error(path, text, &e)))
}

/// One line: `<file>:<line>:<col>: <key path>: <message>`; the position is
/// left out when toml gives no span, the key path when there is none (a
/// syntax error).
fn format_error(
    path: &Path,
    text: &str,
    err: &serde_path_to_error::Error<toml::de::Error>,
) -> String {
    let inner = err.inner();
    let message = one_line(inner.message());
    let mut key = match err.path().to_string() {
        p if p == "." => String::new(),
        p => p,
    };
    // The path names an unknown key itself; should it ever name only the
    // table, add the key.
    if let Some(field) = unknown_field(&message) {
        if key.is_empty() {
            key = field.to_owned();
        } else if key.rsplit('.').next() != Some(field) {
            key = format!("{key}.{field}");
        }
    }
    let mut out = path.display().to_string();
    if let Some(span) = inner.span() {
        let (line, col) = line_col(text, span.start);
        out.push_str(&format!(":{line}:{col}"));
    }
    if !key.is_empty() {
        out.push_str(": ");
        out.push_str(&key);
    }
    out.push_str(": ");
    out.push_str(&message);
    out
}

/// The field named by serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(&rest[..rest.find('`')?])
}

/// toml messages can span lines; keep them on one.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RawManifest> {
        parse_str(Path::new("m.toml"), text)
    }

    fn err(text: &str) -> String {
        let e = parse(text).expect_err("expected an error").to_string();
        assert!(!e.contains('\n'), "error spans lines: {e:?}");
        assert!(e.starts_with("m.toml"), "error does not name the file: {e}");
        e
    }

    #[test]
    fn every_key_parses() {
        let raw = parse(
            r#"
include = ["base.toml", "extra/more.toml"]
name = "demo"
version = "1.2.3"
stream = "testing"
suite = "trixie"
mirror = "https://deb.example.org/debian"
arch = ["x86_64", "aarch64"]
hostname = "demo-host"
overlays = ["base", "site/extra"]

[packages]
include = ["podman", "crun"]
exclude = ["nano"]

[kernel]
package = "linux-image-amd64"
cmdline = ["quiet", "console=ttyS0"]

[units]
enable = ["podman.socket"]
disable = ["ssh.service"]
mask = ["systemd-networkd-wait-online.service"]

[[users]]
name = "core"
groups = ["adm"]
ssh-authorized-keys = ["ssh-ed25519 AAAAC3Nza core@example"]

[[users]]
name = "ops"

[image]
size = "8G"
esp-size = 536870912
"#,
        )
        .unwrap();
        assert_eq!(raw.include.unwrap(), ["base.toml", "extra/more.toml"]);
        assert_eq!(raw.name.as_deref(), Some("demo"));
        assert_eq!(raw.version.as_deref(), Some("1.2.3"));
        assert_eq!(raw.stream.as_deref(), Some("testing"));
        assert_eq!(raw.suite.as_deref(), Some("trixie"));
        assert_eq!(
            raw.mirror.as_deref(),
            Some("https://deb.example.org/debian")
        );
        assert_eq!(raw.arch.unwrap(), ["x86_64", "aarch64"]);
        assert_eq!(raw.hostname.as_deref(), Some("demo-host"));
        assert_eq!(raw.overlays.unwrap(), ["base", "site/extra"]);
        let p = raw.packages.unwrap();
        assert_eq!(p.include.unwrap(), ["podman", "crun"]);
        assert_eq!(p.exclude.unwrap(), ["nano"]);
        let k = raw.kernel.unwrap();
        assert_eq!(k.package.as_deref(), Some("linux-image-amd64"));
        assert_eq!(k.cmdline.unwrap(), ["quiet", "console=ttyS0"]);
        let u = raw.units.unwrap();
        assert_eq!(u.enable.unwrap(), ["podman.socket"]);
        assert_eq!(u.disable.unwrap(), ["ssh.service"]);
        assert_eq!(u.mask.unwrap(), ["systemd-networkd-wait-online.service"]);
        let users = raw.users.unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].name.as_deref(), Some("core"));
        assert_eq!(users[0].groups.as_deref(), Some(&["adm".to_owned()][..]));
        assert_eq!(users[0].ssh_authorized_keys.as_ref().unwrap().len(), 1);
        assert_eq!(users[1].groups, None);
        let i = raw.image.unwrap();
        assert_eq!(i.size, Some(RawSize::Text("8G".into())));
        assert_eq!(i.esp_size, Some(RawSize::Bytes(536870912)));
    }

    #[test]
    fn per_arch_tables_parse_and_refuse_other_keys() {
        let raw = parse(
            r#"
[per-arch.aarch64.packages]
include = ["u-boot-tools"]
exclude = ["grub-efi-amd64"]
[per-arch.aarch64.kernel]
package = "linux-image-cloud-arm64"
cmdline = ["earlycon"]
[per-arch.x86_64.kernel]
cmdline = ["mitigations=auto"]
"#,
        )
        .unwrap();
        let per = raw.per_arch.unwrap();
        let arm = &per["aarch64"];
        let p = arm.packages.as_ref().unwrap();
        assert_eq!(p.include.as_deref(), Some(&["u-boot-tools".to_owned()][..]));
        assert_eq!(
            p.exclude.as_deref(),
            Some(&["grub-efi-amd64".to_owned()][..])
        );
        let k = arm.kernel.as_ref().unwrap();
        assert_eq!(k.package.as_deref(), Some("linux-image-cloud-arm64"));
        assert_eq!(k.cmdline.as_deref(), Some(&["earlycon".to_owned()][..]));
        assert!(per["x86_64"].packages.is_none());
        let e = err("[per-arch.aarch64]
name = \"x\"\n");
        assert!(e.contains(": per-arch.aarch64.name: unknown field"), "{e}");
        let e = err("[per-arch.aarch64.kernel]\npackage = 3\n");
        assert!(e.contains("per-arch.aarch64.kernel.package: "), "{e}");
    }

    #[test]
    fn empty_file_is_an_empty_fragment() {
        assert_eq!(parse("").unwrap(), RawManifest::default());
    }

    #[test]
    fn wrong_type_names_key_path_and_position() {
        let e = err("[packages]\ninclude = [\"a\", 2]\n");
        assert!(e.starts_with("m.toml:2:"), "{e}");
        assert!(e.contains("packages.include[1]: "), "{e}");
        let e = err("version = 1.0\n");
        assert!(e.starts_with("m.toml:1:"), "{e}");
        assert!(e.contains(": version: "), "{e}");
        let e = err("[[users]]\nname = \"a\"\n[[users]]\nname = 7\n");
        assert!(e.contains("users[1].name: "), "{e}");
        assert!(e.starts_with("m.toml:4:"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = err("name = \"a\"\nnmae = \"b\"\n");
        assert!(e.contains(": nmae: unknown field"), "{e}");
        let e = err("[kernel]\ncmd-line = []\n");
        assert!(e.contains(": kernel.cmd-line: unknown field"), "{e}");
        let e = err("[[users]]\nname = \"a\"\nshell = \"/bin/sh\"\n");
        assert!(e.contains(": users[0].shell: unknown field"), "{e}");
        let e = err("[image]\nesp_size = \"1G\"\n");
        assert!(e.contains(": image.esp_size: unknown field"), "{e}");
    }

    #[test]
    fn syntax_errors_are_one_line_with_position() {
        let e = err("name = \"a\"\n[packages\ninclude = []\n");
        assert!(e.starts_with("m.toml:2:"), "{e}");
        let e = err("name = \"a\"\nname = \"b\"\n");
        assert!(e.starts_with("m.toml:2:"), "{e}");
        let e = err("name = \"unterminated\n");
        assert!(e.starts_with("m.toml:1:"), "{e}");
    }

    #[test]
    fn sizes_accept_strings_and_integers_only() {
        let e = err("[image]\nsize = -1\n");
        assert!(e.contains("image.size: "), "{e}");
        let e = err("[image]\nsize = 1.5\n");
        assert!(e.contains("image.size: "), "{e}");
        let e = err("[image]\nesp-size = true\n");
        assert!(e.contains("image.esp-size: "), "{e}");
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let e = parse_bytes(Path::new("m.toml"), b"name = \"a\"\nversion = \"\xff\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("m.toml:2:12: "), "{e}");
    }

    #[test]
    fn line_col_counts_characters() {
        let text = "a\nbé c\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 2), (2, 1));
        assert_eq!(line_col(text, 5), (2, 3));
        assert_eq!(line_col(text, 100), (3, 1));
    }
}
