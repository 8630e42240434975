//! `hull rollback`, and the automatic kind: finishing the job when
//! systemd-boot fell back because a new deployment used up its tries.

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::state::{self, HealthRecord, RollbackRecord};
use super::{key_of, Host};
use crate::boot::bls::{DeploymentKey, EntryName};
use crate::boot::esp;

#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    /// The deployment that boots next.
    pub default: String,
    pub default_version: Option<String>,
    /// The one it replaced as the default.
    pub previous: String,
    pub esp: esp::SyncReport,
}

/// Makes the second deployment the default (and the default the second).
pub fn rollback(host: &mut Host) -> Result<RollbackReport> {
    host.lock()?;
    let mut list = host.deployments();
    if list.len() < 2 {
        bail!(
            "there is no other deployment to roll back to (only {})",
            list.first()
                .map(|d| d.csum().to_string())
                .unwrap_or_default()
        );
    }
    list.swap(0, 1);
    let default = list[0].csum().to_string();
    let previous = list[1].csum().to_string();
    let esp = host.write_deployments(&list, None)?;
    Ok(RollbackReport {
        default_version: host.version_of(&default),
        default,
        previous,
        esp,
    })
}

/// What the boot loader's facts say about the booted deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconcile {
    /// OSTree's default is what booted, or was passed over by choice (its
    /// entry still has tries, or has no counter).
    InStep,
    /// systemd-boot fell back: OSTree's default used up its boot tries, and
    /// the booted deployment must become the default.
    RolledBack { failed: DeploymentKey, tries: u32 },
}

/// Decides from plain facts: the booted deployment, OSTree's list (default
/// first) and the ESP's entries.
pub fn decide(
    booted: &DeploymentKey,
    deployments: &[DeploymentKey],
    entries: &[EntryName],
) -> Reconcile {
    let Some(default) = deployments.first() else {
        return Reconcile::InStep;
    };
    if default == booted {
        return Reconcile::InStep;
    }
    match entries.iter().find(|e| e.is_for(default)) {
        Some(e) if e.exhausted() => Reconcile::RolledBack {
            failed: default.clone(),
            tries: e.tries_done.unwrap_or(0),
        },
        _ => Reconcile::InStep,
    }
}

/// Why the failed deployment was left, from what it recorded.
pub fn rollback_reason(host: &Host, failed: &str, tries: u32) -> String {
    let health: Option<HealthRecord> = state::read(&state::health_path(&host.paths.state, failed));
    match health {
        Some(h) if !h.ok => format!("its health check failed: {}", h.failures.join("; ")),
        _ => format!(
            "it used up its {} without reaching a passing health check (no failure was recorded: it crashed or hung before the check ran)",
            super::status::boot_tries(tries)
        ),
    }
}

/// The facts [`decide`] takes, read from the host.
fn facts(host: &Host) -> Result<(DeploymentKey, Vec<DeploymentKey>, Vec<EntryName>)> {
    let deployments = host.deployments().iter().map(key_of).collect();
    let entries = esp::entries(&host.esp_dir()?)?;
    Ok((key_of(&host.booted), deployments, entries))
}

/// When systemd-boot rolled back by itself (OSTree's default used up its
/// tries and the previous deployment booted), makes the booted deployment
/// the default, keeps the failed one as the rollback target (its entry stays
/// at zero tries) and records why. Run early in boot by
/// hull-reconcile.service, before logins, so the host never reports a state
/// the boot loader has left.
///
/// The common case (nothing to do) reads without the lock; a rollback is
/// decided again under the lock before anything is written.
pub fn reconcile(host: &mut Host) -> Result<Option<RollbackRecord>> {
    let (booted, deployments, entries) = facts(host)?;
    if decide(&booted, &deployments, &entries) == Reconcile::InStep {
        return Ok(None);
    }
    host.lock()?;
    let (booted, deployments, entries) = facts(host)?;
    let Reconcile::RolledBack { failed, tries } = decide(&booted, &deployments, &entries) else {
        return Ok(None);
    };
    let record = RollbackRecord {
        failed_version: host.version_of(&failed.csum),
        reason: rollback_reason(host, &failed.csum, tries),
        failed_checksum: failed.csum.clone(),
        booted_checksum: booted.csum.clone(),
        boot_id: state::boot_id(),
        at: state::now(),
    };
    let mut list = host.deployments();
    let i = list
        .iter()
        .position(|d| key_of(d) == booted)
        .context("the booted deployment is not in OSTree's list")?;
    let b = list.remove(i);
    list.insert(0, b);
    host.write_deployments(&list, None)?;
    state::write(&state::rollback_path(&host.paths.state), &record)?;
    log::warn!(
        "the host rolled back: {} ({}) {}",
        record.failed_version.as_deref().unwrap_or("?"),
        record.failed_checksum,
        record.reason
    );
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> DeploymentKey {
        DeploymentKey {
            osname: "minimal".into(),
            csum: c.to_string().repeat(64),
            serial: 0,
        }
    }

    fn entry(c: char, prio: u64, left: Option<u32>, done: Option<u32>) -> EntryName {
        EntryName {
            prio,
            csum: c.to_string().repeat(64),
            serial: 0,
            tries_left: left,
            tries_done: done,
        }
    }

    /// (booted, OSTree's list, entries) → decision
    #[test]
    fn reconcile_decisions() {
        let (a, c) = (key('a'), key('c'));
        let rolled = Reconcile::RolledBack {
            failed: c.clone(),
            tries: 2,
        };
        let cases = [
            // Booted the default: nothing to do.
            (
                &a,
                vec![a.clone(), c.clone()],
                vec![entry('a', 2, None, None)],
                Reconcile::InStep,
            ),
            // C used up its tries and A booted: roll back.
            (
                &a,
                vec![c.clone(), a.clone()],
                vec![entry('c', 2, Some(0), Some(2)), entry('a', 1, None, None)],
                rolled,
            ),
            // C still has tries (A picked by hand in the menu): leave it.
            (
                &a,
                vec![c.clone(), a.clone()],
                vec![entry('c', 2, Some(1), Some(1)), entry('a', 1, None, None)],
                Reconcile::InStep,
            ),
            // C good, A picked by hand: leave it.
            (
                &a,
                vec![c.clone(), a.clone()],
                vec![entry('c', 2, None, None), entry('a', 1, None, None)],
                Reconcile::InStep,
            ),
            // No entry for the default: nothing the boot loader said.
            (
                &a,
                vec![c.clone(), a.clone()],
                vec![entry('a', 1, None, None)],
                Reconcile::InStep,
            ),
            (&a, vec![], vec![], Reconcile::InStep),
        ];
        for (booted, list, entries, want) in cases {
            assert_eq!(
                decide(booted, &list, &entries),
                want,
                "{list:?} {entries:?}"
            );
        }
    }
}
