//! A FAT16 or FAT32 volume read slot by slot, beside `fatfs`: the boot
//! sector's geometry, cluster chains and directory slots, for the two
//! fixes hull makes below the file level ([`super::fat_dots`] on a new
//! image, [`super::fat_repair`] on a host's ESP before it is mounted).
//! Offsets are bytes from the volume's start; a slot is one 32-byte
//! directory entry (FAT specification, "Directory Structure").

use std::io::{Read, Seek, SeekFrom, Write};

use anyhow::{bail, ensure, Context, Result};

/// One directory slot.
pub(super) const SLOT: u64 = 32;
/// The name field of the `.` and `..` short entries.
pub(super) const DOT: &[u8; 11] = b".          ";
pub(super) const DOTDOT: &[u8; 11] = b"..         ";
pub(super) const ATTR_DIRECTORY: u8 = 0x10;
pub(super) const ATTR_VOLUME_ID: u8 = 0x08;
/// Read-only, hidden, system and volume id together: a long-name slot.
pub(super) const ATTR_LONG_NAME: u8 = 0x0F;
pub(super) const DELETED: u8 = 0xE5;
pub(super) const END_OF_DIR: u8 = 0x00;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FatType {
    Fat16,
    Fat32,
}

/// Where a volume's root directory lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Root {
    /// FAT12/16: a fixed region of `entries` slots at byte `offset`.
    Fixed { offset: u64, entries: u64 },
    /// FAT32: a cluster chain like any directory.
    Cluster(u32),
}

/// The layout of a FAT volume, from its boot sector (the BPB); offsets and
/// sizes in bytes from the volume's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Geometry {
    pub(super) fat_type: FatType,
    /// The first FAT (the others are copies; only directories change here).
    pub(super) fat_offset: u64,
    pub(super) data_offset: u64,
    pub(super) cluster_bytes: u64,
    /// Data clusters: valid cluster numbers are 2 ..= clusters + 1.
    pub(super) clusters: u32,
    pub(super) root: Root,
}

impl Geometry {
    /// The geometry in boot sector `bs`; errors say which field is wrong.
    pub(super) fn parse(bs: &[u8; 512]) -> Result<Geometry> {
        let u16_at = |o: usize| u64::from(u16::from_le_bytes([bs[o], bs[o + 1]]));
        let u32_at =
            |o: usize| u64::from(u32::from_le_bytes([bs[o], bs[o + 1], bs[o + 2], bs[o + 3]]));
        ensure!(bs[510..512] == [0x55, 0xAA], "no boot sector signature");
        let bytes_per_sector = u16_at(11);
        let sectors_per_cluster = u64::from(bs[13]);
        let reserved = u16_at(14);
        let fats = u64::from(bs[16]);
        let root_entries = u16_at(17);
        let total = match u16_at(19) {
            0 => u32_at(32),
            n => n,
        };
        let fat_sectors = match u16_at(22) {
            0 => u32_at(36),
            n => n,
        };
        ensure!(
            [512, 1024, 2048, 4096].contains(&bytes_per_sector)
                && sectors_per_cluster.is_power_of_two()
                && reserved > 0
                && fats > 0
                && fat_sectors > 0,
            "not a FAT boot sector (bytes per sector {bytes_per_sector}, sectors per cluster \
             {sectors_per_cluster}, reserved {reserved}, FATs {fats}, FAT sectors {fat_sectors})"
        );
        let root_sectors = (root_entries * SLOT).div_ceil(bytes_per_sector);
        let data_sector = reserved + fats * fat_sectors + root_sectors;
        let Some(data_sectors) = total.checked_sub(data_sector) else {
            bail!("the FATs and root directory ({data_sector} sectors) overrun the volume ({total} sectors)");
        };
        let clusters = data_sectors / sectors_per_cluster;
        // The FAT type is the cluster count's, by the specification.
        let (fat_type, root) = if clusters < 4085 {
            bail!("FAT12 ({clusters} clusters) is not handled");
        } else if clusters < 65525 {
            let offset = (reserved + fats * fat_sectors) * bytes_per_sector;
            (
                FatType::Fat16,
                Root::Fixed {
                    offset,
                    entries: root_entries,
                },
            )
        } else {
            (FatType::Fat32, Root::Cluster(u32_at(44) as u32))
        };
        Ok(Geometry {
            fat_type,
            fat_offset: reserved * bytes_per_sector,
            data_offset: data_sector * bytes_per_sector,
            cluster_bytes: sectors_per_cluster * bytes_per_sector,
            clusters: u32::try_from(clusters).context("cluster count")?,
            root,
        })
    }

    pub(super) fn valid(&self, cluster: u32) -> bool {
        (2..=self.clusters + 1).contains(&cluster)
    }

    pub(super) fn cluster_offset(&self, cluster: u32) -> u64 {
        self.data_offset + u64::from(cluster - 2) * self.cluster_bytes
    }
}

/// A volume being read or fixed: its device and geometry.
pub(super) struct Volume<'a, T> {
    pub(super) dev: &'a mut T,
    pub(super) geo: Geometry,
}

impl<'a, T: Read + Write + Seek> Volume<'a, T> {
    pub(super) fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.dev.seek(SeekFrom::Start(offset))?;
        self.dev
            .read_exact(buf)
            .with_context(|| format!("reading {} bytes at byte {offset}", buf.len()))
    }

    pub(super) fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<()> {
        self.dev.seek(SeekFrom::Start(offset))?;
        self.dev
            .write_all(buf)
            .with_context(|| format!("writing {} bytes at byte {offset}", buf.len()))
    }

    /// The clusters of the chain starting at `first`, in order.
    pub(super) fn chain(&mut self, first: u32) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        let mut c = first;
        loop {
            ensure!(
                self.geo.valid(c) && out.len() <= self.geo.clusters as usize,
                "the cluster chain from {first} reaches cluster {c} (or loops)"
            );
            out.push(c);
            let next = match self.geo.fat_type {
                FatType::Fat16 => {
                    let mut b = [0u8; 2];
                    self.read_at(self.geo.fat_offset + 2 * u64::from(c), &mut b)?;
                    let n = u32::from(u16::from_le_bytes(b));
                    if n >= 0xFFF8 {
                        return Ok(out);
                    }
                    n
                }
                FatType::Fat32 => {
                    let mut b = [0u8; 4];
                    self.read_at(self.geo.fat_offset + 4 * u64::from(c), &mut b)?;
                    let n = u32::from_le_bytes(b) & 0x0FFF_FFFF;
                    if n >= 0x0FFF_FFF8 {
                        return Ok(out);
                    }
                    n
                }
            };
            c = next;
        }
    }

    /// The volume on `dev` (from byte 0), its geometry read from the boot
    /// sector; errors say what is wrong with it.
    pub(super) fn open(dev: &'a mut T) -> Result<Volume<'a, T>> {
        let mut bs = [0u8; 512];
        dev.seek(SeekFrom::Start(0))?;
        dev.read_exact(&mut bs).context("reading the boot sector")?;
        let geo = Geometry::parse(&bs).context("reading the FAT geometry")?;
        Ok(Volume { dev, geo })
    }

    /// Every slot of directory `dir` (`None`: the root), end marker or
    /// not, as (byte offset, bytes), in order.
    pub(super) fn all_slots(&mut self, dir: Option<u32>) -> Result<Vec<(u64, [u8; 32])>> {
        let regions: Vec<(u64, u64)> = match (dir, self.geo.root) {
            (None, Root::Fixed { offset, entries }) => vec![(offset, entries * SLOT)],
            (None, Root::Cluster(c)) | (Some(c), _) => self
                .chain(c)?
                .into_iter()
                .map(|c| (self.geo.cluster_offset(c), self.geo.cluster_bytes))
                .collect(),
        };
        let mut out = Vec::new();
        for (offset, len) in regions {
            let mut buf = vec![0u8; len as usize];
            self.read_at(offset, &mut buf)?;
            for (i, s) in buf.chunks_exact(SLOT as usize).enumerate() {
                out.push((offset + i as u64 * SLOT, s.try_into().expect("32 bytes")));
            }
        }
        Ok(out)
    }

    /// Directory `dir`'s slots up to its first end marker: the directory
    /// as the FAT specification defines it.
    pub(super) fn slots(&mut self, dir: Option<u32>) -> Result<Vec<(u64, [u8; 32])>> {
        let mut all = self.all_slots(dir)?;
        all.truncate(end_of_dir(&all));
        Ok(all)
    }
}

/// The index of the first end marker (a slot whose first byte is 0) in
/// `slots`, or their number when there is none.
pub(super) fn end_of_dir(slots: &[(u64, [u8; 32])]) -> usize {
    slots
        .iter()
        .position(|(_, s)| s[0] == END_OF_DIR)
        .unwrap_or(slots.len())
}

pub(super) fn first_cluster(slot: &[u8; 32]) -> u32 {
    u32::from(u16::from_le_bytes([slot[20], slot[21]])) << 16
        | u32::from(u16::from_le_bytes([slot[26], slot[27]]))
}

pub(super) fn set_first_cluster(slot: &mut [u8; 32], cluster: u32) {
    slot[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    slot[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
}

/// A short entry's name as `NAME.EXT` (blanks trimmed).
pub(super) fn short_name(s: &[u8; 32]) -> String {
    let base = String::from_utf8_lossy(&s[..8]).trim_end().to_string();
    let ext = String::from_utf8_lossy(&s[8..11]).trim_end().to_string();
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

/// The subdirectories listed in `slots` (a directory up to its end marker):
/// short entries with the directory attribute, not deleted, not `.` or
/// `..`; their names ([`short_name`]) and first clusters.
pub(super) fn subdirs(slots: &[(u64, [u8; 32])]) -> Vec<(String, u32)> {
    slots
        .iter()
        .map(|(_, s)| s)
        .filter(|s| {
            s[0] != DELETED
                && s[11] & ATTR_LONG_NAME != ATTR_LONG_NAME
                && s[11] & (ATTR_DIRECTORY | ATTR_VOLUME_ID) == ATTR_DIRECTORY
                && &s[..11] != DOT
                && &s[..11] != DOTDOT
        })
        .map(|s| (short_name(s), first_cluster(s)))
        .collect()
}

/// Helpers the FAT fix-ups' tests share: scratch volumes and `fsck.fat`.
#[cfg(test)]
pub(super) mod test_support {
    use std::fs::File;
    use std::path::Path;

    use crate::util::cmd::Cmd;

    /// A new read-write file of `size` bytes (sparse).
    pub fn image(img: &Path, size: u64) -> File {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(img)
            .unwrap();
        f.set_len(size).unwrap();
        f
    }

    /// `img`, opened read-write.
    pub fn open_rw(img: &Path) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(img)
            .unwrap()
    }

    /// What `fsck.fat -n` prints for the volume in `img` and whether it
    /// exited 0; `None` when fsck.fat is not installed.
    pub fn fsck(img: &Path) -> Option<(bool, String)> {
        let script = "PATH=$PATH:/usr/sbin:/sbin; command -v fsck.fat >/dev/null || exit 0; \
                      fsck.fat -n \"$0\" 2>&1; echo \"exit $?\"";
        let out = Cmd::new("sh")
            .args(["-c", script])
            .arg(img)
            .output_string()
            .unwrap();
        let (text, code) = out.trim_end().rsplit_once("exit ")?;
        Some((code == "0", text.to_string()))
    }

    /// A clean volume: exit 0 and nothing but the version line and the
    /// summary (`img: 12 files, 30/65000 clusters`). False (and a line on
    /// stderr) when fsck.fat is not installed.
    pub fn assert_clean(img: &Path, what: &str) -> bool {
        let Some((ok, text)) = fsck(img) else {
            eprintln!("skipped: fsck.fat is not installed (dosfstools)");
            return false;
        };
        assert!(
            ok && text.lines().count() == 2,
            "{what}: fsck.fat -n:\n{text}"
        );
        true
    }
}
