//! The manifest: what an image is made of.
//!
//! Reading happens in four steps, each its own module:
//! - [`raw`]: one TOML file into serde structs (`deny_unknown_fields`, kebab-case,
//!   every field optional so that a file can be a fragment);
//! - [`compose`]: `include = [...]` resolved depth-first, later files overriding
//!   earlier ones;
//! - [`load`]: every other file the composed manifest names (key files,
//!   overlay directories) read into plain data, read failures kept as data;
//! - [`validate`]: the composed raw manifest and the loaded data into the
//!   typed [`Manifest`] below, with defaults filled in and every value
//!   checked. Validation does no I/O.
//!
//! Every error is one line naming the file and the key.

pub mod agent_config;
pub mod compose;
pub mod containers;
pub mod hardening;
pub mod host_config;
pub mod image_formats;
pub mod load;
pub mod node;
pub mod profile;
pub mod raw;
pub mod strategy;
pub mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

pub use crate::util::arch::Arch;

/// A validated manifest, composed from its includes, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    /// The manifest file the user named.
    pub path: PathBuf,
    /// Every file read, in composition order (includes first), with its sha256.
    pub files: Vec<SourceFile>,
    /// sha256 over the bytes of every file in `files`, in order.
    pub sha256: String,
    /// Plain identifier: `[a-z][a-z0-9-]*`, at most 64 characters.
    pub name: String,
    /// The OS version recorded in the commit, e.g. `1.0.3`.
    pub version: String,
    /// Update stream, the last part of the ref; default `stable`.
    pub stream: String,
    /// Debian suite; default `trixie`.
    pub suite: String,
    /// Debian mirror URL (http or https); default `http://deb.debian.org/debian`.
    pub mirror: String,
    /// Whether `<suite>-updates` (from `mirror`) is a source; default true.
    pub updates: bool,
    /// The security archive `<suite>-security` comes from; `None` when
    /// `security = false`. Default: derived from `mirror`.
    pub security_mirror: Option<String>,
    /// Architectures to build; default `[x86_64]`.
    pub arches: Vec<Arch>,
    /// Packages and kernel per architecture (every one hull knows, listed in
    /// `arches` or not): the top-level tables with `[per-arch.<arch>]` applied.
    pub targets: BTreeMap<Arch, Target>,
    /// Overlay directories, resolved and checked to lie under the overlay root.
    pub overlays: Vec<Overlay>,
    pub units: Units,
    pub users: Vec<User>,
    pub hostname: String,
    pub image: ImageSize,
    /// `image.formats`: the raw image first, then each conversion.
    pub image_formats: Vec<image_formats::ImageFormat>,
    pub hardening: Hardening,
    /// Where hosts update from; `None`: the image is not updatable.
    pub update: Option<Update>,
    pub health: Health,
    /// `[containers]`: image trust policy and sandboxed runtime.
    pub containers: containers::Containers,
}

pub use hardening::Hardening;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFile {
    pub path: PathBuf,
    pub sha256: String,
}

/// What is installed for one architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub packages: Packages,
    pub kernel: Kernel,
}

/// Packages to install besides the kernel, and packages to keep out.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Packages {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kernel {
    /// Debian package of the kernel; default `linux-image-cloud-<amd64|arm64>`.
    pub package: String,
    /// Extra kernel command-line arguments, after hull's own and the
    /// hardening profile's ([`crate::boot::cmdline::compose`]).
    pub cmdline: Vec<String>,
    /// The manifest key `cmdline` came from (`kernel.cmdline` or
    /// `per-arch.<arch>.kernel.cmdline`), for errors about the whole line.
    #[serde(skip)]
    pub cmdline_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overlay {
    /// As written in the manifest, e.g. `hardening`.
    pub name: String,
    /// Canonical absolute path of the directory.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Units {
    pub enable: Vec<String>,
    pub disable: Vec<String>,
    pub mask: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    pub ssh_authorized_keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ImageSize {
    /// Whole disk size in bytes; default 4 GiB.
    pub size: u64,
    /// EFI system partition size in bytes; default 256 MiB.
    pub esp_size: u64,
}

/// `[update]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Update {
    /// http:// or https:// URL of the OSTree repository served as static files.
    pub url: String,
    /// The ref hosts follow, `{arch}` replaced; default: the ref built.
    pub ostree_ref: Option<String>,
    /// Public keys whose signatures hosts accept.
    pub keys: Vec<TrustedKey>,
    /// Boots a new deployment gets to pass its health check; default 3.
    pub boot_tries: u32,
    /// The update agent: `None` unless `auto = true`.
    pub agent: Option<UpdateAgent>,
}

/// `[update] auto = true` and its settings, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateAgent {
    /// Seconds between two checks; default one hour.
    pub interval: u64,
    /// When a staged update may reboot the host; default immediate.
    pub strategy: crate::manifest::strategy::Strategy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustedKey {
    /// The key file.
    pub path: PathBuf,
    /// The key, base64 as in the file.
    pub public: String,
}

/// `[health]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Health {
    /// Units that must be active for a boot to count as good.
    pub required_units: Vec<String>,
}

impl Manifest {
    /// Reads, composes and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest> {
        let composed = compose::compose(path)?;
        let loaded = load::load(path, &composed);
        validate::validate(path, composed, &loaded)
    }

    /// The packages and kernel of `arch`.
    pub fn target(&self, arch: Arch) -> &Target {
        &self.targets[&arch]
    }

    /// The Debian sources packages come from, as (mirror URL, suite): the
    /// suite, then `<suite>-updates` and `<suite>-security` when on.
    pub fn sources(&self) -> Vec<(String, String)> {
        let mut out = vec![(self.mirror.clone(), self.suite.clone())];
        if self.updates {
            out.push((self.mirror.clone(), format!("{}-updates", self.suite)));
        }
        if let Some(s) = &self.security_mirror {
            out.push((s.clone(), format!("{}-security", self.suite)));
        }
        out
    }

    /// The OSTree ref this manifest commits to for `arch`.
    pub fn ostree_ref(&self, arch: Arch) -> String {
        format!("hull/{}/{}/{}", self.name, arch, self.stream)
    }

    /// The ref hosts built for `arch` update from.
    pub fn update_ref(&self, arch: Arch) -> String {
        match self.update.as_ref().and_then(|u| u.ostree_ref.as_ref()) {
            Some(r) => r.replace("{arch}", arch.as_str()),
            None => self.ostree_ref(arch),
        }
    }
}
