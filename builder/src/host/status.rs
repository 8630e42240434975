//! `hull status`: the deployments, what boots next, and whether the last
//! boot was a rollback.

use anyhow::Result;
use serde::Serialize;

use super::state::{self, HealthRecord, RollbackRecord};
use super::{esp, key_of, Host};
use crate::bootloader::EntryName;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub deployments: Vec<DeploymentStatus>,
    /// The commit systemd-boot will pick at the next boot, from the ESP.
    pub next_boot: Option<String>,
    /// Set when the booted deployment is where an automatic rollback left
    /// the host.
    pub rollback: Option<RollbackRecord>,
    /// The remote and ref this host follows.
    pub origin: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeploymentStatus {
    pub checksum: String,
    pub serial: u32,
    pub version: Option<String>,
    pub booted: bool,
    /// OSTree's default (first in its list).
    pub default: bool,
    pub staged: bool,
    /// good, trial, failed or no-entry.
    pub state: String,
    pub tries_left: Option<u32>,
    pub tries_done: Option<u32>,
    pub entry: Option<String>,
    pub health: Option<HealthRecord>,
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
    let mut out = Vec::new();
    for (i, d) in host.deployments().iter().enumerate() {
        let key = key_of(d);
        let entry = entries
            .iter()
            .filter(|e| e.is_for(&key))
            .max_by_key(|e| e.prio);
        let state = match entry {
            None => "no-entry",
            Some(e) if e.exhausted() => "failed",
            Some(e) if e.on_trial() => "trial",
            Some(_) => "good",
        };
        out.push(DeploymentStatus {
            version: host.version_of(&key.csum),
            health: state::read(&state::health_path(&host.paths.state, &key.csum)),
            booted: key == booted,
            default: i == 0,
            staged: d.is_staged(),
            state: state.into(),
            tries_left: entry.and_then(|e| e.tries_left),
            tries_done: entry.and_then(|e| e.tries_done),
            entry: entry.map(EntryName::file_name),
            checksum: key.csum,
            serial: key.serial,
        });
    }
    let next_boot = entries
        .iter()
        .filter(|e| !e.exhausted())
        .max_by_key(|e| e.prio)
        .map(|e| e.csum.clone());
    let rollback: Option<RollbackRecord> = state::read(&state::rollback_path(&host.paths.state));
    let rollback = rollback.filter(|r| r.booted_checksum == booted.csum);
    let origin = super::update::origin_refspec(&host.booted)
        .ok()
        .map(|(r, f)| format!("{r}:{f}"));
    Ok(Status {
        deployments: out,
        next_boot,
        rollback,
        origin,
    })
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
        let state = match (d.state.as_str(), d.tries_left, d.tries_done) {
            ("trial", Some(l), done) => {
                format!("on trial, {l} boot tries left ({} used)", done.unwrap_or(0))
            }
            ("failed", _, done) => format!("failed: used all {} boot tries", done.unwrap_or(0)),
            ("good", ..) => "good".to_string(),
            _ => "no boot entry on the ESP".to_string(),
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
    out
}
