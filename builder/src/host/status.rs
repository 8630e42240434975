//! `hull status`: the deployments, what boots next, whether the last boot
//! was a rollback, and whether the update source is still fresh.
//!
//! Everything is derived from the boot loader's facts (the ESP's entries and
//! their boot counters, and the entry systemd-boot says it booted), not
//! from what hull last wrote: from the first second of a boot the host
//! reports what the boot loader did, even before hull-reconcile.service has
//! made a rollback permanent.

use anyhow::Result;
use serde::Serialize;

use super::rollback::{self, Reconcile};
use super::state::{self, HealthRecord, RollbackRecord};
use super::update::SourceRecord;
use super::{key_of, Host};
use crate::boot::bls::EntryName;
use crate::boot::esp;
use crate::repo::summary::{self, Freshness};

/// systemd-boot's `LoaderEntrySelected` EFI variable: the entry it booted.
const ENTRY_SELECTED_VAR: &str =
    "/sys/firmware/efi/efivars/LoaderEntrySelected-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub deployments: Vec<DeploymentStatus>,
    /// The commit systemd-boot will pick at the next boot, from the ESP.
    pub next_boot: Option<String>,
    /// The entry systemd-boot booted this time (`LoaderEntrySelected`), when
    /// the firmware tells.
    pub booted_entry: Option<String>,
    /// Set when the booted deployment is where an automatic rollback left
    /// the host.
    pub rollback: Option<RollbackRecord>,
    /// The failed deployment used up its tries and the booted one fails its
    /// health check too: the host stays up on the booted one, without
    /// rebooting (it has no tries to count), until someone acts.
    pub both_failed: bool,
    /// The remote and ref this host follows.
    pub origin: Option<String>,
    /// What the last look at the update source found.
    pub source: Option<SourceStatus>,
    /// The update agent's strategy, next check, lock and wait (images
    /// built with `[update] auto = true`).
    pub agent: Option<super::agent::AgentStatus>,
    /// What the last `hull provision` did (docs/provisioning.md).
    pub provision: Option<super::provision::ProvisionRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub url: String,
    /// Seconds since the epoch.
    pub checked_at: u64,
    pub freshness: Freshness,
}

/// A deployment's standing with the boot loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeploymentState {
    /// Its entry has no counter: blessed, or never on trial.
    Good,
    /// Its entry counts boot tries, some left.
    Trial,
    /// Its entry used up its tries.
    Failed,
    /// No entry on the ESP names it.
    NoEntry,
}

impl DeploymentState {
    pub fn of(entry: Option<&EntryName>) -> DeploymentState {
        match entry {
            None => DeploymentState::NoEntry,
            Some(e) if e.exhausted() => DeploymentState::Failed,
            Some(e) if e.on_trial() => DeploymentState::Trial,
            Some(_) => DeploymentState::Good,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DeploymentStatus {
    pub checksum: String,
    pub serial: u32,
    pub version: Option<String>,
    pub booted: bool,
    /// What boots next: the boot loader's default (OSTree's first
    /// deployment when the ESP cannot be read).
    pub default: bool,
    pub staged: bool,
    pub state: DeploymentState,
    pub tries_left: Option<u32>,
    pub tries_done: Option<u32>,
    pub entry: Option<String>,
    pub health: Option<HealthRecord>,
}

/// The entry name in a `LoaderEntrySelected` variable: 4 bytes of
/// attributes, then UTF-16LE up to a NUL.
pub fn parse_entry_selected(bytes: &[u8]) -> Option<String> {
    let units: Vec<u16> = bytes
        .get(4..)?
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16(&units).ok().filter(|s| !s.is_empty())
}

pub fn status(host: &Host) -> Result<Status> {
    let entries: Vec<EntryName> = match host.esp_dir() {
        Ok(d) => esp::entries(&d)?,
        Err(e) => {
            log::warn!("{e:#}");
            Vec::new()
        }
    };
    let booted = key_of(&host.booted);
    let next = entries
        .iter()
        .filter(|e| !e.exhausted())
        .max_by_key(|e| e.prio);
    let next_boot = next.map(|e| e.csum.clone());
    let list = host.deployments();
    let mut out = Vec::new();
    for (i, d) in list.iter().enumerate() {
        let key = key_of(d);
        let entry = entries
            .iter()
            .filter(|e| e.is_for(&key))
            .max_by_key(|e| e.prio);
        let default = match next {
            Some(n) => n.is_for(&key),
            None => i == 0,
        };
        out.push(DeploymentStatus {
            version: host.version_of(&key.csum),
            health: state::read(&state::health_path(&host.paths.state, &key.csum)),
            booted: key == booted,
            default,
            staged: d.is_staged(),
            state: DeploymentState::of(entry),
            tries_left: entry.and_then(|e| e.tries_left),
            tries_done: entry.and_then(|e| e.tries_done),
            entry: entry.map(EntryName::file_name),
            checksum: key.csum,
            serial: key.serial,
        });
    }
    let keys: Vec<_> = list.iter().map(key_of).collect();
    let recorded: Option<RollbackRecord> = state::read(&state::rollback_path(&host.paths.state));
    let rollback = match rollback::decide(&booted, &keys, &entries) {
        // The boot loader fell back and hull-reconcile has not run yet.
        Reconcile::RolledBack { failed, tries } => Some(RollbackRecord {
            failed_version: host.version_of(&failed.csum),
            reason: rollback::rollback_reason(host, &failed.csum, tries),
            failed_checksum: failed.csum,
            booted_checksum: booted.csum.clone(),
            boot_id: state::boot_id(),
            at: state::now(),
        }),
        Reconcile::InStep => recorded.filter(|r| {
            r.booted_checksum == booted.csum
                // Still the rollback target: its entry is on the ESP with no tries.
                && entries.iter().any(|e| e.csum == r.failed_checksum && e.exhausted())
        }),
    };
    let booted_health = out
        .iter()
        .find(|d| d.booted)
        .and_then(|d| d.health.as_ref());
    let both_failed = rollback.is_some() && booted_health.is_some_and(|h| !h.ok);
    let origin = super::update::origin_refspec(&host.booted)
        .ok()
        .map(|(r, f)| format!("{r}:{f}"));
    let source =
        state::read::<SourceRecord>(&SourceRecord::path(&host.paths.state)).map(|r| SourceStatus {
            freshness: r.freshness(state::now()),
            url: r.url,
            checked_at: r.checked_at,
        });
    let booted_entry = std::fs::read(ENTRY_SELECTED_VAR)
        .ok()
        .and_then(|b| parse_entry_selected(&b));
    Ok(Status {
        deployments: out,
        next_boot,
        booted_entry,
        rollback,
        both_failed,
        origin,
        source,
        agent: super::agent::status(host),
        provision: state::read(&super::provision::ProvisionRecord::path(&host.paths.state)),
    })
}

impl Status {
    /// The line that makes `hull status` exit non-zero: the update source
    /// went stale (or never said when it would).
    pub fn problem(&self) -> Option<String> {
        let s = self.source.as_ref()?;
        match s.freshness {
            Freshness::Fresh(_) => None,
            f => Some(f.describe(&s.url)),
        }
    }
}

/// The human-readable form.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    if let Some(o) = &s.origin {
        out.push_str(&format!("following {o}\n"));
    }
    for d in &s.deployments {
        let mut marks = Vec::new();
        if d.booted {
            marks.push("booted".to_string());
        }
        if d.default {
            marks.push("default".to_string());
        }
        if d.staged {
            marks.push("staged".to_string());
        }
        if s.next_boot.as_deref() == Some(d.checksum.as_str()) {
            marks.push("next boot".to_string());
        }
        let state = match (d.state, d.tries_left, d.tries_done) {
            (DeploymentState::Trial, l, done) => format!(
                "on trial, {} left ({} used)",
                boot_tries(l.unwrap_or(0)),
                done.unwrap_or(0)
            ),
            (DeploymentState::Failed, _, done) => {
                format!("failed: used all {}", boot_tries(done.unwrap_or(0)))
            }
            (DeploymentState::Good, ..) => "good".to_string(),
            (DeploymentState::NoEntry, ..) => "no boot entry on the ESP".to_string(),
        };
        out.push_str(&format!(
            "{} {} {}.{} [{}] {}\n",
            if d.booted { "*" } else { " " },
            d.version.as_deref().unwrap_or("?"),
            d.checksum,
            d.serial,
            marks.join(", "),
            state
        ));
        if let Some(h) = d.health.as_ref().filter(|h| !h.ok) {
            out.push_str(&format!(
                "    last health check failed: {}\n",
                h.failures.join("; ")
            ));
        }
    }
    match &s.rollback {
        Some(r) => out.push_str(&format!(
            "last boot was an automatic rollback from {} ({}): {}\n",
            r.failed_version.as_deref().unwrap_or("?"),
            r.failed_checksum,
            r.reason
        )),
        None => out.push_str("last boot was not a rollback\n"),
    }
    if s.both_failed {
        out.push_str(
            "both deployments failed: the update used up its boot tries and the booted deployment fails its health check too; \
             the host stays up on it without rebooting (fix it and run `hull health`, or update to a fixed version)\n",
        );
    }
    if let Some(src) = &s.source {
        out.push_str(&format!(
            "update source: {} (checked {})\n",
            src.freshness.describe(&src.url),
            summary::utc(src.checked_at)
        ));
    }
    if let Some(a) = &s.agent {
        out.push_str(&super::agent::render(a));
    }
    if let Some(p) = &s.provision {
        out.push_str(&p.render());
    }
    out
}

/// "1 boot try", "2 boot tries".
pub fn boot_tries(n: u32) -> String {
    if n == 1 {
        "1 boot try".to_string()
    } else {
        format!("{n} boot tries")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_tries_counts_in_words() {
        for (n, want) in [(0, "0 boot tries"), (1, "1 boot try"), (3, "3 boot tries")] {
            assert_eq!(boot_tries(n), want);
        }
    }

    #[test]
    fn entry_selected_variable() {
        let mut bytes = vec![6, 0, 0, 0];
        for u in "hull-1-abc.conf".encode_utf16() {
            bytes.extend(u.to_le_bytes());
        }
        bytes.extend([0, 0]);
        assert_eq!(
            parse_entry_selected(&bytes).as_deref(),
            Some("hull-1-abc.conf")
        );
        assert_eq!(parse_entry_selected(&[6, 0, 0, 0, 0, 0]), None);
        assert_eq!(parse_entry_selected(&[1]), None);
    }

    #[test]
    fn states_from_entries() {
        let e = |left, done| EntryName {
            prio: 1,
            csum: "a".repeat(64),
            serial: 0,
            tries_left: left,
            tries_done: done,
        };
        assert_eq!(DeploymentState::of(None), DeploymentState::NoEntry);
        assert_eq!(
            DeploymentState::of(Some(&e(None, None))),
            DeploymentState::Good
        );
        assert_eq!(
            DeploymentState::of(Some(&e(Some(1), Some(1)))),
            DeploymentState::Trial
        );
        assert_eq!(
            DeploymentState::of(Some(&e(Some(0), Some(2)))),
            DeploymentState::Failed
        );
    }
}
