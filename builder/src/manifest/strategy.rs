//! When an updating host may reboot: the update strategies as plain data and
//! pure decisions, for the update agent (`host/agent/`) to carry out. Times
//! are Unix seconds, UTC. The strategy names and the FleetLock group rule are
//! here once, for the manifest's `[update]`, update.toml and the node config.

use serde::Serialize;

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// All seven, Monday first.
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// Parses `mon` … `sun`.
    pub fn parse(s: &str) -> Option<Weekday> {
        Weekday::ALL
            .into_iter()
            .find(|d| format!("{d:?}").to_lowercase() == s)
    }

    /// The weekday of the UTC day `day` days after 1970-01-01 (a Thursday).
    fn of_day(day: i64) -> Weekday {
        Weekday::ALL[(day + 3).rem_euclid(7) as usize]
    }
}

/// A weekly maintenance window: it opens at `start` minutes after midnight
/// UTC on each of `days` and stays open `length` seconds (which may run past
/// midnight into the next day).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    /// The days it opens on (sorted, no duplicates, at least one).
    pub days: Vec<Weekday>,
    /// Minutes after midnight UTC, 0 to 1439.
    pub start_minute: u32,
    /// How long it stays open, in seconds: 60 to 7 days.
    pub length: u64,
}

const DAY: i64 = 86_400;

impl Window {
    /// Whether the window is open at `now`.
    pub fn is_open(&self, now: i64) -> bool {
        let today = now.div_euclid(DAY);
        // A window opened up to 7 days ago may still be open.
        (0..=7).any(|back| {
            let day = today - back;
            let opens = day * DAY + i64::from(self.start_minute) * 60;
            self.days.contains(&Weekday::of_day(day))
                && opens <= now
                && now < opens + self.length as i64
        })
    }

    /// When the window next opens after `now` (strictly later).
    pub fn next_open(&self, now: i64) -> i64 {
        let today = now.div_euclid(DAY);
        (0..=7)
            .map(|ahead| today + ahead)
            .filter(|&day| self.days.contains(&Weekday::of_day(day)))
            .map(|day| day * DAY + i64::from(self.start_minute) * 60)
            .find(|&opens| opens > now)
            .expect("a window with a day opens within 8 days")
    }
}

/// A strategy's name, as the manifest's `[update] strategy`, update.toml and
/// a node config write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyKind {
    Immediate,
    Window,
    FleetLock,
    Kured,
}

impl StrategyKind {
    /// Every strategy, in the order docs/updates.md gives them.
    pub const ALL: [StrategyKind; 4] = [
        StrategyKind::Immediate,
        StrategyKind::Window,
        StrategyKind::FleetLock,
        StrategyKind::Kured,
    ];

    /// The name as written: `immediate`, `window`, `fleet-lock`, `kured`.
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Immediate => "immediate",
            StrategyKind::Window => "window",
            StrategyKind::FleetLock => "fleet-lock",
            StrategyKind::Kured => "kured",
        }
    }

    /// The strategy named `s`; the error (no key, no file: the caller adds
    /// them) lists the names there are.
    pub fn parse(s: &str) -> Result<StrategyKind, String> {
        StrategyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown strategy {s:?} (immediate, window, fleet-lock or kured)")
            })
    }
}

impl std::fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The FleetLock group a host reboots in when none is given.
pub const DEFAULT_GROUP: &str = "default";

/// Checks a FleetLock reboot group: 1 to 64 of `A-Z a-z 0-9 . _ -` (it is a
/// path segment of the lock's etcd key). The error names the value only.
pub fn check_group(group: &str) -> Result<(), String> {
    let ok = !group.is_empty()
        && group.len() <= 64
        && group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!("{group:?} is not 1 to 64 of A-Z a-z 0-9 . _ -"))
    }
}

/// How an updating host decides to reboot into a staged update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Strategy {
    /// Reboot as soon as the update is staged.
    Immediate,
    /// Reboot only inside the maintenance window.
    Window(Window),
    /// Take a slot of `group` from the FleetLock server at `url` first;
    /// give it back once the new boot passed `hull health`.
    FleetLock {
        /// The server's base URL.
        url: String,
        /// The reboot group.
        group: String,
    },
    /// Leave the reboot to kured: write /var/run/reboot-required, which
    /// kured watches, drains the node and reboots it.
    Kured,
}

/// What the agent does with a staged update, now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Nothing staged: nothing to do.
    Nothing,
    /// Reboot into the staged deployment.
    Reboot,
    /// Wait: the window opens at `until` (Unix seconds).
    WaitForWindow { until: i64 },
    /// Ask the FleetLock server for a slot (pre-reboot); reboot once granted.
    TakeLock,
    /// Write /var/run/reboot-required (if it is not there) and leave the rest
    /// to kured.
    RequestKured,
}

/// The path kured watches.
pub const REBOOT_REQUIRED: &str = "/var/run/reboot-required";

/// Decides what to do at `now` with an update `staged` or not; `lock_held`:
/// the node holds a FleetLock slot (granted earlier and not given back).
pub fn before_reboot(strategy: &Strategy, staged: bool, lock_held: bool, now: i64) -> Action {
    if !staged {
        return Action::Nothing;
    }
    match strategy {
        Strategy::Immediate => Action::Reboot,
        Strategy::Window(w) if w.is_open(now) => Action::Reboot,
        Strategy::Window(w) => Action::WaitForWindow {
            until: w.next_open(now),
        },
        Strategy::FleetLock { .. } if lock_held => Action::Reboot,
        Strategy::FleetLock { .. } => Action::TakeLock,
        Strategy::Kured => Action::RequestKured,
    }
}

/// After a boot: whether to give the FleetLock slot back (steady-state).
/// Only once `hull health` passed on the deployment the update brought: a
/// node that failed it or rolled back keeps its slot, so a bad update stops
/// the rollout of its group by itself.
pub fn release_lock(
    strategy: &Strategy,
    lock_held: bool,
    healthy: bool,
    rolled_back: bool,
) -> bool {
    matches!(strategy, Strategy::FleetLock { .. }) && lock_held && healthy && !rolled_back
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-30 is a Monday; 00:00 UTC that day.
    const MON: i64 = 1_795_996_800;
    const H: i64 = 3600;

    fn window(days: &[Weekday], start_minute: u32, length: i64) -> Window {
        Window {
            days: days.to_vec(),
            start_minute,
            length: length as u64,
        }
    }

    #[test]
    fn strategy_names_round_trip_and_groups_are_checked() {
        for k in StrategyKind::ALL {
            assert_eq!(StrategyKind::parse(k.as_str()), Ok(k));
        }
        assert_eq!(
            StrategyKind::parse("sometimes").unwrap_err(),
            "unknown strategy \"sometimes\" (immediate, window, fleet-lock or kured)"
        );
        for (group, ok) in [
            ("default", true),
            ("workers.eu-1_a", true),
            (&"a".repeat(64), true),
            (&"a".repeat(65), false),
            ("", false),
            ("a/b", false),
            ("a b", false),
        ] {
            assert_eq!(check_group(group).is_ok(), ok, "{group:?}");
        }
    }

    #[test]
    fn weekdays() {
        assert_eq!(Weekday::of_day(0), Weekday::Thu);
        assert_eq!(Weekday::of_day(MON / DAY), Weekday::Mon);
        assert_eq!(Weekday::of_day(MON / DAY - 1), Weekday::Sun);
        assert_eq!(Weekday::parse("sat"), Some(Weekday::Sat));
        assert_eq!(Weekday::parse("Sat"), None);
        assert_eq!(Weekday::parse("saturday"), None);
    }

    #[test]
    fn window_table() {
        use Weekday::*;
        // Sat 23:30 for 2h: into Sunday.
        let sat_night = window(&[Sat], 23 * 60 + 30, 2 * H);
        let sat = MON + 5 * DAY;
        let weekday_mornings = window(&[Mon, Tue, Wed, Thu, Fri], 6 * 60, H);
        for (w, now, open, next) in [
            (
                &sat_night,
                sat + 23 * H + 29 * 60,
                false,
                sat + 23 * H + 30 * 60,
            ),
            (
                &sat_night,
                sat + 23 * H + 30 * 60,
                true,
                sat + 7 * DAY + 23 * H + 30 * 60,
            ),
            (
                &sat_night,
                sat + DAY + H + 29 * 60,
                true,
                sat + 7 * DAY + 23 * H + 30 * 60,
            ),
            (
                &sat_night,
                sat + DAY + H + 30 * 60,
                false,
                sat + 7 * DAY + 23 * H + 30 * 60,
            ),
            // Sunday night before Monday 00:00 is Monday for nobody
            (&sat_night, MON - 1, false, sat + 23 * H + 30 * 60),
            (&weekday_mornings, MON + 6 * H, true, MON + DAY + 6 * H),
            (&weekday_mornings, MON + 7 * H, false, MON + DAY + 6 * H),
            (
                &weekday_mornings,
                MON + 4 * DAY + 7 * H,
                false,
                MON + 7 * DAY + 6 * H,
            ),
            (
                &weekday_mornings,
                MON + 5 * DAY + 6 * H,
                false,
                MON + 7 * DAY + 6 * H,
            ),
        ] {
            assert_eq!(w.is_open(now), open, "{w:?} at {now}");
            assert_eq!(w.next_open(now), next, "{w:?} at {now}");
        }
        // A week-long window on one day is always open.
        let always = window(&[Wed], 0, 7 * DAY);
        assert!((0..14 * 24).all(|h| always.is_open(MON + h * H)));
    }

    #[test]
    fn before_reboot_table() {
        let w = Strategy::Window(window(&[Weekday::Mon], 6 * 60, H));
        let fl = Strategy::FleetLock {
            url: "http://lock:3333".into(),
            group: "default".into(),
        };
        for (strategy, staged, lock, now, action) in [
            (&Strategy::Immediate, false, false, MON, Action::Nothing),
            (&Strategy::Immediate, true, false, MON, Action::Reboot),
            (&w, true, false, MON + 6 * H, Action::Reboot),
            (
                &w,
                true,
                false,
                MON + 5 * H,
                Action::WaitForWindow { until: MON + 6 * H },
            ),
            (
                &w,
                true,
                false,
                MON + 7 * H,
                Action::WaitForWindow {
                    until: MON + 7 * DAY + 6 * H,
                },
            ),
            (&w, false, false, MON + 6 * H, Action::Nothing),
            (&fl, true, false, MON, Action::TakeLock),
            (&fl, true, true, MON, Action::Reboot),
            (&fl, false, true, MON, Action::Nothing),
            (&Strategy::Kured, true, false, MON, Action::RequestKured),
            (&Strategy::Kured, false, false, MON, Action::Nothing),
        ] {
            assert_eq!(
                before_reboot(strategy, staged, lock, now),
                action,
                "{strategy:?} staged={staged} lock={lock} at {now}"
            );
        }
    }

    #[test]
    fn the_lock_is_kept_by_a_node_that_went_wrong() {
        let fl = Strategy::FleetLock {
            url: "http://lock:3333".into(),
            group: "default".into(),
        };
        for (strategy, held, healthy, rolled_back, release) in [
            (&fl, true, true, false, true),
            (&fl, true, false, false, false),
            (&fl, true, true, true, false),
            (&fl, true, false, true, false),
            (&fl, false, true, false, false),
            (&Strategy::Immediate, true, true, false, false),
        ] {
            assert_eq!(
                release_lock(strategy, held, healthy, rolled_back),
                release,
                "{strategy:?} held={held} healthy={healthy} rolled_back={rolled_back}"
            );
        }
    }
}
