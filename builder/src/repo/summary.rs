//! The signed repository summary: the publisher's short-lived statement of
//! every ref's head.
//!
//! A commit signature says who made a commit, not that it is still the
//! newest: a mirror that keeps serving last month's commits (TUF's
//! "indefinite freeze") or a ref moved back to an older signed commit would
//! pass it. So the publisher also signs the repository's `summary` file —
//! libostree's own index of refs, `(a(s(taya{sv}))a{sv})` — with an expiry in
//! its metadata under `ostree.summary.expires` (seconds since the epoch,
//! big-endian `t`, the convention of libostree's `ostree.summary.last-modified`).
//! The signature covers the summary file's bytes and is stored as libostree
//! stores summary signatures: `summary.sig`, an `a{sv}` whose
//! `ostree.sign.ed25519` entry is an `aay` of 64-byte signatures.
//!
//! A host takes a ref's head from the verified summary (never from the
//! unsigned `refs/heads/` file), and refuses to stage anything once the
//! summary has expired: `hull publish` renews it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use ed25519_dalek::VerifyingKey;
use ostree::glib;
use ostree::prelude::*;

use crate::repo::sign::{self, SecretKey};

/// Summary metadata key: when the statement stops being valid (seconds since
/// the epoch, big-endian `t`).
pub const EXPIRES_KEY: &str = "ostree.summary.expires";
/// Summary metadata key libostree writes: when the summary was made.
pub const LAST_MODIFIED_KEY: &str = "ostree.summary.last-modified";
/// The summary file, at the repository's top.
pub const SUMMARY_FILE: &str = "summary";
/// Its detached signatures, next to it.
pub const SIGNATURE_FILE: &str = "summary.sig";
/// How long a summary signed by `hull build` or `hull publish` stays valid
/// unless told otherwise: 7 days.
pub const DEFAULT_LIFETIME_SECS: u64 = 7 * 24 * 3600;
/// The largest summary or signature file a host reads (libostree's default
/// max-metadata-size).
pub const MAX_SUMMARY_BYTES: u64 = 10 << 20;
pub const MAX_SIGNATURE_BYTES: u64 = 64 << 10;

const SUMMARY_TYPE: &str = "(a(s(taya{sv}))a{sv})";

/// What `hull publish` wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Published {
    /// Refs listed, with their heads.
    pub refs: BTreeMap<String, String>,
    /// Seconds since the epoch.
    pub expires: u64,
}

/// Regenerates `repo`'s summary with an expiry of `expires` (seconds since
/// the epoch) and signs it with `key` into `summary.sig` (written through a
/// temp file, synced and renamed).
///
/// Errors: the repository cannot be written.
pub fn publish(repo: &ostree::Repo, key: &SecretKey, expires: u64) -> Result<Published> {
    let path = repo_path(repo)?;
    let extra = glib::VariantDict::new(None);
    extra.insert_value(EXPIRES_KEY, &expires.to_be().to_variant());
    repo.regenerate_summary(Some(&extra.end()), ostree::gio::Cancellable::NONE)
        .with_context(|| format!("writing the summary of {}", path.display()))?;
    let summary_path = path.join(SUMMARY_FILE);
    let bytes = std::fs::read(&summary_path)
        .with_context(|| format!("reading {}", summary_path.display()))?;
    let signature = key.sign(&bytes);
    let dict = glib::VariantDict::new(None);
    dict.insert_value(sign::META_KEY, &vec![signature].to_variant());
    let sig_bytes = dict.end().data_as_bytes();
    crate::util::write_atomic(&path.join(SIGNATURE_FILE), &sig_bytes)?;
    let parsed = parse(&bytes).with_context(|| format!("reading {}", summary_path.display()))?;
    Ok(Published {
        refs: parsed.refs,
        expires,
    })
}

/// The directory of a repository opened from a path.
fn repo_path(repo: &ostree::Repo) -> Result<std::path::PathBuf> {
    repo.path()
        .path()
        .context("the OSTree repository has no local path")
}

/// A summary whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedSummary {
    /// Ref → head commit checksum.
    pub refs: BTreeMap<String, String>,
    /// `ostree.summary.expires`, seconds since the epoch.
    pub expires: Option<u64>,
    /// `ostree.summary.last-modified`, seconds since the epoch.
    pub last_modified: Option<u64>,
}

/// Parses a summary file (no signature check).
///
/// Errors: not a normal-form `(a(s(taya{sv}))a{sv})`, or a checksum that is
/// not 32 bytes.
pub fn parse(bytes: &[u8]) -> Result<SignedSummary> {
    let v = glib::Variant::from_data_with_type(
        bytes,
        glib::VariantTy::new(SUMMARY_TYPE).expect("summary type"),
    );
    if !v.is_normal_form() {
        bail!("not a well-formed OSTree summary");
    }
    let mut refs = BTreeMap::new();
    for entry in v.child_value(0).iter() {
        let name: String = entry.child_value(0).get().unwrap_or_default();
        let csum = entry.child_value(1).child_value(1);
        let csum = csum.fixed_array::<u8>().unwrap_or_default();
        if csum.len() != 32 {
            bail!("the summary's entry for {name} has no valid checksum");
        }
        refs.insert(name, hex::encode(csum));
    }
    let meta = glib::VariantDict::new(Some(&v.child_value(1)));
    let be = |k: &str| meta.lookup::<u64>(k).ok().flatten().map(u64::from_be);
    Ok(SignedSummary {
        refs,
        expires: be(EXPIRES_KEY),
        last_modified: be(LAST_MODIFIED_KEY),
    })
}

/// Checks `sig` (the bytes of `summary.sig`) over `summary` against `keys`,
/// then parses the summary. `url` names the source in errors.
///
/// Errors: no signature, none by a trusted key, a malformed file.
pub fn verify(
    summary: &[u8],
    sig: Option<&[u8]>,
    keys: &[VerifyingKey],
    url: &str,
) -> Result<SignedSummary> {
    let signatures = match sig {
        None => Vec::new(),
        Some(s) => sign::signatures_in(s, "summary")
            .map_err(|e| anyhow::anyhow!("{url}/{SIGNATURE_FILE}: {e}"))?,
    };
    if signatures.is_empty() {
        bail!("{url}/{SUMMARY_FILE} is not signed (no {SIGNATURE_FILE}): refusing a source whose refs nobody vouches for");
    }
    if !sign::verify_data(summary, &signatures, keys) {
        bail!(
            "{url}/{SUMMARY_FILE} has {} signature(s), none by the {} trusted key(s): refusing it",
            signatures.len(),
            keys.len()
        );
    }
    parse(summary).with_context(|| format!("reading {url}/{SUMMARY_FILE}"))
}

/// Whether a signed statement still holds at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "at")]
pub enum Freshness {
    /// Valid until then (seconds since the epoch).
    Fresh(u64),
    /// Expired then: the source stopped moving, or is held back.
    Stale(u64),
    /// The summary names no expiry: a host cannot tell a frozen source.
    NoExpiry,
}

impl Freshness {
    /// `expires` judged at `now` (both seconds since the epoch).
    pub fn of(expires: Option<u64>, now: u64) -> Freshness {
        match expires {
            None => Freshness::NoExpiry,
            Some(e) if now >= e => Freshness::Stale(e),
            Some(e) => Freshness::Fresh(e),
        }
    }

    /// One line for `hull status` and errors.
    pub fn describe(&self, url: &str) -> String {
        match self {
            Freshness::Fresh(e) => format!("{url} is signed fresh until {}", utc(*e)),
            Freshness::Stale(e) => format!(
                "{url} is stale since {}: its signed summary expired (the publisher renews it with `hull publish`)",
                utc(*e)
            ),
            Freshness::NoExpiry => format!(
                "{url}: its signed summary names no expiry ({EXPIRES_KEY}), so a frozen source cannot be told apart"
            ),
        }
    }
}

/// Seconds since the epoch as `2026-11-30 06:04:35 UTC`.
pub fn utc(secs: u64) -> String {
    match jiff::Timestamp::from_second(secs.min(i64::MAX as u64) as i64) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => format!("{secs} s after the epoch"),
    }
}

/// Parses a lifetime such as `7d`, `36h` or `90m` into seconds.
///
/// Errors: not a duration, or zero.
pub fn parse_lifetime(text: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration such as 7d, 36h or 90m: {e}"))?;
    if d.as_secs() == 0 {
        return Err(format!(
            "{text:?}: a signed summary must live at least a second"
        ));
    }
    Ok(d.as_secs())
}

/// Renews the summary of the repository at `path`: [`publish`] with an
/// expiry `lifetime` seconds from now.
pub fn publish_at(path: &Path, key: &SecretKey, lifetime: u64) -> Result<Published> {
    if !path.join("config").is_file() {
        bail!(
            "{}: not an OSTree repository (no config file)",
            path.display()
        );
    }
    let repo = crate::repo::commit::open_or_create(path)?;
    publish(&repo, key, crate::util::now() + lifetime)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real repository, a real summary: signed, verified, parsed; a
    /// change of one byte, another key and no signature are refused.
    #[test]
    fn published_summary_verifies_and_names_the_heads() {
        let (t, repo, c) = crate::repo::commit::test_repo_with_commit(b"x");
        let keys = t.path().join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        sign::write_keypair(&keys.join("k")).unwrap();
        sign::write_keypair(&keys.join("other")).unwrap();
        let key = sign::load_secret(&keys.join("k")).unwrap();
        let other = sign::load_secret(&keys.join("other")).unwrap();
        let p = publish(&repo, &key, 2_000_000_000).unwrap();
        assert_eq!(p.refs.get("hull/t/x86_64/stable"), Some(&c));
        let dir = t.path().join("repo");
        let summary = std::fs::read(dir.join(SUMMARY_FILE)).unwrap();
        let sig = std::fs::read(dir.join(SIGNATURE_FILE)).unwrap();
        let s = verify(&summary, Some(&sig), &[key.public()], "http://x/repo").unwrap();
        assert_eq!(s.refs, p.refs);
        assert_eq!(s.expires, Some(2_000_000_000));
        assert!(s.last_modified.is_some());

        let e = verify(&summary, Some(&sig), &[other.public()], "http://x/repo")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("none by the 1 trusted key") && e.contains("http://x/repo/summary"),
            "{e}"
        );
        let e = verify(&summary, None, &[key.public()], "http://x/repo")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not signed"), "{e}");
        let mut changed = summary.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        assert!(verify(&changed, Some(&sig), &[key.public()], "u").is_err());
        assert!(parse(b"not a summary").is_err());
    }

    /// (expires, now) → freshness
    #[test]
    fn freshness_table() {
        let cases = [
            (None, 10, Freshness::NoExpiry),
            (Some(11), 10, Freshness::Fresh(11)),
            (Some(10), 10, Freshness::Stale(10)),
            (Some(5), 10, Freshness::Stale(5)),
        ];
        for (expires, now, want) in cases {
            assert_eq!(Freshness::of(expires, now), want, "{expires:?} {now}");
        }
        assert!(Freshness::Stale(0)
            .describe("http://u")
            .contains("stale since 1970-01-01 00:00:00 UTC"));
    }

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("7d"), Ok(7 * 86400));
        assert_eq!(parse_lifetime("90m"), Ok(5400));
        assert!(parse_lifetime("soon").is_err());
        assert!(parse_lifetime("0s").is_err());
    }
}
