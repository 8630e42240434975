//! A static delta fetched and applied by hull before libostree's pull.
//!
//! Debian 12's libostree (2022.7) does fetch a delta when the summary lists
//! one, but it writes the new commit from the superblock, marked partial,
//! before the parts have been applied, and its object scan then requests
//! every content object the still-running part has not written yet: each
//! changed file travels twice, whole and in the delta (measured by
//! qemu-tests/tests/delta_pull.rs). So `hull pull-commit` fetches the
//! superblock and the parts itself, checks them, and has libostree apply
//! them offline in one transaction; the pull that follows finds the commit
//! complete and fetches only its detached metadata.
//!
//! What is checked: the superblock's sha256 against the summary's entry for
//! the delta, its target against the commit the caller verified, each part
//! against the superblock (libostree), each object against its checksum
//! (libostree, as it writes). Any failure leaves the repository as it was
//! (the transaction is aborted) and the caller falls back to objects.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;
use sha2::{Digest, Sha256};

use super::fetch::{Fetcher, Limits};
use crate::repo::delta;
use crate::repo::summary::{MAX_SUMMARY_BYTES, SUMMARY_FILE};

/// libostree's OSTREE_STATIC_DELTA_SUPERBLOCK_FORMAT.
const SUPERBLOCK_TYPE: &str = "(a{sv}tayay(a{sv}aya(say)sstayay)aya(uayttay)a(yaytt))";
/// The largest superblock read (it holds the commit and one line per part).
const MAX_SUPERBLOCK_BYTES: u64 = 16 << 20;

/// What [`apply`] fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Delta parts fetched.
    pub parts: u64,
    /// Bytes fetched: the summary, the superblock and the parts.
    pub bytes: u64,
}

/// Applies the static delta to `to` from a commit `repo` holds whole, if
/// the remote's summary lists one; `Ok(None)` when there is none, the
/// remote is not HTTP, or `repo` already has `to`.
///
/// Errors: a delta was listed but could not be fetched, checked or applied
/// (nothing was written).
pub fn apply(repo: &ostree::Repo, remote: &str, to: &str) -> Result<Option<Applied>> {
    if complete(repo, to) {
        return Ok(None);
    }
    let url = repo
        .remote_get_url(remote)
        .with_context(|| format!("reading the URL of remote {remote}"))?;
    let base = url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Ok(None);
    }
    let fetcher = Fetcher::new(Limits::DEFAULT);
    let summary_url = format!("{base}/{SUMMARY_FILE}");
    let Some(summary) = fetcher.get(&summary_url, MAX_SUMMARY_BYTES)? else {
        return Ok(None);
    };
    let listed = delta::listed_in_summary(&summary).with_context(|| summary_url.clone())?;
    let Some((from, _, digest)) = listed
        .into_iter()
        .find(|(f, t, _)| t == to && !f.is_empty() && complete(repo, f))
    else {
        return Ok(None);
    };
    let dir = delta::relative_path(&from, to)?;
    let dir_url = format!("{base}/{}", dir.display());
    let superblock_url = format!("{dir_url}/superblock");
    let superblock = fetcher.require(
        &superblock_url,
        MAX_SUPERBLOCK_BYTES,
        "a static delta's superblock",
    )?;
    ensure!(
        hex::encode(Sha256::digest(&superblock)) == digest,
        "{superblock_url} does not match the summary's checksum for it"
    );
    let sizes = part_sizes(&superblock, to).with_context(|| superblock_url.clone())?;

    let repo_path = repo
        .path()
        .path()
        .context("the OSTree repository has no local path")?;
    let tmp = tempfile::Builder::new()
        .prefix("hull-delta-")
        .tempdir_in(repo_path.join("tmp"))
        .with_context(|| format!("creating a temp directory in {}/tmp", repo_path.display()))?;
    write(tmp.path(), "superblock", &superblock)?;
    let mut bytes = summary.len() as u64 + superblock.len() as u64;
    for (i, size) in sizes.iter().enumerate() {
        let part_url = format!("{dir_url}/{i}");
        let part = fetcher.require(&part_url, *size, "a static delta part")?;
        bytes += part.len() as u64;
        write(tmp.path(), &i.to_string(), &part)?;
    }
    repo.prepare_transaction(gio::Cancellable::NONE)
        .context("starting a transaction")?;
    let applied = repo.static_delta_execute_offline(
        &gio::File::for_path(tmp.path()),
        false,
        gio::Cancellable::NONE,
    );
    match applied {
        Ok(()) => {
            repo.commit_transaction(gio::Cancellable::NONE)
                .context("committing the transaction")?;
        }
        Err(e) => {
            let _ = repo.abort_transaction(gio::Cancellable::NONE);
            bail!("applying the static delta {from} → {to} from {dir_url}: {e}");
        }
    }
    Ok(Some(Applied {
        parts: sizes.len() as u64,
        bytes,
    }))
}

/// Whether `repo` holds commit `c` with all its objects (not partial).
fn complete(repo: &ostree::Repo, c: &str) -> bool {
    matches!(repo.load_commit(c), Ok((_, state)) if !state.contains(ostree::RepoCommitState::PARTIAL))
}

/// The compressed size of each part a superblock names, after checking
/// that it leads to `to` and needs no objects fetched one by one.
fn part_sizes(superblock: &[u8], to: &str) -> Result<Vec<u64>> {
    let v = glib::Variant::from_data_with_type(
        superblock,
        glib::VariantTy::new(SUPERBLOCK_TYPE).expect("superblock type"),
    );
    ensure!(
        v.is_normal_form(),
        "not a well-formed static delta superblock"
    );
    let target = hex::encode(v.child_value(3).fixed_array::<u8>().unwrap_or_default());
    ensure!(
        target == to,
        "the delta leads to {target}, not to the verified {to}"
    );
    ensure!(
        v.child_value(7).n_children() == 0,
        "the delta leaves objects to be fetched one by one"
    );
    let headers = v.child_value(6);
    Ok(headers
        .iter()
        .map(|h| u64::from_le(h.child_value(2).get::<u64>().unwrap_or(0)))
        .collect())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
}
