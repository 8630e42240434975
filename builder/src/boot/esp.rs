//! The mounted ESP of a host: opening it, what is on it, and the backend
//! through which [`crate::boot::esp_apply::apply`] keeps it in step with
//! OSTree's deployment list, each file written to a temp name, synced and
//! renamed, so that a power cut at any instant leaves a bootable menu.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::boot::bls::{DeploymentKey, EntryName, EspPlan, ENTRIES_DIR};
use crate::boot::esp_apply::{self, EspBackend, TMP_PREFIX};
use crate::boot::fat::EspSource;

pub use crate::boot::esp_apply::SyncReport;

/// statfs type of a FAT file system.
const MSDOS_SUPER_MAGIC: i64 = 0x4d44;

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
    sorted_names(esp, ENTRIES_DIR).with_context(|| format!("reading {ENTRIES_DIR} on the ESP"))
}

/// The names in directory `dir` of the ESP, sorted; none when it is absent.
fn sorted_names(esp: &Dir, dir: &str) -> std::io::Result<Vec<String>> {
    if !esp.is_dir(dir) {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = esp
        .read_dir(dir)?
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

/// Applies `plan` to the ESP in `esp` (found at `esp_path`, for messages):
/// [`esp_apply::apply`] with the mounted backend.
pub fn sync(
    esp: &Dir,
    esp_path: &Path,
    plan: EspPlan,
    new_tries: Option<(&DeploymentKey, u32)>,
) -> Result<SyncReport> {
    esp_apply::apply(&mut MountedEsp { esp, esp_path }, plan, new_tries)
}

/// The mounted ESP as an [`EspBackend`]: every write through a synced temp
/// file and a rename, then a sync of its directory.
struct MountedEsp<'a> {
    esp: &'a Dir,
    /// Where it is mounted, for messages.
    esp_path: &'a Path,
}

impl MountedEsp<'_> {
    fn at(&self, path: &str) -> String {
        format!("{}/{path}", self.esp_path.display())
    }
}

impl EspBackend for MountedEsp<'_> {
    fn list(&self, dir: &str) -> Result<Vec<String>> {
        sorted_names(self.esp, dir).with_context(|| format!("reading {}", self.at(dir)))
    }

    fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.esp.exists(path))
    }

    fn read_to_string(&self, path: &str) -> Result<String> {
        self.esp
            .read_to_string(path)
            .with_context(|| format!("reading {}", self.at(path)))
    }

    fn write(&mut self, path: &str, source: &EspSource) -> Result<()> {
        let bytes = match source {
            EspSource::Bytes(b) => std::borrow::Cow::Borrowed(b.as_slice()),
            EspSource::File(p) => std::borrow::Cow::Owned(
                std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
            ),
        };
        write_atomically(self.esp, path, &bytes)
            .with_context(|| format!("writing {}", self.at(path)))
    }

    fn remove_file(&mut self, path: &str) -> Result<()> {
        self.esp
            .remove_file(path)
            .with_context(|| format!("removing {}", self.at(path)))
    }

    fn remove_dir_all(&mut self, path: &str) -> Result<()> {
        self.esp
            .remove_dir_all(path)
            .with_context(|| format!("removing {}", self.at(path)))
    }

    fn sync_all(&mut self) -> Result<()> {
        rustix::fs::syncfs(open_readable(self.esp, ".")?).context("syncing the ESP")
    }

    fn sync_dir(&mut self, dir: &str) -> Result<()> {
        sync_dir(self.esp, dir)
    }
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
