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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use spki::der::Decode;

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
/// built, and adds runsc to them for `sandbox = "gvisor"`. Errors are
/// `(key path, message)`, the key path from `containers.` on.
pub fn validate(
    raw: Option<RawContainers>,
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
            let bytes = std::fs::read(p)
                .map_err(|e| err(key_at.clone(), format!("cannot read {p}: {e}")))?;
            let (pem, algorithm) =
                parse_public_key(&bytes).map_err(|m| err(key_at, format!("{p}: {m}")))?;
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

/// Checks a policy scope of the `docker` transport (containers-policy.json(5)):
/// `host[:port]`, `host[:port]/path/...` with lowercase path components, or
/// `*.domain`. The host must look like a registry (a dot, a port, or
/// `localhost`), as image references tell registries from namespaces; tags
/// and digests are refused, as a scope names where images come from.
pub fn check_scope(scope: &str) -> Result<(), String> {
    let not = |why: &str| {
        Err(format!(
            "{scope:?} is not a registry or repository scope ({why}; \
             e.g. \"registry.example:5000\" or \"registry.example:5000/ns/repo\")"
        ))
    };
    if scope.is_empty() {
        return not("empty");
    }
    if scope.contains("://") {
        return not("no scheme: write the host without https://");
    }
    if let Some(domain) = scope.strip_prefix("*.") {
        if !is_dns_name(domain) || !domain.contains('.') {
            return not("a wildcard is *. and a domain with a dot, without port or path");
        }
        return Ok(());
    }
    if scope.contains('@') {
        return not("a digest names one image, not a scope");
    }
    let (host_port, path) = match scope.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (scope, None),
    };
    let (host, port) = match host_port.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host_port, None),
    };
    if !is_dns_name(host) {
        return not("the registry host is not a host name or IPv4 address");
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |n| n == 0) {
            return not("the port is not a number from 1 to 65535");
        }
    }
    if port.is_none() && !host.contains('.') && host != "localhost" {
        return not(&format!(
            "{host:?} would be a Docker Hub namespace, not a registry: write docker.io/{scope}"
        ));
    }
    if let Some(path) = path {
        for component in path.split('/') {
            if component.contains(':') {
                return not("a tag names one image, not a scope");
            }
            if !is_path_component(component) {
                return not(&format!(
                    "path component {component:?}: lowercase letters and digits, \
                     separated by '.', '_', '__' or '-'"
                ));
            }
        }
    }
    Ok(())
}

/// A host name (labels of letters, digits and inner hyphens) or IPv4 address.
fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The distribution reference grammar's path component:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_path_component(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = s.as_bytes();
    if b.is_empty() || !alnum(b[0] as char) || !alnum(b[b.len() - 1] as char) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if alnum(c) {
            i += 1;
            continue;
        }
        // A separator: '.', '_', '__' or a run of '-', then an alphanumeric.
        let start = i;
        match c {
            '.' => i += 1,
            '_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            '-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i] as char) {
            return false;
        }
    }
    true
}

/// Parses a cosign public key file: one PEM block `PUBLIC KEY` holding a
/// SubjectPublicKeyInfo of an ECDSA (P-256, P-384, P-521), Ed25519 or RSA
/// key, the kinds containers/image verifies. Returns the PEM re-encoded and
/// the key's kind; the error names what the file is instead.
pub fn parse_public_key(bytes: &[u8]) -> Result<(String, &'static str), String> {
    use spki::der::pem::{self, LineEnding};
    use spki::ObjectIdentifier as Oid;
    const EC: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
    const P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
    const P384: Oid = Oid::new_unwrap("1.3.132.0.34");
    const P521: Oid = Oid::new_unwrap("1.3.132.0.35");
    const ED25519: Oid = Oid::new_unwrap("1.3.101.112");
    const RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");

    let text = std::str::from_utf8(bytes).map_err(|_| "not a PEM text file".to_string())?;
    let trimmed = text.trim();
    let (label, der) = pem::decode_vec(trimmed.as_bytes()).map_err(|e| {
        format!("not a PEM public key (cosign.pub's -----BEGIN PUBLIC KEY----- block): {e}")
    })?;
    if label.contains("PRIVATE") {
        return Err(format!(
            "a private key ({label}): give the public half (cosign.pub), never the signing key"
        ));
    }
    if label != "PUBLIC KEY" {
        return Err(format!(
            "a PEM {label:?} block, not a PUBLIC KEY (cosign.pub's format)"
        ));
    }
    let spki = spki::SubjectPublicKeyInfoRef::from_der(&der)
        .map_err(|e| format!("not a public key (SubjectPublicKeyInfo): {e}"))?;
    let key_len = spki.subject_public_key.raw_bytes().len();
    let algorithm = match spki.algorithm.oid {
        EC => {
            let curve = spki
                .algorithm
                .parameters_oid()
                .map_err(|e| format!("an EC key without a named curve: {e}"))?;
            // Uncompressed points: 0x04, then x and y.
            match (curve, key_len) {
                (P256, 65) => "ECDSA P-256",
                (P384, 97) => "ECDSA P-384",
                (P521, 133) => "ECDSA P-521",
                (P256 | P384 | P521, n) => {
                    return Err(format!(
                        "an EC public key of {n} bytes, not an uncompressed point of its curve"
                    ))
                }
                (c, _) => return Err(format!("an EC key on curve {c}, not P-256, P-384 or P-521")),
            }
        }
        ED25519 if key_len == 32 => "Ed25519",
        ED25519 => return Err(format!("an Ed25519 public key of {key_len} bytes, not 32")),
        RSA => "RSA",
        other => {
            return Err(format!(
                "a public key of algorithm {other}, not ECDSA, Ed25519 or RSA"
            ))
        }
    };
    let pem = pem::encode_string("PUBLIC KEY", LineEnding::LF, &der)
        .map_err(|e| format!("re-encoding the key: {e}"))?;
    Ok((pem, algorithm))
}

#[cfg(test)]
mod tests;
