//! Boot entries: from OSTree's BLS entries to what systemd-boot reads on the ESP.
//!
//! OSTree writes Boot Loader Specification entries and kernels under the
//! sysroot's `/boot`. systemd-boot reads only FAT, so hull copies them to the
//! ESP. The plan of what to copy is plain data ([`plan()`]); one applier
//! ([`crate::boot::esp_apply`]) writes it into a build's FAT image and into a
//! host's mounted ESP.

mod entry;
mod naming;
mod plan;

pub use entry::BlsEntry;
pub use naming::{name_entries, EntryChanges, EntryFile, EntryName, ExistingEntry};
pub use plan::{plan, DeploymentKey, EspPlan, PlannedEntry, ENTRIES_DIR};

/// A deployment of the OS `minimal` for tests.
#[cfg(test)]
pub(crate) fn test_key(csum: &str, serial: u32) -> DeploymentKey {
    DeploymentKey {
        osname: "minimal".into(),
        csum: csum.into(),
        serial,
    }
}
