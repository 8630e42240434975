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
//! 4. its signed size facts (what it adds to its parent, and down the
//!    parent chain to a commit this host holds) must fit on the root (with
//!    libostree's reserve) and the ESP before any object is downloaded;
//! 5. the pull fetches exactly that commit (libostree checks every object's
//!    checksum against the signed tree);
//! 6. the local /etc must merge into it; only then is it deployed.

mod remote;
mod report;
mod sizes;

pub use report::{Outcome, SourceRecord, UpdateOptions, UpdateReport};
pub use sizes::{missing_bytes, parse_size_entry, size_list, Missing, SizeEntry, SizeList};

use anyhow::{bail, Context, Result};
use ostree::gio;
use ostree::glib;

use super::fetch::Fetcher;
use super::verdict::{self, CommitFacts, Space};
use super::{key_of, state, Host};
use crate::boot::esp;
use crate::repo::commit::META_KARGS;
use crate::repo::sign;
use crate::repo::summary::Freshness;
use remote::{fetch_ancestor, fetch_commit, fetch_summary};

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
    let missing = missing_bytes(&repo, &checksum, &commit, |c| {
        fetch_ancestor(&fetcher, &base, c)
    })
    .with_context(|| base.clone())?;
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
