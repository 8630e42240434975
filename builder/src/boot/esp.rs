//! Keeps the mounted ESP in step with OSTree's deployment list.
//!
//! The same plan the image builder writes into a fresh FAT image
//! ([`crate::boot::bls::plan`]), applied to a live ESP so that a power cut
//! at any instant leaves a bootable menu:
//! 1. kernels and initramfs files first (content-addressed paths: a file
//!    already there is the right one), each written to a temp name, synced
//!    and renamed;
//! 2. then new entry files, the same way: an entry appears whole or not at
//!    all, and only after what it names is on disk;
//! 3. only then the entries of deployments that are gone, and last the
//!    kernels no entry names.
//!
//! No file is rewritten in place (see [`crate::boot::bls::name_entries`]),
//! so an existing entry, and the deployment it boots, stays usable until the
//! very end.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde::Serialize;

use crate::boot::bls::{self, DeploymentKey, EntryName, EspPlan, ExistingEntry, ENTRIES_DIR};
use crate::boot::fat::EspSource;

/// Temp files hull writes on the ESP start with this; systemd-boot reads
/// only `*.conf` entries, and a later sync removes leftovers.
const TMP_PREFIX: &str = ".hull-tmp-";
/// statfs type of a FAT file system.
const MSDOS_SUPER_MAGIC: i64 = 0x4d44;

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub copied: Vec<String>,
    pub entries_written: Vec<String>,
    pub removed: Vec<String>,
    /// Every entry on the ESP afterwards, default first.
    pub entries: Vec<String>,
}

/// Opens the ESP at `path`, which must be a mounted FAT file system.
pub fn open(path: &Path) -> Result<Dir> {
    let dir = Dir::open_ambient_dir(path, ambient_authority()).with_context(|| {
        format!(
            "opening the ESP at {} (is efi.mount active?)",
            path.display()
        )
    })?;
    let fs = rustix::fs::fstatfs(&dir).with_context(|| format!("statfs {}", path.display()))?;
    if fs.f_type as i64 != MSDOS_SUPER_MAGIC {
        bail!(
            "{} is not a FAT file system: the ESP is not mounted there (systemctl status efi.mount)",
            path.display()
        );
    }
    Ok(dir)
}

/// Free bytes on the file system holding `dir`.
pub fn free_bytes(dir: &Dir) -> Result<u64> {
    let s = rustix::fs::fstatvfs(dir).context("statvfs")?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Entry file names currently in the ESP's entries directory.
pub fn entry_names(esp: &Dir) -> Result<Vec<String>> {
    if !esp.is_dir(ENTRIES_DIR) {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = esp
        .read_dir(ENTRIES_DIR)
        .with_context(|| format!("reading {ENTRIES_DIR} on the ESP"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    Ok(names)
}

/// The parsed hull entries on the ESP.
pub fn entries(esp: &Dir) -> Result<Vec<EntryName>> {
    Ok(entry_names(esp)?
        .iter()
        .filter_map(|n| EntryName::parse(n))
        .collect())
}

/// Applies `plan` to the ESP in `esp` (found at `esp_path`, for messages).
pub fn sync(
    esp: &Dir,
    esp_path: &Path,
    plan: EspPlan,
    new_tries: Option<(&DeploymentKey, u32)>,
) -> Result<SyncReport> {
    let mut report = SyncReport::default();
    let existing = entry_names(esp)?;
    let mut on_esp = Vec::new();
    for name in existing.iter().filter(|n| EntryName::parse(n).is_some()) {
        let text = esp
            .read_to_string(format!("{ENTRIES_DIR}/{name}"))
            .with_context(|| format!("reading {}/{ENTRIES_DIR}/{name}", esp_path.display()))?;
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

    // 1. Files the entries need. systemd-boot and loader.conf are written
    // only when missing: replacing the boot loader is not an OS update.
    let mut referenced = BTreeSet::new();
    for file in &plan.files {
        referenced.insert(file.path.clone());
        if esp.exists(&file.path) {
            continue;
        }
        let bytes = match &file.source {
            EspSource::Bytes(b) => b.clone(),
            EspSource::File(p) => {
                std::fs::read(p).with_context(|| format!("reading {}", p.display()))?
            }
        };
        write_atomically(esp, &file.path, &bytes)
            .with_context(|| format!("writing {}/{}", esp_path.display(), file.path))?;
        report.copied.push(file.path.clone());
    }

    // 2. New entries.
    log::info!(
        "ESP: {} file(s) copied; writing entries",
        report.copied.len()
    );
    esp.create_dir_all(ENTRIES_DIR)
        .with_context(|| format!("creating {}/{ENTRIES_DIR}", esp_path.display()))?;
    for entry in &changes.write {
        let path = format!("{ENTRIES_DIR}/{}", entry.name);
        write_atomically(esp, &path, entry.text.as_bytes())
            .with_context(|| format!("writing {}/{path}", esp_path.display()))?;
        report.entries_written.push(entry.name.clone());
    }

    // 3. Entries of deployments that are gone, leftover temp files, then
    // kernels nothing names.
    // Everything written so far is on disk before anything is removed.
    rustix::fs::syncfs(open_readable(esp, ".")?).context("syncing the ESP")?;
    log::info!("ESP: removing what no deployment uses");
    let mut gone: BTreeSet<String> = changes.remove.iter().cloned().collect();
    gone.extend(
        existing
            .iter()
            .filter(|n| n.starts_with(TMP_PREFIX))
            .cloned(),
    );
    for name in gone {
        let path = format!("{ENTRIES_DIR}/{name}");
        esp.remove_file(&path)
            .with_context(|| format!("removing {}/{path}", esp_path.display()))?;
        report.removed.push(path);
    }
    sync_dir(esp, ENTRIES_DIR)?;
    for dir in unreferenced_kernel_dirs(esp, &referenced)? {
        esp.remove_dir_all(&dir)
            .with_context(|| format!("removing {}/{dir}", esp_path.display()))?;
        report.removed.push(dir);
    }
    sync_dir(esp, "ostree")?;
    report.entries = changes.all.into_iter().map(|e| e.name).collect();
    Ok(report)
}

/// `ostree/<dir>` directories on the ESP holding no file that is referenced.
fn unreferenced_kernel_dirs(esp: &Dir, referenced: &BTreeSet<String>) -> Result<Vec<String>> {
    if !esp.is_dir("ostree") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in esp.read_dir("ostree")? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let prefix = format!("ostree/{name}/");
        if !referenced.iter().any(|r| r.starts_with(&prefix)) {
            out.push(format!("ostree/{name}"));
        }
    }
    out.sort();
    Ok(out)
}

/// Writes `path` (relative to `esp`) through a synced temp file in the same
/// directory and a rename, then syncs the directory.
fn write_atomically(esp: &Dir, path: &str, bytes: &[u8]) -> Result<()> {
    let (dir, name) = match path.rsplit_once('/') {
        Some((d, n)) => (d, n),
        None => ("", path),
    };
    if !dir.is_empty() {
        esp.create_dir_all(dir)?;
    }
    let join = |n: &str| {
        if dir.is_empty() {
            n.to_string()
        } else {
            format!("{dir}/{n}")
        }
    };
    let tmp = join(&format!("{TMP_PREFIX}{name}"));
    let mut f = esp
        .create(&tmp)
        .with_context(|| format!("creating {tmp}"))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {tmp}"))?;
    f.sync_all().with_context(|| format!("syncing {tmp}"))?;
    esp.rename(&tmp, esp, path)
        .with_context(|| format!("renaming {tmp} to {path}"))?;
    // On FAT a file's size and first cluster live in its directory entry,
    // and a rename makes a new entry that gets them only when the inode is
    // written back: without this second sync, a power cut after the
    // directory's sync left entries of 0 bytes (the power-cut test found it).
    f.sync_all().with_context(|| format!("syncing {path}"))?;
    sync_dir(esp, if dir.is_empty() { "." } else { dir })
}

fn sync_dir(esp: &Dir, dir: &str) -> Result<()> {
    if !esp.is_dir(dir) {
        return Ok(());
    }
    rustix::fs::fsync(open_readable(esp, dir)?).with_context(|| format!("syncing {dir}"))?;
    Ok(())
}

/// A directory of the ESP opened for reading, relative to the ESP's handle:
/// cap-std's own directory handles are O_PATH, which fsync and syncfs
/// refuse. `dir` is one of hull's fixed relative paths.
fn open_readable(esp: &Dir, dir: &str) -> Result<rustix::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::openat(
        esp,
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .with_context(|| format!("opening {dir} on the ESP"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::bls::{BlsEntry, PlannedEntry};
    use crate::boot::fat::EspFile;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn key(c: &str) -> DeploymentKey {
        DeploymentKey {
            osname: "m".into(),
            csum: c.into(),
            serial: 0,
        }
    }

    fn plan(keys: &[(&str, &str)]) -> EspPlan {
        let mut files = vec![EspFile {
            path: "EFI/BOOT/BOOTX64.EFI".into(),
            source: EspSource::Bytes(b"MZ".to_vec()),
        }];
        let mut entries = Vec::new();
        for (csum, kdir) in keys {
            files.push(EspFile {
                path: format!("ostree/{kdir}/vmlinuz"),
                source: EspSource::Bytes(format!("kernel {kdir}").into_bytes()),
            });
            entries.push(PlannedEntry {
                key: key(csum),
                entry: BlsEntry::parse(&format!(
                    "title t\noptions ostree=/{}\nlinux /ostree/{kdir}/vmlinuz\n",
                    key(csum).dir()
                ))
                .unwrap(),
            });
        }
        EspPlan { files, entries }
    }

    /// A real directory through the real sync: first image, update, prune.
    #[test]
    fn sync_adds_before_it_removes_and_keeps_counters() {
        let t = tempfile::tempdir().unwrap();
        let esp = Dir::open_ambient_dir(t.path(), ambient_authority()).unwrap();
        let r = sync(&esp, t.path(), plan(&[(A, "m-k1")]), None).unwrap();
        assert_eq!(r.entries, [format!("hull-1-{A}-0.conf")]);
        assert_eq!(r.copied, ["EFI/BOOT/BOOTX64.EFI", "ostree/m-k1/vmlinuz"]);

        // Update: B with a new kernel and 2 tries; A stays as it was.
        let b = key(B);
        let r = sync(
            &esp,
            t.path(),
            plan(&[(B, "m-k2"), (A, "m-k1")]),
            Some((&b, 2)),
        )
        .unwrap();
        assert_eq!(r.copied, ["ostree/m-k2/vmlinuz"]);
        assert_eq!(r.entries_written, [format!("hull-2-{B}-0+2.conf")]);
        assert!(r.removed.is_empty());
        let text = esp
            .read_to_string(format!("loader/entries/hull-2-{B}-0+2.conf"))
            .unwrap();
        assert!(
            text.contains("version 2\n") && text.contains("/ostree/m-k2/vmlinuz"),
            "{text}"
        );

        // systemd-boot counted one try; a leftover temp file from a cut.
        esp.rename(
            format!("loader/entries/hull-2-{B}-0+2.conf"),
            &esp,
            format!("loader/entries/hull-2-{B}-0+1-1.conf"),
        )
        .unwrap();
        esp.write("loader/entries/.hull-tmp-x.conf", "half")
            .unwrap();
        let r = sync(
            &esp,
            t.path(),
            plan(&[(B, "m-k2"), (A, "m-k1")]),
            Some((&b, 2)),
        )
        .unwrap();
        assert!(r.entries_written.is_empty(), "{r:?}");
        assert_eq!(r.removed, ["loader/entries/.hull-tmp-x.conf"]);

        // A pruned: its entry and its kernel go.
        let r = sync(&esp, t.path(), plan(&[(B, "m-k2")]), None).unwrap();
        assert_eq!(
            r.removed,
            [
                format!("loader/entries/hull-1-{A}-0.conf"),
                "ostree/m-k1".to_string()
            ]
        );
        assert_eq!(
            entry_names(&esp).unwrap(),
            [format!("hull-2-{B}-0+1-1.conf")]
        );
        assert!(!esp.exists("ostree/m-k1"));
        assert!(esp.exists("ostree/m-k2/vmlinuz"));
    }

    #[test]
    fn open_refuses_a_directory_that_is_not_fat() {
        let t = tempfile::tempdir().unwrap();
        let err = open(t.path()).unwrap_err().to_string();
        assert!(err.contains("not a FAT file system"), "{err}");
    }
}
