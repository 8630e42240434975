//! The manifest's `[containers]` laid into the installed tree: the image
//! policy (/etc/containers/policy.json), where podman finds sigstore
//! signatures (registries.d), the trusted keys, and gVisor's runsc as a
//! podman runtime and a containerd runtime handler.
//!
//! Computed first as plain data ([`plan`], [`containerd_config`]), then
//! written through cap-std ([`apply`]). Runs after the overlays, so that it
//! extends the containerd configuration an overlay laid.

use anyhow::{anyhow, Context, Result};
use cap_std::fs::Dir;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::ostree_layout::write_file;
use crate::manifest::containers::{Containers, DefaultPolicy, ImageKey, Policy, Sandbox};
use crate::manifest::Manifest;

/// containers-policy.json(5), read by podman, skopeo and buildah.
pub const POLICY: &str = "etc/containers/policy.json";
/// containers-registries.d(5): where signatures of the trusted scopes live.
pub const REGISTRIES_D: &str = "etc/containers/registries.d/50-hull-trust.yaml";
/// The trusted public keys, named in policy.json.
pub const KEYS_DIR: &str = "etc/containers/keys";
/// podman's runtime table entry for runsc.
pub const PODMAN_RUNSC: &str = "etc/containers/containers.conf.d/50-hull-gvisor.conf";
/// containerd's configuration, extended with the runsc handler.
pub const CONTAINERD_CONFIG: &str = "etc/containerd/config.toml";
/// Where Debian's runsc package puts the runtime.
pub const RUNSC: &str = "/usr/bin/runsc";
/// The CRI runtime handler name a RuntimeClass names.
pub const HANDLER: &str = "runsc";

const PODMAN_RUNSC_TEXT: &str =
    "# written by hull ([containers] sandbox = \"gvisor\"): gVisor's runsc as a\n\
# runtime: `podman run --runtime runsc ...`. crun stays the default runtime.\n\
[engine.runtimes]\n\
runsc = [\"/usr/bin/runsc\"]\n";

/// The runsc handler appended to containerd's (version 2) configuration.
/// Debian ships no containerd-shim-runsc-v1, so containerd's runc v2 shim
/// drives runsc as its OCI binary (docs/containers.md).
const CONTAINERD_RUNSC_TEXT: &str =
    "\n# written by hull ([containers] sandbox = \"gvisor\"): gVisor as the CRI runtime\n\
# handler \"runsc\" (a RuntimeClass with handler: runsc). Debian ships no\n\
# containerd-shim-runsc-v1: the runc v2 shim runs runsc as its OCI binary, so\n\
# each container is a gVisor sandbox of its own.\n\
[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runsc]\n\
  runtime_type = \"io.containerd.runc.v2\"\n\
  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runsc.options]\n\
    BinaryName = \"/usr/bin/runsc\"\n\
    SystemdCgroup = true\n";

/// A file to write: path relative to `/`, text, permission bits.
pub type PlannedFile = (String, String, u32);

/// The files `c` puts in a tree, given whether podman is installed (the
/// podman runtime entry is written only then). containerd's configuration is
/// an edit of an existing file: [`containerd_config`].
pub fn plan(c: &Containers, podman: bool) -> Vec<PlannedFile> {
    let mut files = Vec::new();
    if let Some(p) = &c.policy {
        for key in p.trust.iter().flat_map(|t| &t.keys) {
            files.push((
                format!("{KEYS_DIR}/{}", key_file_name(key)),
                key.pem.clone(),
                0o644,
            ));
        }
        files.dedup_by(|a, b| a.0 == b.0);
        files.push((POLICY.to_string(), policy_json(p), 0o644));
        if !p.trust.is_empty() {
            files.push((REGISTRIES_D.to_string(), registries_d_yaml(p), 0o644));
        }
    }
    if c.sandbox == Sandbox::Gvisor && podman {
        files.push((
            PODMAN_RUNSC.to_string(),
            PODMAN_RUNSC_TEXT.to_string(),
            0o644,
        ));
    }
    files
}

/// `<file stem>-<12 hex digits of the key's sha256>.pub`: readable, and two
/// different keys never share a name.
pub fn key_file_name(key: &ImageKey) -> String {
    let stem: String = key
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let stem = if stem.is_empty() || stem.starts_with('.') {
        format!("key{stem}")
    } else {
        stem
    };
    let hash = hex::encode(Sha256::digest(key.pem.as_bytes()));
    format!("{stem}-{}.pub", &hash[..12])
}

/// policy.json: per scope, a sigstore signature by one of its keys whose
/// identity names the same repository; everything else `default`. With
/// `reject`, images already in local storage may still be copied out of it
/// (podman push, build, save): they came in through this policy or were built
/// on the host.
pub fn policy_json(p: &Policy) -> String {
    let mut docker = serde_json::Map::new();
    for t in &p.trust {
        let paths: Vec<String> = t
            .keys
            .iter()
            .map(|k| format!("/{KEYS_DIR}/{}", key_file_name(k)))
            .collect();
        let mut req = json!({ "type": "sigstoreSigned" });
        // keyPath for one key, keyPaths (any of them) for several.
        if let [one] = paths.as_slice() {
            req["keyPath"] = json!(one);
        } else {
            req["keyPaths"] = json!(paths);
        }
        // cosign signs the repository, not a tag: matchRepository accepts
        // its signatures for any tag of the signed repository.
        req["signedIdentity"] = json!({ "type": "matchRepository" });
        docker.insert(t.scope.clone(), json!([req]));
    }
    let mut transports = serde_json::Map::new();
    if !docker.is_empty() {
        transports.insert("docker".into(), docker.into());
    }
    let default = match p.default {
        DefaultPolicy::Reject => {
            transports.insert(
                "containers-storage".into(),
                json!({ "": [{ "type": "insecureAcceptAnything" }] }),
            );
            json!([{ "type": "reject" }])
        }
        DefaultPolicy::InsecureAcceptAnything => json!([{ "type": "insecureAcceptAnything" }]),
    };
    let doc = json!({ "default": default, "transports": transports });
    let mut text = serde_json::to_string_pretty(&doc).expect("a JSON value serializes");
    text.push('\n');
    text
}

/// registries.d: look for sigstore signatures as OCI attachments (where
/// cosign and `--sign-by-sigstore-private-key` put them) for every trusted
/// scope. Scopes are validated (no quotes or backslashes), so a JSON string
/// is a valid YAML double-quoted scalar.
pub fn registries_d_yaml(p: &Policy) -> String {
    let mut s = String::from(
        "# written by hull from the manifest's [containers] trust: signatures of these\n\
         # scopes are sigstore attachments in the registry, next to the image.\n\
         docker:\n",
    );
    for t in &p.trust {
        s.push_str(&format!(
            "  {}:\n    use-sigstore-attachments: true\n",
            serde_json::to_string(&t.scope).expect("a string serializes")
        ));
    }
    s
}

/// containerd's configuration with the runsc handler appended: `existing`
/// is the tree's /etc/containerd/config.toml (`None`: containerd runs on its
/// defaults, and a version 2 file with just the handler is written). Appended
/// rather than rewritten, so that comments stay; containerd 1.7's `imports`
/// would replace the whole CRI section instead of merging into it. Errors:
/// not TOML, not version 2, a runsc handler already there.
pub fn containerd_config(existing: Option<&str>) -> Result<String, String> {
    let base = existing.unwrap_or(
        "# written by hull: containerd's defaults, with the gVisor handler below.\nversion = 2\n",
    );
    let doc: toml::Table = toml::from_str(base).map_err(|e| format!("not TOML: {e}"))?;
    match doc.get("version").and_then(toml::Value::as_integer) {
        Some(2) => {}
        v => {
            return Err(format!(
            "version {}: hull adds the runsc handler to version 2 configurations (containerd 1.7)",
            v.map_or("unset".to_string(), |v| v.to_string())
        ))
        }
    }
    if runsc_handler(&doc).is_some() {
        return Err(format!(
            "already has a runtime named {HANDLER}: remove it, or set [containers] sandbox = \"none\""
        ));
    }
    let mut text = base.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(CONTAINERD_RUNSC_TEXT);
    let doc: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("the runsc handler cannot be appended to it: {e}"))?;
    match runsc_handler(&doc) {
        Some(_) => Ok(text),
        None => Err("the runsc handler did not land where containerd reads it".into()),
    }
}

fn runsc_handler(doc: &toml::Table) -> Option<&toml::Value> {
    doc.get("plugins")?
        .get("io.containerd.grpc.v1.cri")?
        .get("containerd")?
        .get("runtimes")?
        .get(HANDLER)
}

/// Writes the manifest's `[containers]` into the tree. Warns when images no
/// scope covers are accepted unsigned.
pub fn apply(root: &Dir, manifest: &Manifest) -> Result<()> {
    let c = &manifest.containers;
    if let Some(p) = &c.policy {
        if p.default == DefaultPolicy::InsecureAcceptAnything {
            log::warn!(
                "{}: containers.default = \"insecure-accept-anything\": podman on this host pulls and \
                 runs any image from any registry the trust scopes do not cover, signed or not",
                manifest.path.display()
            );
        }
    }
    let podman = root.exists("usr/bin/podman");
    for (path, text, mode) in plan(c, podman) {
        write_file(root, &path, text.as_bytes(), mode)?;
    }
    if c.sandbox == Sandbox::Gvisor && root.exists("usr/bin/containerd") {
        let existing = if root.exists(CONTAINERD_CONFIG) {
            Some(
                root.read_to_string(CONTAINERD_CONFIG)
                    .with_context(|| format!("reading /{CONTAINERD_CONFIG}"))?,
            )
        } else {
            None
        };
        let text = containerd_config(existing.as_deref()).map_err(|m| {
            anyhow!(
                "{}: containers.sandbox: /{CONTAINERD_CONFIG}: {m}",
                manifest.path.display()
            )
        })?;
        write_file(root, CONTAINERD_CONFIG, text.as_bytes(), 0o644)?;
    }
    if c.sandbox == Sandbox::Gvisor && !root.exists(RUNSC.trim_start_matches('/')) {
        return Err(anyhow!(
            "containers.sandbox = \"gvisor\": {RUNSC} is missing from the installed tree"
        ));
    }
    Ok(())
}

/// Feeds everything [`apply`] may write into a build's input digest.
pub fn digest(c: &Containers, h: &mut impl Digest) {
    for (path, text, mode) in plan(c, true) {
        h.update(format!("containers {path} {mode:o}\n{text}\n").as_bytes());
    }
    if c.sandbox == Sandbox::Gvisor {
        h.update(CONTAINERD_RUNSC_TEXT.as_bytes());
    }
}

#[cfg(test)]
mod tests;
