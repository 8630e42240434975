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
/// A root partition smaller than this cannot hold a deployment.
pub const MIN_ROOT: u64 = 256 << 20;

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
    pub disk_size: u64,
    pub disk_guid: Uuid,
    pub partitions: Vec<PlannedPartition>,
    /// UUID of the root filesystem (ext4), derived like the GUIDs.
    pub root_fs_uuid: Uuid,
}

impl Layout {
    pub fn partition(&self, role: Role) -> &PlannedPartition {
        self.partitions
            .iter()
            .find(|p| p.role == role)
            .expect("every layout has an ESP and a root partition")
    }
}

/// A stable UUID for `role`: the same seed (the deployed commit's boot
/// checksum) always gives the same disk identity.
pub fn derived_uuid(seed: &str, role: &str) -> Uuid {
    let digest = Sha256::digest(format!("hull {seed} {role}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// Plans an ESP followed by a root partition filling the rest of the disk.
pub fn plan(arch: Arch, size: u64, esp_size: u64, seed: &str, root_name: &str) -> Result<Layout> {
    if size % SECTOR != 0 {
        bail!("image.size: {size} bytes is not a whole number of {SECTOR}-byte sectors");
    }
    let esp_start = ALIGN;
    let esp_end = esp_start + round_up(esp_size, ALIGN);
    // The root ends on the last 1 MiB boundary that leaves room for the backup GPT.
    let root_end = (size.saturating_sub(BACKUP_GPT) / ALIGN) * ALIGN;
    if root_end < esp_end + MIN_ROOT {
        bail!(
            "image.size: {} MiB leaves no room for a {} MiB root partition after the {} MiB ESP (image.esp-size)",
            size >> 20,
            MIN_ROOT >> 20,
            round_up(esp_size, ALIGN) >> 20
        );
    }
    let root_type = match arch {
        Arch::X86_64 => ROOT_X86_64_TYPE,
        Arch::Aarch64 => ROOT_ARM64_TYPE,
    };
    let parse = |s: &str| Uuid::parse_str(s).expect("constant GUIDs parse");
    Ok(Layout {
        disk_size: size,
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
        ];
        for (arch, size, esp, (e0, e1, r0, r1)) in table {
            let l = plan(arch, size, esp, "seed", "hull-root").unwrap();
            let (e, r) = (l.partition(Role::Esp), l.partition(Role::Root));
            assert_eq!(
                (e.first_lba, e.last_lba, r.first_lba, r.last_lba),
                (e0, e1, r0, r1),
                "{size} {esp}"
            );
            assert_eq!(e.offset() % ALIGN, 0);
            assert_eq!(r.offset() % ALIGN, 0);
            assert_eq!((r.last_lba + 1) * SECTOR % ALIGN, 0);
            assert!(e.last_lba < r.first_lba, "no overlap");
            assert!(
                (r.last_lba + 1) * SECTOR + BACKUP_GPT <= size,
                "room for the backup GPT"
            );
            assert!(e.size() >= esp);
            let want_root = if arch == Arch::X86_64 {
                ROOT_X86_64_TYPE
            } else {
                ROOT_ARM64_TYPE
            };
            assert_eq!(r.type_guid.to_string().to_uppercase(), want_root);
            assert_eq!(e.type_guid.to_string().to_uppercase(), ESP_TYPE);
        }
    }

    #[test]
    fn guids_follow_the_seed() {
        let a = plan(Arch::X86_64, 4 * GIB, 256 * MIB, "one", "r").unwrap();
        let b = plan(Arch::X86_64, 4 * GIB, 256 * MIB, "one", "r").unwrap();
        let c = plan(Arch::X86_64, 4 * GIB, 256 * MIB, "two", "r").unwrap();
        assert_eq!(a, b);
        assert_ne!(a.disk_guid, c.disk_guid);
        assert_ne!(
            a.partition(Role::Root).part_guid,
            c.partition(Role::Root).part_guid
        );
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
        let err = plan(Arch::X86_64, 300 * MIB, 256 * MIB, "s", "r")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("image.size") && err.contains("image.esp-size"),
            "{err}"
        );
        assert!(plan(Arch::X86_64, 4 * GIB + 1, 256 * MIB, "s", "r").is_err());
    }
}
