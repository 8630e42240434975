//! The update agent's metrics for Prometheus, as a node_exporter
//! textfile-collector file (/var/lib/prometheus/node-exporter/hull.prom in
//! Debian's layout). The names are documented in docs/updates.md.

use std::io::Write;

use anyhow::{Context, Result};
use cap_std::fs::Dir;

/// node_exporter's textfile directory on Debian.
pub const TEXTFILE_DIR: &str = "/var/lib/prometheus/node-exporter";

/// The file hull writes there.
pub const FILE: &str = "hull.prom";

/// What the agent knows, at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metrics {
    /// The booted deployment's version (the manifest's `version`), if known.
    pub version: Option<String>,
    /// The booted commit's checksum.
    pub commit: String,
    /// When the last check for updates ended (Unix seconds), if ever.
    pub last_check: Option<i64>,
    /// Whether it succeeded (only meaningful with `last_check`).
    pub last_check_ok: bool,
    /// Whether a newer signed commit than the booted one is available.
    pub update_available: bool,
    /// How many times this host rolled back from a failed deployment.
    pub rollbacks: u64,
    /// Whether the host holds a FleetLock slot.
    pub lock_held: bool,
    /// What the last pull of an update fetched, if one ran.
    pub last_pull: Option<crate::host::pull::PullStats>,
}

/// A label value in the text exposition format: `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn flag(b: bool) -> u8 {
    u8::from(b)
}

/// The metrics in Prometheus' text exposition format (`# HELP`, `# TYPE`,
/// samples), one family after another, ending in a newline.
pub fn render(m: &Metrics) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, sample: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{sample}\n"
        ));
    };
    family(
        "hull_booted_info",
        "gauge",
        "The booted deployment: its version and commit as labels, value 1.",
        format!(
            "hull_booted_info{{version=\"{}\",commit=\"{}\"}} 1",
            label(m.version.as_deref().unwrap_or("")),
            label(&m.commit)
        ),
    );
    if let Some(t) = m.last_check {
        family(
            "hull_update_last_check_timestamp_seconds",
            "gauge",
            "When the last check for updates ended, in Unix seconds.",
            format!("hull_update_last_check_timestamp_seconds {t}"),
        );
        family(
            "hull_update_last_check_success",
            "gauge",
            "1 if the last check for updates succeeded, else 0.",
            format!("hull_update_last_check_success {}", flag(m.last_check_ok)),
        );
    }
    family(
        "hull_update_available",
        "gauge",
        "1 if a newer signed commit than the booted one is available, else 0.",
        format!("hull_update_available {}", flag(m.update_available)),
    );
    family(
        "hull_rollbacks_total",
        "counter",
        "Rollbacks from a deployment that failed its health check.",
        format!("hull_rollbacks_total {}", m.rollbacks),
    );
    family(
        "hull_fleet_lock_held",
        "gauge",
        "1 if this host holds a FleetLock reboot slot, else 0.",
        format!("hull_fleet_lock_held {}", flag(m.lock_held)),
    );
    if let Some(p) = m.last_pull {
        family(
            "hull_update_last_pull_bytes",
            "gauge",
            "Bytes the last pull of an update transferred over HTTP.",
            format!("hull_update_last_pull_bytes {}", p.bytes),
        );
        family(
            "hull_update_last_pull_delta_parts",
            "gauge",
            "Static delta parts the last pull fetched (0: objects one by one).",
            format!("hull_update_last_pull_delta_parts {}", p.delta_parts),
        );
        family(
            "hull_update_last_pull_objects",
            "gauge",
            "Objects the last pull fetched one by one.",
            format!("hull_update_last_pull_objects {}", p.fetched),
        );
    }
    out
}

/// Writes [`render`] to [`FILE`] in `dir` (node_exporter's textfile
/// directory), through a temp file renamed over it once synced, so a scrape
/// never reads half a file; mode 0644 for node_exporter's user. `dir_name`
/// names the directory in errors.
pub fn write(dir: &Dir, dir_name: &str, m: &Metrics) -> Result<()> {
    let path = format!("{dir_name}/{FILE}");
    let mut tmp = cap_tempfile::TempFile::new(dir)
        .with_context(|| format!("creating a temp file in {dir_name}"))?;
    tmp.write_all(render(m).as_bytes())
        .with_context(|| format!("writing {path}"))?;
    rustix::fs::fchmod(tmp.as_file(), rustix::fs::Mode::from_raw_mode(0o644))
        .with_context(|| format!("making {path} readable"))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("syncing {path}"))?;
    tmp.replace(FILE)
        .with_context(|| format!("renaming a temp file to {path}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> Metrics {
        Metrics {
            version: Some("1.2".into()),
            commit: "abc123".into(),
            last_check: Some(1_796_000_000),
            last_check_ok: true,
            update_available: true,
            rollbacks: 2,
            lock_held: false,
            last_pull: None,
        }
    }

    fn pulled() -> crate::host::pull::PullStats {
        crate::host::pull::PullStats {
            fetched: 5,
            delta_parts: 2,
            delta_fallbacks: 0,
            bytes: 123_456,
        }
    }

    #[test]
    fn renders_the_documented_names() {
        let text = render(&sample());
        assert_eq!(
            text,
            "# HELP hull_booted_info The booted deployment: its version and commit as labels, value 1.\n\
             # TYPE hull_booted_info gauge\n\
             hull_booted_info{version=\"1.2\",commit=\"abc123\"} 1\n\
             # HELP hull_update_last_check_timestamp_seconds When the last check for updates ended, in Unix seconds.\n\
             # TYPE hull_update_last_check_timestamp_seconds gauge\n\
             hull_update_last_check_timestamp_seconds 1796000000\n\
             # HELP hull_update_last_check_success 1 if the last check for updates succeeded, else 0.\n\
             # TYPE hull_update_last_check_success gauge\n\
             hull_update_last_check_success 1\n\
             # HELP hull_update_available 1 if a newer signed commit than the booted one is available, else 0.\n\
             # TYPE hull_update_available gauge\n\
             hull_update_available 1\n\
             # HELP hull_rollbacks_total Rollbacks from a deployment that failed its health check.\n\
             # TYPE hull_rollbacks_total counter\n\
             hull_rollbacks_total 2\n\
             # HELP hull_fleet_lock_held 1 if this host holds a FleetLock reboot slot, else 0.\n\
             # TYPE hull_fleet_lock_held gauge\n\
             hull_fleet_lock_held 0\n"
        );
        // Every name is in docs/updates.md.
        let doc = include_str!("../../../docs/updates.md");
        let text = render(&Metrics {
            last_pull: Some(pulled()),
            ..sample()
        });
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap();
            assert!(
                doc.contains(&format!("`{name}`")),
                "{name} is not in docs/updates.md"
            );
        }
    }

    #[test]
    fn table() {
        for (m, has, lacks) in [
            (
                Metrics {
                    last_check: None,
                    ..sample()
                },
                "hull_update_available 1",
                "hull_update_last_check",
            ),
            (
                Metrics {
                    version: None,
                    ..sample()
                },
                "hull_booted_info{version=\"\",commit=\"abc123\"} 1",
                "version=\"1.2\"",
            ),
            (
                Metrics {
                    version: Some("a\"b\\c\nd".into()),
                    ..sample()
                },
                "hull_booted_info{version=\"a\\\"b\\\\c\\nd\",commit=\"abc123\"} 1",
                "c\nd",
            ),
            (
                Metrics {
                    last_check_ok: false,
                    lock_held: true,
                    ..sample()
                },
                "hull_update_last_check_success 0\n",
                "hull_fleet_lock_held 0",
            ),
            (
                Metrics {
                    last_pull: Some(pulled()),
                    ..sample()
                },
                "hull_update_last_pull_delta_parts 2\n",
                "hull_update_last_pull_objects 0",
            ),
            (sample(), "hull_fleet_lock_held 0", "hull_update_last_pull"),
        ] {
            let text = render(&m);
            assert!(text.contains(has), "{m:?}:\n{text}");
            assert!(!text.contains(lacks), "{m:?}:\n{text}");
            assert!(text.ends_with('\n'));
        }
    }

    #[test]
    fn writes_whole_files_readable_by_node_exporter() {
        let t = tempfile::tempdir().unwrap();
        let dir = Dir::open_ambient_dir(t.path(), cap_std::ambient_authority()).unwrap();
        let name = t.path().display().to_string();
        std::fs::write(t.path().join(FILE), "old").unwrap();
        write(&dir, &name, &sample()).unwrap();
        let p = t.path().join(FILE);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), render(&sample()));
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE], "a temp file was left behind");
        // A directory that is gone: the error names it.
        drop(t);
        let e = format!("{:#}", write(&dir, &name, &sample()).unwrap_err());
        assert!(
            e.starts_with(&format!("creating a temp file in {name}")),
            "{e}"
        );
    }
}
