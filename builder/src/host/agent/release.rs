//! Giving the FleetLock slot back: only from a healthy boot of the commit the
//! agent rebooted into ([`after_health`], called by `hull health`).

use anyhow::Result;

use super::{note_rollback, state_path, write_metrics, AgentPaths, AgentState, LOCK_TIMEOUT};
use crate::fleetlock::client::{Answer, Client};
use crate::host::state::{self, RollbackRecord};
use crate::host::Host;
use crate::manifest::strategy::{self, Strategy};

/// Gives the slot back when [`strategy::release_lock`] says so: the booted
/// deployment is the one the agent rebooted into, and it is healthy.
/// Returns the line to report; errors reaching the server leave the slot
/// held (the next run retries).
pub(super) fn release_if_due(
    st: &mut AgentState,
    booted: &str,
    healthy: bool,
    node_id: impl Fn() -> Result<String>,
) -> Result<Option<String>> {
    let (Some(url), Some(group)) = (st.lock_url.clone(), st.lock_group.clone()) else {
        return Ok(None);
    };
    let held_strategy = Strategy::FleetLock {
        url: url.clone(),
        group: group.clone(),
    };
    let rolled_back = st.target.as_deref() != Some(booted);
    if !strategy::release_lock(&held_strategy, st.lock_held, healthy, rolled_back) {
        return Ok(None);
    }
    let client = Client::new(&url, &node_id()?, &group, LOCK_TIMEOUT)?;
    match client.steady_state()? {
        Answer::Granted => {
            st.lock_held = false;
            st.lock_url = None;
            st.lock_group = None;
            st.waiting = None;
            Ok(Some(format!(
                "healthy on {booted}: gave the FleetLock slot of group {group} back to {url}"
            )))
        }
        Answer::Refused(r) => {
            anyhow::bail!(
                "{url}: the FleetLock server refused to take the slot of group {group} back: {r}"
            )
        }
    }
}

/// Called by `hull health` after each check: gives the FleetLock slot back
/// when the boot the agent rebooted into is healthy; on a rolled-back host
/// it is kept. Writes the state and the metrics. Never fails the health
/// check: problems are logged.
pub fn after_health(host: &Host, healthy: bool) {
    let p = AgentPaths::default();
    if !p.image_settings.exists() {
        return;
    }
    let path = state_path(&host.paths.state);
    let mut st: AgentState = state::read(&path).unwrap_or_default();
    let booted = host.booted.csum().to_string();
    let rollback: Option<RollbackRecord> = state::read(&state::rollback_path(&host.paths.state));
    note_rollback(&mut st, &booted, rollback.as_ref());
    match release_if_due(&mut st, &booted, healthy, || {
        crate::fleetlock::client::node_id_from(&p.machine_id)
    }) {
        Ok(Some(line)) => log::info!("{line}"),
        Ok(None) if st.lock_held => log::warn!(
            "keeping the FleetLock slot of group {}: {}",
            st.lock_group.as_deref().unwrap_or("?"),
            if st.target.as_deref() != Some(booted.as_str()) {
                "the update it was taken for rolled back (this stops the group's rollout until someone acts)"
            } else {
                "this boot is not healthy"
            }
        ),
        Ok(None) => {}
        Err(e) => log::warn!("giving the FleetLock slot back: {e:#} (the next agent run retries)"),
    }
    if let Err(e) = state::write(&path, &st) {
        log::warn!("{e:#}");
    }
    write_metrics(host, &p, &st);
}

#[cfg(test)]
mod tests {
    use super::*;
    /// A real FleetLock server is tested in tests/fleetlock.rs; here the
    /// decisions before any request: nothing is asked of a server (the
    /// node id is never even read) unless the slot is due back.
    #[test]
    fn the_slot_goes_back_only_from_a_healthy_target() {
        let held = |target: &str| AgentState {
            target: Some(target.into()),
            lock_held: true,
            lock_url: Some("http://127.0.0.1:9/".into()),
            lock_group: Some("g".into()),
            ..Default::default()
        };
        let no_id = || -> Result<String> { anyhow::bail!("the node id was read") };
        for (st, booted, healthy) in [
            (held("b"), "a", true),  // rolled back
            (held("b"), "b", false), // unhealthy
            (
                AgentState {
                    lock_held: false,
                    ..held("b")
                },
                "b",
                true,
            ),
            (
                AgentState {
                    lock_url: None,
                    ..held("b")
                },
                "b",
                true,
            ),
        ] {
            let mut s = st.clone();
            assert_eq!(
                release_if_due(&mut s, booted, healthy, no_id).unwrap(),
                None
            );
            assert_eq!(s, st);
        }
        // Due: the node id is read and the server asked (here nobody
        // listens on port 9: the slot stays held and the error says where).
        let mut s = held("b");
        let e = release_if_due(&mut s, "b", true, || Ok("n1".into())).unwrap_err();
        assert!(
            format!("{e:#}").contains("http://127.0.0.1:9/v1/steady-state"),
            "{e:#}"
        );
        assert!(s.lock_held);
    }
}
