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

mod files;
mod installed;
mod names;
mod spdx;

pub use files::*;
pub use installed::*;
pub use names::*;
pub use spdx::*;
use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::build::archive::PackageIndex;
use crate::manifest::Arch;

/// Where the document lives in a tree and a commit.
pub const TREE_PATH: &str = "usr/share/hull/sbom.spdx.json";

/// SPDX id of the operating-system package, which the document describes.
pub const OS_ID: &str = "SPDXRef-OperatingSystem";

/// Prefix of the `sourceInfo` of a Debian package: the source package and
/// its version follow (`Debian source package: glibc 2.41-12`).
pub const SOURCE_INFO_PREFIX: &str = "Debian source package: ";

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

#[cfg(test)]
pub(crate) mod tests;
