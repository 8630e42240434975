//! `[containers]`: which container images the host's podman may pull and
//! run (containers-policy.json(5)), and the sandboxed runtime (gVisor).
//!
//! ```toml
//! [containers]
//! default = "reject"            # or "insecure-accept-anything"
//! sandbox = "gvisor"            # or "none"
//! [containers.trust]
//! "registry.example:5000/ns" = ["keys/publisher.pub"]
//! ```
//!
//! `trust` maps a scope (a registry, `host[:port]`, or a repository or
//! namespace under one, `host[:port]/path`, or `*.domain` for every registry
//! under a domain) to cosign public key files. Merging across includes:
//! scopes merge by name, a scope's key list accumulates, `default` and
//! `sandbox` are replaced. Key files are named relative to the file naming
//! them ([`resolve_paths`]). The rootfs stage turns the result into files
//! (`crate::build::rootfs::containers`).

mod keys;
mod scope;

pub use keys::parse_public_key;
pub use scope::check_scope;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Arch, Target};

/// Packages that enforce /etc/containers/policy.json when they pull: the
/// users of containers/image. containerd and CRI clients do not read it.
pub const POLICY_ENFORCERS: &[&str] = &["podman", "skopeo", "buildah", "cri-o"];
/// Container engines that can be given the gVisor runtime.
pub const SANDBOX_ENGINES: &[&str] = &["podman", "containerd"];
/// The Debian package of gVisor's OCI runtime, added when `sandbox = "gvisor"`.
pub const RUNSC_PACKAGE: &str = "runsc";

/// `[containers]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawContainers {
    /// Scope to public key files (made absolute by [`resolve_paths`]).
    pub trust: Option<BTreeMap<String, Vec<String>>>,
    /// `reject` or `insecure-accept-anything`: images no scope covers.
    pub default: Option<String>,
    /// `none` or `gvisor`.
    pub sandbox: Option<String>,
}

/// The validated `[containers]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Containers {
    /// The image policy; `None` (no `trust` and no `default`): hull leaves
    /// the policy the packages ship (podman's accepts anything).
    pub policy: Option<Policy>,
    pub sandbox: Sandbox,
}

/// What /etc/containers/policy.json says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// For images that no scope in `trust` covers.
    pub default: DefaultPolicy,
    /// Scopes and the keys any of which must have signed an image from them,
    /// sorted by scope.
    pub trust: Vec<TrustScope>,
}

/// The policy for images no trusted scope covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultPolicy {
    Reject,
    InsecureAcceptAnything,
}

/// One scope of `trust`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustScope {
    /// `host[:port]`, `host[:port]/path` or `*.domain`, as written.
    pub scope: String,
    /// At least one; duplicates (same key text) removed.
    pub keys: Vec<ImageKey>,
}

/// A cosign public key the manifest trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageKey {
    /// The file as the manifest named it (absolute after composition).
    pub path: PathBuf,
    /// The key's PEM text, re-encoded (`-----BEGIN PUBLIC KEY-----`).
    pub pem: String,
    /// What kind of key it is, e.g. `ECDSA P-256`.
    pub algorithm: &'static str,
}

/// The runtime for untrusted workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sandbox {
    #[default]
    None,
    Gvisor,
}

/// Makes the key paths of `raw` absolute against `dir`, the directory of
/// the file that names them.
pub fn resolve_paths(raw: &mut RawContainers, dir: &Path) {
    for keys in raw.trust.iter_mut().flat_map(|t| t.values_mut()) {
        for key in keys.iter_mut().filter(|k| !k.is_empty()) {
            *key = dir.join(&*key).display().to_string();
        }
    }
}

/// Merges a later file's table over an earlier one (module documentation).
pub fn merge(acc: &mut RawContainers, next: RawContainers) {
    use super::compose::{accumulate, replace};
    let RawContainers {
        trust,
        default,
        sandbox,
    } = next;
    for (scope, keys) in trust.into_iter().flatten() {
        let slot = acc
            .trust
            .get_or_insert_with(Default::default)
            .entry(scope)
            .or_default();
        let mut merged = Some(std::mem::take(slot));
        accumulate(&mut merged, Some(keys));
        *slot = merged.unwrap_or_default();
    }
    replace(&mut acc.default, default);
    replace(&mut acc.sandbox, sandbox);
}

/// Checks the composed table against the packages of every architecture
/// built, and adds runsc to them for `sandbox = "gvisor"`. Key files come
/// from `key_files` (path as composed → bytes or the read error, from
/// [`crate::manifest::load`]): no I/O. Errors are `(key path, message)`, the
/// key path from `containers.` on.
pub fn validate(
    raw: Option<RawContainers>,
    key_files: &BTreeMap<String, Result<Vec<u8>, String>>,
    targets: &mut BTreeMap<Arch, Target>,
) -> Result<Containers, (String, String)> {
    let Some(raw) = raw else {
        return Ok(Containers::default());
    };
    let err = |key: String, m: String| (key, m);
    let default = match raw.default.as_deref() {
        None => None,
        Some("reject") => Some(DefaultPolicy::Reject),
        Some("insecure-accept-anything") => Some(DefaultPolicy::InsecureAcceptAnything),
        Some(other) => {
            return Err(err(
                "containers.default".into(),
                format!("{other:?} is not \"reject\" or \"insecure-accept-anything\""),
            ))
        }
    };
    let mut trust = Vec::new();
    for (scope, paths) in raw.trust.clone().unwrap_or_default() {
        let at = format!("containers.trust.\"{scope}\"");
        check_scope(&scope).map_err(|m| err(at.clone(), m))?;
        if paths.is_empty() {
            return Err(err(
                at,
                "no key files: give the publisher's cosign public key (cosign.pub)".into(),
            ));
        }
        let mut keys: Vec<ImageKey> = Vec::new();
        for (i, p) in paths.iter().enumerate() {
            let key_at = format!("{at}[{i}]");
            if p.is_empty() {
                return Err(err(key_at, "empty path".into()));
            }
            let bytes = match key_files.get(p) {
                Some(Ok(bytes)) => bytes,
                Some(Err(e)) => return Err(err(key_at, format!("cannot read {p}: {e}"))),
                None => return Err(err(key_at, format!("cannot read {p}: not loaded"))),
            };
            let (pem, algorithm) =
                parse_public_key(bytes).map_err(|m| err(key_at, format!("{p}: {m}")))?;
            if !keys.iter().any(|k| k.pem == pem) {
                keys.push(ImageKey {
                    path: PathBuf::from(p),
                    pem,
                    algorithm,
                });
            }
        }
        trust.push(TrustScope { scope, keys });
    }
    let policy = match (default, raw.trust.is_some()) {
        (None, false) => None,
        (d, _) => Some(Policy {
            default: d.unwrap_or(DefaultPolicy::Reject),
            trust,
        }),
    };
    let sandbox = match raw.sandbox.as_deref() {
        None | Some("none") => Sandbox::None,
        Some("gvisor") => Sandbox::Gvisor,
        Some(other) => {
            return Err(err(
                "containers.sandbox".into(),
                format!("{other:?} is not \"none\" or \"gvisor\""),
            ))
        }
    };
    let several = targets.len() > 1;
    for (arch, target) in targets.iter_mut() {
        let has = |names: &[&str]| {
            target
                .packages
                .include
                .iter()
                .any(|p| names.contains(&p.as_str()))
        };
        let on = if several {
            format!(" for {arch}")
        } else {
            String::new()
        };
        if policy.is_some() && !has(POLICY_ENFORCERS) {
            let key = if raw.trust.is_some() {
                "containers.trust"
            } else {
                "containers.default"
            };
            return Err(err(
                key.into(),
                format!(
                    "no package that enforces /etc/containers/policy.json is installed{on} \
                     (one of {}; containerd does not read it)",
                    POLICY_ENFORCERS.join(", ")
                ),
            ));
        }
        if sandbox == Sandbox::Gvisor {
            if !has(SANDBOX_ENGINES) {
                return Err(err(
                    "containers.sandbox".into(),
                    format!(
                        "gvisor needs a container engine to run it{on}: add one of {} to packages.include",
                        SANDBOX_ENGINES.join(", ")
                    ),
                ));
            }
            if target.packages.exclude.iter().any(|p| p == RUNSC_PACKAGE) {
                return Err(err(
                    "containers.sandbox".into(),
                    format!(
                        "gvisor installs {RUNSC_PACKAGE}, which packages.exclude keeps out{on}"
                    ),
                ));
            }
            if !target.packages.include.iter().any(|p| p == RUNSC_PACKAGE) {
                target.packages.include.push(RUNSC_PACKAGE.to_string());
            }
        }
    }
    Ok(Containers { policy, sandbox })
}

#[cfg(test)]
mod tests;
