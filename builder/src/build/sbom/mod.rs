//! The SBOM: an SPDX 2.3 JSON document of what an image holds.
//!
//! Every installed Debian package (read from the tree's dpkg database
//! before the layout stage drops it) with its name, version, architecture,
//! purl, supplier (the Maintainer), the licence its machine-readable
//! copyright file declares and the sha256 of its `.deb` from the signed
//! `Packages` index; hull itself (the agent in /usr/bin/hull); and the
//! operating system the document describes, which contains them all.
//!
//! The document is shipped in the commit at [`TREE_PATH`]. The copy in
//! `out/<name>-<arch>.spdx.json` is the same document with the OSTree commit
//! checksum added to the operating-system package (as its SHA256 checksum
//! and in its comment): a tree cannot name the commit made of it.

pub mod license;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};

use crate::build::archive::PackageIndex;
use crate::manifest::Arch;

/// Where the document lives in a tree and a commit.
pub const TREE_PATH: &str = "usr/share/hull/sbom.spdx.json";

/// SPDX id of the operating-system package, which the document describes.
pub const OS_ID: &str = "SPDXRef-OperatingSystem";

/// Prefix of the `sourceInfo` of a Debian package: the source package and
/// its version follow (`Debian source package: glibc 2.41-12`).
pub const SOURCE_INFO_PREFIX: &str = "Debian source package: ";

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

/// SPDX 2.3 JSON document (the fields hull writes and reads).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    pub spdx_version: String,
    pub data_license: String,
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    pub name: String,
    pub document_namespace: String,
    pub creation_info: CreationInfo,
    #[serde(default)]
    pub packages: Vec<Package>,
    #[serde(default)]
    pub relationships: Vec<Relationship>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub has_extracted_licensing_infos: Vec<ExtractedLicense>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CreationInfo {
    /// `YYYY-MM-DDThh:mm:ssZ`.
    pub created: String,
    pub creators: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Package {
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_info: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
    pub download_location: String,
    #[serde(default)]
    pub files_analyzed: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checksums: Vec<Checksum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_concluded: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_declared: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copyright_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_info: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_package_purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_refs: Vec<ExternalRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Checksum {
    pub algorithm: String,
    pub checksum_value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRef {
    pub reference_category: String,
    pub reference_type: String,
    pub reference_locator: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Relationship {
    pub spdx_element_id: String,
    pub relationship_type: String,
    pub related_spdx_element: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExtractedLicense {
    pub license_id: String,
    pub extracted_text: String,
}

/// What [`document`] is made from.
#[derive(Debug)]
pub struct SbomInput<'a> {
    /// The manifest's `name` and `version`.
    pub name: &'a str,
    pub version: &'a str,
    pub arch: Arch,
    /// Debian suite the packages came from (gives the purl's distro).
    pub suite: &'a str,
    /// Mirror root URL: with a `.deb`'s pool path, its download location.
    pub mirror: &'a str,
    /// The OSTree ref the commit is made for.
    pub ostree_ref: &'a str,
    /// Digest of the build's inputs: makes the document namespace unique.
    pub input_sha256: &'a str,
    /// sha256 of the hull agent installed as /usr/bin/hull.
    pub agent_sha256: &'a str,
    pub installed: &'a [Installed],
    /// The signed index the packages were resolved from (gives each
    /// `.deb`'s sha256); `None` gives packages without checksums.
    pub index: Option<&'a PackageIndex>,
    /// Creation time, seconds since the epoch.
    pub created: i64,
}

/// `debian-13` for trixie (and trixie-backports, ...): the purl's distro
/// qualifier; `debian-<suite>` for a suite hull knows no number of.
pub fn distro(suite: &str) -> String {
    let codename = suite.split('-').next().unwrap_or(suite);
    match release_number(codename) {
        Some(n) => format!("debian-{n}"),
        None => format!("debian-{codename}"),
    }
}

/// Debian's release numbers by codename.
const RELEASES: &[(&str, &str)] = &[
    ("buster", "10"),
    ("bullseye", "11"),
    ("bookworm", "12"),
    ("trixie", "13"),
    ("forky", "14"),
    ("duke", "15"),
];

fn release_number(codename: &str) -> Option<&'static str> {
    RELEASES
        .iter()
        .find(|(c, _)| *c == codename)
        .map(|(_, n)| *n)
}

/// The codename of a purl distro qualifier (`debian-13` → `trixie`,
/// `debian-sid` → `sid`).
pub fn codename_of_distro(distro: &str) -> Option<String> {
    let rest = distro.strip_prefix("debian-")?;
    Some(
        RELEASES
            .iter()
            .find(|(_, n)| *n == rest)
            .map(|(c, _)| c.to_string())
            .unwrap_or_else(|| rest.to_string()),
    )
}

/// Percent-encodes every byte but the unreserved ones (letters, digits,
/// `-._~`): an epoch's `:` is `%3A`, `+` is `%2B`.
fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes [`pct`].
fn unpct(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=DISTRO`.
pub fn purl(name: &str, version: &str, arch: &str, distro: &str) -> String {
    format!(
        "pkg:deb/debian/{}@{}?arch={}&distro={}",
        pct(name),
        pct(version),
        pct(arch),
        pct(distro)
    )
}

/// A Debian purl taken apart: (name, version, arch, distro).
pub fn parse_purl(purl: &str) -> Option<(String, String, String, Option<String>)> {
    let rest = purl.strip_prefix("pkg:deb/debian/")?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (name, version) = path.split_once('@')?;
    let mut arch = String::new();
    let mut distro = None;
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("arch", v)) => arch = unpct(v),
            Some(("distro", v)) => distro = Some(unpct(v)),
            _ => {}
        }
    }
    Some((unpct(name), unpct(version), arch, distro))
}

/// `Debian Foo Team <foo@lists.debian.org>` → `Organization: Debian Foo
/// Team (foo@lists.debian.org)`; a person's name gives `Person:`. SPDX has
/// no way to say "one of the two", so teams and lists are told apart by name.
pub fn supplier(maintainer: &str) -> String {
    let (name, email) = match maintainer.split_once('<') {
        Some((n, e)) => (n.trim(), Some(e.trim_end_matches('>').trim())),
        None => (maintainer.trim(), None),
    };
    let lower = name.to_ascii_lowercase();
    let org = [
        "team",
        "maintainers",
        "debian",
        "group",
        "project",
        "developers",
    ]
    .iter()
    .any(|w| lower.contains(w));
    let kind = if org { "Organization" } else { "Person" };
    // Parentheses would end the name early for a reader.
    let name = name.replace(['(', ')'], "");
    match email {
        Some(e) => format!("{kind}: {name} ({e})"),
        None => format!("{kind}: {name}"),
    }
}

/// An SPDX id from free text: letters, digits, `.` and `-` only.
fn spdx_ref(parts: &[&str]) -> String {
    format!("SPDXRef-{}", license::id_chars(&parts.join("-")))
}

fn rfc3339(secs: i64) -> Result<String> {
    let ts = jiff::Timestamp::from_second(secs).context("an SBOM creation time out of range")?;
    Ok(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// The creation time of a document made now: `SOURCE_DATE_EPOCH` when set
/// (reproducible builds), else the clock.
pub fn creation_time() -> i64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| jiff::Timestamp::now().as_second())
}

const NOASSERTION: &str = "NOASSERTION";

/// Makes the document of a tree.
pub fn document(input: &SbomInput) -> Result<Document> {
    let distro = distro(input.suite);
    let hull_version = env!("CARGO_PKG_VERSION");
    let mut packages = vec![
        Package {
            spdx_id: OS_ID.into(),
            name: input.name.into(),
            version_info: Some(input.version.into()),
            supplier: Some(NOASSERTION.into()),
            download_location: NOASSERTION.into(),
            files_analyzed: false,
            checksums: vec![],
            license_concluded: Some(NOASSERTION.into()),
            license_declared: Some(NOASSERTION.into()),
            copyright_text: Some(NOASSERTION.into()),
            source_info: None,
            primary_package_purpose: Some("OPERATING-SYSTEM".into()),
            comment: Some(format!(
                "hull image {} {} for {}, OSTree ref {}, Debian {}",
                input.name, input.version, input.arch, input.ostree_ref, input.suite
            )),
            external_refs: vec![],
        },
        Package {
            spdx_id: "SPDXRef-hull".into(),
            name: "hull".into(),
            version_info: Some(hull_version.into()),
            supplier: Some(NOASSERTION.into()),
            download_location: NOASSERTION.into(),
            files_analyzed: false,
            checksums: vec![Checksum {
                algorithm: "SHA256".into(),
                checksum_value: input.agent_sha256.into(),
            }],
            license_concluded: Some(NOASSERTION.into()),
            license_declared: Some(env!("CARGO_PKG_LICENSE").into()),
            copyright_text: Some(NOASSERTION.into()),
            source_info: None,
            primary_package_purpose: Some("APPLICATION".into()),
            comment: Some("the on-host agent, /usr/bin/hull".into()),
            external_refs: vec![ExternalRef {
                reference_category: "PACKAGE-MANAGER".into(),
                reference_type: "purl".into(),
                reference_locator: format!("pkg:generic/hull@{}", pct(hull_version)),
            }],
        },
    ];
    let mut extracted: BTreeMap<String, String> = BTreeMap::new();
    for (i, p) in input.installed.iter().enumerate() {
        let deb = input
            .index
            .and_then(|ix| ix.deb(&p.name, &p.version, &p.arch));
        let declared = match &p.license {
            Some(l) => {
                for (id, text) in &l.refs {
                    extracted.entry(id.clone()).or_insert_with(|| text.clone());
                }
                l.expression.clone()
            }
            None => NOASSERTION.into(),
        };
        packages.push(Package {
            spdx_id: spdx_ref(&["deb", &i.to_string(), &p.name, &p.arch]),
            name: p.name.clone(),
            version_info: Some(p.version.clone()),
            supplier: Some(
                p.maintainer
                    .as_deref()
                    .map(supplier)
                    .unwrap_or_else(|| NOASSERTION.into()),
            ),
            // A .deb taken from the build's cache has no pool path.
            download_location: deb
                .filter(|d| !d.filename.is_empty())
                .map(|d| {
                    let mirror = if d.mirror.is_empty() {
                        input.mirror
                    } else {
                        &d.mirror
                    };
                    format!("{}/{}", mirror.trim_end_matches('/'), d.filename)
                })
                .unwrap_or_else(|| NOASSERTION.into()),
            files_analyzed: false,
            checksums: deb
                .map(|d| Checksum {
                    algorithm: "SHA256".into(),
                    checksum_value: d.sha256.clone(),
                })
                .into_iter()
                .collect(),
            license_concluded: Some(NOASSERTION.into()),
            license_declared: Some(declared),
            copyright_text: Some(NOASSERTION.into()),
            source_info: Some(format!(
                "{SOURCE_INFO_PREFIX}{} {}",
                p.source, p.source_version
            )),
            primary_package_purpose: None,
            comment: Some(format!("architecture {}", p.arch)),
            external_refs: vec![ExternalRef {
                reference_category: "PACKAGE-MANAGER".into(),
                reference_type: "purl".into(),
                reference_locator: purl(&p.name, &p.version, &p.arch, &distro),
            }],
        });
    }
    let relationships = std::iter::once(Relationship {
        spdx_element_id: "SPDXRef-DOCUMENT".into(),
        relationship_type: "DESCRIBES".into(),
        related_spdx_element: OS_ID.into(),
    })
    .chain(packages[1..].iter().map(|p| Relationship {
        spdx_element_id: OS_ID.into(),
        relationship_type: "CONTAINS".into(),
        related_spdx_element: p.spdx_id.clone(),
    }))
    .collect();
    Ok(Document {
        spdx_version: "SPDX-2.3".into(),
        data_license: "CC0-1.0".into(),
        spdx_id: "SPDXRef-DOCUMENT".into(),
        name: format!("{}-{} {}", input.name, input.arch, input.version),
        document_namespace: format!(
            "https://hull.invalid/spdx/{}-{}-{}-{}",
            pct(input.name),
            input.arch,
            pct(input.version),
            input.input_sha256
        ),
        creation_info: CreationInfo {
            created: rfc3339(input.created)?,
            creators: vec![format!("Tool: hull-{hull_version}")],
        },
        packages,
        relationships,
        has_extracted_licensing_infos: extracted
            .into_iter()
            .map(|(license_id, extracted_text)| ExtractedLicense {
                license_id,
                extracted_text,
            })
            .collect(),
    })
}

/// The document of out/: `doc` with the commit's checksum on the
/// operating-system package.
pub fn with_commit(mut doc: Document, commit: &str) -> Document {
    if let Some(os) = doc.packages.iter_mut().find(|p| p.spdx_id == OS_ID) {
        os.checksums = vec![Checksum {
            algorithm: "SHA256".into(),
            checksum_value: commit.into(),
        }];
        let comment = os.comment.take().unwrap_or_default();
        os.comment = Some(format!("{comment}, OSTree commit {commit}"));
    }
    doc
}

/// The document's JSON text (pretty, newline-terminated).
pub fn to_json(doc: &Document) -> Result<String> {
    Ok(serde_json::to_string_pretty(doc).context("serializing the SBOM")? + "\n")
}

/// Parses a document; `what` names it in the error.
pub fn from_json(text: &str, what: &str) -> Result<Document> {
    let doc: Document = serde_json::from_str(text)
        .with_context(|| format!("{what}: not an SPDX 2.3 JSON document"))?;
    if !doc.spdx_version.starts_with("SPDX-2.") {
        bail!(
            "{what}: spdxVersion is {}, hull reads SPDX-2.x",
            doc.spdx_version
        );
    }
    Ok(doc)
}

/// Writes the document into a tree at [`TREE_PATH`].
pub fn write_into_tree(root: &Dir, doc: &Document) -> Result<()> {
    let dir = Path::new(TREE_PATH).parent().expect("a path with a parent");
    root.create_dir_all(dir)
        .with_context(|| format!("creating /{}", dir.display()))?;
    root.write(TREE_PATH, to_json(doc)?)
        .with_context(|| format!("writing /{TREE_PATH}"))
}

/// `out/<name>-<arch>.spdx.json`.
pub fn out_path(out: &Path, name: &str, arch: &str) -> PathBuf {
    out.join(format!("{name}-{arch}.spdx.json"))
}

/// Writes `doc` to `path` through a temp file renamed into place.
pub fn write_file(path: &Path, doc: &Document) -> Result<()> {
    crate::util::write_atomic(path, to_json(doc)?.as_bytes())
}

/// The document shipped in a commit; `None` when it has none (built by a
/// hull before SBOMs).
pub fn read_commit(repo: &ostree::Repo, commit: &str) -> Result<Option<Document>> {
    let (root, _) = repo
        .read_commit(commit, ostree::gio::Cancellable::NONE)
        .with_context(|| format!("reading commit {commit}"))?;
    let Some(bytes) = crate::build::rootfs::accounts::read_commit_file(repo, &root, TREE_PATH)
        .with_context(|| format!("reading /{TREE_PATH} of commit {commit}"))?
    else {
        return Ok(None);
    };
    let text = String::from_utf8(bytes)
        .with_context(|| format!("/{TREE_PATH} of commit {commit} is not UTF-8"))?;
    from_json(&text, &format!("/{TREE_PATH} of commit {commit}")).map(Some)
}

#[cfg(test)]
pub(crate) mod tests;
