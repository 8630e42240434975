//! What `hull status` says about the update agent: its strategy, next check,
//! FleetLock slot and what it waits for.

use std::time::Duration;

use serde::Serialize;

use super::{load_settings, state_path, AgentPaths, AgentState};
use crate::host::state;
use crate::host::Host;
use crate::manifest::strategy::Strategy;
use crate::repo::summary::utc;
use crate::util::cmd::Cmd;

/// The agent's part of `hull status`.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    /// `auto`: whether the agent acts.
    pub enabled: bool,
    /// The strategy, for people.
    pub strategy: String,
    pub strategy_settings: Option<Strategy>,
    /// The next check: from the timer, else computed from the last run and
    /// the interval.
    pub next_check: Option<String>,
    /// This host's node id (FleetLock's, and its place in rollout waves).
    pub node_id: Option<String>,
    /// Whether this host holds a FleetLock slot, and of which group.
    pub lock_held: bool,
    pub lock_group: Option<String>,
    /// What the agent waits for before rebooting.
    pub waiting: Option<String>,
    pub last_result: Option<String>,
    /// When the settings cannot be read: why.
    pub error: Option<String>,
}

/// A strategy in one phrase.
pub fn describe(s: &Strategy) -> String {
    match s {
        Strategy::Immediate => "immediate (reboot once staged)".into(),
        Strategy::Kured => "kured (writes /var/run/reboot-required)".into(),
        Strategy::FleetLock { url, group } => format!("fleet-lock (group {group} at {url})"),
        Strategy::Window(w) => {
            let days: Vec<String> = w
                .days
                .iter()
                .map(|d| format!("{d:?}").to_lowercase())
                .collect();
            format!(
                "window ({} at {:02}:{:02} UTC for {})",
                days.join(","),
                w.start_minute / 60,
                w.start_minute % 60,
                humantime::format_duration(Duration::from_secs(w.length))
            )
        }
    }
}

/// The agent's status; `None` on an image without the agent.
pub fn status(host: &Host) -> Option<AgentStatus> {
    let p = AgentPaths::default();
    if !p.image_settings.exists() {
        return None;
    }
    let st: AgentState = state::read(&state_path(&host.paths.state)).unwrap_or_default();
    let settings = load_settings(&p);
    let (enabled, strategy, strategy_settings, interval, error) = match &settings {
        Ok(s) => (
            s.enabled,
            describe(&s.strategy),
            Some(s.strategy.clone()),
            Some(s.interval),
            None,
        ),
        Err(e) => (false, "unknown".into(), None, None, Some(format!("{e:#}"))),
    };
    Some(AgentStatus {
        enabled,
        strategy,
        strategy_settings,
        next_check: next_check(st.last_run, interval),
        node_id: crate::fleetlock::client::node_id_from(&p.machine_id).ok(),
        lock_held: st.lock_held,
        lock_group: st.lock_group.clone().filter(|_| st.lock_held),
        waiting: st.waiting.clone(),
        last_result: st.last_result.clone(),
        error,
    })
}

/// The timer's next elapse in wall-clock time, when systemd gives one
/// (calendar timers); else the last run plus the interval, or the boot plus
/// the interval before the first run (monotonic timers, whose next elapse
/// systemd gives only relative to the boot).
fn next_check(last_run: Option<u64>, interval: Option<u64>) -> Option<String> {
    let shown = Cmd::new("systemctl")
        .args([
            "show",
            "hull-update.timer",
            "--property=NextElapseUSecRealtime",
            "--value",
        ])
        .output_string()
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s != "n/a" && s != "infinity");
    if shown.is_some() {
        return shown;
    }
    let interval = interval?;
    let from = match last_run {
        Some(t) => t,
        None => {
            let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
            let up: f64 = uptime.split_whitespace().next()?.parse().ok()?;
            state::now().saturating_sub(up as u64)
        }
    };
    Some(format!(
        "about {} (every {})",
        utc(from + interval),
        humantime::format_duration(Duration::from_secs(interval))
    ))
}

/// The agent's lines of `hull status`.
pub fn render(a: &AgentStatus) -> String {
    let mut out = format!(
        "update agent: {}, strategy {}\n",
        if a.enabled { "on" } else { "off" },
        a.strategy
    );
    if let Some(e) = &a.error {
        out.push_str(&format!("  settings: {e}\n"));
    }
    if let Some(n) = &a.next_check {
        out.push_str(&format!("  next check: {n}\n"));
    }
    if let Some(n) = &a.node_id {
        out.push_str(&format!("  node id: {n}\n"));
    }
    out.push_str(&match &a.lock_group {
        Some(g) if a.lock_held => format!("  fleet lock: held (group {g})\n"),
        _ => "  fleet lock: not held\n".to_string(),
    });
    if let Some(w) = &a.waiting {
        out.push_str(&format!("  waiting for: {w}\n"));
    }
    if let Some(r) = &a.last_result {
        out.push_str(&format!("  last run: {r}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn status_lines() {
        let a = AgentStatus {
            enabled: true,
            strategy: describe(&Strategy::FleetLock {
                url: "http://10.0.2.101".into(),
                group: "default".into(),
            }),
            strategy_settings: None,
            next_check: Some("Mon 2026-11-30 10:00:00 UTC".into()),
            node_id: Some("975228d46dc94622b9bbe16671e2b58d".into()),
            lock_held: true,
            lock_group: Some("default".into()),
            waiting: Some("the maintenance window, which opens at x".into()),
            last_result: None,
            error: None,
        };
        assert_eq!(
            render(&a),
            "update agent: on, strategy fleet-lock (group default at http://10.0.2.101)\n\
             \x20 next check: Mon 2026-11-30 10:00:00 UTC\n\
             \x20 node id: 975228d46dc94622b9bbe16671e2b58d\n\
             \x20 fleet lock: held (group default)\n\
             \x20 waiting for: the maintenance window, which opens at x\n"
        );
        let w = Strategy::Window(crate::manifest::strategy::Window {
            days: vec![
                crate::manifest::strategy::Weekday::Sat,
                crate::manifest::strategy::Weekday::Sun,
            ],
            start_minute: 23 * 60 + 30,
            length: 5400,
        });
        assert_eq!(describe(&w), "window (sat,sun at 23:30 UTC for 1h 30m)");
    }
}
