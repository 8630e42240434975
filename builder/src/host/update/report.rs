//! What `hull update` is asked ([`UpdateOptions`]), what it found
//! ([`Outcome`], [`UpdateReport`]) and what it keeps for `hull status`
//! ([`SourceRecord`]).

use serde::{Deserialize, Serialize};

use crate::boot::esp;
use crate::host::fetch::Limits;
use crate::repo::summary::Freshness;

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
    pub pulled: Option<crate::host::pull::PullStats>,
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
