//! Directory slots that a power cut left half-written on a host's ESP,
//! cleared before the ESP is checked and mounted
//! (`boot/hull-esp-repair.service`, `hull esp-repair`).
//!
//! Linux's vfat driver writes a new name's slots (its long-name parts, then
//! its short entry) through the buffer cache, one sector at a time, and a
//! power cut can land any subset of those sectors. Two shapes follow, and
//! `fsck.fat -a` (what systemd-fsck runs) fixes neither:
//! - **Slots after an end marker** (a slot whose first byte is 0x00): a
//!   name appended at the directory's end whose later sector reached the
//!   disk and whose first did not. Linux 6.12 then stops with "allocated
//!   dir entry found after end-of-directory marker" and remounts the ESP
//!   read-only, so no update can write its entries again. The FAT
//!   specification says that nothing after an end marker is part of the
//!   directory (a firmware's FAT driver never reads it), so those slots are
//!   zeroed.
//! - **Long-name parts that do not end in their short entry** (a part
//!   missing, out of order, or with another name's checksum). fsck.fat
//!   reports "Long filename fragment … found outside a LFN sequence" and
//!   leaves it; the parts name nothing, so they are marked deleted (0xE5).
//!
//! A short entry found only after an end marker was never part of the
//! directory; its clusters, if any, are a lost chain, which the `fsck.fat
//! -a` that runs right after frees. Everything else is left alone: the fix
//! is the plan of one directory at a time ([`plan_dir`], plain data, tested
//! as a table), and a volume without these shapes is not written at all.

use std::collections::BTreeSet;
use std::io::{Read, Seek, Write};

use anyhow::{ensure, Context, Result};
use serde::Serialize;

use super::fat_volume::{end_of_dir, subdirs, Volume, ATTR_LONG_NAME, DELETED, END_OF_DIR};

/// A long-name part's first byte: its order (1 ..= 20) and this flag on the
/// part stored first, which holds the end of the name.
const LAST_LONG_PART: u8 = 0x40;
/// A name is at most 255 characters, 13 to a part.
const MAX_LONG_PARTS: u8 = 20;

/// What is done to one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlotFix {
    /// After an end marker: all 32 bytes become 0.
    Zero,
    /// A stray long-name part: its first byte becomes 0xE5.
    Delete,
}

/// The fixes of one directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirRepair {
    /// The directory's path from short names, e.g. `LOADER/ENTRIES`; `/`
    /// for the root.
    pub path: String,
    /// Slots zeroed: they followed the end marker.
    pub zeroed: usize,
    /// Long-name parts marked deleted.
    pub deleted: usize,
}

/// What [`repair`] found (and, unless it was a dry run, fixed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    /// Directories read.
    pub directories: usize,
    /// The directories with something to fix, in the order they were read.
    pub fixed: Vec<DirRepair>,
}

impl RepairReport {
    /// One line for the journal: `nothing to repair (N directories)` or
    /// what each directory had.
    pub fn summary(&self) -> String {
        if self.fixed.is_empty() {
            return format!("nothing to repair ({} directories)", self.directories);
        }
        let parts: Vec<String> = self
            .fixed
            .iter()
            .map(|d| {
                format!(
                    "{}: {} slot(s) after the end marker zeroed, {} stray long-name part(s) deleted",
                    d.path, d.zeroed, d.deleted
                )
            })
            .collect();
        parts.join("; ")
    }
}

fn is_long_part(s: &[u8; 32]) -> bool {
    s[0] != END_OF_DIR && s[0] != DELETED && s[11] & 0x3F == ATTR_LONG_NAME
}

fn is_short_entry(s: &[u8; 32]) -> bool {
    s[0] != END_OF_DIR && s[0] != DELETED && s[11] & 0x3F != ATTR_LONG_NAME
}

/// The checksum of a short name (its 11 bytes) that each of its long-name
/// parts carries in byte 13 (FAT specification, "ChkSum").
fn short_name_checksum(name: &[u8]) -> u8 {
    name[..11]
        .iter()
        .fold(0u8, |sum, &b| sum.rotate_right(1).wrapping_add(b))
}

/// How many slots from `i` form a whole long name and its short entry
/// (parts N, N-1, …, 1, the first flagged last, one checksum, then a short
/// entry with that checksum); `None` when they do not.
fn whole_name_at(slots: &[[u8; 32]], i: usize) -> Option<usize> {
    let first = slots[i];
    if first[0] & LAST_LONG_PART == 0 {
        return None;
    }
    let n = first[0] & !LAST_LONG_PART;
    if !(1..=MAX_LONG_PARTS).contains(&n) {
        return None;
    }
    let n = usize::from(n);
    let checksum = first[13];
    for k in 1..n {
        let s = slots.get(i + k)?;
        if !is_long_part(s) || usize::from(s[0]) != n - k || s[13] != checksum {
            return None;
        }
    }
    let short = slots.get(i + n)?;
    (is_short_entry(short) && short_name_checksum(&short[..11]) == checksum).then_some(n + 1)
}

/// The fixes directory `slots` (every slot of its clusters, in order) needs:
/// (slot index, fix), in index order; empty for a sound directory.
pub fn plan_dir(slots: &[[u8; 32]]) -> Vec<(usize, SlotFix)> {
    let end = slots
        .iter()
        .position(|s| s[0] == END_OF_DIR)
        .unwrap_or(slots.len());
    let mut fixes = Vec::new();
    let mut i = 0;
    while i < end {
        if !is_long_part(&slots[i]) {
            i += 1;
            continue;
        }
        match whole_name_at(&slots[..end], i) {
            Some(len) => i += len,
            None => {
                fixes.push((i, SlotFix::Delete));
                i += 1;
            }
        }
    }
    fixes.extend(
        (end + 1..slots.len())
            .filter(|&k| slots[k][0] != END_OF_DIR)
            .map(|k| (k, SlotFix::Zero)),
    );
    fixes
}

/// Finds, in every directory of the FAT16 or FAT32 volume on `dev` (from
/// byte 0), the slots [`plan_dir`] would fix, and fixes them unless
/// `dry_run`. The caller syncs `dev`. Errors name the directory that cannot
/// be read (a broken cluster chain, a loop); a directory that cannot be read
/// is not written.
pub fn repair<T: Read + Write + Seek>(dev: &mut T, dry_run: bool) -> Result<RepairReport> {
    let mut vol = Volume::open(dev)?;
    let mut report = RepairReport::default();
    // (path, first cluster; None: the root), depth first in listing order.
    let mut todo: Vec<(String, Option<u32>)> = vec![("/".to_string(), None)];
    let mut seen = BTreeSet::new();
    while let Some((path, dir)) = todo.pop() {
        if let Some(c) = dir {
            ensure!(
                seen.insert(c),
                "directory {path} (cluster {c}) is listed twice"
            );
        }
        let slots = vol
            .all_slots(dir)
            .with_context(|| format!("reading directory {path} on the ESP"))?;
        report.directories += 1;
        let bytes: Vec<[u8; 32]> = slots.iter().map(|(_, s)| *s).collect();
        let fixes = plan_dir(&bytes);
        // The fixes touch only long-name parts and slots past the end
        // marker, never a subdirectory's short entry.
        let children = subdirs(&slots[..end_of_dir(&slots)]);
        if !fixes.is_empty() {
            let count = |f: SlotFix| fixes.iter().filter(|(_, x)| *x == f).count();
            report.fixed.push(DirRepair {
                path: path.clone(),
                zeroed: count(SlotFix::Zero),
                deleted: count(SlotFix::Delete),
            });
            if !dry_run {
                for (i, fix) in &fixes {
                    let offset = slots[*i].0;
                    match fix {
                        SlotFix::Zero => vol.write_at(offset, &[0u8; 32])?,
                        SlotFix::Delete => vol.write_at(offset, &[DELETED])?,
                    }
                }
            }
        }
        let prefix = if dir.is_none() {
            String::new()
        } else {
            format!("{path}/")
        };
        todo.extend(
            children
                .into_iter()
                .rev()
                .map(|(name, c)| (format!("{prefix}{name}"), Some(c))),
        );
    }
    vol.dev.flush().context("flushing the ESP")?;
    Ok(report)
}

/// Every slot of the directory at `path` (short names from the root,
/// matched without regard to case, e.g. `["LOADER", "ENTRIES"]`) on the FAT
/// volume on `dev`, as (byte offset, bytes): what the power-cut test tears.
/// Errors name the part of `path` that is not a directory there.
pub fn directory_slots<T: Read + Write + Seek>(
    dev: &mut T,
    path: &[&str],
) -> Result<Vec<(u64, [u8; 32])>> {
    let mut vol = Volume::open(dev)?;
    let mut dir = None;
    for (depth, part) in path.iter().enumerate() {
        let Some((_, cluster)) = subdirs(&vol.slots(dir)?)
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(part))
        else {
            anyhow::bail!("no directory {} on the volume", path[..=depth].join("/"));
        };
        dir = Some(cluster);
    }
    vol.all_slots(dir)
}

/// `hull esp-repair`: repairs the FAT volume on block device (or image)
/// `device`, which must not be mounted (it is opened exclusively, which
/// Linux refuses for a mounted block device), and syncs it.
pub fn run_cli(device: &std::path::Path, dry_run: bool) -> Result<RepairReport> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .write(!dry_run)
        .custom_flags(rustix::fs::OFlags::EXCL.bits() as i32)
        .open(device)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
            anyhow::bail!(
                "{} is in use (mounted?): a mounted ESP cannot be repaired, unmount it first",
                device.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", device.display())),
    };
    let report =
        repair(&mut f, dry_run).with_context(|| format!("repairing {}", device.display()))?;
    if !dry_run && !report.fixed.is_empty() {
        f.sync_all()
            .with_context(|| format!("syncing {}", device.display()))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::super::fat_volume::test_support::{assert_clean, fsck, image, open_rw};
    use super::*;
    use crate::boot::fat::{write_esp, EspFile, EspSource};
    use std::path::Path;

    const MIB: u64 = 1 << 20;

    /// A short entry named `name` (11 bytes), a file.
    fn short(name: &[u8; 11]) -> [u8; 32] {
        let mut s = [0u8; 32];
        s[..11].copy_from_slice(name);
        s[11] = 0x20;
        s
    }

    /// Long-name part `ord` (with the last flag when `last`) of a name whose
    /// short entry is `name`.
    fn part(ord: u8, last: bool, name: &[u8; 11]) -> [u8; 32] {
        let mut s = [0xFFu8; 32];
        s[0] = ord | if last { LAST_LONG_PART } else { 0 };
        s[1..11].copy_from_slice(&[b'x', 0, b'y', 0, b'z', 0, 0, 0, 0xFF, 0xFF]);
        s[11] = ATTR_LONG_NAME;
        s[12] = 0;
        s[13] = short_name_checksum(name);
        s[26] = 0;
        s[27] = 0;
        s
    }

    /// A whole name of `n` parts and its short entry, in disk order.
    fn name(n: u8, short_name: &[u8; 11]) -> Vec<[u8; 32]> {
        let mut v: Vec<[u8; 32]> = (1..=n).rev().map(|o| part(o, o == n, short_name)).collect();
        v.push(short(short_name));
        v
    }

    fn deleted(mut s: [u8; 32]) -> [u8; 32] {
        s[0] = DELETED;
        s
    }

    const A: &[u8; 11] = b"HULL-1~1CON";
    const B: &[u8; 11] = b"HULL-T~1CON";
    const FREE: [u8; 32] = [0u8; 32];

    /// The checksum is the specification's: its worked example.
    #[test]
    fn checksum_matches_the_specification() {
        // Sum over "FOO     BAR" by hand with ((s & 1) << 7) + (s >> 1) + c.
        let mut sum: u8 = 0;
        for &c in b"FOO     BAR" {
            sum = (((sum & 1) << 7) | (sum >> 1)).wrapping_add(c);
        }
        assert_eq!(short_name_checksum(b"FOO     BAR"), sum);
        assert_ne!(short_name_checksum(A), short_name_checksum(B));
    }

    /// Each shape a torn write leaves, and sound directories left alone.
    #[test]
    fn plans_one_directory() {
        let cat = |parts: &[Vec<[u8; 32]>]| parts.concat();
        let a = name(3, A);
        let b = name(2, B);
        type Case = (&'static str, Vec<[u8; 32]>, Vec<(usize, SlotFix)>);
        let cases: Vec<Case> = vec![
            ("empty", vec![FREE; 4], vec![]),
            (
                "whole names",
                cat(&[a.clone(), b.clone(), vec![FREE; 3]]),
                vec![],
            ),
            (
                "deleted slots between names",
                cat(&[
                    a.clone(),
                    vec![deleted(part(1, false, B))],
                    b.clone(),
                    vec![FREE],
                ]),
                vec![],
            ),
            ("no end marker at all", cat(&[a.clone(), b.clone()]), vec![]),
            (
                // The first sector of B's slots never reached the disk.
                "B's tail after the end marker",
                cat(&[a.clone(), vec![FREE, FREE], b[1..].to_vec(), vec![FREE]]),
                vec![(6, SlotFix::Zero), (7, SlotFix::Zero)],
            ),
            (
                "a whole name after the end marker",
                cat(&[a.clone(), vec![FREE], b.clone()]),
                vec![(5, SlotFix::Zero), (6, SlotFix::Zero), (7, SlotFix::Zero)],
            ),
            (
                "deleted slots after the end marker are zeroed too",
                cat(&[vec![FREE], vec![deleted(short(A))]]),
                vec![(1, SlotFix::Zero)],
            ),
            (
                // B's first part landed, its short entry did not.
                "parts without their short entry",
                cat(&[a.clone(), b[..2].to_vec(), vec![FREE]]),
                vec![(4, SlotFix::Delete), (5, SlotFix::Delete)],
            ),
            (
                "parts without the part flagged last",
                cat(&[b[1..].to_vec(), a.clone()]),
                vec![(0, SlotFix::Delete)],
            ),
            (
                "a part missing in the middle",
                cat(&[vec![a[0], a[2], a[3]], b.clone()]),
                vec![(0, SlotFix::Delete), (1, SlotFix::Delete)],
            ),
            (
                "parts of another name's short entry",
                cat(&[a[..3].to_vec(), vec![short(B)], vec![FREE]]),
                vec![
                    (0, SlotFix::Delete),
                    (1, SlotFix::Delete),
                    (2, SlotFix::Delete),
                ],
            ),
            (
                "a short name without long parts",
                cat(&[vec![short(A)], b.clone()]),
                vec![],
            ),
            (
                "a stray part and slots after the end",
                cat(&[vec![part(2, false, A)], vec![FREE], vec![short(B)]]),
                vec![(0, SlotFix::Delete), (2, SlotFix::Zero)],
            ),
        ];
        for (what, slots, want) in cases {
            assert_eq!(plan_dir(&slots), want, "{what}");
        }
    }

    /// Every slot of directory `path` on the volume in `img`.
    fn dir_slots(img: &Path, path: &[&str]) -> Vec<(u64, [u8; 32])> {
        let mut f = open_rw(img);
        directory_slots(&mut f, path).unwrap()
    }

    fn write_at(img: &Path, offset: u64, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
        f.write_all_at(bytes, offset).unwrap();
    }

    /// A hull ESP (`write_esp`) with the two shapes a cut in the entries
    /// directory left in the power-cut test: a new entry's long-name tail
    /// and short entry after the end marker, and a stray part before it.
    /// fsck.fat reports them and does not fix them; `repair` clears them,
    /// fsck.fat then finds nothing, the files read back, a second run
    /// writes nothing, and a dry run writes nothing either.
    #[test]
    fn repairs_a_torn_entries_directory() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("esp.img");
        let sum = "0123456789abcdef".repeat(4);
        let entry = format!("loader/entries/hull-1-{sum}-0+3.conf");
        let files = vec![
            EspFile {
                path: "EFI/BOOT/BOOTX64.EFI".into(),
                source: EspSource::Bytes(vec![1; 3000]),
            },
            EspFile {
                path: entry.clone(),
                source: EspSource::Bytes(b"title hull\n".to_vec()),
            },
        ];
        let size = 64 * MIB;
        let f = image(&img, size);
        write_esp(&f, size, "HULL-ESP", &files).unwrap();
        drop(f);
        let entries = &["loader", "entries"];
        let slots = dir_slots(&img, entries);
        let end = slots.iter().position(|(_, s)| s[0] == END_OF_DIR).unwrap();
        // The tail (parts 2, 1 and the short entry) of a 3-part name, one
        // slot past the end marker: its first part's sector was lost.
        let torn = name(3, B);
        for (k, s) in torn[1..].iter().enumerate() {
            write_at(&img, slots[end + 1 + k].0, s);
        }
        let torn_bytes = std::fs::read(&img).unwrap();
        if let Some((ok, text)) = fsck(&img) {
            // It exits 0 and leaves them, as systemd-fsck's `-a` does.
            assert!(
                ok && text.contains("Long filename fragment")
                    && text.contains("Not auto-correcting"),
                "torn, fsck.fat:\n{text}"
            );
        }
        let mut dry = std::fs::File::open(&img).unwrap();
        let plan = repair(&mut ReadOnly(&mut dry), true).unwrap();
        assert_eq!(
            plan.fixed,
            vec![DirRepair {
                path: "LOADER/ENTRIES".into(),
                zeroed: 3,
                deleted: 0
            }]
        );
        assert!(plan.directories >= 5, "{plan:?}");
        assert!(
            plan.summary().contains("LOADER/ENTRIES: 3 slot(s)"),
            "{}",
            plan.summary()
        );
        let mut f = open_rw(&img);
        let done = repair(&mut f, false).unwrap();
        assert_eq!(done, plan);
        drop(f);
        let fixed = std::fs::read(&img).unwrap();
        let slots_after = dir_slots(&img, entries);
        assert!(slots_after[end..].iter().all(|(_, s)| *s == FREE));
        // The same bytes as before the tear: only the torn slots changed.
        assert!(fixed == with_zeroed(&torn_bytes, &slots, end, torn.len() - 1));
        assert_clean(&img, "repaired");
        let mut f = open_rw(&img);
        let again = repair(&mut f, false).unwrap();
        assert!(again.fixed.is_empty(), "{again:?}");
        assert!(again.summary().starts_with("nothing to repair"));
        drop(f);
        assert!(std::fs::read(&img).unwrap() == fixed, "a second run wrote");
        let fs =
            fatfs::FileSystem::new(std::fs::File::open(&img).unwrap(), fatfs::FsOptions::new());
        let fs = fs.unwrap();
        let mut text = String::new();
        fs.root_dir()
            .open_file(&entry)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "title hull\n");
    }

    /// `bytes` with the `n` slots after `slots[end]` zeroed: what the
    /// volume held before the torn slots were written.
    fn with_zeroed(bytes: &[u8], slots: &[(u64, [u8; 32])], end: usize, n: usize) -> Vec<u8> {
        let mut v = bytes.to_vec();
        for (offset, _) in &slots[end + 1..end + 1 + n] {
            let o = *offset as usize;
            v[o..o + 32].fill(0);
        }
        v
    }

    /// A device that cannot be written: a dry run must not try.
    struct ReadOnly<'a>(&'a mut std::fs::File);

    impl Read for ReadOnly<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }
    impl Seek for ReadOnly<'_> {
        fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
            self.0.seek(pos)
        }
    }
    impl Write for ReadOnly<'_> {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            panic!("a dry run wrote")
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A stray part before the end marker is deleted in place.
    #[test]
    fn deletes_a_stray_part_on_a_volume() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("esp.img");
        let size = 64 * MIB;
        let f = image(&img, size);
        let files = vec![EspFile {
            path: "loader/loader.conf".into(),
            source: EspSource::Bytes(b"timeout 0\n".to_vec()),
        }];
        write_esp(&f, size, "HULL-ESP", &files).unwrap();
        drop(f);
        let loader = &["LOADER"];
        let slots = dir_slots(&img, loader);
        let end = slots.iter().position(|(_, s)| s[0] == END_OF_DIR).unwrap();
        // A stray part, then an end marker again right after it.
        write_at(&img, slots[end].0, &part(2, false, B));
        let mut f = open_rw(&img);
        let r = repair(&mut f, false).unwrap();
        assert_eq!(
            r.fixed,
            vec![DirRepair {
                path: "LOADER".into(),
                zeroed: 0,
                deleted: 1
            }]
        );
        drop(f);
        let after = dir_slots(&img, loader);
        assert_eq!(after[end].1[0], DELETED);
        assert_clean(&img, "a stray part deleted");
    }

    #[test]
    fn a_missing_directory_is_named() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("esp.img");
        let f = image(&img, 64 * MIB);
        write_esp(&f, 64 * MIB, "HULL-ESP", &[]).unwrap();
        drop(f);
        let mut f = open_rw(&img);
        let err = directory_slots(&mut f, &["loader", "entries"]).unwrap_err();
        assert_eq!(err.to_string(), "no directory loader on the volume");
    }

    /// The command on an image file: a dry run plans and writes nothing, a
    /// run repairs; a missing device is named.
    #[test]
    fn run_cli_on_an_image() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("esp.img");
        let f = image(&img, 64 * MIB);
        let files = vec![EspFile {
            path: "loader/loader.conf".into(),
            source: EspSource::Bytes(b"timeout 0\n".to_vec()),
        }];
        write_esp(&f, 64 * MIB, "HULL-ESP", &files).unwrap();
        drop(f);
        let slots = dir_slots(&img, &["loader"]);
        let end = slots.iter().position(|(_, s)| s[0] == END_OF_DIR).unwrap();
        write_at(&img, slots[end + 1].0, &short(B));
        let torn = std::fs::read(&img).unwrap();
        let plan = run_cli(&img, true).unwrap();
        assert_eq!(plan.fixed.len(), 1, "{plan:?}");
        assert!(std::fs::read(&img).unwrap() == torn, "a dry run wrote");
        assert_eq!(run_cli(&img, false).unwrap(), plan);
        assert!(run_cli(&img, false).unwrap().fixed.is_empty());
        let missing = t.path().join("nope");
        let err = format!("{:#}", run_cli(&missing, false).unwrap_err());
        assert!(
            err.starts_with(&format!("opening {}", missing.display())) && !err.contains("mounted"),
            "{err}"
        );
    }

    #[test]
    fn not_a_fat_volume_is_an_error() {
        let mut dev = std::io::Cursor::new(vec![0u8; 4096]);
        let err = format!("{:#}", repair(&mut dev, false).unwrap_err());
        assert!(err.contains("FAT geometry"), "{err}");
    }
}
