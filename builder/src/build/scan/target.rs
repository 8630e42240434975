//! What `hull scan` reads: the SBOMs of a build's output directory or of a
//! repository's commits, and the Debian packages each lists.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::build::sbom::{self, Document};

/// What `hull scan` reads the SBOM from.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// An SBOM file (`out/minimal-x86_64.spdx.json`).
    File(PathBuf),
    /// A build's output directory: the SBOM of each `build-<arch>.json`.
    OutDir(PathBuf),
    /// A commit (checksum or ref) in an OSTree repository: the SBOM it ships.
    Commit { repo: PathBuf, rev: String },
}

impl Target {
    /// `hull scan TARGET [--repo REPO]`: with a repository, TARGET is a ref
    /// or commit in it; else a directory is a build's output, and anything
    /// else an SBOM file.
    pub fn from_args(target: &str, repo: Option<&Path>) -> Target {
        match repo {
            Some(repo) => Target::Commit {
                repo: repo.to_path_buf(),
                rev: target.to_string(),
            },
            None if Path::new(target).is_dir() => Target::OutDir(target.into()),
            None => Target::File(target.into()),
        }
    }
}

/// One SBOM to scan, with what names it in reports.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file or commit the document came from.
    pub label: String,
    pub doc: Document,
}

/// Reads the SBOM(s) of `target`.
pub fn load(target: &Target) -> Result<Vec<Loaded>> {
    match target {
        Target::File(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let label = path.display().to_string();
            Ok(vec![Loaded {
                doc: sbom::from_json(&text, &label)?,
                label,
            }])
        }
        Target::OutDir(dir) => {
            let mut reports: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("build-") && n.ends_with(".json"))
                })
                .collect();
            reports.sort();
            if reports.is_empty() {
                bail!(
                    "{}: no build-<arch>.json: not the output directory of a hull build",
                    dir.display()
                );
            }
            let mut out = Vec::new();
            for report in reports {
                let r = crate::build::pipeline::read_report_at(&report)?;
                let path = sbom::out_path(dir, &r.name, &r.arch);
                if !path.is_file() {
                    bail!(
                        "{}: no SBOM {} for commit {}: build it again with this hull",
                        report.display(),
                        path.display(),
                        r.commit
                    );
                }
                out.extend(load(&Target::File(path))?);
            }
            Ok(out)
        }
        Target::Commit { repo, rev } => {
            let r = ostree::Repo::new_for_path(repo);
            r.open(ostree::gio::Cancellable::NONE)
                .with_context(|| format!("opening OSTree repository {}", repo.display()))?;
            let checksum = r
                .resolve_rev(rev, false)
                .with_context(|| format!("{}: no commit or ref {rev}", repo.display()))?
                .ok_or_else(|| anyhow!("{}: no commit or ref {rev}", repo.display()))?
                .to_string();
            let doc = sbom::read_commit(&r, &checksum)?.ok_or_else(|| {
                anyhow!(
                    "{}: commit {checksum} carries no /{} (built by a hull without SBOMs)",
                    repo.display(),
                    sbom::TREE_PATH
                )
            })?;
            Ok(vec![Loaded {
                label: format!("{} commit {checksum}", repo.display()),
                doc: sbom::with_commit(doc, &checksum),
            }])
        }
    }
}

/// A Debian package of an SBOM, as the scan matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebPackage {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Codename of the purl's distro (`trixie` for `debian-13`).
    pub release: Option<String>,
    pub source: String,
    pub source_version: String,
}

/// The Debian packages of a document: those with a `pkg:deb/debian/` purl,
/// each with the source package the tracker lists it under.
pub fn deb_packages(doc: &Document) -> Vec<DebPackage> {
    let mut out = Vec::new();
    for p in &doc.packages {
        let Some((name, version, arch, distro)) = p
            .external_refs
            .iter()
            .filter(|r| r.reference_type == "purl")
            .find_map(|r| sbom::parse_purl(&r.reference_locator))
        else {
            continue;
        };
        let (source, source_version) = p
            .source_info
            .as_deref()
            .and_then(|s| s.strip_prefix(sbom::SOURCE_INFO_PREFIX))
            .and_then(|s| s.split_once(' '))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .unwrap_or_else(|| (name.clone(), version.clone()));
        // The signed kernel images are built from linux-signed-<arch>
        // (version 6.12.117+1) around the `linux` source's binaries, which
        // carry its version (6.12.117-1): the tracker lists the kernel's CVEs
        // under `linux`.
        let (source, source_version) = if source.starts_with("linux-signed-") {
            ("linux".to_string(), version.clone())
        } else {
            (source, source_version)
        };
        out.push(DebPackage {
            name,
            version,
            arch,
            release: distro.as_deref().and_then(sbom::codename_of_distro),
            source,
            source_version,
        });
    }
    out
}
