//! The one applier of an ESP plan ([`crate::boot::bls::EspPlan`]), with two
//! backends: the FAT image a build writes ([`crate::boot::fat`]) and the
//! mounted ESP of a host ([`crate::boot::esp`]).
//!
//! The order is what keeps a live ESP bootable through a power cut at any
//! instant:
//! 1. kernels and initramfs files first (content-addressed paths: a file
//!    already there is the right one), each written whole;
//! 2. then new entry files, the same way: an entry appears whole or not at
//!    all, and only after what it names is on disk;
//! 3. only then the entries of deployments that are gone, and last the
//!    kernels no entry names.
//!
//! No file is rewritten in place (see [`crate::boot::bls::name_entries`]),
//! so an existing entry, and the deployment it boots, stays usable until the
//! very end. On a fresh FAT image the same steps write every file once and
//! remove nothing.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::boot::bls::{self, DeploymentKey, EntryName, EspPlan, ExistingEntry, ENTRIES_DIR};
use crate::boot::fat::EspSource;

/// Temp files hull writes on a live ESP start with this; systemd-boot reads
/// only `*.conf` entries, and a later apply removes leftovers.
pub const TMP_PREFIX: &str = ".hull-tmp-";

/// What the applier needs of an ESP. Paths are FAT paths relative to the
/// ESP's root (`loader/entries/x.conf`); errors name the path.
pub trait EspBackend {
    /// Names in directory `dir`, sorted; empty when `dir` does not exist.
    fn list(&self, dir: &str) -> Result<Vec<String>>;
    /// Whether `path` exists.
    fn exists(&self, path: &str) -> Result<bool>;
    /// The text of file `path`.
    fn read_to_string(&self, path: &str) -> Result<String>;
    /// Writes file `path` whole (a live ESP: through a synced temp file
    /// and a rename), making its directories.
    fn write(&mut self, path: &str, source: &EspSource) -> Result<()>;
    /// Removes file `path`.
    fn remove_file(&mut self, path: &str) -> Result<()>;
    /// Removes directory `path` and everything in it.
    fn remove_dir_all(&mut self, path: &str) -> Result<()>;
    /// Puts everything written so far on disk.
    fn sync_all(&mut self) -> Result<()>;
    /// Puts directory `dir`'s entries on disk (nothing when it is absent).
    fn sync_dir(&mut self, dir: &str) -> Result<()>;
    /// Whether the steps are logged at info level: on a host they are the
    /// stages `hull update` shows (the power-cut test waits for them).
    fn log_steps(&self) -> bool {
        true
    }
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub copied: Vec<String>,
    pub entries_written: Vec<String>,
    pub removed: Vec<String>,
    /// Every entry on the ESP afterwards, default first.
    pub entries: Vec<String>,
}

/// Applies `plan` to `esp`; `new_tries` gives a deployment that has no
/// entry yet a boot counter. Errors name the path that failed.
pub fn apply(
    esp: &mut impl EspBackend,
    plan: EspPlan,
    new_tries: Option<(&DeploymentKey, u32)>,
) -> Result<SyncReport> {
    let mut report = SyncReport::default();
    let existing = esp.list(ENTRIES_DIR)?;
    let mut on_esp = Vec::new();
    for name in existing.iter().filter(|n| EntryName::parse(n).is_some()) {
        let text = esp.read_to_string(&format!("{ENTRIES_DIR}/{name}"))?;
        on_esp.push(ExistingEntry {
            name: name.clone(),
            text,
        });
    }
    // Non-hull .conf files are listed too, so that they are removed.
    on_esp.extend(
        existing
            .iter()
            .filter(|n| EntryName::parse(n).is_none())
            .map(|n| ExistingEntry {
                name: n.clone(),
                text: String::new(),
            }),
    );
    let changes = bls::name_entries(&plan.entries, &on_esp, new_tries);
    let verbose = esp.log_steps();
    let log = |m: String| {
        if verbose {
            log::info!("{m}");
        } else {
            log::debug!("{m}");
        }
    };

    // 1. Files the entries need. systemd-boot and loader.conf are written
    // only when missing: replacing the boot loader is not an OS update.
    let mut referenced = BTreeSet::new();
    for file in &plan.files {
        referenced.insert(file.path.clone());
        if esp.exists(&file.path)? {
            continue;
        }
        esp.write(&file.path, &file.source)?;
        report.copied.push(file.path.clone());
    }

    // 2. New entries.
    log(format!(
        "ESP: {} file(s) copied; writing entries",
        report.copied.len()
    ));
    for entry in &changes.write {
        let path = format!("{ENTRIES_DIR}/{}", entry.name);
        esp.write(&path, &EspSource::Bytes(entry.text.clone().into_bytes()))?;
        report.entries_written.push(entry.name.clone());
    }

    // 3. Entries of deployments that are gone, leftover temp files, then
    // kernels nothing names. Everything written so far is on disk before
    // anything is removed.
    esp.sync_all()?;
    log("ESP: removing what no deployment uses".to_string());
    let mut gone: BTreeSet<String> = changes.remove.iter().cloned().collect();
    gone.extend(
        existing
            .iter()
            .filter(|n| n.starts_with(TMP_PREFIX))
            .cloned(),
    );
    for name in gone {
        let path = format!("{ENTRIES_DIR}/{name}");
        esp.remove_file(&path)?;
        report.removed.push(path);
    }
    esp.sync_dir(ENTRIES_DIR)?;
    for dir in unreferenced_kernel_dirs(esp, &referenced)? {
        esp.remove_dir_all(&dir)?;
        report.removed.push(dir);
    }
    esp.sync_dir("ostree")?;
    report.entries = changes.all.into_iter().map(|e| e.name).collect();
    Ok(report)
}

/// `ostree/<dir>` directories on the ESP holding no file that is referenced.
fn unreferenced_kernel_dirs(
    esp: &impl EspBackend,
    referenced: &BTreeSet<String>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for name in esp.list("ostree").context("listing ostree/ on the ESP")? {
        let prefix = format!("ostree/{name}/");
        if !referenced.iter().any(|r| r.starts_with(&prefix)) {
            out.push(format!("ostree/{name}"));
        }
    }
    Ok(out)
}
