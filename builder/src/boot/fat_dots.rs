//! Standard `.` and `..` entries in every directory of a FAT volume that
//! `fatfs` wrote.
//!
//! `fatfs` 0.3 writes a new directory's `.` and `..` through its ordinary
//! entry writer, so each gets a long-name slot in front of it (rust-fatfs
//! issue #117), and `..` of a child of the FAT32 root names the root's
//! cluster where the FAT specification says 0. `fsck.fat` then moves `.`,
//! renames `..` and deletes entries; so would the `fsck.fat -a` that
//! systemd-fsck runs on the ESP at every boot. [`standardize`] rewrites each
//! directory's first two slots as the short `.` and `..` entries the
//! specification asks for and marks the slots they came from deleted
//! (`0xE5`). It depends only on the volume's bytes, so the same volume gives
//! the same result (reproducible images), and running it twice changes
//! nothing.

use std::collections::BTreeSet;
use std::io::{Read, Seek, Write};

use anyhow::{bail, ensure, Context, Result};

use super::fat_volume::{set_first_cluster, subdirs, Volume, ATTR_LONG_NAME, DELETED, DOT, DOTDOT};

/// The slot writes that make directory `dir` (whose parent is `parent`, 0
/// for the root) start with `.` and `..`: (byte offset, new slot). Empty
/// when it already does, with the right clusters.
fn dot_fix(dir: u32, parent: u32, slots: &[(u64, [u8; 32])]) -> Result<Vec<(u64, [u8; 32])>> {
    let find = |name: &[u8; 11]| {
        slots.iter().position(|(_, s)| {
            s[0] != DELETED && &s[..11] == name && s[11] & ATTR_LONG_NAME != ATTR_LONG_NAME
        })
    };
    let (Some(dot), Some(dotdot)) = (find(DOT), find(DOTDOT)) else {
        bail!("directory at cluster {dir} has no '.' or no '..' entry");
    };
    let last = dot.max(dotdot);
    // Only long-name slots may stand between the start and the dot entries:
    // anything else would be an entry of the directory moved by the fix.
    if let Some((i, _)) = slots[..last]
        .iter()
        .enumerate()
        .find(|(i, (_, s))| *i != dot && *i != dotdot && s[11] & ATTR_LONG_NAME != ATTR_LONG_NAME)
    {
        bail!("directory at cluster {dir} has an entry in slot {i} before its '.' and '..'");
    }
    let mut new: Vec<[u8; 32]> = slots[..=last].iter().map(|(_, s)| *s).collect();
    let (mut d, mut dd) = (slots[dot].1, slots[dotdot].1);
    set_first_cluster(&mut d, dir);
    set_first_cluster(&mut dd, parent);
    new[0] = d;
    new[1] = dd;
    for s in &mut new[2..] {
        s[0] = DELETED;
    }
    Ok(slots[..=last]
        .iter()
        .zip(new)
        .filter(|((_, old), new)| old != new)
        .map(|((offset, _), new)| (*offset, new))
        .collect())
}

/// Rewrites every directory of the FAT16 or FAT32 volume on `dev` (from
/// byte 0) so that its first two slots are the short `.` and `..` entries,
/// `..` naming cluster 0 in a child of the root; slots left over are marked
/// deleted. Returns how many directories changed. Errors name what is wrong
/// with the volume (no boot sector, a broken chain, a directory without dot
/// entries); nothing is written for a directory that cannot be fixed.
pub fn standardize<T: Read + Write + Seek>(dev: &mut T) -> Result<usize> {
    let mut vol = Volume::open(dev)?;
    let root_slots = vol.slots(None).context("reading the root directory")?;
    // (directory, parent): a child of the root has parent 0.
    let mut todo: Vec<(u32, u32)> = subdirs(&root_slots)
        .into_iter()
        .map(|(_, d)| d)
        .rev()
        .map(|d| (d, 0))
        .collect();
    let mut seen = BTreeSet::new();
    let mut changed = 0;
    while let Some((dir, parent)) = todo.pop() {
        ensure!(seen.insert(dir), "directory cluster {dir} is listed twice");
        let slots = vol
            .slots(Some(dir))
            .with_context(|| format!("reading the directory at cluster {dir}"))?;
        let writes = dot_fix(dir, parent, &slots)?;
        if !writes.is_empty() {
            changed += 1;
        }
        for (offset, slot) in &writes {
            vol.write_at(*offset, slot)?;
        }
        todo.extend(subdirs(&slots).into_iter().rev().map(|(_, d)| (d, dir)));
    }
    vol.dev.flush().context("flushing the FAT volume")?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::super::fat_volume::test_support::{assert_clean, fsck, image, open_rw};
    use super::super::fat_volume::{first_cluster, ATTR_DIRECTORY};
    use super::*;
    use crate::boot::fat::{write_esp, EspFile, EspSource};
    use fatfs::{FileSystem, FormatVolumeOptions, FsOptions};
    use std::fs::File;
    use std::path::Path;

    const MIB: u64 = 1 << 20;

    /// Nested directories, long names, names that differ only in case from
    /// their short names, as a real ESP has.
    fn paths() -> Vec<String> {
        let sum = "0123456789abcdef".repeat(4);
        vec![
            "EFI/BOOT/BOOTX64.EFI".into(),
            "EFI/Linux/Hull-Mixed.Case.efi".into(),
            "loader/loader.conf".into(),
            format!("loader/entries/hull-1-{sum}-0+3.conf"),
            format!("ostree/minimal-{sum}/vmlinuz-6.12.57+deb13-cloud-amd64"),
            format!("ostree/minimal-{sum}/initramfs-6.12.57+deb13-cloud-amd64.img"),
            "a/Long Directory Name With Spaces/deeper.dir.name/x".into(),
        ]
    }

    fn content(path: &str) -> Vec<u8> {
        path.bytes().cycle().take(5000).collect()
    }

    /// `paths()` written with fatfs alone (no fix-up) onto a fresh `fat_type`
    /// volume of `size` bytes, as `boot/fat.rs` writes them.
    fn fatfs_volume(img: &Path, fat_type: fatfs::FatType, size: u64, cluster: u32) {
        let f = image(img, size);
        let opts = FormatVolumeOptions::new()
            .fat_type(fat_type)
            .bytes_per_cluster(cluster)
            .volume_id(7)
            .volume_label(*b"HULL-ESP   ");
        fatfs::format_volume(&f, opts).unwrap();
        let fs = FileSystem::new(&f, FsOptions::new()).unwrap();
        assert_eq!(fs.fat_type(), fat_type);
        for p in paths() {
            let (dirs, name) = p.rsplit_once('/').unwrap();
            let mut d = fs.root_dir();
            for part in dirs.split('/') {
                d = d.create_dir(part).unwrap();
            }
            d.create_file(name)
                .unwrap()
                .write_all(&content(&p))
                .unwrap();
        }
        // Fills in FSInfo's free cluster count, as write_esp does.
        fs.stats().unwrap();
        fs.unmount().unwrap();
    }

    /// Every file of `paths()` reads back through fatfs.
    fn assert_reads_back(img: &Path) {
        let f = File::open(img).unwrap();
        let fs = FileSystem::new(&f, FsOptions::new()).unwrap();
        for p in paths() {
            let mut v = Vec::new();
            fs.root_dir()
                .open_file(&p)
                .unwrap()
                .read_to_end(&mut v)
                .unwrap();
            assert_eq!(v, content(&p), "{p}");
        }
    }

    /// The first two slots of the root's subdirectory `short` (11 bytes).
    fn dot_slots(img: &Path, short: &[u8; 11]) -> ([u8; 32], [u8; 32]) {
        let mut f = open_rw(img);
        let mut vol = Volume::open(&mut f).unwrap();
        let root = vol.slots(None).unwrap();
        let (_, e) = root.iter().find(|(_, s)| &s[..11] == short).unwrap();
        let slots = vol.slots(Some(first_cluster(e))).unwrap();
        (slots[0].1, slots[1].1)
    }

    /// FAT16 and FAT32 volumes as fatfs writes them: fsck.fat finds fault
    /// with every directory; after the fix-up it finds none, every file
    /// reads back, and a second fix-up changes nothing.
    #[test]
    fn fixed_volumes_pass_fsck() {
        use fatfs::FatType::{Fat16, Fat32};
        let t = tempfile::tempdir().unwrap();
        // The directories paths() makes: EFI, BOOT, Linux, loader, entries,
        // ostree, minimal-…, a, Long…, deeper….
        let dirs = 10;
        for (fat_type, size, cluster) in [
            (Fat16, 64 * MIB, 2048),
            (Fat16, 256 * MIB, 4096),
            (Fat32, 64 * MIB, 512),
            (Fat32, 256 * MIB, 2048),
        ] {
            let what = format!("{fat_type:?}, {} MiB", size >> 20);
            let img = t.path().join(format!("{fat_type:?}-{size}.img"));
            fatfs_volume(&img, fat_type, size, cluster);
            if let Some((ok, text)) = fsck(&img) {
                assert!(
                    !ok && text.contains("Expected a valid '.' entry"),
                    "{what}, unfixed:\n{text}"
                );
            }
            let mut f = open_rw(&img);
            assert_eq!(standardize(&mut f).unwrap(), dirs, "{what}");
            let fixed = std::fs::read(&img).unwrap();
            assert_eq!(standardize(&mut f).unwrap(), 0, "{what}: a second run");
            drop(f);
            assert!(
                std::fs::read(&img).unwrap() == fixed,
                "{what}: a second run wrote"
            );
            let (dot, dotdot) = dot_slots(&img, b"EFI        ");
            assert_eq!(&dot[..11], DOT, "{what}");
            assert_eq!(&dotdot[..11], DOTDOT, "{what}");
            assert_eq!(
                first_cluster(&dotdot),
                0,
                "{what}: '..' of a child of the root"
            );
            assert_reads_back(&img);
            assert_clean(&img, &what);
        }
    }

    /// hull's own writer (`write_esp`) runs the fix-up: its FAT32 volumes
    /// pass fsck.fat as they are.
    #[test]
    fn write_esp_passes_fsck() {
        let t = tempfile::tempdir().unwrap();
        let files: Vec<EspFile> = paths()
            .into_iter()
            .map(|p| EspFile {
                source: EspSource::Bytes(content(&p)),
                path: p,
            })
            .collect();
        for size in [64 * MIB, 256 * MIB] {
            let img = t.path().join(format!("esp-{size}.img"));
            let f = image(&img, size);
            write_esp(&f, size, "HULL-ESP", &files).unwrap();
            drop(f);
            let (_, dotdot) = dot_slots(&img, b"LOADER     ");
            assert_eq!((&dotdot[..11], first_cluster(&dotdot)), (&DOTDOT[..], 0));
            assert_reads_back(&img);
            assert_clean(&img, &format!("write_esp, {} MiB", size >> 20));
        }
    }

    #[test]
    fn not_a_fat_volume_is_an_error() {
        let mut dev = std::io::Cursor::new(vec![0u8; 4096]);
        let err = format!("{:#}", standardize(&mut dev).unwrap_err());
        assert!(
            err.contains("FAT geometry") && err.contains("signature"),
            "{err}"
        );
        assert!(dev.get_ref().iter().all(|&b| b == 0), "nothing written");
    }

    /// A directory whose own entries stand before its dot entries is refused
    /// (fixing it would drop them), before anything is written.
    #[test]
    fn entries_before_the_dots_are_refused() {
        let slot = |name: &[u8; 11], attr: u8| {
            let mut s = [0u8; 32];
            s[..11].copy_from_slice(name);
            s[11] = attr;
            s
        };
        let slots = vec![
            (0, slot(b"FILE    TXT", 0x20)),
            (32, slot(DOT, ATTR_DIRECTORY)),
            (64, slot(DOTDOT, ATTR_DIRECTORY)),
        ];
        let err = dot_fix(5, 0, &slots).unwrap_err().to_string();
        assert!(err.contains("cluster 5") && err.contains("slot 0"), "{err}");
        let err = dot_fix(5, 0, &slots[..2]).unwrap_err().to_string();
        assert!(err.contains("no '.' or no '..'"), "{err}");
        // Standard already, but '..' names the root's cluster: only that changes.
        let mut dd = slot(DOTDOT, ATTR_DIRECTORY);
        set_first_cluster(&mut dd, 0x1_0002);
        let mut d = slot(DOT, ATTR_DIRECTORY);
        set_first_cluster(&mut d, 5);
        let w = dot_fix(5, 0, &[(0, d), (32, dd)]).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].0, first_cluster(&w[0].1)), (32, 0));
    }
}
