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

mod matching;
mod target;
mod tracker;

pub use matching::*;
pub use target::*;
pub use tracker::*;

use std::fmt::Write as _;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

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
