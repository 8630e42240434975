//! A torn ESP, as a power cut while Linux adds a directory entry leaves it
//! (docs/updates.md, "The ESP through a power cut"): the tail of a name's
//! slots, its later long-name parts and its short entry, one slot past the
//! end marker of `loader/entries`, with its first part missing. The
//! power-cut test boots such a disk and requires that
//! `hull-esp-repair.service` cleared it before the ESP was mounted.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use hull::boot::fat_repair::directory_slots;
use hull::build::image::disk::Window;

/// Tears `loader/entries` on the ESP of raw disk image `image` (the GPT's
/// EFI system partition): copies its first entry's slots but the first
/// one to just past the directory's end marker. Returns how many slots were
/// written.
pub fn tear_entries(image: &Path) -> Result<usize> {
    let disk = gpt::GptConfig::new()
        .writable(false)
        .open(image)
        .with_context(|| format!("reading the GPT of {}", image.display()))?;
    let block = u64::from(*disk.logical_block_size());
    let esp = disk
        .partitions()
        .values()
        .find(|p| p.part_type_guid == gpt::partition_types::EFI)
        .with_context(|| format!("{} has no EFI system partition", image.display()))?;
    let (start, len) = (
        esp.first_lba * block,
        (esp.last_lba + 1 - esp.first_lba) * block,
    );
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .with_context(|| format!("opening {}", image.display()))?;
    let slots = directory_slots(&mut Window::new(&file, start, len), &["loader", "entries"])
        .with_context(|| format!("reading loader/entries on the ESP of {}", image.display()))?;
    let end = slots
        .iter()
        .position(|(_, s)| s[0] == 0)
        .context("loader/entries has no end marker")?;
    // The first entry's long name: a part flagged last (0x40) begins it.
    let first = slots[..end]
        .iter()
        .position(|(_, s)| s[11] & 0x3F == 0x0F && s[0] & 0x40 != 0 && s[0] != 0xE5)
        .context("loader/entries holds no long name")?;
    let parts = usize::from(slots[first].1[0] & 0x3F);
    ensure!(
        parts >= 2,
        "the first entry's name has {parts} long-name part(s)"
    );
    let tail = &slots[first + 1..=first + parts];
    ensure!(
        end + 1 + tail.len() <= slots.len(),
        "loader/entries has no room for {} slots past its end marker",
        tail.len()
    );
    for (k, (_, s)) in tail.iter().enumerate() {
        file.write_all_at(s, start + slots[end + 1 + k].0)
            .with_context(|| format!("writing {}", image.display()))?;
    }
    file.sync_all()
        .with_context(|| format!("syncing {}", image.display()))?;
    Ok(tail.len())
}
