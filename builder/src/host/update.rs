//! `hull update`: fetch the ref's newest commit, verify its signature,
//! check it fits, pull it, deploy it with a limited number of boot tries.
//!
//! The order is what makes it safe (docs/updates.md has the threat table):
//! 1. take OSTree's sysroot lock, then read every state acted on (a second
//!    `hull update` is refused, not queued behind stale facts);
//! 2. the signed summary says which commit is the ref's head, and until when
//!    that statement holds (a frozen or rolled-back mirror is refused);
//! 3. the commit object, fetched over plain HTTP, must hash to that checksum
//!    and carry a signature by a trusted key; it must be bound to the ref this
//!    host follows and built for its architecture; it must not be older than
//!    the booted commit;
//! 4. its signed size facts must fit on the root (with libostree's reserve)
//!    and the ESP before any object is downloaded;
//! 5. the pull fetches exactly that commit (libostree checks every object's
//!    checksum against the signed tree);
//! 6. the local /etc must merge into it; only then is it deployed.

use anyhow::{bail, Context, Result};
use ostree::gio;
use ostree::glib;
use serde::{Deserialize, Serialize};

use super::fetch::{Fetcher, Limits};
use super::verdict::{self, CommitFacts, Space};
use super::{key_of, state, Host};
use crate::boot::esp;
use crate::repo::commit::META_KARGS;
use crate::repo::sign;
use crate::repo::summary::{self, Freshness, SignedSummary};

/// What `hull update` was asked to do.
#[derive(Debug, Clone)]
pub struct UpdateOptions {
    /// Only say whether an update is available.
    pub check: bool,
    /// Download and verify, but do not deploy.
    pub download_only: bool,
    /// Accept a commit older than the booted one.
    pub allow_downgrade: bool,
    /// Bounds of hull's own downloads.
    pub limits: Limits,
    /// Take the update now, before this host's turn in its rollout wave.
    pub now: bool,
}

impl Default for UpdateOptions {
    fn default() -> Self {
        UpdateOptions {
            check: false,
            download_only: false,
            allow_downgrade: false,
            limits: Limits::DEFAULT,
            now: false,
        }
    }
}

/// What `hull update` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The booted commit is the ref's head.
    UpToDate,
    /// A newer commit is there (`--check`).
    Available,
    /// Pulled and verified, not deployed (`--download-only`).
    Downloaded,
    /// Deployed as the default for the next boot, on trial.
    Deployed,
    /// A newer commit is there, but this host's turn in its rollout wave
    /// (`not_before`) has not come (`--now` overrides).
    NotYet,
}

/// What `hull update` did, and with what.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateReport {
    pub remote: String,
    pub url: String,
    #[serde(rename = "ref")]
    pub ostree_ref: String,
    pub booted: String,
    pub available: Option<String>,
    pub version: Option<String>,
    pub result: Outcome,
    /// Until when the source's signed summary holds.
    pub source: Freshness,
    pub boot_tries: Option<u32>,
    pub esp: Option<esp::SyncReport>,
    /// When this host's turn in the commit's rollout wave comes (Unix
    /// seconds); `None`: the commit has no rollout period.
    pub not_before: Option<u64>,
    /// What the pull fetched (`None`: nothing was pulled).
    pub pulled: Option<super::pull::PullStats>,
}

/// What the last look at the update source found, kept in
/// /var/lib/hull/source.json for `hull status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub url: String,
    #[serde(rename = "ref")]
    pub ostree_ref: String,
    /// Seconds since the epoch.
    pub checked_at: u64,
    /// `ostree.summary.expires` of the verified summary, seconds since the epoch.
    pub expires: Option<u64>,
    /// The ref's head in it.
    pub head: Option<String>,
}

impl SourceRecord {
    pub fn path(state: &std::path::Path) -> std::path::PathBuf {
        state.join("source.json")
    }

    /// The freshness of the statement at `now`.
    pub fn freshness(&self, now: u64) -> Freshness {
        Freshness::of(self.expires, now)
    }
}

/// Hull's margins on top of libostree's reserve: what the deployment's own
/// writes (the /etc merge, the journal) need.
const ROOT_MARGIN: u64 = 64 << 20;
const ESP_MARGIN: u64 = 1 << 20;

pub fn run(host: &mut Host, opts: &UpdateOptions) -> Result<UpdateReport> {
    if !opts.check {
        host.lock()?;
    }
    let (remote, ostree_ref) = origin_refspec(&host.booted)?;
    let repo = host.sysroot.repo();
    let url = repo
        .remote_get_url(&remote)
        .with_context(|| format!("reading the URL of remote {remote} (/etc/ostree/remotes.d)"))?
        .to_string();
    let base = url.trim_end_matches('/').to_string();
    let booted = host.booted.csum().to_string();

    let keys_path = host.paths.lib.join("trusted.ed25519");
    let keys_text = std::fs::read_to_string(&keys_path)
        .with_context(|| format!("reading the trusted keys {}", keys_path.display()))?;
    let keys = sign::parse_public_keys(&keys_text, &keys_path.display().to_string())?;
    if keys.is_empty() {
        bail!(
            "{}: no trusted key: refusing every update",
            keys_path.display()
        );
    }

    let fetcher = Fetcher::new(opts.limits);
    let signed = fetch_summary(&fetcher, &base, &keys)?;
    let now = state::now();
    let freshness = Freshness::of(signed.expires, now);
    let head = signed.refs.get(&ostree_ref).cloned();
    let record = SourceRecord {
        url: base.clone(),
        ostree_ref: ostree_ref.clone(),
        checked_at: now,
        expires: signed.expires,
        head: head.clone(),
    };
    if let Err(e) = state::write(&SourceRecord::path(&host.paths.state), &record) {
        log::warn!("recording the source's state: {e:#}");
    }
    match freshness {
        Freshness::Fresh(_) => {}
        stale => bail!("{}; nothing was staged", stale.describe(&base)),
    }
    let checksum = head.with_context(|| {
        format!("{base}/summary: the signed summary lists no {ostree_ref}: nothing to update to")
    })?;

    let commit = fetch_commit(&fetcher, &base, &checksum, &keys)?;
    let facts = CommitFacts::of(&checksum, &commit);
    verdict::check_binding(&facts, &ostree_ref, Host::arch().as_str())
        .with_context(|| base.clone())?;
    let mut report = UpdateReport {
        remote: remote.clone(),
        url: base.clone(),
        ostree_ref: ostree_ref.clone(),
        booted: booted.clone(),
        available: Some(checksum.clone()),
        version: facts.version.clone(),
        result: Outcome::UpToDate,
        source: freshness,
        boot_tries: None,
        esp: None,
        not_before: None,
        pulled: None,
    };
    if checksum == booted {
        return Ok(report);
    }
    // OSTree reuses its boot links between deployments whose kernel,
    // arguments and version are all equal, which would let an old boot
    // entry start the new commit before hull has given it boot tries:
    // every build must carry its own version.
    if report.version.is_some() && report.version == host.version_of(&booted) {
        bail!(
            "{base}: {ostree_ref} is at {checksum}, a different commit with the same version {} as the booted one: \
             refusing it (bump `version` in the manifest for every build)",
            report.version.as_deref().unwrap_or_default()
        );
    }
    let booted_timestamp = repo
        .load_commit(&booted)
        .ok()
        .map(|(c, _)| ostree::commit_get_timestamp(&c));
    verdict::check_downgrade(&facts, &booted, booted_timestamp, opts.allow_downgrade)
        .with_context(|| base.clone())?;
    let meta = glib::VariantDict::new(Some(&commit.child_value(0)));
    report.not_before = super::wave::host_not_before(&checksum, &commit, &meta)?;
    if opts.check {
        report.result = Outcome::Available;
        return Ok(report);
    }
    if report.not_before.is_some_and(|t| t > now) && !opts.now {
        report.result = Outcome::NotYet;
        return Ok(report);
    }

    // Space, before anything is downloaded.
    let boot_bytes = verdict::check_size_facts(&facts).with_context(|| base.clone())?;
    let missing = missing_bytes(&repo, &meta)?;
    let sysroot_dir = host.sysroot_dir()?;
    let root_fs = rustix::fs::fstatvfs(&sysroot_dir)
        .with_context(|| format!("statvfs {}", host.paths.sysroot.display()))?;
    let root_total = root_fs.f_blocks.saturating_mul(root_fs.f_frsize);
    let root_free = root_fs.f_bavail.saturating_mul(root_fs.f_frsize);
    let esp_dir = host.esp_dir()?;
    verdict::check_space(
        &Space {
            needed: missing.unpacked,
            free: root_free,
            reserve: ostree_reserve(&repo, root_total) + ROOT_MARGIN,
        },
        &Space {
            needed: boot_bytes,
            free: esp::free_bytes(&esp_dir)?,
            reserve: ESP_MARGIN,
        },
        &host.paths.sysroot.display().to_string(),
        &host.paths.esp.display().to_string(),
    )?;

    log::info!("update: pulling {checksum}");
    // The sysroot opens its repository through a file descriptor; the
    // pull's child process opens it by path.
    let repo_dir = host.paths.sysroot.join("ostree/repo");
    let pulled = super::pull::pull_bounded(
        &std::env::current_exe().context("finding the hull binary")?,
        &repo_dir,
        &super::pull::PullSpec {
            remote: &remote,
            ostree_ref: &ostree_ref,
            checksum: &checksum,
        },
        super::pull::budget(missing.archived, missing.unpacked),
    )
    .with_context(|| format!("updating from {base}"))?;
    log::info!("update: pulled {checksum}: {}", pulled.describe());
    report.pulled = Some(pulled);
    if opts.download_only {
        report.result = Outcome::Downloaded;
        return Ok(report);
    }

    // Deploy: reuse a deployment of this commit if an interrupted update
    // left one, else make one with the booted deployment's /etc merged in.
    let osname = host.osname();
    let existing = host
        .deployments()
        .into_iter()
        .find(|d| d.csum() == checksum.as_str() && d.osname() == osname.as_str());
    let new = match existing {
        Some(d) => d,
        None => {
            super::etc_merge::check(
                &repo,
                &checksum,
                &host.paths.root.join("etc"),
                &host.paths.root.join("usr/etc"),
            )?;
            log::info!("update: deploying {checksum}");
            let kargs = kernel_args(&host.booted, &meta);
            let kargs: Vec<&str> = kargs.iter().map(String::as_str).collect();
            let origin = host.booted.origin();
            host.sysroot
                .deploy_tree(
                    Some(&osname),
                    &checksum,
                    origin.as_ref(),
                    Some(&host.booted),
                    &kargs,
                    gio::Cancellable::NONE,
                )
                .with_context(|| format!("deploying {checksum}"))?
        }
    };
    let booted_dep = host.booted.clone();
    let tries = host.config.boot_tries;
    let new_key = key_of(&new);
    let sync = host.write_deployments(&[new, booted_dep], Some((&new_key, tries)))?;
    report.boot_tries = Some(tries);
    report.esp = Some(sync);
    report.result = Outcome::Deployed;
    Ok(report)
}

/// libostree's reserve on the root, from the host repository's config.
fn ostree_reserve(repo: &ostree::Repo, total: u64) -> u64 {
    let config = repo.config();
    let get = |k: &str| config.string("core", k).ok().map(|s| s.to_string());
    let size = get("min-free-space-size").and_then(|s| verdict::parse_ostree_size(&s));
    let percent = get("min-free-space-percent").and_then(|s| s.trim().parse().ok());
    verdict::ostree_reserve(total, percent, size)
}

/// `remote:ref` from the booted deployment's origin.
pub fn origin_refspec(booted: &ostree::Deployment) -> Result<(String, String)> {
    let origin = booted
        .origin()
        .context("the booted deployment has no origin file")?;
    let refspec = origin
        .string("origin", "refspec")
        .context("the booted deployment's origin names no refspec")?;
    match refspec.split_once(':') {
        Some((remote, r)) if !remote.is_empty() && !r.is_empty() => {
            Ok((remote.to_string(), r.to_string()))
        }
        _ => bail!(
            "the booted deployment follows {refspec}, which names no remote: this image was built without [update]"
        ),
    }
}

/// The new commit's kernel arguments, else the booted deployment's
/// ([`crate::boot::cmdline::for_update`]).
fn kernel_args(booted: &ostree::Deployment, meta: &glib::VariantDict) -> Vec<String> {
    let commit = meta.lookup::<Vec<String>>(META_KARGS).ok().flatten();
    let options = booted.bootconfig().and_then(|b| b.get("options"));
    crate::boot::cmdline::for_update(commit, options.as_deref())
}

/// The source's summary, its signature checked against `keys`.
fn fetch_summary(
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
fn fetch_commit(
    fetcher: &Fetcher,
    base: &str,
    checksum: &str,
    keys: &[ed25519_dalek::VerifyingKey],
) -> Result<glib::Variant> {
    if checksum.len() != 64 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{base}/summary: {checksum:?} is not a commit checksum");
    }
    let (a, b) = checksum.split_at(2);
    let commit_url = format!("{base}/objects/{a}/{b}.commit");
    // libostree's default max-metadata-size.
    let bytes = fetcher.require(&commit_url, 10 << 20, "the commit the signed summary names")?;
    let meta_url = format!("{base}/objects/{a}/{b}.commitmeta");
    let detached = fetcher.get(&meta_url, 1 << 20)?.unwrap_or_default();
    let signatures =
        sign::signatures_in(&detached, checksum).with_context(|| format!("reading {meta_url}"))?;
    sign::verify(checksum, &bytes, &signatures, keys)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("refusing the update from {base}"))?;
    let variant = glib::Variant::from_data_with_type(
        bytes,
        glib::VariantTy::new("(a{sv}aya(say)sstayay)").expect("commit type"),
    );
    if !variant.is_normal_form() {
        bail!("{commit_url}: not a well-formed commit object");
    }
    Ok(variant)
}

/// Bytes of the objects in a commit's `ostree.sizes` that a repository lacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Missing {
    /// As stored once pulled.
    pub unpacked: u64,
    /// As transferred (compressed).
    pub archived: u64,
}

/// The objects of the commit's `ostree.sizes` that the local repository
/// lacks. Errors when the commit has no `ostree.sizes` (fail closed).
pub fn missing_bytes(repo: &ostree::Repo, meta: &glib::VariantDict) -> Result<Missing> {
    let Some(sizes) = meta.lookup_value(
        "ostree.sizes",
        Some(glib::VariantTy::new("aay").expect("type")),
    ) else {
        bail!("the commit has no ostree.sizes: its size on disk is unknown, refusing it");
    };
    let mut total = Missing::default();
    for entry in sizes.iter() {
        let bytes = entry.fixed_array::<u8>().unwrap_or_default();
        let Some(e) = parse_size_entry(bytes) else {
            bail!("the commit's ostree.sizes metadata is malformed");
        };
        let objtype = match e.objtype {
            Some(2) => ostree::ObjectType::DirTree,
            Some(3) => ostree::ObjectType::DirMeta,
            _ => ostree::ObjectType::File,
        };
        if !repo.has_object(objtype, &e.checksum, gio::Cancellable::NONE)? {
            total.unpacked += e.unpacked;
            total.archived += e.archived;
        }
    }
    Ok(total)
}

/// One `ostree.sizes` entry: 32 checksum bytes, then the archived and
/// unpacked sizes as LEB128 varints, then (newer ostree) the object type.
#[derive(Debug, PartialEq, Eq)]
pub struct SizeEntry {
    pub checksum: String,
    pub archived: u64,
    pub unpacked: u64,
    pub objtype: Option<u8>,
}

pub fn parse_size_entry(bytes: &[u8]) -> Option<SizeEntry> {
    let checksum = hex::encode(bytes.get(..32)?);
    let mut rest = &bytes[32..];
    let mut varint = || -> Option<u64> {
        let mut value = 0u64;
        for (i, b) in rest.iter().enumerate().take(10) {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                rest = &rest[i + 1..];
                return Some(value);
            }
        }
        None
    };
    let archived = varint()?;
    let unpacked = varint()?;
    Some(SizeEntry {
        checksum,
        archived,
        unpacked,
        objtype: rest.first().copied(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_entries_parse() {
        let mut e = vec![0xab; 32];
        e.extend([0x96, 0x01]); // 150
        e.extend([0x05]);
        e.push(1);
        assert_eq!(
            parse_size_entry(&e),
            Some(SizeEntry {
                checksum: "ab".repeat(32),
                archived: 150,
                unpacked: 5,
                objtype: Some(1)
            })
        );
        assert_eq!(parse_size_entry(&e[..33]), None);
        assert_eq!(parse_size_entry(&e[..34]), None);
        assert!(parse_size_entry(&[0u8; 10]).is_none());
    }

    /// ostree.sizes as libostree writes it into a real commit.
    #[test]
    fn sizes_of_a_real_commit() {
        let (t, repo, c) = crate::repo::commit::test_repo_with_commit(&[7u8; 5000]);
        let (commit, _) = repo.load_commit(&c).unwrap();
        let dict = glib::VariantDict::new(Some(&commit.child_value(0)));
        // Everything is present locally: nothing missing.
        assert_eq!(missing_bytes(&repo, &dict).unwrap(), Missing::default());
        // An empty repository lacks the 5000-byte file (and the tree objects).
        let empty = crate::repo::commit::open_or_create(&t.path().join("empty")).unwrap();
        let missing = missing_bytes(&empty, &dict).unwrap();
        assert!(missing.unpacked >= 5000, "{missing:?}");
        assert!(missing.archived > 0, "{missing:?}");
    }
}
