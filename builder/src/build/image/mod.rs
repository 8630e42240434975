//! Stage 5b: the bootable disk image.
//!
//! [`layout`] plans the partitions as plain data; [`crate::boot::fat`] writes the
//! FAT32 EFI system partition; [`disk`] puts GPT, ESP and the ext4 root together,
//! after [`fit`] checked that the tree fits the root file system.

pub mod disk;
pub mod fit;
pub mod formats;
pub mod layout;

use std::path::{Path, PathBuf};

pub use disk::write_disk;

/// What to write.
#[derive(Debug)]
pub struct DiskSpec<'a> {
    pub arch: crate::manifest::Arch,
    /// Whole disk, bytes.
    pub size: u64,
    pub esp_size: u64,
    pub esp_files: Vec<crate::boot::fat::EspFile>,
    /// Copied into the root ext4 (the OSTree sysroot).
    pub root_dir: &'a Path,
    /// ext4 label and GPT partition name of the root.
    pub root_label: String,
    /// FAT label of the ESP, at most 11 characters.
    pub esp_label: String,
    /// Disk, partition and filesystem UUIDs derive from it: the commit
    /// checksum, so that images of different commits differ and a rebuild
    /// of the same commit is the same disk.
    pub seed: String,
}

#[derive(Debug, Clone)]
pub struct DiskReport {
    pub path: PathBuf,
    pub size: u64,
    pub layout: layout::Layout,
}
