//! Fetching from the update source over plain HTTP: the summary and the
//! commit object, each checked against the trusted keys before it is used.

use anyhow::{bail, Context, Result};
use ostree::glib;

use crate::host::fetch::Fetcher;
use crate::repo::sign;
use crate::repo::summary::{self, SignedSummary};

/// The source's summary, its signature checked against `keys`.
pub(super) fn fetch_summary(
    fetcher: &Fetcher,
    base: &str,
    keys: &[ed25519_dalek::VerifyingKey],
) -> Result<SignedSummary> {
    let summary_url = format!("{base}/{}", summary::SUMMARY_FILE);
    let bytes = fetcher.require(
        &summary_url,
        summary::MAX_SUMMARY_BYTES,
        "the repository summary",
    )?;
    let sig_url = format!("{base}/{}", summary::SIGNATURE_FILE);
    let sig = fetcher.get(&sig_url, summary::MAX_SIGNATURE_BYTES)?;
    summary::verify(&bytes, sig.as_deref(), keys, base)
}

/// The commit object `checksum` from the server, its bytes checked against
/// its name and its signature against `keys`.
pub(super) fn fetch_commit(
    fetcher: &Fetcher,
    base: &str,
    checksum: &str,
    keys: &[ed25519_dalek::VerifyingKey],
) -> Result<glib::Variant> {
    let (url, bytes) = fetch_object(
        fetcher,
        base,
        checksum,
        "the commit the signed summary names",
    )?;
    // `…/objects/xx/….commit` → `….commitmeta`.
    let meta_url = format!("{url}meta");
    let detached = fetcher.get(&meta_url, 1 << 20)?.unwrap_or_default();
    let signatures =
        sign::signatures_in(&detached, checksum).with_context(|| format!("reading {meta_url}"))?;
    sign::verify(checksum, &bytes, &signatures, keys)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("refusing the update from {base}"))?;
    well_formed(&url, bytes)
}

/// An ancestor of a signed commit, `checksum` (named by its child, so
/// trusted once its bytes hash to it: no signature is needed).
pub(super) fn fetch_ancestor(
    fetcher: &Fetcher,
    base: &str,
    checksum: &str,
) -> Result<glib::Variant> {
    let (url, bytes) = fetch_object(fetcher, base, checksum, "an ancestor of the new commit")?;
    let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    if actual != checksum {
        bail!("{url}: the object's sha256 is {actual}: it was altered or truncated");
    }
    well_formed(&url, bytes)
}

/// The bytes of commit object `checksum` and their URL.
fn fetch_object(
    fetcher: &Fetcher,
    base: &str,
    checksum: &str,
    what: &str,
) -> Result<(String, Vec<u8>)> {
    if checksum.len() != 64 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{base}/summary: {checksum:?} is not a commit checksum");
    }
    let (a, b) = checksum.split_at(2);
    let url = format!("{base}/objects/{a}/{b}.commit");
    // libostree's default max-metadata-size.
    let bytes = fetcher.require(&url, 10 << 20, what)?;
    Ok((url, bytes))
}

fn well_formed(url: &str, bytes: Vec<u8>) -> Result<glib::Variant> {
    let variant = glib::Variant::from_data_with_type(
        bytes,
        glib::VariantTy::new("(a{sv}aya(say)sstayay)").expect("commit type"),
    );
    if !variant.is_normal_form() {
        bail!("{url}: not a well-formed commit object");
    }
    Ok(variant)
}
