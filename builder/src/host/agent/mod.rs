//! The update agent: `hull update --auto`, run by hull-update.service on
//! hull-update.timer. Each run checks, downloads and stages the newest
//! signed commit (through [`super::update`], so with every check of a
//! hand-run update), then reboots as the strategy allows
//! ([`crate::manifest::strategy::before_reboot`]): at once; inside the maintenance
//! window; once the FleetLock server granted a slot; or by kured.
//!
//! A FleetLock slot is given back (steady-state) only once `hull health`
//! passed on the deployment the agent rebooted into ([`after_health`], run
//! by `hull health`; the next agent run retries when the server was not
//! reachable then). A host that rolled back keeps its slot, so a bad update
//! stops its group's rollout by itself, and the agent does not stage the
//! commit that failed again.
//!
//! What the agent knows lives in /var/lib/hull/agent.json ([`AgentState`],
//! written atomically); its metrics go to node_exporter's textfile
//! directory on every run ([`crate::host::metrics`]).

mod release;
mod status;

pub use release::after_health;
pub use status::{describe, render, status, AgentStatus};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::state::{self, RollbackRecord};
use super::update::{self, Outcome, UpdateOptions};
use super::Host;
use crate::fleetlock::client::{Answer, Client};
use crate::manifest::agent_config::{self, AgentSettings};
use crate::manifest::strategy::{self, Action, Strategy};
use crate::repo::summary::utc;
use crate::util::cmd::Cmd;
use release::release_if_due;

/// How long one FleetLock request may take.
pub(super) const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// What the agent remembers across runs and boots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct AgentState {
    /// The commit the agent staged to reboot into (and, once rebooted, the
    /// one whose health decides whether the slot is given back).
    pub target: Option<String>,
    /// Whether this host holds a FleetLock slot.
    pub lock_held: bool,
    /// The server and group the slot was taken from (given back there, even
    /// if the settings changed since).
    pub lock_url: Option<String>,
    pub lock_group: Option<String>,
    /// When the last run ended (Unix seconds).
    pub last_run: Option<u64>,
    /// When the last check for updates ended, and whether it succeeded.
    pub last_check: Option<u64>,
    pub last_check_ok: bool,
    /// Whether the last check found a newer commit than the booted one.
    pub update_available: bool,
    /// What the agent waits for before it reboots, for people.
    pub waiting: Option<String>,
    /// The last run's one line.
    pub last_result: Option<String>,
    /// Rollbacks from a commit the agent rebooted into.
    pub rollbacks: u64,
    /// The last commit that was rolled back from: never staged again.
    pub failed: Option<String>,
    /// What the last pull of an update fetched.
    pub last_pull: Option<crate::host::pull::PullStats>,
}

/// The state file under /var/lib/hull.
pub fn state_path(state_dir: &Path) -> PathBuf {
    state_dir.join("agent.json")
}

/// What one run was asked to do.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// Ignore this host's turn in a rollout wave (`--now`).
    pub now: bool,
}

/// Where the machine id and node_exporter's directory are; tests point
/// them elsewhere.
#[derive(Debug, Clone)]
pub struct AgentPaths {
    pub image_settings: PathBuf,
    pub node_settings: PathBuf,
    pub machine_id: PathBuf,
    pub textfile_dir: PathBuf,
    pub reboot_required: PathBuf,
}

impl Default for AgentPaths {
    fn default() -> Self {
        AgentPaths {
            image_settings: agent_config::IMAGE_FILE.into(),
            node_settings: agent_config::NODE_FILE.into(),
            machine_id: super::wave::MACHINE_ID.into(),
            textfile_dir: crate::host::metrics::TEXTFILE_DIR.into(),
            reboot_required: strategy::REBOOT_REQUIRED.into(),
        }
    }
}

pub(super) fn load_settings(p: &AgentPaths) -> Result<AgentSettings> {
    agent_config::load(&p.image_settings, &p.node_settings)?.with_context(|| {
        format!(
            "{} is missing: this image was built without [update] auto = true, so it has no update agent",
            p.image_settings.display()
        )
    })
}

/// Counts a rollback from the agent's target once, and remembers the commit
/// that failed so that it is not staged again.
pub(super) fn note_rollback(st: &mut AgentState, booted: &str, record: Option<&RollbackRecord>) {
    let Some(target) = st.target.clone() else {
        return;
    };
    if target == booted {
        return;
    }
    if record.is_some_and(|r| r.failed_checksum == target && r.booted_checksum == booted)
        && st.failed.as_deref() != Some(target.as_str())
    {
        st.rollbacks += 1;
        st.failed = Some(target);
    }
}

pub(super) fn write_metrics(host: &Host, p: &AgentPaths, st: &AgentState) {
    let booted = host.booted.csum().to_string();
    let m = crate::host::metrics::Metrics {
        version: host.version_of(&booted),
        commit: booted,
        last_check: st.last_check.map(|t| t as i64),
        last_check_ok: st.last_check_ok,
        update_available: st.update_available,
        rollbacks: st.rollbacks,
        lock_held: st.lock_held,
        last_pull: st.last_pull,
    };
    let result = std::fs::create_dir_all(&p.textfile_dir)
        .with_context(|| format!("creating {}", p.textfile_dir.display()))
        .and_then(|_| {
            cap_std::fs::Dir::open_ambient_dir(&p.textfile_dir, cap_std::ambient_authority())
                .with_context(|| format!("opening {}", p.textfile_dir.display()))
        })
        .and_then(|d| crate::host::metrics::write(&d, &p.textfile_dir.display().to_string(), &m));
    if let Err(e) = result {
        log::warn!("writing the metrics: {e:#}");
    }
}

/// One agent run; returns its one line. The state and metrics are written
/// whatever happens; a reboot is asked of systemd last.
pub fn run(host: &mut Host, opts: &AgentOptions) -> Result<String> {
    let p = AgentPaths::default();
    let path = state_path(&host.paths.state);
    let mut st: AgentState = state::read(&path).unwrap_or_default();
    let (result, reboot) = step(host, opts, &p, &mut st);
    let now = state::now();
    st.last_run = Some(now);
    st.last_result = Some(match &result {
        Ok(line) => line.clone(),
        Err(e) => format!("error: {e:#}"),
    });
    let saved = state::write(&path, &st);
    write_metrics(host, &p, &st);
    saved?;
    let line = result?;
    if reboot {
        Cmd::new("systemctl").args(["reboot", "--no-block"]).run()?;
    }
    Ok(line)
}

/// The run without its bookkeeping: the line, and whether to reboot.
fn step(
    host: &mut Host,
    opts: &AgentOptions,
    p: &AgentPaths,
    st: &mut AgentState,
) -> (Result<String>, bool) {
    let mut reboot = false;
    let r = (|| -> Result<String> {
        let settings = load_settings(p)?;
        let booted = host.booted.csum().to_string();
        let rollback: Option<RollbackRecord> =
            state::read(&state::rollback_path(&host.paths.state));
        note_rollback(st, &booted, rollback.as_ref());
        let node_id = || crate::fleetlock::client::node_id_from(&p.machine_id);
        if st.lock_held {
            let healthy =
                state::read::<state::HealthRecord>(&state::health_path(&host.paths.state, &booted))
                    .is_some_and(|h| h.ok && h.checksum == booted);
            if let Some(line) = release_if_due(st, &booted, healthy, node_id)? {
                log::info!("{line}");
            }
        }
        if !settings.enabled {
            st.waiting = None;
            return Ok(format!(
                "the update agent is off (auto = false in {}): nothing checked",
                p.node_settings.display()
            ));
        }
        let now = state::now();
        st.last_check = Some(now);
        st.last_check_ok = false;
        let check = update::run(
            host,
            &UpdateOptions {
                check: true,
                now: opts.now,
                ..Default::default()
            },
        )?;
        st.last_check_ok = true;
        st.update_available = check.result == Outcome::Available;
        let Some(head) = check.available.clone().filter(|_| st.update_available) else {
            st.waiting = None;
            return Ok(format!(
                "up to date: {} ({booted})",
                check.version.as_deref().unwrap_or("?")
            ));
        };
        let v = check.version.clone().unwrap_or_else(|| "?".into());
        if st.failed.as_deref() == Some(head.as_str()) {
            st.waiting = Some(format!(
                "a newer commit than {v} ({head}), which rolled back here"
            ));
            return Ok(format!(
                "not staging {v} ({head}): it failed its health check on this host and was rolled back; waiting for a newer commit"
            ));
        }
        if let Some(t) = check.not_before.filter(|&t| t > now && !opts.now) {
            st.waiting = Some(format!(
                "this host's turn in the rollout wave of {v}, at {}",
                utc(t)
            ));
            return Ok(format!(
                "update {v} ({head}) available; this host's turn in its rollout wave comes at {} (`hull update --now` takes it now)",
                utc(t)
            ));
        }
        let staged = update::run(
            host,
            &UpdateOptions {
                now: opts.now,
                ..Default::default()
            },
        )?;
        if staged.pulled.is_some() {
            st.last_pull = staged.pulled;
        }
        if staged.result != Outcome::Deployed {
            anyhow::bail!("staging {v} ({head}) ended as {:?}", staged.result);
        }
        let head = staged.available.unwrap_or(head);
        st.target = Some(head.clone());
        let action = strategy::before_reboot(&settings.strategy, true, st.lock_held, now as i64);
        let staged_line = format!("staged {v} ({head})");
        match action {
            Action::Nothing => Ok(staged_line),
            Action::Reboot => {
                st.waiting = None;
                reboot = true;
                Ok(format!("{staged_line}; rebooting into it"))
            }
            Action::WaitForWindow { until } => {
                let when = utc(until.max(0) as u64);
                st.waiting = Some(format!("the maintenance window, which opens at {when}"));
                Ok(format!(
                    "{staged_line}; not rebooting: outside the maintenance window, which opens at {when}"
                ))
            }
            Action::TakeLock => {
                let Strategy::FleetLock { url, group } = &settings.strategy else {
                    unreachable!("TakeLock comes only from fleet-lock")
                };
                let client = Client::new(url, &node_id()?, group, LOCK_TIMEOUT)?;
                let answer = client.pre_reboot();
                match answer {
                    Ok(Answer::Granted) => {
                        st.lock_held = true;
                        st.lock_url = Some(url.clone());
                        st.lock_group = Some(group.clone());
                        st.waiting = None;
                        reboot = true;
                        Ok(format!(
                            "{staged_line}; took a FleetLock slot of group {group} from {url}; rebooting into it"
                        ))
                    }
                    Ok(Answer::Refused(r)) => {
                        st.waiting = Some(format!(
                            "a FleetLock slot of group {group} from {url} (last refusal: {r})"
                        ));
                        Ok(format!(
                            "{staged_line}; not rebooting: no FleetLock slot of group {group} from {url}: {r}"
                        ))
                    }
                    Err(e) => {
                        st.waiting = Some(format!(
                            "a FleetLock slot of group {group} from {url} (unreachable)"
                        ));
                        Err(e.context(format!("{staged_line}; not rebooting")))
                    }
                }
            }
            Action::RequestKured => {
                crate::util::write_atomic(&p.reboot_required, b"")?;
                st.waiting = Some(format!(
                    "kured to drain and reboot the node ({} is there)",
                    p.reboot_required.display()
                ));
                Ok(format!(
                    "{staged_line}; wrote {} for kured to drain and reboot the node",
                    p.reboot_required.display()
                ))
            }
        }
    })();
    (r, reboot)
}
#[cfg(test)]
mod tests {
    use super::*;

    fn record(failed: &str, booted: &str) -> RollbackRecord {
        RollbackRecord {
            failed_checksum: failed.into(),
            failed_version: None,
            booted_checksum: booted.into(),
            boot_id: "b".into(),
            at: 1,
            reason: "r".into(),
        }
    }

    #[test]
    fn rollbacks_are_counted_once_per_failed_target() {
        let mut st = AgentState {
            target: Some("c".into()),
            ..Default::default()
        };
        // Booted the target: nothing to count.
        note_rollback(&mut st, "c", Some(&record("c", "a")));
        assert_eq!((st.rollbacks, st.failed.as_deref()), (0, None));
        // Back on A, the record names C: counted, once.
        for _ in 0..3 {
            note_rollback(&mut st, "a", Some(&record("c", "a")));
        }
        assert_eq!((st.rollbacks, st.failed.as_deref()), (1, Some("c")));
        // A rollback record of another commit, or none: not this target's.
        let mut other = AgentState {
            target: Some("d".into()),
            ..st.clone()
        };
        note_rollback(&mut other, "a", Some(&record("c", "a")));
        note_rollback(&mut other, "a", None);
        assert_eq!(other.rollbacks, 1);
    }
}
