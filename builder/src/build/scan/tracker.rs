//! The Debian Security Tracker's JSON (source → CVE → release entry) and
//! its urgencies.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

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
