//! Assembling the disk: GPT, the root ext4 made in place, the ESP written
//! through a window onto its partition; all in a temp file renamed at the end.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use gpt::disk::LogicalBlockSize;
use gpt::partition_types::{OperatingSystem, Type};
use indicatif::ProgressBar;

use super::layout::{self, Layout, Role, SECTOR};
use super::{fit, DiskReport, DiskSpec};
use crate::util::cmd::{require_program, Cmd};
use crate::util::progress;

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

/// The temp file an image is assembled in, next to `out` so that the final
/// rename is atomic; removed on drop unless [`TempImage::persist`] ran.
struct TempImage {
    path: PathBuf,
    file: File,
    keep: bool,
}

impl TempImage {
    /// Creates `.<name>.tmp-<random>` in `out`'s directory.
    fn create(out: &Path) -> Result<Self> {
        let name = out
            .file_name()
            .with_context(|| format!("{}: not a file name", out.display()))?
            .to_string_lossy()
            .into_owned();
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let path = out.with_file_name(format!(".{name}.tmp-{}", &suffix[..8]));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(TempImage {
            path,
            file,
            keep: false,
        })
    }

    /// Syncs the file, renames it to `out` and syncs the directory.
    fn persist(mut self, out: &Path) -> Result<()> {
        self.file
            .sync_all()
            .with_context(|| format!("syncing {}", self.path.display()))?;
        std::fs::rename(&self.path, out)
            .with_context(|| format!("renaming {} to {}", self.path.display(), out.display()))?;
        self.keep = true;
        let dir = match out.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))?;
        Ok(())
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = std::fs::remove_file(&self.path) {
                log::warn!("removing {}: {e}", self.path.display());
            }
        }
    }
}

/// Longest ext4 volume label, in bytes.
const EXT4_LABEL_MAX: usize = 16;

/// Writes the disk image to `out` (via a temp file and a rename): GPT, the
/// root ext4 made from `spec.root_dir`, the ESP with `spec.esp_files`.
pub fn write_disk(spec: &DiskSpec, out: &Path) -> Result<DiskReport> {
    require_program("mkfs.ext4", "e2fsprogs")?;
    if spec.root_label.is_empty() || spec.root_label.len() > EXT4_LABEL_MAX {
        bail!(
            "root label {:?} is not 1 to {EXT4_LABEL_MAX} bytes (ext4's limit)",
            spec.root_label
        );
    }
    crate::boot::fat::check(&spec.esp_label, &spec.esp_files)?;
    let layout = layout::plan(
        spec.arch,
        spec.size,
        spec.esp_size,
        &spec.seed,
        &spec.root_label,
    )?;
    let started = std::time::Instant::now();
    let tmp = TempImage::create(out)?;
    assemble(spec, &layout, &tmp)?;
    tmp.persist(out)?;
    log::info!(
        "wrote {} ({} MiB) in {:.1}s",
        out.display(),
        spec.size >> 20,
        started.elapsed().as_secs_f64()
    );
    Ok(DiskReport {
        path: out.to_path_buf(),
        size: spec.size,
        layout,
    })
}

fn assemble(spec: &DiskSpec, layout: &Layout, tmp: &TempImage) -> Result<()> {
    let (file, path) = (&tmp.file, tmp.path.as_path());
    // Sparse: only what the filesystems write takes space.
    file.set_len(layout.disk_size)
        .with_context(|| format!("sizing {}", path.display()))?;

    let bar = progress::spinner("writing the partition table");
    let result = fill(spec, layout, tmp, &bar);
    bar.finish_and_clear();
    result
}

/// The three steps, reported on `bar`: GPT, root ext4, ESP.
fn fill(spec: &DiskSpec, layout: &Layout, tmp: &TempImage, bar: &ProgressBar) -> Result<()> {
    let (file, path) = (&tmp.file, tmp.path.as_path());
    write_gpt(file, layout).with_context(|| format!("writing the GPT of {}", path.display()))?;

    let root = layout.partition(Role::Root);
    let mkfs = || {
        Cmd::new("mkfs.ext4")
            .args(["-q", "-F", "-t", "ext4", "-m", "1", "-L", &spec.root_label])
            .arg("-U")
            .arg(layout.root_fs_uuid.to_string())
            .arg("-E")
            // nodiscard: nothing to discard in a new sparse file, and no holes
            // punched next to the partition table.
            .arg(format!("offset={},root_owner=0:0,nodiscard", root.offset()))
    };
    // The empty file system first, made as the real one will be: its free
    // blocks and inodes are the room the tree must fit, checked now rather
    // than left to mkfs's "Could not allocate block".
    let message = format!("measuring {}", spec.root_dir.display());
    bar.set_message(message);
    let tree = cap_std::fs::Dir::open_ambient_dir(spec.root_dir, cap_std::ambient_authority())
        .with_context(|| format!("opening {}", spec.root_dir.display()))?;
    mkfs()
        .arg(path)
        .arg(format!("{}k", root.size() / 1024))
        .run()?;
    let room = fit::Room::read(file, root.offset(), path)?;
    let (usage, bound) = fit::measure(&tree, room)
        .with_context(|| format!("measuring {}", spec.root_dir.display()))?;
    log::info!(
        "the tree takes {} {} MiB and {} inodes of the root file system's {} MiB and {} inodes",
        if bound { "at most" } else { "about" },
        (usage.blocks * room.block_size) >> 20,
        usage.inodes,
        (room.free_blocks * room.block_size) >> 20,
        room.free_inodes
    );
    fit::check(usage, room, layout.disk_size)?;

    let message = format!(
        "making the root filesystem from {}",
        spec.root_dir.display()
    );
    log::info!("{message}");
    bar.set_message(message);
    mkfs()
        .arg("-d")
        .arg(spec.root_dir)
        .arg(path)
        .arg(format!("{}k", root.size() / 1024))
        .run()?;

    let esp_part = layout.partition(Role::Esp);
    let message = format!("writing the ESP ({} files)", spec.esp_files.len());
    log::info!("{message}");
    bar.set_message(message);
    crate::boot::fat::write_esp_with_id(
        Window::new(file, esp_part.offset(), esp_part.size()),
        esp_part.size(),
        &spec.esp_label,
        layout.esp_volume_id,
        &spec.esp_files,
    )
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
    use crate::boot::fat::{EspFile, EspSource};
    use crate::manifest::Arch;
    use std::os::unix::fs::MetadataExt;

    const MIB: u64 = 1 << 20;

    fn spec(root: &Path) -> DiskSpec<'_> {
        DiskSpec {
            arch: Arch::X86_64,
            size: 640 * MIB,
            esp_size: 100 * MIB,
            esp_files: vec![
                EspFile {
                    path: "loader/loader.conf".into(),
                    source: EspSource::Bytes(b"timeout 1\n".to_vec()),
                },
                EspFile {
                    path: "EFI/BOOT/BOOTX64.EFI".into(),
                    source: EspSource::Bytes(b"MZ".to_vec()),
                },
            ],
            root_dir: root,
            root_label: "hull-root".into(),
            esp_label: "HULL-ESP".into(),
            seed: "test".into(),
        }
    }

    /// A sysroot-like tree: directories, a file, a hard link, a symlink.
    fn root_tree(dir: &Path) -> PathBuf {
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("ostree/deploy/os/deploy")).unwrap();
        std::fs::create_dir_all(root.join("ostree/repo/objects/ab")).unwrap();
        std::fs::write(root.join("ostree/deploy/hello"), "from the root\n").unwrap();
        std::fs::write(root.join("ostree/repo/objects/ab/cd.file"), "shared\n").unwrap();
        std::fs::hard_link(
            root.join("ostree/repo/objects/ab/cd.file"),
            root.join("ostree/deploy/os/deploy/shared"),
        )
        .unwrap();
        std::os::unix::fs::symlink("deploy/hello", root.join("ostree/link")).unwrap();
        root
    }

    /// Runs debugfs on the ext4 at `offset` inside `disk`; e2fsprogs opens
    /// `file?offset=N` through its unix I/O manager, no copy needed.
    fn debugfs(disk: &Path, offset: u64, request: &str) -> String {
        Cmd::new("debugfs")
            .args(["-R", request])
            .arg(format!("{}?offset={offset}", disk.display()))
            .output_string()
            .unwrap()
    }

    fn dir_entries(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// A real disk: the GPT, the ESP and the ext4 root read back.
    #[test]
    fn disk_reads_back() {
        let t = tempfile::tempdir().unwrap();
        let root = root_tree(t.path());
        let out_dir = t.path().join("out");
        std::fs::create_dir(&out_dir).unwrap();
        let out = out_dir.join("disk.raw");
        let spec = spec(&root);
        let report = write_disk(&spec, &out).unwrap();
        assert_eq!(report.path, out);
        assert_eq!(report.size, 640 * MIB);
        assert_eq!(
            report.layout,
            layout::plan(Arch::X86_64, 640 * MIB, 100 * MIB, "test", "hull-root").unwrap()
        );
        assert_eq!(dir_entries(&out_dir), ["disk.raw"], "no temp file left");
        let meta = std::fs::metadata(&out).unwrap();
        assert_eq!(meta.len(), 640 * MIB);
        assert!(meta.blocks() * 512 < 100 * MIB, "sparse: {}", meta.blocks());

        // GPT
        let disk = gpt::GptConfig::new().open(&out).unwrap();
        assert_eq!(*disk.guid(), report.layout.disk_guid);
        let parts = disk.partitions();
        assert_eq!(parts.len(), 2);
        for (i, planned) in report.layout.partitions.iter().enumerate() {
            let p = &parts[&(i as u32 + 1)];
            assert_eq!(p.first_lba, planned.first_lba);
            assert_eq!(p.last_lba, planned.last_lba);
            assert_eq!(p.part_type_guid.guid, planned.type_guid);
            assert_eq!(p.part_guid, planned.part_guid);
            assert_eq!(p.name, planned.name);
        }
        assert_eq!(parts[&2].name, "hull-root");
        // the protective MBR: one 0xEE partition from LBA 1
        let mut mbr = [0u8; 512];
        File::open(&out)
            .unwrap()
            .read_exact_at(&mut mbr, 0)
            .unwrap();
        assert_eq!(&mbr[510..], &[0x55, 0xAA]);
        assert_eq!(mbr[446 + 4], 0xEE);

        // ESP
        let file = File::open(&out).unwrap();
        let e = report.layout.partition(Role::Esp);
        let mut w = Window::new(&file, e.offset(), e.size());
        let fs = fatfs::FileSystem::new(&mut w, fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
        assert_eq!(fs.volume_label(), "HULL-ESP");
        assert_eq!(fs.volume_id(), report.layout.esp_volume_id);
        let mut s = String::new();
        fs.root_dir()
            .open_file("loader/loader.conf")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "timeout 1\n");
        let mut efi = Vec::new();
        fs.root_dir()
            .open_file("EFI/BOOT/BOOTX64.EFI")
            .unwrap()
            .read_to_end(&mut efi)
            .unwrap();
        assert_eq!(efi, b"MZ");

        // root ext4
        let r = report.layout.partition(Role::Root);
        assert_eq!(
            debugfs(&out, r.offset(), "cat /ostree/deploy/hello"),
            "from the root\n"
        );
        let stat = debugfs(&out, r.offset(), "stat /ostree/deploy/os/deploy/shared");
        assert!(stat.contains("Links: 2"), "hard link kept: {stat}");
        let owner = std::fs::metadata(root.join("ostree/deploy/hello")).unwrap();
        let stat = debugfs(&out, r.offset(), "stat /ostree/deploy/hello");
        assert!(
            stat.contains(&format!(
                "User: {:>5}   Group: {:>5}",
                owner.uid(),
                owner.gid()
            )),
            "ownership copied: {stat}"
        );
        let stat = debugfs(&out, r.offset(), "stat /");
        assert!(stat.contains("User:     0   Group:     0"), "{stat}");
        let link = debugfs(&out, r.offset(), "stat /ostree/link");
        assert!(link.contains("Type: symlink"), "{link}");
        let sb = Cmd::new("dumpe2fs")
            .arg("-h")
            .arg(format!("{}?offset={}", out.display(), r.offset()))
            .output_string()
            .unwrap();
        assert!(sb.contains("Filesystem volume name:   hull-root"), "{sb}");
        assert!(
            sb.contains(&format!(
                "Filesystem UUID:          {}",
                report.layout.root_fs_uuid
            )),
            "{sb}"
        );
        let block_count: u64 = sb
            .lines()
            .find_map(|l| l.strip_prefix("Block count:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let block_size: u64 = sb
            .lines()
            .find_map(|l| l.strip_prefix("Block size:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(block_count * block_size, r.size(), "fills its partition");
    }

    /// Two builds from the same seed have the same identity.
    #[test]
    fn rebuild_keeps_the_guids() {
        let t = tempfile::tempdir().unwrap();
        let root = root_tree(t.path());
        let (a, b) = (t.path().join("a.raw"), t.path().join("b.raw"));
        write_disk(&spec(&root), &a).unwrap();
        write_disk(&spec(&root), &b).unwrap();
        let (ga, gb) = (
            gpt::GptConfig::new().open(&a).unwrap(),
            gpt::GptConfig::new().open(&b).unwrap(),
        );
        assert_eq!(ga.guid(), gb.guid());
        assert_eq!(ga.partitions(), gb.partitions());
        // writing over an existing image replaces it
        let mut other = spec(&root);
        other.seed = "other".into();
        write_disk(&other, &b).unwrap();
        let gb = gpt::GptConfig::new().open(&b).unwrap();
        assert_ne!(ga.guid(), gb.guid());
    }

    #[test]
    fn failure_leaves_nothing_behind() {
        let t = tempfile::tempdir().unwrap();
        let missing = t.path().join("no-such-root");
        let out = t.path().join("disk.raw");
        let err = format!("{:#}", write_disk(&spec(&missing), &out).unwrap_err());
        assert!(err.contains("no-such-root"), "{err}");
        assert!(dir_entries(t.path()).is_empty(), "no image, no temp file");
    }

    #[test]
    fn failure_after_mkfs_leaves_nothing_behind() {
        let t = tempfile::tempdir().unwrap();
        let root = root_tree(t.path());
        let out = t.path().join("disk.raw");
        let mut s = spec(&root);
        s.esp_files.push(EspFile {
            path: "EFI/Linux/missing.efi".into(),
            source: EspSource::File(t.path().join("missing.efi")),
        });
        let err = format!("{:#}", write_disk(&s, &out).unwrap_err());
        assert!(err.contains("missing.efi"), "{err}");
        assert_eq!(dir_entries(t.path()), ["root"], "no image, no temp file");
    }

    /// A tree larger than the root partition: the figures, before mkfs
    /// copies anything, and nothing left behind.
    #[test]
    fn tree_too_large_is_measured_first() {
        let t = tempfile::tempdir().unwrap();
        let root = root_tree(t.path());
        // Written in pieces: other tests measure this process's peak memory.
        let mut big = File::create(root.join("ostree/big")).unwrap();
        for _ in 0..560 {
            big.write_all(&[0x5a; 1 << 20]).unwrap();
        }
        let out = t.path().join("disk.raw");
        let err = write_disk(&spec(&root), &out).unwrap_err();
        let small = err
            .downcast_ref::<fit::TooSmall>()
            .unwrap_or_else(|| panic!("not a TooSmall: {err:#}"));
        // 640 MiB disk, 100 MiB ESP: a root partition of 538 MiB, less the
        // ext4's own blocks.
        assert_eq!(small.image_size, 640 * MIB);
        assert!(
            small.needed_mib >= 560 && small.needed_mib < 570,
            "{small:?}"
        );
        assert!(
            small.available_mib > 440 && small.available_mib < 538,
            "{small:?}"
        );
        let text = err.to_string();
        assert!(text.starts_with("image.size: the tree needs "), "{text}");
        assert_eq!(dir_entries(t.path()), ["root"], "no image, no temp file");
    }

    #[test]
    fn bad_specs_fail_before_writing() {
        let t = tempfile::tempdir().unwrap();
        let root = root_tree(t.path());
        let out = t.path().join("disk.raw");
        let mut cases: Vec<(DiskSpec, &str)> = Vec::new();
        let mut s = spec(&root);
        s.size = 200 * MIB;
        cases.push((s, "image.size"));
        let mut s = spec(&root);
        s.esp_size = 16 * MIB;
        cases.push((s, "image.esp-size"));
        let mut s = spec(&root);
        s.root_label = "a-label-longer-than-16".into();
        cases.push((s, "root label"));
        let mut s = spec(&root);
        s.esp_label = "TOO-LONG-ESP-LABEL".into();
        cases.push((s, "ESP label"));
        let mut s = spec(&root);
        s.esp_files[0].path = "/loader/loader.conf".into();
        cases.push((s, "ESP path"));
        for (s, want) in cases {
            let err = format!("{:#}", write_disk(&s, &out).unwrap_err());
            assert!(err.contains(want), "{err}");
            assert_eq!(dir_entries(t.path()), ["root"]);
        }
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
        assert_eq!(w.seek(SeekFrom::End(-5)).unwrap(), 15);
        assert!(w.seek(SeekFrom::Current(-16)).is_err());
        w.seek(SeekFrom::Start(0)).unwrap();
        let mut buf = vec![0; 30];
        assert_eq!(w.read(&mut buf).unwrap(), 20);
        assert_eq!(w.read(&mut buf).unwrap(), 0, "end of the window");
        let mut all = vec![0; 100];
        f.read_exact_at(&mut all, 0).unwrap();
        assert_eq!(all.iter().filter(|b| **b == 1).count(), 20);
        assert_eq!(all[10], 1);
        assert_eq!(all[9], 0);
        assert_eq!(all[30], 0);
    }

    /// How long a 4 GiB disk takes and how much of it is allocated:
    /// `cargo test -p hull --release four_gib -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn four_gib_sparse_disk() {
        let t = tempfile::tempdir().unwrap();
        let root = root_tree(t.path());
        let kernel = t.path().join("vmlinuz");
        std::fs::write(&kernel, vec![0x5a; 60 << 20]).unwrap();
        let mut s = spec(&root);
        s.size = 4 << 30;
        s.esp_size = 256 * MIB;
        s.esp_files.push(EspFile {
            path: "ostree/os-abc/initramfs.img".into(),
            source: EspSource::File(kernel),
        });
        let out = t.path().join("disk.raw");
        let started = std::time::Instant::now();
        write_disk(&s, &out).unwrap();
        let took = started.elapsed();
        let meta = std::fs::metadata(&out).unwrap();
        println!(
            "4 GiB disk, 256 MiB ESP with a 60 MiB file: {:.2}s, {} MiB allocated",
            took.as_secs_f64(),
            (meta.blocks() * 512) >> 20
        );
    }
}
