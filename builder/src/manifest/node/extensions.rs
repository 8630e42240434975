//! The node config's `extensions`: system extension images (systemd-sysext)
//! this node places into /var/lib/extensions at its first boot.
//!
//! Each entry is a plain file name, `NAME.raw`, of a file beside the node
//! config on the machine that boots the node. It travels as the systemd
//! credential `hull.sysext.NAME` (docs/provisioning.md), and `hull
//! provision` writes it to `/var/lib/extensions/NAME.raw`. The name is kept
//! whole: systemd-sysext merges `NAME.raw` only when the image carries
//! `extension-release.NAME`, which `hull sysext --name NAME` writes.

use anyhow::{bail, Result};

/// The prefix of the credential that carries an extension:
/// `hull.sysext.NAME` holds the bytes of `NAME.raw`.
pub const CREDENTIAL_PREFIX: &str = "hull.sysext.";

/// Where extensions go on the node, relative to its root.
pub const DIR: &str = "var/lib/extensions";

/// The longest `NAME`: a credential name is at most 255 bytes and a file
/// name at most 255 bytes; 64 leaves room for both prefixes.
pub const MAX_NAME: usize = 64;

/// One extension named in a node config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Extension {
    /// `NAME`, without `.raw`.
    pub name: String,
}

impl Extension {
    /// `NAME.raw`, as the config names it and as it lies on the node.
    pub fn file_name(&self) -> String {
        format!("{}.raw", self.name)
    }

    /// `hull.sysext.NAME`.
    pub fn credential(&self) -> String {
        format!("{CREDENTIAL_PREFIX}{}", self.name)
    }

    /// `var/lib/extensions/NAME.raw` (relative to the root).
    pub fn path(&self) -> String {
        format!("{DIR}/{}", self.file_name())
    }
}

/// Checks the `extensions` list: each entry a plain file name `NAME.raw`
/// (letters, digits, `_`, `-`, `.`; no `/`, no leading `.`), listed once.
/// Errors name the key (`extensions[1]`) and the value, on one line.
pub fn validate(entries: &[String]) -> Result<Vec<Extension>> {
    let mut out: Vec<Extension> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let ext = check(entry).map_err(|e| anyhow::anyhow!("extensions[{i}]: {e}"))?;
        if out.contains(&ext) {
            bail!("extensions[{i}]: {entry:?} is listed twice");
        }
        out.push(ext);
    }
    Ok(out)
}

/// Whether `s` is a plain file name as extension names must be: not empty,
/// only letters, digits, `_`, `-` and `.`, not starting with `.` (so no
/// `/`, no `..`). Shared with `hull sysext --name`.
pub fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

fn check(entry: &str) -> Result<Extension> {
    if !is_plain_name(entry) {
        bail!("{entry:?} is not a plain file name (letters, digits, '_', '-' and '.', no '/', not starting with '.'): the file lies beside the node config");
    }
    let Some(name) = entry.strip_suffix(".raw").filter(|n| !n.is_empty()) else {
        bail!("{entry:?} does not end in .raw: systemd-sysext merges NAME.raw images (hull sysext makes them)");
    };
    if name.len() > MAX_NAME {
        bail!("{entry:?}: the name before .raw is longer than {MAX_NAME} characters");
    }
    Ok(Extension { name: name.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_and_credentials() {
        let e = validate(&["hello.raw".into(), "kube-1.31.raw".into()]).unwrap();
        assert_eq!(e[0].name, "hello");
        assert_eq!(e[0].credential(), "hull.sysext.hello");
        assert_eq!(e[0].path(), "var/lib/extensions/hello.raw");
        assert_eq!(e[1].file_name(), "kube-1.31.raw");
        assert!(validate(&[]).unwrap().is_empty());
    }

    #[test]
    fn bad_entries_are_refused_by_key() {
        let long = format!("{}.raw", "a".repeat(MAX_NAME + 1));
        for (entries, want) in [
            (
                vec!["../x.raw"],
                "extensions[0]: \"../x.raw\" is not a plain file name",
            ),
            (vec!["a/b.raw"], "is not a plain file name"),
            (vec![".raw"], "is not a plain file name"),
            (vec![""], "is not a plain file name"),
            (vec!["x.raw", "a b.raw"], "extensions[1]: \"a b.raw\""),
            (vec!["hello"], "\"hello\" does not end in .raw"),
            (vec!["hello.squashfs"], "does not end in .raw"),
            (
                vec!["x.raw", "x.raw"],
                "extensions[1]: \"x.raw\" is listed twice",
            ),
            (vec![long.as_str()], "longer than 64"),
        ] {
            let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
            let e = validate(&entries).unwrap_err().to_string();
            assert!(e.contains(want), "{entries:?}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }
}
