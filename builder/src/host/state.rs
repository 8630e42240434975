//! What hull remembers across boots, under /var/lib/hull (shared by every
//! deployment, so a rolled-back host can still read what its failed
//! deployment recorded).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The outcome of one `hull health` run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRecord {
    pub checksum: String,
    pub version: Option<String>,
    pub boot_id: String,
    /// Seconds since the epoch.
    pub at: u64,
    pub ok: bool,
    /// One line per failed check.
    pub failures: Vec<String>,
}

/// Written when a host comes back from a deployment that used up its tries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRecord {
    pub failed_checksum: String,
    pub failed_version: Option<String>,
    pub booted_checksum: String,
    pub boot_id: String,
    pub at: u64,
    pub reason: String,
}

pub fn health_path(state: &Path, checksum: &str) -> PathBuf {
    state.join("health").join(format!("{checksum}.json"))
}

pub fn rollback_path(state: &Path) -> PathBuf {
    state.join("rollback.json")
}

pub fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes `value` as JSON through [`crate::util::write_atomic`], so a power
/// cut leaves the old record or the new one.
pub fn write<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .with_context(|| format!("serializing {}", path.display()))?
        + "\n";
    crate::util::write_atomic(path, text.as_bytes())
}

pub use crate::util::now;

pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
