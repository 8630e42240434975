//! Assembling the disk: GPT, the root ext4 made in place, the ESP written
//! through a window onto its partition; all in a temp file renamed at the end.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use gpt::disk::LogicalBlockSize;
use gpt::partition_types::{OperatingSystem, Type};

use super::layout::{self, Layout, Role, SECTOR};
use super::{esp, DiskReport, DiskSpec};
use crate::cmd::{require_program, Cmd};
use crate::progress;

/// A byte range of a file seen as a device of its own, so the FAT writer
/// cannot stray outside the ESP.
#[derive(Debug)]
pub struct Window<'a> {
    file: &'a File,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a> Window<'a> {
    pub fn new(file: &'a File, start: u64, len: u64) -> Self {
        Window {
            file,
            start,
            len,
            pos: 0,
        }
    }
}

impl Read for Window<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        let got = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Write for Window<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pos + buf.len() as u64 > self.len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the partition",
            ));
        }
        let n = self.file.write_at(buf, self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Window<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(d) => self.len as i128 + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if new < 0 || new > self.len as i128 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek outside the partition",
            ));
        }
        self.pos = new as u64;
        Ok(self.pos)
    }
}

fn tmp_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes the disk image to `out` (via a temp file and a rename).
pub fn write_disk(spec: &DiskSpec, out: &Path) -> Result<DiskReport> {
    require_program("mkfs.ext4", "e2fsprogs")?;
    let layout = layout::plan(
        spec.arch,
        spec.size,
        spec.esp_size,
        &spec.seed,
        &spec.root_label,
    )?;
    let tmp = tmp_path(out);
    let result = assemble(spec, &layout, &tmp).and_then(|()| {
        std::fs::rename(&tmp, out)
            .with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    Ok(DiskReport {
        path: out.to_path_buf(),
        size: spec.size,
        layout,
    })
}

fn assemble(spec: &DiskSpec, layout: &Layout, tmp: &Path) -> Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.set_len(layout.disk_size)
        .with_context(|| format!("sizing {}", tmp.display()))?;

    let bar = progress::spinner(&format!("writing the partition table of {}", tmp.display()));
    write_gpt(&file, layout).with_context(|| format!("writing the GPT of {}", tmp.display()))?;

    let root = layout.partition(Role::Root);
    bar.set_message(format!(
        "making the root filesystem from {}",
        spec.root_dir.display()
    ));
    log::info!(
        "making the root filesystem from {}",
        spec.root_dir.display()
    );
    Cmd::new("mkfs.ext4")
        .args(["-q", "-F", "-t", "ext4", "-m", "1", "-L", &spec.root_label])
        .arg("-U")
        .arg(layout.root_fs_uuid.to_string())
        .arg("-E")
        .arg(format!("offset={},root_owner=0:0", root.offset()))
        .arg("-d")
        .arg(spec.root_dir)
        .arg(tmp)
        .arg(format!("{}k", root.size() / 1024))
        .run()?;

    let esp_part = layout.partition(Role::Esp);
    bar.set_message("writing the ESP");
    log::info!("writing the ESP ({} files)", spec.esp_files.len());
    esp::write_esp(
        Window::new(&file, esp_part.offset(), esp_part.size()),
        esp_part.size(),
        &spec.esp_label,
        &spec.esp_files,
    )?;
    file.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    bar.finish_and_clear();
    Ok(())
}

fn write_gpt(file: &File, layout: &Layout) -> Result<()> {
    let mut dev = file;
    let sectors = layout.disk_size / SECTOR;
    let mbr = gpt::mbr::ProtectiveMBR::with_lb_size(u32::try_from(sectors - 1).unwrap_or(u32::MAX));
    mbr.overwrite_lba0(&mut dev)
        .context("writing the protective MBR")?;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .create_from_device(dev, Some(layout.disk_guid))?;
    let parts: BTreeMap<u32, gpt::partition::Partition> = layout
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                i as u32 + 1,
                gpt::partition::Partition {
                    part_type_guid: Type {
                        guid: p.type_guid,
                        os: OperatingSystem::None,
                    },
                    part_guid: p.part_guid,
                    first_lba: p.first_lba,
                    last_lba: p.last_lba,
                    flags: 0,
                    name: p.name.clone(),
                },
            )
        })
        .collect();
    disk.update_partitions(parts)?;
    disk.write()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{EspFile, EspSource};
    use crate::manifest::Arch;

    fn spec<'a>(root: &'a Path) -> DiskSpec<'a> {
        DiskSpec {
            arch: Arch::X86_64,
            size: 600 << 20,
            esp_size: 64 << 20,
            esp_files: vec![EspFile {
                path: "loader/loader.conf".into(),
                source: EspSource::Bytes(b"timeout 1\n".to_vec()),
            }],
            root_dir: root,
            root_label: "hull-root".into(),
            esp_label: "HULL-ESP".into(),
            seed: "test".into(),
        }
    }

    /// A real disk: the GPT, the ESP and the ext4 root read back.
    #[test]
    fn disk_reads_back() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("ostree/deploy")).unwrap();
        std::fs::write(root.join("ostree/deploy/hello"), "from the root\n").unwrap();
        let out = t.path().join("disk.raw");
        let report = write_disk(&spec(&root), &out).unwrap();
        assert_eq!(std::fs::metadata(&out).unwrap().len(), 600 << 20);

        let disk = gpt::GptConfig::new().open(&out).unwrap();
        let parts = disk.partitions();
        assert_eq!(parts.len(), 2);
        for (i, planned) in report.layout.partitions.iter().enumerate() {
            let p = &parts[&(i as u32 + 1)];
            assert_eq!(p.first_lba, planned.first_lba);
            assert_eq!(p.last_lba, planned.last_lba);
            assert_eq!(p.part_type_guid.guid, planned.type_guid);
            assert_eq!(p.name, planned.name);
        }
        assert_eq!(*disk.guid(), report.layout.disk_guid);

        let file = File::open(&out).unwrap();
        let e = report.layout.partition(Role::Esp);
        let mut w = Window::new(&file, e.offset(), e.size());
        let fs = fatfs::FileSystem::new(&mut w, fatfs::FsOptions::new()).unwrap();
        let mut s = String::new();
        fs.root_dir()
            .open_file("loader/loader.conf")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "timeout 1\n");

        // debugfs reads the root partition once copied out of the disk.
        let r = report.layout.partition(Role::Root);
        let part = t.path().join("root.ext4");
        let mut bytes = vec![0u8; r.size() as usize];
        file.read_exact_at(&mut bytes, r.offset()).unwrap();
        std::fs::write(&part, bytes).unwrap();
        let got = Cmd::new("debugfs")
            .args(["-R", "cat /ostree/deploy/hello"])
            .arg(&part)
            .output_string()
            .unwrap();
        assert_eq!(got, "from the root\n");
        let label = Cmd::new("e2label").arg(&part).output_string().unwrap();
        assert_eq!(label.trim(), "hull-root");
    }

    #[test]
    fn failure_leaves_nothing_behind() {
        let t = tempfile::tempdir().unwrap();
        let missing = t.path().join("no-such-root");
        let out = t.path().join("disk.raw");
        let err = format!("{:#}", write_disk(&spec(&missing), &out).unwrap_err());
        assert!(err.contains("mkfs.ext4"), "{err}");
        assert_eq!(
            std::fs::read_dir(t.path()).unwrap().count(),
            0,
            "no image, no temp file"
        );
    }

    #[test]
    fn window_stays_inside() {
        let t = tempfile::tempdir().unwrap();
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(t.path().join("f"))
            .unwrap();
        f.set_len(100).unwrap();
        let mut w = Window::new(&f, 10, 20);
        w.write_all(&[1; 20]).unwrap();
        assert!(w.write_all(&[1]).is_err());
        assert!(w.seek(SeekFrom::Start(21)).is_err());
        w.seek(SeekFrom::Start(0)).unwrap();
        let mut buf = vec![0; 30];
        assert_eq!(w.read(&mut buf).unwrap(), 20);
        let mut all = vec![0; 100];
        f.read_exact_at(&mut all, 0).unwrap();
        assert_eq!(all.iter().filter(|b| **b == 1).count(), 20);
        assert_eq!(all[10], 1);
        assert_eq!(all[9], 0);
    }
}
