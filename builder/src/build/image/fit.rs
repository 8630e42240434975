//! Does the tree fit the root file system? Checked before `mkfs.ext4 -d`
//! copies it in, whose own failure ("Could not allocate block") names neither
//! `image.size` nor how much room is missing.
//!
//! The room is not modelled: [`super::disk`] makes the empty file system
//! first, with the very options of the real one, and [`Room::read`] takes
//! its free blocks and inodes from the superblock; only what the tree needs
//! is an estimate ([`usage`]), rounded up. [`measure`] first takes a bound
//! from the entries' metadata alone ([`usage_bound`]) and reads the files
//! only when that bound does not fit: a tree with room to spare is not
//! read twice (here and by mkfs).

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cap_std::fs::{Dir, MetadataExt};

const MIB: u64 = 1 << 20;
/// Inline symlink targets: ext4 keeps a target shorter than this in the inode.
const FAST_SYMLINK_MAX: u64 = 60;
/// Blocks one extent covers at most (ext4's limit for initialized extents).
const EXTENT_BLOCKS: u64 = 32768;
/// Extents an inode holds without a separate index block.
const INLINE_EXTENTS: u64 = 4;
/// A directory block's checksum tail (metadata_csum).
const DIR_TAIL: u64 = 12;
/// Bytes of a directory entry besides its name (inode, lengths, type).
const DIRENT_HEAD: u64 = 8;

/// What an empty ext4 file system offers, from its superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// Bytes per block: 1024 or 4096 as mke2fs.conf chooses for the size.
    pub block_size: u64,
    pub free_blocks: u64,
    pub free_inodes: u64,
}

impl Room {
    /// Reads the superblock of the ext4 that starts `offset` bytes into
    /// `file` (`path` only for errors).
    pub fn read(file: &File, offset: u64, path: &Path) -> Result<Room> {
        let mut sb = [0u8; 1024];
        file.read_exact_at(&mut sb, offset + 1024)
            .with_context(|| format!("reading the ext4 superblock in {}", path.display()))?;
        Room::parse(&sb).with_context(|| format!("the ext4 superblock in {}", path.display()))
    }

    /// Parses the 1024 bytes of an ext4 superblock.
    pub fn parse(sb: &[u8; 1024]) -> Result<Room> {
        let u16_at = |o: usize| u16::from_le_bytes([sb[o], sb[o + 1]]);
        let u32_at = |o: usize| u64::from(u32::from_le_bytes(sb[o..o + 4].try_into().unwrap()));
        if u16_at(0x38) != 0xEF53 {
            bail!("no ext4 magic number");
        }
        let log = u32_at(0x18);
        if log > 6 {
            bail!("block size 1024 << {log} is out of range");
        }
        let incompat_64bit = u32_at(0x60) & 0x80 != 0;
        let high = if incompat_64bit { u32_at(0x158) } else { 0 };
        Ok(Room {
            block_size: 1024 << log,
            free_blocks: (high << 32) | u32_at(0x0C),
            free_inodes: u32_at(0x10),
        })
    }
}

/// What a tree takes in an ext4 of a given block size, rounded up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub blocks: u64,
    pub inodes: u64,
}

/// The tree at `root` in blocks of `block_size` bytes: each file's data
/// (blocks of zeros not counted: mkfs.ext4 leaves holes for them, so a large
/// sparse file, written out in full by OSTree's checkout, takes no room;
/// files of one block or less are not read) plus an extent index block when
/// it needs more extents than the inode holds, each directory's entries,
/// each symlink too long to live in its inode; hard links counted once,
/// except to symlinks, which mkfs.ext4 copies once per path.
pub fn usage(root: &Dir, block_size: u64) -> Result<Usage> {
    walk(root, block_size, true)
}

/// [`usage`] without reading any file: each file's data is its length in
/// blocks (at most its allocated blocks), its blocks of zeros counted too.
/// Never below [`usage`] (same inodes, as many data and index blocks or
/// more), so a tree this bound fits also fits by [`usage`]; only a stat of
/// each entry, where [`usage`] reads every file of more than one block
/// (hundreds of MB for a real tree).
pub fn usage_bound(root: &Dir, block_size: u64) -> Result<Usage> {
    walk(root, block_size, false)
}

/// [`usage`] when the cheap [`usage_bound`] does not fit `room`, else the
/// bound: the check decides as if by [`usage`], which it reads files for
/// only when the tree may not fit. Returns the figures and whether they are
/// the bound (for the log).
pub fn measure(root: &Dir, room: Room) -> Result<(Usage, bool)> {
    let bound = usage_bound(root, room.block_size)?;
    if check(bound, room, 0).is_ok() {
        return Ok((bound, true));
    }
    Ok((usage(root, room.block_size)?, false))
}

/// The walk of [`usage`]; with `read_zeros` false, that of [`usage_bound`].
fn walk(root: &Dir, block_size: u64, read_zeros: bool) -> Result<Usage> {
    let blocks_of = |bytes: u64| bytes.div_ceil(block_size);
    let mut seen = HashSet::new();
    let mut total = Usage {
        blocks: 0,
        inodes: 1,
    };
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let entries = if rel.as_os_str().is_empty() {
            root.entries()
        } else {
            root.read_dir(&rel)
        }
        .with_context(|| format!("reading /{}", rel.display()))?;
        let mut dir_bytes = 2 * (DIRENT_HEAD + 4); // "." and ".."
        for entry in entries {
            let entry = entry.with_context(|| format!("reading /{}", rel.display()))?;
            let name = entry.file_name();
            dir_bytes += DIRENT_HEAD + (name.len() as u64).next_multiple_of(4);
            let path = rel.join(&name);
            let meta = root
                .symlink_metadata(&path)
                .with_context(|| format!("reading /{}", path.display()))?;
            if meta.is_dir() {
                total.inodes += 1;
                stack.push(path);
                continue;
            }
            // mkfs.ext4 keeps hard links, but not of symlinks (which OSTree's
            // checkout makes): each of their paths gets its own inode.
            if meta.nlink() > 1 && !meta.is_symlink() && !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            total.inodes += 1;
            if meta.is_file() {
                let allocated = blocks_of(meta.blocks() * 512);
                let data = if meta.len() <= block_size || !read_zeros {
                    blocks_of(meta.len()).min(allocated)
                } else {
                    let file = root
                        .open(&path)
                        .with_context(|| format!("opening /{}", path.display()))?;
                    nonzero_blocks(file, block_size)
                        .with_context(|| format!("reading /{}", path.display()))?
                        .min(allocated)
                };
                let extents = data.div_ceil(EXTENT_BLOCKS);
                let index = if extents > INLINE_EXTENTS {
                    // An index block holds (block_size - 12) / 12 extents.
                    extents.div_ceil((block_size - 12) / 12)
                } else {
                    0
                };
                total.blocks += data + index;
            } else if meta.is_symlink() && meta.len() >= FAST_SYMLINK_MAX {
                total.blocks += 1;
            }
        }
        // Entries do not span blocks; a half-used last block per entry at
        // most: count a quarter more, and an htree index block past one block.
        let per_block = block_size - DIR_TAIL;
        let dir_blocks = (dir_bytes + dir_bytes / 4).div_ceil(per_block);
        total.blocks += if dir_blocks > 1 { dir_blocks + 1 } else { 1 };
    }
    Ok(total)
}

/// Blocks of `block_size` bytes in `file` holding a byte other than zero.
fn nonzero_blocks(mut file: cap_std::fs::File, block_size: u64) -> std::io::Result<u64> {
    use std::io::Read;
    let bs = block_size as usize;
    let mut buf = vec![0u8; bs * 64];
    let mut count = 0;
    loop {
        // Fill whole blocks, so that each chunk below is one block of the file.
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        count += buf[..filled]
            .chunks(bs)
            .filter(|b| b.iter().any(|&x| x != 0))
            .count() as u64;
        if filled < buf.len() {
            return Ok(count);
        }
    }
}

/// The tree does not fit: the figures for the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooSmall {
    /// Disk size, bytes (`image.size`).
    pub image_size: u64,
    pub needed_mib: u64,
    pub available_mib: u64,
    pub needed_inodes: u64,
    pub available_inodes: u64,
}

impl fmt::Display for TooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let disk = self.image_size / MIB;
        if self.needed_mib > self.available_mib {
            // Not "raise it by the difference": the file system's own
            // blocks (inode tables, journal) grow with it.
            write!(
                f,
                "image.size: the tree needs {} MiB, the root file system of a {disk} MiB disk \
                 has {} MiB ({} MiB short): raise image.size",
                self.needed_mib,
                self.available_mib,
                self.needed_mib - self.available_mib
            )
        } else {
            write!(
                f,
                "image.size: the tree has {} files and directories, the root file system of a \
                 {disk} MiB disk has room for {}: raise image.size",
                self.needed_inodes, self.available_inodes
            )
        }
    }
}

impl std::error::Error for TooSmall {}

/// Checks `usage` against `room` with a margin of 1% and 1 MiB for what the
/// estimate misses (extent blocks of fragmented files, large xattrs).
/// MiB figures round the need up and the room down.
pub fn check(usage: Usage, room: Room, image_size: u64) -> Result<(), TooSmall> {
    let bs = room.block_size;
    let needed = usage.blocks * bs;
    let needed = needed + needed / 100 + MIB;
    let available = room.free_blocks * bs;
    if needed > available || usage.inodes > room.free_inodes {
        return Err(TooSmall {
            image_size,
            needed_mib: needed.div_ceil(MIB),
            available_mib: available / MIB,
            needed_inodes: usage.inodes,
            available_inodes: room.free_inodes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::cmd::Cmd;
    use cap_std::ambient_authority;

    fn room(block_size: u64, free_blocks: u64, free_inodes: u64) -> Room {
        Room {
            block_size,
            free_blocks,
            free_inodes,
        }
    }

    /// (MiB needed, MiB available)
    type MibFigures = (u64, u64);

    #[test]
    fn check_figures() {
        const GIB: u64 = 1 << 30;
        // (blocks needed, inodes needed, room) → Ok or (needed MiB, available MiB)
        let table: &[(Usage, Room, Option<MibFigures>)] = &[
            // 600 MiB of data in a 1 GiB disk's 700 MiB: fits
            (
                Usage {
                    blocks: 153_600,
                    inodes: 30_000,
                },
                room(4096, 179_200, 60_000),
                None,
            ),
            // 1 GiB of data there: 1024 + 10.24 + 1 = 1035.24 → 1036 MiB needed
            (
                Usage {
                    blocks: 262_144,
                    inodes: 30_000,
                },
                room(4096, 179_200, 60_000),
                Some((1036, 700)),
            ),
            // exactly full after the margin: 99 MiB + 0.99 + 1 = 100.99 MiB
            (
                Usage {
                    blocks: 99 * 256,
                    inodes: 10,
                },
                room(4096, 101 * 256, 10),
                None,
            ),
            (
                Usage {
                    blocks: 100 * 256,
                    inodes: 10,
                },
                room(4096, 101 * 256, 10),
                Some((102, 101)),
            ),
            // 1 KiB blocks (a disk under 512 MiB, as mke2fs.conf says): 300 + 3 + 1 MiB
            (
                Usage {
                    blocks: 300 * 1024,
                    inodes: 10,
                },
                room(1024, 235_417, 65_525),
                Some((304, 229)),
            ),
            // room for the bytes but not for the inodes
            (
                Usage {
                    blocks: 256,
                    inodes: 70_000,
                },
                room(4096, 179_200, 60_000),
                Some((3, 700)),
            ),
        ];
        for (i, (usage, room, want)) in table.iter().enumerate() {
            let got = check(*usage, *room, GIB)
                .err()
                .map(|e| (e.needed_mib, e.available_mib));
            assert_eq!(got, *want, "row {i}");
        }
        let e = check(table[1].0, table[1].1, GIB).unwrap_err().to_string();
        assert_eq!(
            e,
            "image.size: the tree needs 1036 MiB, the root file system of a 1024 MiB disk has \
             700 MiB (336 MiB short): raise image.size"
        );
        let e = check(table[5].0, table[5].1, GIB).unwrap_err().to_string();
        assert!(
            e.contains("70000 files") && e.contains("room for 60000"),
            "{e}"
        );
    }

    fn mkfs(image: &Path, size_mib: u64, tree: Option<&Path>) -> Result<()> {
        let mut cmd = Cmd::new("mkfs.ext4")
            .args(["-q", "-F", "-t", "ext4", "-m", "1"])
            .args(["-E", "root_owner=0:0,nodiscard"]);
        if let Some(t) = tree {
            cmd = cmd.arg("-d").arg(t);
        }
        cmd.arg(image).arg(format!("{}k", size_mib * 1024)).run()
    }

    fn room_of(image: &Path) -> Room {
        Room::read(&File::open(image).unwrap(), 0, image).unwrap()
    }

    /// The superblock read back against dumpe2fs's figures.
    #[test]
    fn room_from_a_real_superblock() {
        let t = tempfile::tempdir().unwrap();
        for (size_mib, block_size) in [(300, 1024), (1000, 4096)] {
            let image = t.path().join(format!("{size_mib}.img"));
            File::create(&image)
                .unwrap()
                .set_len(size_mib << 20)
                .unwrap();
            mkfs(&image, size_mib, None).unwrap();
            let r = room_of(&image);
            let sb = Cmd::new("dumpe2fs")
                .arg("-h")
                .arg(&image)
                .output_string()
                .unwrap();
            let field = |name: &str| -> u64 {
                sb.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap()
            };
            assert_eq!(r.block_size, block_size, "{size_mib} MiB");
            assert_eq!(r.block_size, field("Block size:"));
            assert_eq!(r.free_blocks, field("Free blocks:"));
            assert_eq!(r.free_inodes, field("Free inodes:"));
        }
        assert!(Room::parse(&[0; 1024]).is_err(), "no magic");
    }

    /// A tree of small and large files, hard links, long and short symlinks
    /// and a large directory: the estimate is never below what mkfs.ext4
    /// really takes, and not far above it.
    #[test]
    fn usage_against_a_real_mkfs() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        std::fs::create_dir_all(tree.join("many")).unwrap();
        for i in 0..3000 {
            std::fs::write(
                tree.join(format!("many/file-with-a-longer-name-{i}")),
                [1u8; 100],
            )
            .unwrap();
        }
        std::fs::write(tree.join("big"), vec![7u8; 24 << 20]).unwrap();
        // Zeros written out, with data between: mkfs.ext4 skips the zeros.
        let mut zeros = vec![0u8; 16 << 20];
        zeros[8 << 20] = 1;
        std::fs::write(tree.join("zeros"), zeros).unwrap();
        std::fs::hard_link(tree.join("big"), tree.join("big-again")).unwrap();
        let sparse = File::create(tree.join("sparse")).unwrap();
        sparse.set_len(1 << 30).unwrap();
        sparse.write_at(b"end", (1 << 30) - 3).unwrap();
        std::os::unix::fs::symlink("short", tree.join("s")).unwrap();
        std::os::unix::fs::symlink("l".repeat(200), tree.join("l")).unwrap();
        // Hard links to symlinks, as OSTree's checkout makes them.
        for i in 0..20 {
            std::fs::hard_link(tree.join("l"), tree.join(format!("l{i}"))).unwrap();
            std::fs::hard_link(tree.join("s"), tree.join(format!("s{i}"))).unwrap();
        }
        for d in 0..50 {
            std::fs::create_dir_all(tree.join(format!("d/{d}/e"))).unwrap();
        }
        let dir = Dir::open_ambient_dir(&tree, ambient_authority()).unwrap();
        for (size_mib, block_size) in [(300, 1024), (1000, 4096)] {
            let image = t.path().join("fs.img");
            let _ = std::fs::remove_file(&image);
            File::create(&image)
                .unwrap()
                .set_len(size_mib << 20)
                .unwrap();
            mkfs(&image, size_mib, None).unwrap();
            let empty = room_of(&image);
            assert_eq!(empty.block_size, block_size);
            mkfs(&image, size_mib, Some(&tree)).unwrap();
            let full = room_of(&image);
            let used_blocks = empty.free_blocks - full.free_blocks;
            let used_inodes = empty.free_inodes - full.free_inodes;
            let u = usage(&dir, block_size).unwrap();
            assert!(
                u.blocks >= used_blocks && u.blocks <= used_blocks + used_blocks / 5,
                "{block_size}: estimated {} blocks, mkfs used {used_blocks}",
                u.blocks
            );
            // The root directory exists in the empty file system already.
            assert_eq!(u.inodes, used_inodes + 1, "{block_size}");

            // The bound reads nothing: the 16 MiB of written zeros count.
            let b = usage_bound(&dir, block_size).unwrap();
            assert_eq!(b.inodes, u.inodes);
            assert!(
                b.blocks >= u.blocks + (16 << 20) / block_size - 1,
                "{b:?} {u:?}"
            );
            // Room for the estimate but not the bound: the estimate decides.
            let needed = u.blocks * block_size + u.blocks * block_size / 100 + MIB;
            let tight = room(block_size, needed.div_ceil(block_size), u.inodes);
            assert!(check(u, tight, 0).is_ok() && check(b, tight, 0).is_err());
            assert_eq!(measure(&dir, tight).unwrap(), (u, false));
            let short = room(block_size, needed / block_size - 2, u.inodes);
            assert_eq!(measure(&dir, short).unwrap(), (u, false));
            let roomy = room(block_size, 2 * b.blocks + (2 * MIB) / block_size, u.inodes);
            assert_eq!(measure(&dir, roomy).unwrap(), (b, true));
        }
    }
}
