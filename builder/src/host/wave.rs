//! Rollout waves: a commit built with `hull build --rollout PERIOD` carries
//! `hull.rollout-seconds` (signed with it); the rollout starts at the
//! commit's timestamp, and each host takes the update no earlier than
//! start + its place in [0, PERIOD), a place derived from its node id and the
//! commit, so a host is early for one commit and late for another, and the
//! fleet spreads evenly over the period without talking to anyone.

use sha2::{Digest, Sha256};

pub use crate::repo::commit::META_ROLLOUT;

/// The rollout period a commit's metadata carries, if any.
pub fn period_of(meta: &ostree::glib::VariantDict) -> Option<u64> {
    meta.lookup::<u64>(META_ROLLOUT)
        .ok()
        .flatten()
        .map(u64::from_be)
}

/// A host's place in the wave, seconds in [0, `period`): the first 8 bytes
/// of sha256(`node_id` || `commit`) as a big-endian number, modulo `period`.
/// 0 when `period` is 0.
pub fn place(node_id: &str, commit: &str, period: u64) -> u64 {
    if period == 0 {
        return 0;
    }
    let mut h = Sha256::new();
    h.update(node_id.as_bytes());
    h.update(commit.as_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first) % period
}

/// When this host may take `commit` (Unix seconds): the commit's
/// `timestamp` plus [`place`]; `None` without a rollout period (at once).
pub fn not_before(node_id: &str, commit: &str, timestamp: u64, period: Option<u64>) -> Option<u64> {
    let period = period.filter(|&p| p > 0)?;
    Some(timestamp.saturating_add(place(node_id, commit, period)))
}

/// The machine id the node id is derived from.
pub const MACHINE_ID: &str = "/etc/machine-id";

/// [`not_before`] for this host (its node id from /etc/machine-id, as
/// FleetLock's) and a fetched, verified commit; `None` when the commit has
/// no rollout period. Errors name the machine id file.
pub fn host_not_before(
    checksum: &str,
    commit: &ostree::glib::Variant,
    meta: &ostree::glib::VariantDict,
) -> anyhow::Result<Option<u64>> {
    let Some(period) = period_of(meta) else {
        return Ok(None);
    };
    let node = crate::fleetlock::client::node_id_from(std::path::Path::new(MACHINE_ID))?;
    Ok(not_before(
        &node,
        checksum,
        ostree::commit_get_timestamp(commit),
        Some(period),
    ))
}

/// Parses `--rollout`'s value: a duration such as `24h` or `90m`, from 1
/// minute to 30 days, in whole seconds.
pub fn parse_period(s: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration such as \"24h\": {e}"))?;
    if d.subsec_nanos() != 0 || !(60..=30 * 86_400).contains(&d.as_secs()) {
        return Err(format!("{s:?} is not between 1m and 30days"));
    }
    Ok(d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "975228d46dc94622b9bbe16671e2b58d";
    const COMMIT: &str = "3a1f5c2e9b7d4f60a8c1e2d3b4a5968778695a4b3c2d1e0f9a8b7c6d5e4f3a2b";

    #[test]
    fn wave_table() {
        let day = 86_400;
        // sha256(NODE || COMMIT) starts with these 8 bytes (computed with
        // `printf %s NODE COMMIT | sha256sum`).
        let first = u64::from_str_radix(&hex_prefix(NODE, COMMIT), 16).unwrap();
        for (period, ts, want) in [
            (None, 1000, None),
            (Some(0), 1000, None),
            (Some(1), 1000, Some(1000)),
            (Some(day), 1000, Some(1000 + first % day)),
            (Some(60), u64::MAX - 5, Some(u64::MAX)),
        ] {
            assert_eq!(
                not_before(NODE, COMMIT, ts, period),
                want,
                "period {period:?} ts {ts}"
            );
        }
    }

    fn hex_prefix(a: &str, b: &str) -> String {
        let out = crate::util::cmd::Cmd::new("sh")
            .args(["-c", &format!("printf %s {a}{b} | sha256sum")])
            .output_string()
            .unwrap();
        out[..16].to_string()
    }

    #[test]
    fn places_spread_over_the_period_and_differ_by_commit() {
        let period = 24 * 3600;
        let places: Vec<u64> = (0..1000)
            .map(|i| place(&format!("{i:032x}"), COMMIT, period))
            .collect();
        assert!(places.iter().all(|&p| p < period));
        // Each quarter of the day gets a fair share of 1000 hosts.
        for q in 0..4 {
            let n = places.iter().filter(|&&p| p * 4 / period == q).count();
            assert!((180..=320).contains(&n), "quarter {q}: {n} hosts");
        }
        // The same host is placed anew for another commit.
        let other = place(NODE, &COMMIT.replace('3', "4"), period);
        assert_ne!(place(NODE, COMMIT, period), other);
        assert_eq!(place(NODE, COMMIT, 0), 0);
    }

    #[test]
    fn periods_parse() {
        assert_eq!(parse_period("24h"), Ok(86_400));
        assert_eq!(parse_period("90m"), Ok(5400));
        for bad in ["30s", "31d", "soon", "1.5s"] {
            assert!(parse_period(bad).is_err(), "{bad}");
        }
    }
}
