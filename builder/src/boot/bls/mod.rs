//! Boot entries: from OSTree's BLS entries to what systemd-boot reads on the ESP.
//!
//! OSTree writes Boot Loader Specification entries and kernels under the
//! sysroot's `/boot`. systemd-boot reads only FAT, so hull copies them to the
//! ESP. The plan of what to copy is plain data ([`plan()`]); the image builder
//! writes it into a FAT image, and the on-host updater will write the same
//! plan into the mounted ESP.

mod entry;
mod naming;
mod plan;

pub use entry::BlsEntry;
pub use naming::{name_entries, EntryChanges, EntryFile, EntryName, ExistingEntry};
pub use plan::{plan, DeploymentKey, EspPlan, PlannedEntry, ENTRIES_DIR};
