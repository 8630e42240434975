//! Finding and reading a NoCloud seed: a volume labelled `cidata` or
//! `CIDATA` (vfat or ISO 9660) holding `meta-data` and `user-data`, as
//! cloud-localds, virt-install --cloud-init, Proxmox and `hull run
//! --cloud-init` make it.
//!
//! blkid finds it (it reads the superblocks itself, so no udev rule has to
//! have run this early in boot). A vfat seed is read with `fatfs`, never
//! mounted; an ISO 9660 one is mounted read-only for the time it is read.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::util::cmd::Cmd;

/// The labels a NoCloud seed has.
pub const LABELS: &[&str] = &["cidata", "CIDATA"];

/// A seed's two files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    pub device: PathBuf,
    pub user_data: String,
    pub meta_data: String,
}

/// One device in `blkid -o export` output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Volume {
    pub device: String,
    pub label: Option<String>,
    pub fs_type: Option<String>,
}

/// Parses `blkid -o export`: blocks of `KEY=value` lines, one per device.
pub fn parse_blkid_export(text: &str) -> Vec<Volume> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut v = Volume::default();
        for line in block.lines() {
            match line.split_once('=') {
                Some(("DEVNAME", d)) => v.device = d.to_string(),
                Some(("LABEL", l)) => v.label = Some(unescape(l)),
                Some(("TYPE", t)) => v.fs_type = Some(t.to_string()),
                _ => {}
            }
        }
        if !v.device.is_empty() {
            out.push(v);
        }
    }
    out
}

/// blkid's export escapes some characters with a backslash.
fn unescape(s: &str) -> String {
    s.replace("\\ ", " ").replace("\\\\", "\\")
}

/// The first seed among `volumes`, if any.
pub fn pick(volumes: &[Volume]) -> Option<&Volume> {
    volumes
        .iter()
        .find(|v| v.label.as_deref().is_some_and(|l| LABELS.contains(&l)))
}

/// Looks for a seed on this machine's block devices and reads it.
pub fn find() -> Result<Option<Seed>> {
    // -c /dev/null: no cache, every device probed now.
    let text = Cmd::new("blkid")
        .args(["-c", "/dev/null", "-o", "export"])
        .output_string()
        .unwrap_or_default();
    let volumes = parse_blkid_export(&text);
    let Some(v) = pick(&volumes) else {
        return Ok(None);
    };
    let device = PathBuf::from(&v.device);
    let seed = match v.fs_type.as_deref() {
        Some("vfat") => read_vfat(&device)?,
        Some("iso9660") => read_iso(&device)?,
        other => bail!(
            "NoCloud seed {}: a {} file system; seeds are vfat or iso9660",
            device.display(),
            other.unwrap_or("unknown")
        ),
    };
    Ok(Some(seed))
}

/// A read-only file where fatfs wants a writable one: any write fails.
struct ReadOnly(File);

impl Read for ReadOnly {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}
impl Seek for ReadOnly {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.0.seek(pos)
    }
}
impl Write for ReadOnly {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the seed is read-only",
        ))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads `meta-data` and `user-data` from a vfat volume (a device or an
/// image file); a missing one reads as empty.
pub fn read_vfat(device: &Path) -> Result<Seed> {
    let f = File::open(device).with_context(|| format!("opening {}", device.display()))?;
    let fs = fatfs::FileSystem::new(
        ReadOnly(f),
        fatfs::FsOptions::new().update_accessed_date(false),
    )
    .with_context(|| format!("reading the NoCloud seed {} as vfat", device.display()))?;
    let root = fs.root_dir();
    let read = |name: &str| -> Result<String> {
        let mut file = match root.open_file(name) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("{}: reading {name}", device.display()))
            }
        };
        let mut s = String::new();
        file.read_to_string(&mut s)
            .with_context(|| format!("{}: reading {name} (UTF-8 text)", device.display()))?;
        Ok(s)
    };
    Ok(Seed {
        device: device.to_path_buf(),
        user_data: read("user-data")?,
        meta_data: read("meta-data")?,
    })
}

fn read_iso(device: &Path) -> Result<Seed> {
    let dir = tempfile::Builder::new()
        .prefix("hull-seed-")
        .tempdir_in("/run")
        .context("making a mount point in /run")?;
    Cmd::new("mount")
        .args(["-t", "iso9660", "-o", "ro,nodev,nosuid,noexec"])
        .arg(device)
        .arg(dir.path())
        .run()?;
    let read = |name: &str| match std::fs::read_to_string(dir.path().join(name)) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("{}: reading {name}", device.display())),
    };
    let seed = (|| -> Result<Seed> {
        Ok(Seed {
            device: device.to_path_buf(),
            user_data: read("user-data")?,
            meta_data: read("meta-data")?,
        })
    })();
    Cmd::new("umount").arg(dir.path()).run()?;
    seed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkid_export_and_pick() {
        let text = "DEVNAME=/dev/vda1\nLABEL=HULL-ESP\nTYPE=vfat\n\nDEVNAME=/dev/vda2\nLABEL=hull-root\nTYPE=ext4\n\n\
                    DEVNAME=/dev/vdb\nSEC_TYPE=msdos\nLABEL=CIDATA\nUUID=1234-5678\nTYPE=vfat\n";
        let v = parse_blkid_export(text);
        assert_eq!(v.len(), 3);
        assert_eq!(
            pick(&v),
            Some(&Volume {
                device: "/dev/vdb".into(),
                label: Some("CIDATA".into()),
                fs_type: Some("vfat".into())
            })
        );
        let iso = parse_blkid_export("DEVNAME=/dev/sr0\nLABEL=cidata\nTYPE=iso9660\n");
        assert_eq!(pick(&iso).unwrap().fs_type.as_deref(), Some("iso9660"));
        assert_eq!(
            pick(&parse_blkid_export("DEVNAME=/dev/sdb\nLABEL=Cidata\n")),
            None
        );
        assert_eq!(
            parse_blkid_export("DEVNAME=/d\nLABEL=a\\ b\n")[0]
                .label
                .as_deref(),
            Some("a b")
        );
    }
}
