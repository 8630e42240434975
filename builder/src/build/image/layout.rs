//! The partition layout, planned as plain data before anything is written.

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::manifest::Arch;

pub const SECTOR: u64 = 512;
/// Partitions start and end on 1 MiB boundaries.
pub const ALIGN: u64 = 1 << 20;
/// The backup GPT: 32 sectors of entries and a header, at the end of the disk.
pub const BACKUP_GPT: u64 = 33 * SECTOR;
/// A root partition smaller than this cannot hold a deployment: the one
/// minimum, which the manifest checks first ([`crate::manifest::validate::MIN_ROOT_SIZE`]).
pub const MIN_ROOT: u64 = crate::manifest::validate::MIN_ROOT_SIZE;

/// Discoverable Partitions Specification type GUIDs.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
pub const ROOT_X86_64_TYPE: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
pub const ROOT_ARM64_TYPE: &str = "B921B045-1DF0-41C3-AF44-4C6F280D3FAE";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Esp,
    Root,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPartition {
    pub role: Role,
    /// GPT partition name.
    pub name: String,
    pub type_guid: Uuid,
    pub part_guid: Uuid,
    pub first_lba: u64,
    /// Inclusive, as GPT counts.
    pub last_lba: u64,
}

impl PlannedPartition {
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }

    pub fn size(&self) -> u64 {
        (self.last_lba - self.first_lba + 1) * SECTOR
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Always [`SECTOR`]: the GPT is written for 512-byte logical blocks.
    pub sector_size: u64,
    pub disk_size: u64,
    pub disk_guid: Uuid,
    pub partitions: Vec<PlannedPartition>,
    /// UUID of the root filesystem (ext4), derived like the GUIDs.
    pub root_fs_uuid: Uuid,
    /// Volume serial of the ESP's FAT, derived like the GUIDs (what
    /// `/dev/disk/by-uuid` shows for the ESP, as `XXXX-XXXX`).
    pub esp_volume_id: u32,
}

impl Layout {
    pub fn partition(&self, role: Role) -> &PlannedPartition {
        self.partitions
            .iter()
            .find(|p| p.role == role)
            .expect("every layout has an ESP and a root partition")
    }
}

/// A stable UUID for `role`: the same seed (the commit checksum) always
/// gives the same disk identity, and images of different commits differ.
pub fn derived_uuid(seed: &str, role: &str) -> Uuid {
    let digest = Sha256::digest(format!("hull {seed} {role}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// `n` rounded up to a multiple of `to`, saturating instead of overflowing
/// (a saturated size is then rejected as too large).
fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to).saturating_mul(to)
}

/// Plans an ESP followed by a root partition filling the rest of the disk.
///
/// `esp_size` is rounded up to whole MiB; the root ends on the last MiB
/// boundary that leaves room for the backup GPT. Errors are one line naming
/// the manifest key (`image.size`, `image.esp-size`) to change.
pub fn plan(arch: Arch, size: u64, esp_size: u64, seed: &str, root_name: &str) -> Result<Layout> {
    if size % SECTOR != 0 {
        bail!("image.size: {size} bytes is not a whole number of {SECTOR}-byte sectors");
    }
    if root_name.is_empty() || root_name.encode_utf16().count() > 36 {
        bail!("root partition name {root_name:?} is not 1 to 36 UTF-16 characters (GPT's limit)");
    }
    if esp_size > size {
        bail!(
            "image.esp-size: {} MiB does not fit in the {} MiB disk (image.size)",
            esp_size >> 20,
            size >> 20
        );
    }
    let esp_part = round_up(esp_size, ALIGN);
    // Fails, naming image.esp-size, when no FAT32 fits the partition.
    crate::boot::fat::cluster_size(esp_part)?;
    let esp_start = ALIGN;
    let esp_end = esp_start + esp_part;
    // The root ends on the last 1 MiB boundary that leaves room for the backup GPT.
    let root_end = (size.saturating_sub(BACKUP_GPT) / ALIGN) * ALIGN;
    if root_end < esp_end + MIN_ROOT {
        bail!(
            "image.size: {} MiB leaves no room for a {} MiB root partition after the {} MiB ESP (image.esp-size)",
            size >> 20,
            MIN_ROOT >> 20,
            esp_part >> 20
        );
    }
    let root_type = match arch {
        Arch::X86_64 => ROOT_X86_64_TYPE,
        Arch::Aarch64 => ROOT_ARM64_TYPE,
    };
    let parse = |s: &str| Uuid::parse_str(s).expect("constant GUIDs parse");
    let volume_id = derived_uuid(seed, "esp-fs").as_bytes()[..4]
        .try_into()
        .map(u32::from_le_bytes)
        .expect("four bytes");
    Ok(Layout {
        sector_size: SECTOR,
        disk_size: size,
        esp_volume_id: volume_id,
        disk_guid: derived_uuid(seed, "disk"),
        root_fs_uuid: derived_uuid(seed, "root-fs"),
        partitions: vec![
            PlannedPartition {
                role: Role::Esp,
                name: "esp".into(),
                type_guid: parse(ESP_TYPE),
                part_guid: derived_uuid(seed, "esp"),
                first_lba: esp_start / SECTOR,
                last_lba: esp_end / SECTOR - 1,
            },
            PlannedPartition {
                role: Role::Root,
                name: root_name.into(),
                type_guid: parse(root_type),
                part_guid: derived_uuid(seed, "root"),
                first_lba: esp_end / SECTOR,
                last_lba: root_end / SECTOR - 1,
            },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn layouts_table() {
        // (arch, disk size, esp size) → (esp first, esp last, root first, root last) in LBAs
        let table = [
            (
                Arch::X86_64,
                4 * GIB,
                256 * MIB,
                (2048, 526_335, 526_336, 8_386_559),
            ),
            (
                Arch::X86_64,
                2 * GIB,
                512 * MIB,
                (2048, 1_050_623, 1_050_624, 4_192_255),
            ),
            (
                Arch::Aarch64,
                4 * GIB,
                100 * MIB,
                (2048, 206_847, 206_848, 8_386_559),
            ),
            // an ESP size off the MiB grid is rounded up
            (
                Arch::X86_64,
                GIB,
                64 * MIB + 1,
                (2048, 135_167, 135_168, 2_095_103),
            ),
            // a disk size off the MiB grid: the root still ends on it
            (
                Arch::Aarch64,
                4 * GIB + 7 * SECTOR,
                33 * MIB,
                (2048, 69_631, 69_632, 8_386_559),
            ),
            // just room: 1 MiB + 64 MiB ESP + 512 MiB root + the backup GPT
            (
                Arch::Aarch64,
                577 * MIB + BACKUP_GPT,
                64 * MIB,
                (2048, 133_119, 133_120, 1_181_695),
            ),
            (
                Arch::X86_64,
                64 * GIB,
                GIB,
                (2048, 2_099_199, 2_099_200, 134_215_679),
            ),
        ];
        for (arch, size, esp, (e0, e1, r0, r1)) in table {
            let l = plan(arch, size, esp, "seed", "hull-root").unwrap();
            assert_eq!(l.sector_size, 512);
            assert_eq!(l.disk_size, size);
            let (e, r) = (l.partition(Role::Esp), l.partition(Role::Root));
            assert_eq!(
                (e.first_lba, e.last_lba, r.first_lba, r.last_lba),
                (e0, e1, r0, r1),
                "{size} {esp}"
            );
            assert_eq!(l.partitions[0].role, Role::Esp, "ESP first");
            assert_eq!(e.offset() % ALIGN, 0);
            assert_eq!(r.offset() % ALIGN, 0);
            assert_eq!(e.size() % ALIGN, 0);
            assert_eq!(r.size() % ALIGN, 0);
            assert!(e.first_lba >= 34, "after the primary GPT");
            assert!(e.last_lba < r.first_lba, "no overlap");
            assert!(
                (r.last_lba + 1) * SECTOR + BACKUP_GPT <= size,
                "room for the backup GPT"
            );
            assert!(
                (r.last_lba + 1) * SECTOR + BACKUP_GPT + ALIGN > size,
                "the root fills the disk"
            );
            assert!(e.size() >= esp && e.size() < esp + ALIGN);
            let want_root = if arch == Arch::X86_64 {
                ROOT_X86_64_TYPE
            } else {
                ROOT_ARM64_TYPE
            };
            assert_eq!(r.type_guid.to_string().to_uppercase(), want_root);
            assert_eq!(e.type_guid.to_string().to_uppercase(), ESP_TYPE);
            assert_eq!((e.name.as_str(), r.name.as_str()), ("esp", "hull-root"));
        }
    }

    #[test]
    fn guids_follow_the_seed() {
        let a = plan(Arch::X86_64, 4 * GIB, 256 * MIB, "one", "r").unwrap();
        let b = plan(Arch::X86_64, 4 * GIB, 256 * MIB, "one", "r").unwrap();
        let c = plan(Arch::X86_64, 4 * GIB, 256 * MIB, "two", "r").unwrap();
        // the arch and the sizes do not move the identity, only the seed does
        let d = plan(Arch::Aarch64, 8 * GIB, 512 * MIB, "one", "r").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            (a.disk_guid, a.root_fs_uuid, a.esp_volume_id),
            (d.disk_guid, d.root_fs_uuid, d.esp_volume_id)
        );
        assert_ne!(a.disk_guid, c.disk_guid);
        assert_ne!(a.root_fs_uuid, c.root_fs_uuid);
        assert_ne!(a.esp_volume_id, c.esp_volume_id);
        for i in 0..2 {
            assert_ne!(a.partitions[i].part_guid, c.partitions[i].part_guid);
        }
        let guids = [
            a.disk_guid,
            a.root_fs_uuid,
            a.partitions[0].part_guid,
            a.partitions[1].part_guid,
        ];
        for (i, g) in guids.iter().enumerate() {
            assert_eq!(g.get_version_num(), 4);
            assert!(!guids[..i].contains(g));
        }
    }

    #[test]
    fn sizes_that_cannot_fit() {
        // (disk size, esp size, key the error must name)
        let table = [
            (300 * MIB, 256 * MIB, "image.size"),
            (577 * MIB + BACKUP_GPT - SECTOR, 64 * MIB, "image.size"),
            (4 * GIB + 1, 256 * MIB, "image.size"),
            (4 * GIB, 32 * MIB, "image.esp-size"),
            (4 * GIB, 0, "image.esp-size"),
            (4 * GIB, 5 * GIB, "image.esp-size"),
            (4 * GIB, 4 * GIB, "image.esp-size"),
            (0, 0, "image.esp-size"),
            (u64::MAX - 511, u64::MAX - 511, "image.esp-size"),
            (u64::MAX - 511, 3 << 40, "image.esp-size"),
        ];
        for (size, esp, key) in table {
            let err = plan(Arch::X86_64, size, esp, "s", "r")
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{size} {esp}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        let err = plan(Arch::X86_64, 300 * MIB, 256 * MIB, "s", "r")
            .unwrap_err()
            .to_string();
        assert!(err.contains("image.esp-size"), "names both keys: {err}");
        // a huge disk is planned without overflow
        let l = plan(Arch::X86_64, u64::MAX - 511, GIB, "s", "r").unwrap();
        assert!(l.partition(Role::Root).last_lba < (u64::MAX - 511) / SECTOR);
    }

    #[test]
    fn partition_names() {
        assert!(plan(Arch::X86_64, 4 * GIB, 256 * MIB, "s", "").is_err());
        let long = "r".repeat(37);
        let err = plan(Arch::X86_64, 4 * GIB, 256 * MIB, "s", &long)
            .unwrap_err()
            .to_string();
        assert!(err.contains("36"), "{err}");
    }
}
