//! `hull scan`: the known vulnerabilities of an image, from its SBOM and
//! the Debian Security Tracker's JSON.
//!
//! The tracker's file (`/tracker/data/json`) is keyed by **source**
//! package, then CVE id, then release codename:
//! `{status: open|resolved|undetermined, fixed_version, urgency}`. Each
//! Debian package of the SBOM is matched by its source package (its
//! `sourceInfo`, else its own name) and the source version is compared with
//! `fixed_version` in dpkg's ordering (the `debversion` crate). A CVE is
//! open for a package when the release's entry is `open` or `undetermined`,
//! or `resolved` in a version newer than the installed one; `resolved` in
//! version `0` means the release was never affected. A release the CVE has
//! no entry for is not affected.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

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

/// The Debian Security Tracker's JSON: source → CVE → entry.
pub type Db = BTreeMap<String, BTreeMap<String, CveEntry>>;

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CveEntry {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub releases: BTreeMap<String, ReleaseEntry>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ReleaseEntry {
    pub status: String,
    #[serde(default)]
    pub fixed_version: Option<String>,
    #[serde(default)]
    pub urgency: Option<String>,
}

/// Reads the tracker's JSON file.
pub fn read_db(path: &Path) -> Result<Db> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(file));
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        anyhow!(
            "{}: not the Debian Security Tracker's JSON (source → CVE → releases): at {}: {}",
            path.display(),
            e.path(),
            e.inner()
        )
    })
}

/// Urgencies, least to most pressing: `--fail-on` takes the first four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Urgency {
    Unimportant,
    Low,
    Medium,
    High,
}

/// The rank of a tracker urgency. `not yet assigned` and `end-of-life`
/// (no fix will come) count as high: a gate fails closed on what is not
/// known. `low**` (the tracker's mark for a guessed urgency) is `low`.
pub fn urgency_rank(urgency: &str) -> Urgency {
    match urgency.trim_end_matches('*').trim() {
        "unimportant" => Urgency::Unimportant,
        "low" => Urgency::Low,
        "medium" => Urgency::Medium,
        _ => Urgency::High,
    }
}

/// One open CVE of one installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub package: String,
    pub version: String,
    pub arch: String,
    pub source: String,
    pub source_version: String,
    pub cve: String,
    /// The tracker's status for the release: open, resolved, undetermined.
    pub status: String,
    /// The source version that fixes it, when one exists.
    pub fixed_version: Option<String>,
    /// The tracker's urgency as written (`not yet assigned` when absent).
    pub urgency: String,
    pub rank: Urgency,
}

/// Decides whether `entry` leaves `installed` (a source version) open:
/// `Some(fixed version if any)` when it does.
pub fn open_in(entry: &ReleaseEntry, installed: &str) -> Result<Option<Option<String>>> {
    match entry.status.as_str() {
        "open" | "undetermined" => Ok(Some(None)),
        "resolved" => {
            let Some(fixed) = entry.fixed_version.as_deref() else {
                return Ok(None);
            };
            if fixed == "0" {
                return Ok(None);
            }
            let f: debversion::Version = fixed
                .parse()
                .map_err(|e| anyhow!("fixed_version {fixed}: {e:?}"))?;
            let i: debversion::Version = installed
                .parse()
                .map_err(|e| anyhow!("installed version {installed}: {e:?}"))?;
            Ok((i < f).then(|| Some(fixed.to_string())))
        }
        _ => Ok(None),
    }
}

/// The open CVEs of `packages` in `release`, sorted by package, most
/// pressing first.
pub fn scan(packages: &[DebPackage], db: &Db, release: &str) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    for p in packages {
        let Some(cves) = db.get(&p.source) else {
            continue;
        };
        for (cve, entry) in cves {
            let Some(rel) = entry.releases.get(release) else {
                continue;
            };
            let open = open_in(rel, &p.source_version)
                .with_context(|| format!("{cve} of source package {}", p.source))?;
            if let Some(fixed) = open {
                let urgency = rel
                    .urgency
                    .clone()
                    .unwrap_or_else(|| "not yet assigned".into());
                out.push(Finding {
                    package: p.name.clone(),
                    version: p.version.clone(),
                    arch: p.arch.clone(),
                    source: p.source.clone(),
                    source_version: p.source_version.clone(),
                    cve: cve.clone(),
                    status: rel.status.clone(),
                    fixed_version: fixed,
                    rank: urgency_rank(&urgency),
                    urgency,
                });
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.package, &a.arch, std::cmp::Reverse(a.rank), &a.cve).cmp(&(
            &b.package,
            &b.arch,
            std::cmp::Reverse(b.rank),
            &b.cve,
        ))
    });
    Ok(out)
}

/// The scan of one SBOM.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub sbom: String,
    pub release: String,
    pub packages: usize,
    pub findings: Vec<Finding>,
}

/// Scans each document; `release` overrides the codename the purls give.
pub fn run(loaded: &[Loaded], db: &Db, release: Option<&str>) -> Result<Vec<Report>> {
    let mut out = Vec::new();
    for l in loaded {
        let packages = deb_packages(&l.doc);
        let rel = match release {
            Some(r) => r.to_string(),
            None => packages
                .iter()
                .find_map(|p| p.release.clone())
                .ok_or_else(|| {
                    anyhow!(
                        "{}: no Debian package with a distro in its purl: give --release CODENAME",
                        l.label
                    )
                })?,
        };
        out.push(Report {
            sbom: l.label.clone(),
            findings: scan(&packages, db, &rel).with_context(|| l.label.clone())?,
            release: rel,
            packages: packages.len(),
        });
    }
    Ok(out)
}

/// The text report: a summary line per SBOM, then each package with its
/// open CVEs (id, urgency, fixed version).
pub fn render(reports: &[Report]) -> String {
    let mut s = String::new();
    for r in reports {
        let pkgs = {
            let mut v: Vec<_> = r.findings.iter().map(|f| (&f.package, &f.arch)).collect();
            v.dedup();
            v.len()
        };
        let _ = writeln!(
            s,
            "{} ({}): {} open CVEs in {pkgs} of {} packages",
            r.sbom,
            r.release,
            r.findings.len(),
            r.packages
        );
        let mut last: Option<(&str, &str)> = None;
        for f in &r.findings {
            if last != Some((&f.package, &f.arch)) {
                let _ = writeln!(
                    s,
                    "{} {} {} (source {} {})",
                    f.package, f.version, f.arch, f.source, f.source_version
                );
                last = Some((&f.package, &f.arch));
            }
            let fix = match &f.fixed_version {
                Some(v) => format!("fixed in {v}"),
                None => format!("no fix yet ({})", f.status),
            };
            let _ = writeln!(s, "  {:<16} {:<16} {fix}", f.cve, f.urgency);
        }
    }
    s
}

/// The CI gate: an error naming the CVEs at `threshold` or above.
pub fn gate(reports: &[Report], threshold: Urgency) -> Result<()> {
    let mut hits: Vec<String> = reports
        .iter()
        .flat_map(|r| &r.findings)
        .filter(|f| f.rank >= threshold)
        .map(|f| format!("{} ({} {})", f.cve, f.package, f.urgency))
        .collect();
    hits.dedup();
    if hits.is_empty() {
        return Ok(());
    }
    let level = serde_json::to_value(threshold)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    bail!(
        "{} open CVEs at urgency {level} or above (--fail-on {level}): {}",
        hits.len(),
        hits.join(", ")
    )
}

#[cfg(test)]
mod tests;
