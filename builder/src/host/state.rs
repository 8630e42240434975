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

/// Writes through a temp file and a rename, then syncs, so a power cut
/// leaves the old record or the new one.
pub fn write<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    use std::io::Write;
    serde_json::to_writer_pretty(&mut tmp, value)?;
    tmp.write_all(b"\n")?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| anyhow::anyhow!("writing {}: {}", path.display(), e.error))?;
    Ok(())
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
