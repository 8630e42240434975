//! The EFI system partition: FAT32 written from user space with `fatfs`
//! (no loop device, no mount: the build host need not have vfat).

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions, ReadWriteSeek};
use sha2::Digest;

use crate::boot::bls::EspPlan;
use crate::boot::esp_apply::{self, EspBackend};

/// One file to place on the ESP.
#[derive(Debug, Clone)]
pub struct EspFile {
    /// FAT path such as `EFI/BOOT/BOOTX64.EFI`: `/`-separated, no leading `/`.
    pub path: String,
    pub source: EspSource,
}

#[derive(Debug, Clone)]
pub enum EspSource {
    /// Streamed from a file when written.
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// FAT32 needs at least this many clusters (fewer is FAT16 by definition).
const FAT32_MIN_CLUSTERS: u64 = 65_525;
/// Cluster numbers above this are reserved in a FAT32 FAT.
const FAT32_MAX_CLUSTERS: u64 = 0x0FFF_FFF4;
/// What `fatfs` reserves at the start of a FAT32 volume (boot sector,
/// FSInfo, backup boot sector), in sectors.
const RESERVED_SECTORS: u64 = 8;
const FATS: u64 = 2;
const SECTOR: u64 = 512;

/// The smallest whole number of MiB that holds a FAT32 (with 512-byte
/// clusters); smaller volumes would have to be FAT16.
pub const MIN_SIZE: u64 = 33 << 20;

/// Clusters of a FAT32 of `size` bytes with `bytes_per_cluster`, computed as
/// `fatfs` 0.3 lays the volume out (8 reserved sectors, 2 FATs, the FAT sized
/// for every cluster plus the two reserved entries).
fn fat32_clusters(size: u64, bytes_per_cluster: u64) -> u64 {
    let sectors = size / SECTOR;
    let per_cluster = bytes_per_cluster / SECTOR;
    let Some(t0) = sectors.checked_sub(RESERVED_SECTORS) else {
        return 0;
    };
    // Entries of 32 bits: (t0 + 2 clusters) / (entries per sector * sectors per cluster + FATs).
    let fat_sectors = (t0 + 2 * per_cluster).div_ceil(per_cluster * SECTOR * 8 / 32 + FATS);
    t0.saturating_sub(FATS * fat_sectors) / per_cluster
}

/// The largest cluster size, up to 4 KiB, that makes a valid FAT32 of `size`
/// bytes (large clusters: fewer FAT lookups when the firmware reads a kernel).
fn best_cluster_size(size: u64) -> Option<u32> {
    if size / SECTOR > u64::from(u32::MAX) {
        return None;
    }
    [4096u32, 2048, 1024, 512].into_iter().find(|&bytes| {
        (FAT32_MIN_CLUSTERS..=FAT32_MAX_CLUSTERS).contains(&fat32_clusters(size, bytes.into()))
    })
}

/// The best cluster size (4 KiB down to 512 bytes), or an error naming `image.esp-size`.
pub fn cluster_size(size: u64) -> Result<u32> {
    if let Some(bytes) = best_cluster_size(size) {
        return Ok(bytes);
    }
    if size / SECTOR > u64::from(u32::MAX) {
        bail!(
            "image.esp-size: {} MiB is too large for FAT32 (below 2 TiB)",
            size >> 20
        );
    }
    bail!(
        "image.esp-size: {} MiB is too small for FAT32 (at least {} MiB)",
        size >> 20,
        MIN_SIZE >> 20
    )
}

/// The label as FAT stores it: 11 bytes, upper case, space padded.
fn fat_label(label: &str) -> Result<[u8; 11]> {
    if label.is_empty()
        || label.len() > 11
        || !label
            .bytes()
            .all(|c| c.is_ascii_graphic() && !br#""*+,./:;<=>?[\]|"#.contains(&c) || c == b' ')
    {
        bail!("ESP label {label:?} is not 1 to 11 ASCII letters, digits, spaces or -_!#$%&'()@^`{{}}~");
    }
    let mut out = [b' '; 11];
    for (o, c) in out.iter_mut().zip(label.to_ascii_uppercase().bytes()) {
        *o = c;
    }
    Ok(out)
}

/// The `/`-separated components of an ESP path, checked: relative, no empty,
/// `.` or `..` components, no characters FAT long names cannot hold.
fn components(path: &str) -> Result<Vec<&str>> {
    let parts: Vec<&str> = path.split('/').collect();
    for p in &parts {
        if p.is_empty()
            || *p == "."
            || *p == ".."
            || p.chars()
                .any(|c| c.is_control() || r#""*:<>?\|"#.contains(c))
        {
            bail!("ESP path {path:?} is not a relative '/'-separated FAT path");
        }
    }
    Ok(parts)
}

/// Checks the label and every path (relative, no `.`/`..`, no two the same
/// in FAT's case-insensitive eyes) without writing anything, so that a
/// caller can fail before slow work.
pub fn check(label: &str, files: &[EspFile]) -> Result<()> {
    fat_label(label)?;
    let mut seen = std::collections::BTreeSet::new();
    for f in files {
        components(&f.path)?;
        if !seen.insert(f.path.to_uppercase()) {
            bail!("ESP path {:?} is given twice", f.path);
        }
    }
    Ok(())
}

/// File and directory times on the ESP: the DOS epoch, so that the same
/// files give the same bytes (nothing that reads an ESP uses the times).
#[derive(Debug)]
struct FixedTime;

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 1980,
            month: 1,
            day: 1,
        }
    }

    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

static FIXED_TIME: FixedTime = FixedTime;

/// A volume serial that depends only on the label, for [`write_esp`].
fn label_volume_id(label: &str) -> u32 {
    let d = sha2::Sha256::digest(format!("hull esp volume {label}").as_bytes());
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

/// Formats `dev` (exactly `size` bytes) as FAT32 labelled `label` and writes
/// `files`, creating their directories; names keep their case (long names).
pub fn write_esp<T: Read + Write + Seek>(
    dev: T,
    size: u64,
    label: &str,
    files: &[EspFile],
) -> Result<()> {
    write_esp_with_id(dev, size, label, label_volume_id(label), files)
}

/// [`write_esp`] with the FAT volume serial (`XXXX-XXXX` in
/// `/dev/disk/by-uuid`) given.
pub fn write_esp_with_id<T: Read + Write + Seek>(
    mut dev: T,
    size: u64,
    label: &str,
    volume_id: u32,
    files: &[EspFile],
) -> Result<()> {
    check(label, files)?;
    let label = fat_label(label)?;
    let bytes_per_cluster = cluster_size(size)?;

    dev.seek(SeekFrom::Start(0))?;
    let total_sectors = u32::try_from(size / SECTOR).expect("checked by cluster_size");
    let opts = FormatVolumeOptions::new()
        .fat_type(FatType::Fat32)
        .bytes_per_sector(SECTOR as u16)
        .total_sectors(total_sectors)
        .bytes_per_cluster(bytes_per_cluster)
        .volume_id(volume_id)
        .volume_label(label);
    fatfs::format_volume(&mut dev, opts).context("formatting the ESP as FAT32")?;
    dev.seek(SeekFrom::Start(0))?;
    let fs = FileSystem::new(&mut dev, FsOptions::new().time_provider(&FIXED_TIME))
        .context("opening the new ESP")?;
    if fs.fat_type() != FatType::Fat32 {
        bail!(
            "image.esp-size: {} MiB came out as {:?}, not FAT32",
            size >> 20,
            fs.fat_type()
        );
    }
    // The one applier, onto the fresh file system: every file written once,
    // nothing to remove.
    let plan = EspPlan {
        files: files.to_vec(),
        entries: Vec::new(),
    };
    esp_apply::apply(
        &mut FatImage {
            root: fs.root_dir(),
        },
        plan,
        None,
    )?;
    // Counting the free clusters also records the count in the FSInfo
    // sector, which fsck.vfat expects filled in.
    let stats = fs.stats().context("counting the ESP's free space")?;
    let cluster = u64::from(stats.cluster_size());
    let free = u64::from(stats.free_clusters()) * cluster;
    let used = u64::from(stats.total_clusters() - stats.free_clusters()) * cluster;
    log::info!("ESP: {} KiB used, {} KiB free", used >> 10, free >> 10);
    if free < used {
        log::warn!(
            "the ESP has {} MiB free, less than the {} MiB its files take: an update \
             that adds a deployment's kernel may not fit (raise image.esp-size)",
            free >> 20,
            used >> 20
        );
    }
    fs.unmount().context("closing the ESP")?;
    // fatfs's `.` and `..` are not what fsck.fat (run at every boot by
    // systemd-fsck) expects: rewritten as the FAT specification has them.
    crate::boot::fat_dots::standardize(&mut dev).context("fixing the ESP's dot entries")?;
    Ok(())
}

/// A FAT file system being written from user space, as an [`EspBackend`]:
/// a build's fresh ESP, so a write goes straight to its file (the image
/// file itself is written to a temp path and renamed).
struct FatImage<'a, T: ReadWriteSeek> {
    root: fatfs::Dir<'a, T>,
}

impl<T: ReadWriteSeek> FatImage<'_, T> {
    /// Directory `path` (`""` is the root), when it exists.
    fn dir(&self, path: &str) -> Option<fatfs::Dir<'_, T>> {
        if path.is_empty() {
            return Some(self.root.clone());
        }
        self.root.open_dir(path).ok()
    }
}

impl<T: ReadWriteSeek> EspBackend for FatImage<'_, T> {
    fn list(&self, dir: &str) -> Result<Vec<String>> {
        let Some(d) = self.dir(dir) else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        for e in d.iter() {
            let name = e
                .with_context(|| format!("reading {dir} on the ESP"))?
                .file_name();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &str) -> Result<bool> {
        let parts = components(path)?;
        let (parent, name) = parts.split_at(parts.len() - 1);
        Ok(self.dir(&parent.join("/")).is_some_and(|d| {
            d.iter()
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().eq_ignore_ascii_case(name[0]))
        }))
    }

    fn read_to_string(&self, path: &str) -> Result<String> {
        let mut text = String::new();
        self.root
            .open_file(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .with_context(|| format!("reading {path} on the ESP"))?;
        Ok(text)
    }

    fn write(&mut self, path: &str, source: &EspSource) -> Result<()> {
        let parts = components(path)?;
        let mut dir = self.root.clone();
        for part in &parts[..parts.len() - 1] {
            // Opens the directory when it exists already.
            dir = dir
                .create_dir(part)
                .with_context(|| format!("creating the directories of {path} on the ESP"))?;
        }
        let mut out = dir
            .create_file(parts[parts.len() - 1])
            .with_context(|| format!("creating {path} on the ESP"))?;
        out.truncate()?;
        let copied = match source {
            EspSource::Bytes(b) => out.write_all(b).map(|_| b.len() as u64),
            EspSource::File(p) => {
                let mut src =
                    std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
                copy(&mut src, &mut out)
            }
        };
        copied.with_context(|| {
            format!("writing {path} to the ESP (is image.esp-size large enough?)")
        })?;
        out.flush()?;
        Ok(())
    }

    fn remove_file(&mut self, path: &str) -> Result<()> {
        self.root
            .remove(path)
            .with_context(|| format!("removing {path} on the ESP"))
    }

    fn remove_dir_all(&mut self, path: &str) -> Result<()> {
        for name in self.list(path)? {
            let child = format!("{path}/{name}");
            let is_dir = self.dir(&child).is_some();
            if is_dir {
                self.remove_dir_all(&child)?;
            } else {
                self.remove_file(&child)?;
            }
        }
        self.remove_file(path)
    }

    fn sync_all(&mut self) -> Result<()> {
        // The file system is unmounted (and so flushed) when the image is done.
        Ok(())
    }

    fn sync_dir(&mut self, _dir: &str) -> Result<()> {
        Ok(())
    }

    fn log_steps(&self) -> bool {
        false
    }
}

/// `io::copy` with a buffer of a few clusters: fewer, larger writes.
fn copy(src: &mut impl Read, dst: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.write_all(&buf[..n])?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const MIB: u64 = 1 << 20;

    fn files(dir: &std::path::Path) -> Vec<EspFile> {
        let kernel = dir.join("vmlinuz");
        std::fs::write(&kernel, pattern(3_000_000)).unwrap();
        vec![
            EspFile {
                path: "EFI/BOOT/BOOTX64.EFI".into(),
                source: EspSource::Bytes(b"MZ-efi".to_vec()),
            },
            EspFile {
                path: "loader/loader.conf".into(),
                source: EspSource::Bytes(b"timeout 1\n".to_vec()),
            },
            EspFile {
                path: "ostree/minimal-abc/vmlinuz-6.12".into(),
                source: EspSource::File(kernel),
            },
            EspFile {
                path: "loader/entries/ostree-1-minimal.conf".into(),
                source: EspSource::Bytes(b"title x\n".to_vec()),
            },
            EspFile {
                path: "EFI/Linux/Hull-Mixed.Case.efi".into(),
                source: EspSource::Bytes(Vec::new()),
            },
        ]
    }

    /// Bytes that differ from cluster to cluster, so misplaced clusters show.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i / 509 + i) as u8).collect()
    }

    fn read<T: Read + Write + Seek>(fs: &FileSystem<T>, path: &str) -> Vec<u8> {
        let mut v = Vec::new();
        fs.root_dir()
            .open_file(path)
            .unwrap()
            .read_to_end(&mut v)
            .unwrap();
        v
    }

    /// The names in a directory, as stored (long names, case kept).
    fn names<T: Read + Write + Seek>(fs: &FileSystem<T>, dir: &str) -> Vec<String> {
        let d = if dir.is_empty() {
            fs.root_dir()
        } else {
            fs.root_dir().open_dir(dir).unwrap()
        };
        let mut v: Vec<String> = d
            .iter()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "." && n != "..")
            .collect();
        v.sort();
        v
    }

    #[test]
    fn esp_reads_back() {
        let t = tempfile::tempdir().unwrap();
        let size = 64 * MIB;
        let mut dev = Cursor::new(vec![0u8; size as usize]);
        write_esp_with_id(&mut dev, size, "HULL-ESP", 0xABCD_1234, &files(t.path())).unwrap();
        dev.set_position(0);
        let fs = FileSystem::new(&mut dev, FsOptions::new()).unwrap();
        assert_eq!(fs.fat_type(), FatType::Fat32);
        assert_eq!(fs.volume_label(), "HULL-ESP");
        assert_eq!(
            fs.read_volume_label_from_root_dir().unwrap().as_deref(),
            Some("HULL-ESP")
        );
        assert_eq!(fs.volume_id(), 0xABCD_1234);
        assert_eq!(read(&fs, "EFI/BOOT/BOOTX64.EFI"), b"MZ-efi");
        assert_eq!(read(&fs, "loader/loader.conf"), b"timeout 1\n");
        assert_eq!(
            read(&fs, "loader/entries/ostree-1-minimal.conf"),
            b"title x\n"
        );
        assert_eq!(
            read(&fs, "ostree/minimal-abc/vmlinuz-6.12"),
            pattern(3_000_000)
        );
        assert_eq!(read(&fs, "EFI/Linux/Hull-Mixed.Case.efi"), b"");
        // names keep their case
        assert_eq!(names(&fs, ""), ["EFI", "loader", "ostree"]);
        assert_eq!(names(&fs, "EFI"), ["BOOT", "Linux"]);
        assert_eq!(names(&fs, "EFI/Linux"), ["Hull-Mixed.Case.efi"]);
        assert_eq!(names(&fs, "loader"), ["entries", "loader.conf"]);
        // fixed times
        let e = fs
            .root_dir()
            .iter()
            .map(|e| e.unwrap())
            .find(|e| e.file_name() == "loader")
            .unwrap();
        assert_eq!(e.modified().date.year, 1980);
        // the FSInfo sector (sector 1) records the free cluster count
        let stats = fs.stats().unwrap();
        assert!(stats.free_clusters() < stats.total_clusters());
        drop(fs);
        let info = &dev.get_ref()[512..1024];
        assert_eq!(&info[484..488], b"rrAa", "FSInfo signature");
        let free = u32::from_le_bytes(info[488..492].try_into().unwrap());
        assert_eq!(free, stats.free_clusters());
    }

    /// The applier on the FAT backend goes through an update and a prune
    /// as on a mounted ESP (boot/esp.rs tests the same steps there).
    #[test]
    fn the_applier_updates_and_prunes_a_fat_esp() {
        use crate::boot::bls::{BlsEntry, DeploymentKey, PlannedEntry};
        let key = |c: char| DeploymentKey {
            osname: "m".into(),
            csum: c.to_string().repeat(64),
            serial: 0,
        };
        let plan = |keys: &[(char, &str)]| {
            let mut files = vec![EspFile {
                path: "EFI/BOOT/BOOTX64.EFI".into(),
                source: EspSource::Bytes(b"MZ".to_vec()),
            }];
            let mut entries = Vec::new();
            for (c, kdir) in keys {
                files.push(EspFile {
                    path: format!("ostree/{kdir}/vmlinuz"),
                    source: EspSource::Bytes(format!("kernel {kdir}").into_bytes()),
                });
                let text = format!(
                    "title t\noptions ostree=/{}\nlinux /ostree/{kdir}/vmlinuz\n",
                    key(*c).dir()
                );
                entries.push(PlannedEntry {
                    key: key(*c),
                    entry: BlsEntry::parse(&text).unwrap(),
                });
            }
            EspPlan { files, entries }
        };
        let size = 64 * MIB;
        let mut dev = Cursor::new(vec![0u8; size as usize]);
        write_esp(&mut dev, size, "HULL-ESP", &[]).unwrap();
        dev.set_position(0);
        let fs = FileSystem::new(&mut dev, FsOptions::new()).unwrap();
        let mut esp = FatImage {
            root: fs.root_dir(),
        };
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let r = esp_apply::apply(&mut esp, plan(&[('a', "m-k1")]), None).unwrap();
        assert_eq!(r.entries, [format!("hull-1-{a}-0.conf")]);
        assert_eq!(r.copied, ["EFI/BOOT/BOOTX64.EFI", "ostree/m-k1/vmlinuz"]);

        let kb = key('b');
        let r = esp_apply::apply(
            &mut esp,
            plan(&[('b', "m-k2"), ('a', "m-k1")]),
            Some((&kb, 2)),
        )
        .unwrap();
        assert_eq!(r.copied, ["ostree/m-k2/vmlinuz"]);
        assert_eq!(r.entries_written, [format!("hull-2-{b}-0+2.conf")]);
        assert!(r.removed.is_empty(), "{r:?}");
        let text = esp
            .read_to_string(&format!("loader/entries/hull-2-{b}-0+2.conf"))
            .unwrap();
        assert!(text.contains("version 2\n"), "{text}");

        let r = esp_apply::apply(&mut esp, plan(&[('b', "m-k2")]), None).unwrap();
        assert_eq!(
            r.removed,
            [
                format!("loader/entries/hull-1-{a}-0.conf"),
                "ostree/m-k1".to_string()
            ]
        );
        assert_eq!(
            esp.list("loader/entries").unwrap(),
            [format!("hull-2-{b}-0+2.conf")]
        );
        assert_eq!(esp.list("ostree").unwrap(), ["m-k2"]);
        assert!(esp.exists("ostree/m-k2/vmlinuz").unwrap());
        assert!(!esp.exists("ostree/m-k1/vmlinuz").unwrap());
    }

    #[test]
    fn same_input_same_bytes() {
        let t = tempfile::tempdir().unwrap();
        let size = 40 * MIB;
        let write = || {
            let mut dev = Cursor::new(vec![0u8; size as usize]);
            write_esp(&mut dev, size, "HULL-ESP", &files(t.path())).unwrap();
            dev.into_inner()
        };
        assert!(write() == write());
    }

    /// `cluster_size` agrees with what fatfs itself makes of each cluster
    /// size, on both sides of every switch of cluster size.
    #[test]
    fn cluster_sizes_match_fatfs() {
        let t = tempfile::tempdir().unwrap();
        let mut sizes = vec![33 * MIB, 64 * MIB, 100 * MIB, 512 * MIB];
        // the smallest size (in sectors) that takes each cluster size, and one sector less
        for bytes in [512u32, 1024, 2048, 4096] {
            let first = (1..=(1u64 << 24))
                .map(|s| s * SECTOR)
                .find(|&s| best_cluster_size(s) == Some(bytes))
                .unwrap();
            sizes.extend([first - SECTOR, first]);
        }
        for size in sizes {
            let f = tempfile::tempfile_in(t.path()).unwrap();
            f.set_len(size).unwrap();
            for bytes in [512u32, 1024, 2048, 4096] {
                let mut dev = &f;
                dev.seek(SeekFrom::Start(0)).unwrap();
                let opts = FormatVolumeOptions::new()
                    .fat_type(FatType::Fat32)
                    .bytes_per_cluster(bytes);
                let fat32 = fatfs::format_volume(dev, opts).is_ok() && {
                    dev.seek(SeekFrom::Start(0)).unwrap();
                    FileSystem::new(&mut dev, FsOptions::new())
                        .unwrap()
                        .fat_type()
                        == FatType::Fat32
                };
                let ours = (FAT32_MIN_CLUSTERS..=FAT32_MAX_CLUSTERS)
                    .contains(&fat32_clusters(size, bytes.into()));
                assert_eq!(ours, fat32, "{size} bytes, {bytes}-byte clusters");
            }
            if let Ok(bytes) = cluster_size(size) {
                let mut dev = &f;
                write_esp(&mut dev, size, "ESP", &[]).unwrap();
                dev.seek(SeekFrom::Start(0)).unwrap();
                let fs = FileSystem::new(&mut dev, FsOptions::new()).unwrap();
                assert_eq!(fs.fat_type(), FatType::Fat32, "{size}");
                assert_eq!(fs.cluster_size(), bytes, "{size}");
            }
        }
    }

    #[test]
    fn cluster_sizes() {
        for (mib, want) in [
            (33u64, 512u32),
            (64, 512),
            (128, 1024),
            (256, 2048),
            (512, 4096),
            (1024, 4096),
            (1 << 20, 4096),
        ] {
            assert_eq!(cluster_size(mib * MIB).unwrap(), want, "{mib} MiB");
        }
        for size in [0, SECTOR, 16 * MIB, 32 * MIB, MIN_SIZE - MIB, 2 << 40] {
            let err = cluster_size(size).unwrap_err().to_string();
            assert!(err.contains("image.esp-size"), "{err}");
        }
        assert!(cluster_size(MIN_SIZE).is_ok());
    }

    #[test]
    fn too_small_is_an_error() {
        // an empty device: any write would grow it
        let mut dev = Cursor::new(Vec::new());
        let err = write_esp(&mut dev, 32 * MIB, "HULL-ESP", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("image.esp-size"), "{err}");
        assert!(dev.get_ref().is_empty(), "nothing written");
    }

    #[test]
    fn full_esp_is_an_error_naming_the_file() {
        let t = tempfile::tempdir().unwrap();
        let big = t.path().join("big");
        std::fs::write(&big, vec![1u8; 40 << 20]).unwrap();
        let size = 34 * MIB;
        let mut dev = Cursor::new(vec![0u8; size as usize]);
        let f = vec![EspFile {
            path: "ostree/initramfs.img".into(),
            source: EspSource::File(big),
        }];
        let err = format!(
            "{:#}",
            write_esp(&mut dev, size, "HULL-ESP", &f).unwrap_err()
        );
        assert!(err.contains("ostree/initramfs.img"), "{err}");
    }

    #[test]
    fn bad_paths_fail_before_writing() {
        let file = |p: &str| EspFile {
            path: p.into(),
            source: EspSource::Bytes(b"x".to_vec()),
        };
        for (paths, what) in [
            (vec!["/EFI/BOOT/BOOTX64.EFI"], "/EFI"),
            (vec!["EFI//BOOT"], "EFI//BOOT"),
            (vec!["EFI/../x"], "EFI/../x"),
            (vec!["./x"], "./x"),
            (vec!["a/"], "a/"),
            (vec![""], "\"\""),
            (vec!["a:b"], "a:b"),
            (
                vec!["loader/loader.conf", "LOADER/Loader.conf"],
                "given twice",
            ),
        ] {
            let files: Vec<EspFile> = paths.iter().map(|p| file(p)).collect();
            let mut dev = Cursor::new(Vec::new());
            let err = write_esp(&mut dev, 64 * MIB, "HULL-ESP", &files)
                .unwrap_err()
                .to_string();
            assert!(err.contains(what), "{paths:?}: {err}");
            assert!(dev.get_ref().is_empty(), "nothing written");
        }
    }

    #[test]
    fn missing_source_is_named() {
        let size = 33 * MIB;
        let mut dev = Cursor::new(vec![0u8; size as usize]);
        let f = [EspFile {
            path: "EFI/BOOT/BOOTX64.EFI".into(),
            source: EspSource::File("/nonexistent/systemd-bootx64.efi".into()),
        }];
        let err = format!("{:#}", write_esp(&mut dev, size, "E", &f).unwrap_err());
        assert!(err.contains("/nonexistent/systemd-bootx64.efi"), "{err}");
    }

    #[test]
    fn labels() {
        assert!(fat_label("MUCH-TOO-LONG-LABEL").is_err());
        assert!(fat_label("").is_err());
        assert!(fat_label("A.B").is_err());
        assert!(fat_label("ÉSP").is_err());
        assert_eq!(&fat_label("esp").unwrap(), b"ESP        ");
        assert_eq!(&fat_label("HULL-ESP").unwrap(), b"HULL-ESP   ");
        assert_eq!(&fat_label("MY ESP_1").unwrap(), b"MY ESP_1   ");
    }
}
