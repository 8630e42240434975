//! Small helpers every stage and the host agent share: [`cmd`] (the one
//! subprocess wrapper), [`progress`], [`sparse`] (the sha256 of a file
//! without reading its holes), one atomic write and one clock.

pub mod arch;
pub mod cmd;
pub mod progress;
pub mod sparse;

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, Context, Result};

/// Writes `bytes` to `path` so that a crash or power cut leaves either the
/// old file or the new one, whole: a temp file in the same directory,
/// written and fsynced, renamed over `path`, then the directory fsynced so
/// the rename itself is durable. The file gets mode 0644.
///
/// Errors name `path`; nothing is left behind on failure.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".hull-tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| anyhow!("writing {}: {}", path.display(), e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

/// Seconds since the epoch, now (0 if the clock is before 1970).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Seconds since the epoch, now, with the fraction (for durations measured
/// against timestamps other programs wrote, e.g. `date +%s.%N`).
pub fn now_secs_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The time a build stamps on what it makes (the commit's timestamp), in
/// seconds since the epoch: `SOURCE_DATE_EPOCH` when set (the
/// reproducible-builds.org convention; a build sets it from its sources'
/// newest InRelease date), else [`now`].
pub fn build_time() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_names_the_path() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a/b.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        // Only the file itself is left: no temp files.
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
        let e = write_atomic(&p.join("under-a-file"), b"x").unwrap_err();
        assert!(format!("{e:#}").contains("b.json"), "{e:#}");
    }
}
