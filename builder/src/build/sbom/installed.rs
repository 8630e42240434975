//! The packages a tree holds: its dpkg database, and each package's licence
//! from its machine-readable copyright file.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use cap_std::fs::Dir;

use super::license;
/// One package of the tree's dpkg database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub name: String,
    pub version: String,
    /// Debian architecture (`amd64`, `arm64`, `all`).
    pub arch: String,
    /// The `Maintainer:` field, `Name <email>`.
    pub maintainer: Option<String>,
    /// Source package name (the binary's own when dpkg names none).
    pub source: String,
    /// Source package version (the binary's own when dpkg names none).
    pub source_version: String,
    /// What `/usr/share/doc/<name>/copyright` declares, when machine-readable.
    pub license: Option<license::DeclaredLicense>,
}

/// Parses a dpkg `status` file: the packages whose status is installed.
pub fn parse_status(text: &str) -> Vec<Installed> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut f: BTreeMap<&str, &str> = BTreeMap::new();
        for line in stanza.lines() {
            if line.starts_with([' ', '\t']) {
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                f.insert(k, v.trim());
            }
        }
        let (Some(name), Some(version), Some(arch)) =
            (f.get("Package"), f.get("Version"), f.get("Architecture"))
        else {
            continue;
        };
        if !f.get("Status").is_some_and(|s| s.ends_with(" installed")) {
            continue;
        }
        // `Source: glibc` or `Source: glibc (2.41-12)` (binNMUs, renames).
        let (source, source_version) = match f.get("Source") {
            Some(s) => match s.split_once(" (") {
                Some((n, v)) => (n.trim(), v.trim_end_matches(')').trim()),
                None => (s.trim(), *version),
            },
            None => (*name, *version),
        };
        out.push(Installed {
            name: name.to_string(),
            version: version.to_string(),
            arch: arch.to_string(),
            maintainer: f.get("Maintainer").map(|m| m.to_string()),
            source: source.to_string(),
            source_version: source_version.to_string(),
            license: None,
        });
    }
    out.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    out
}

/// Reads the installed packages of a tree (before the layout stage, while
/// /var/lib/dpkg/status is there) and their licences.
pub fn read_installed(root: &Dir) -> Result<Vec<Installed>> {
    let status = root
        .read_to_string("var/lib/dpkg/status")
        .context("reading /var/lib/dpkg/status of the tree")?;
    let mut list = parse_status(&status);
    if list.is_empty() {
        bail!("/var/lib/dpkg/status of the tree lists no installed package");
    }
    for p in &mut list {
        // A missing or unreadable file (a link out of the tree) is no
        // licence: NOASSERTION, as SPDX says for "not known".
        let path = format!("usr/share/doc/{}/copyright", p.name);
        if let Ok(text) = root.read_to_string(&path) {
            p.license = license::declared(&text, &p.name);
        }
    }
    Ok(list)
}
