//! Matching installed packages against the tracker: which CVEs are open
//! for each, in dpkg's version order.

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use super::target::DebPackage;
use super::tracker::{urgency_rank, Db, ReleaseEntry, Urgency};

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
