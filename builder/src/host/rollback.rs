//! `hull rollback`, and the automatic kind: finishing the job when
//! systemd-boot fell back because a new deployment used up its tries.

use anyhow::{bail, Result};
use serde::Serialize;

use super::state::{self, HealthRecord, RollbackRecord};
use super::{esp, key_of, Host};

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

/// When the booted deployment is not OSTree's default and the default's
/// entry has no tries left, systemd-boot rolled back by itself: make the
/// booted deployment the default, keep the failed one as the rollback
/// target (its entry stays at zero tries) and record why.
pub fn reconcile(host: &mut Host) -> Result<Option<RollbackRecord>> {
    let list = host.deployments();
    let booted = host.booted.csum().to_string();
    let Some(default) = list.first() else {
        return Ok(None);
    };
    if default.csum() == booted.as_str() {
        return Ok(None);
    }
    let default_key = key_of(default);
    let entries = esp::entries(&host.esp_dir()?)?;
    let Some(entry) = entries.iter().find(|e| e.is_for(&default_key)) else {
        return Ok(None);
    };
    if !entry.exhausted() {
        return Ok(None);
    }
    let failed = default.csum().to_string();
    let tries = entry.tries_done.unwrap_or(0);
    let health: Option<HealthRecord> = state::read(&state::health_path(&host.paths.state, &failed));
    let reason = match health {
        Some(h) if !h.ok => format!(
            "its health check failed: {}",
            h.failures.join("; ")
        ),
        _ => format!(
            "it used up its {tries} boot tries without reaching a passing health check (no failure was recorded: it crashed or hung before the check ran)"
        ),
    };
    let record = RollbackRecord {
        failed_version: host.version_of(&failed),
        failed_checksum: failed,
        booted_checksum: booted,
        boot_id: state::boot_id(),
        at: state::now(),
        reason,
    };
    host.lock()?;
    let mut list = list;
    let i = list
        .iter()
        .position(|d| {
            d.csum() == host.booted.csum() && d.deployserial() == host.booted.deployserial()
        })
        .unwrap_or(1);
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
