//! Reproducible trees: the same lock and inputs give the same OSTree commit,
//! whatever the out directory, the day, the umask or the time zone.
//!
//! What moves between two builds otherwise, and what pins it:
//! - the clock: `SOURCE_DATE_EPOCH` is the newest InRelease `Date:` of the
//!   sources the packages come from (the lock's when there is one, else the
//!   ones just read), unless the caller set it. mmdebstrap then removes its
//!   logs, ldconfig's aux-cache and dbus's machine-id; shadow's `useradd`
//!   dates `/etc/shadow` with it; dracut (`reproducible="yes"` in hull's
//!   dracut.conf) clamps the initramfs' times to it; the SBOM's `created`
//!   and the commit's timestamp are it.
//! - the umask: hull and every program it runs get 022, so a file written
//!   without an explicit mode has the same mode everywhere;
//! - the time zone and locale: `TZ=UTC`, `LC_ALL=C.UTF-8` for every program.
//!
//! (OSTree stores no file times, owner names or paths outside the tree, so
//! the out directory and the files' mtimes do not reach the commit.)

use anyhow::{anyhow, Context, Result};

use crate::build::archive::PackagePlan;
use crate::build::lock::ArchLock;

/// The environment variable of <https://reproducible-builds.org/specs/source-date-epoch/>.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// Seconds since the epoch of an InRelease `Date:` (RFC 2822, Debian writes
/// the zone as `UTC`).
pub fn parse_release_date(date: &str) -> Result<i64> {
    let d = date.trim();
    let normal = match d.strip_suffix(" UTC") {
        Some(rest) => format!("{rest} +0000"),
        None => d.to_string(),
    };
    let z = jiff::fmt::rfc2822::parse(&normal)
        .map_err(|e| anyhow!("bad InRelease Date `{date}`: {e}"))?;
    Ok(z.timestamp().as_second())
}

/// The epoch of a build: the newest `Date:` of the lock's sources when a
/// lock is given, else of the plan's. Errors name the date that does not parse.
pub fn epoch_of(lock: Option<&ArchLock>, plan: &PackagePlan) -> Result<i64> {
    let dates: Vec<&str> = match lock {
        Some(l) => l.source.iter().map(|s| s.date.as_str()).collect(),
        None if plan.sources.is_empty() => vec![plan.release_date.as_str()],
        None => plan.sources.iter().map(|s| s.date.as_str()).collect(),
    };
    let mut newest = None;
    for d in dates {
        let t = parse_release_date(d)?;
        newest = Some(newest.map_or(t, |n: i64| n.max(t)));
    }
    newest.ok_or_else(|| anyhow!("no source date to take SOURCE_DATE_EPOCH from"))
}

/// The epoch the build uses: `SOURCE_DATE_EPOCH` as the caller set it, else
/// [`epoch_of`]; returned with where it came from, for the log.
pub fn choose_epoch(
    env: Option<&str>,
    lock: Option<&ArchLock>,
    plan: &PackagePlan,
) -> Result<(i64, &'static str)> {
    match env {
        Some(v) => Ok((
            v.trim()
                .parse()
                .with_context(|| format!("{SOURCE_DATE_EPOCH}={v} is not a number of seconds"))?,
            "from the environment",
        )),
        None => Ok((
            epoch_of(lock, plan)?,
            if lock.is_some() {
                "the lock's newest InRelease Date"
            } else {
                "the newest InRelease Date"
            },
        )),
    }
}

/// Pins the process (and so every program it runs) for a build:
/// `SOURCE_DATE_EPOCH`, `TZ=UTC`, `LC_ALL=C.UTF-8`, umask 022. Returns the epoch.
pub fn pin_environment(lock: Option<&ArchLock>, plan: &PackagePlan) -> Result<i64> {
    // The caller's, as it was before the first build of this process set
    // it (a build of several architectures takes each one's own).
    static CALLERS: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let env = CALLERS.get_or_init(|| std::env::var(SOURCE_DATE_EPOCH).ok());
    let (epoch, from) = choose_epoch(env.as_deref(), lock, plan)?;
    log::info!("{SOURCE_DATE_EPOCH}={epoch} ({from})");
    // Set before any thread of ours reads the environment: the build's
    // stages run on this thread and read it only through child processes.
    std::env::set_var(SOURCE_DATE_EPOCH, epoch.to_string());
    std::env::set_var("TZ", "UTC");
    std::env::set_var("LC_ALL", "C.UTF-8");
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    Ok(epoch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::lock::SourceLock;

    #[test]
    fn release_dates() {
        // (Date:, seconds)
        let cases = [
            ("Sat, 09 Aug 2025 09:27:08 UTC", 1754731628),
            ("Sun, 29 Nov 2026 18:03:11 UTC", 1795975391),
            ("Sun, 29 Nov 2026 18:03:11 +0000", 1795975391),
        ];
        for (d, want) in cases {
            assert_eq!(parse_release_date(d).unwrap(), want, "{d}");
        }
        let e = parse_release_date("yesterday").unwrap_err().to_string();
        assert!(e.contains("bad InRelease Date `yesterday`"), "{e}");
    }

    #[test]
    fn the_newest_source_date_and_the_lock_first() {
        let mut plan = crate::build::rootfs::mmdebstrap::tests::plan();
        plan.release_date = "Sat, 09 Aug 2025 09:27:08 UTC".into();
        assert_eq!(epoch_of(None, &plan).unwrap(), 1754731628);
        plan.sources = [
            "Sat, 09 Aug 2025 09:27:08 UTC",
            "Sun, 29 Nov 2026 18:03:11 UTC",
        ]
        .iter()
        .map(|d| crate::build::archive::SignedSource {
            url: "u".into(),
            suite: "s".into(),
            date: d.to_string(),
            sha256: "x".into(),
        })
        .collect();
        assert_eq!(epoch_of(None, &plan).unwrap(), 1795975391);
        let lock = ArchLock {
            name: "x86_64".into(),
            include: vec![],
            exclude: vec![],
            source: vec![SourceLock {
                url: "u".into(),
                suite: "s".into(),
                inrelease_sha256: "x".into(),
                date: "Sat, 09 Aug 2025 09:27:08 UTC".into(),
            }],
            package: vec![],
        };
        assert_eq!(epoch_of(Some(&lock), &plan).unwrap(), 1754731628);
        // (environment, epoch, from)
        let cases = [
            (Some("12345"), 12345, "from the environment"),
            (None, 1754731628, "the lock's newest InRelease Date"),
        ];
        for (env, want, from) in cases {
            assert_eq!(choose_epoch(env, Some(&lock), &plan).unwrap(), (want, from));
        }
        let e = format!("{:#}", choose_epoch(Some("soon"), None, &plan).unwrap_err());
        assert!(e.contains("SOURCE_DATE_EPOCH=soon"), "{e}");
    }
}
