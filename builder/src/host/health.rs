//! `hull health`: does this boot count as good?
//!
//! Three kinds of check, all run whatever the others found: the units the
//! manifest requires are active, the container runtime starts a container,
//! and every executable in /etc/hull/health.d exits 0. The result is kept
//! in `/var/lib/hull/health/<commit>.json`. A failure on a boot that is being
//! counted (systemd-boot set `LoaderBootCountPath`) reboots, so the next
//! try, or the previous deployment, comes up without anyone touching it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::state::{self, HealthRecord};
use super::Host;
use crate::util::cmd::Cmd;

/// systemd-boot's vendor GUID: it sets `LoaderBootCountPath` when the
/// booted entry has a boot counter.
const BOOT_COUNT_VAR: &str =
    "/sys/firmware/efi/efivars/LoaderBootCountPath-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
/// How long a required unit may stay "activating".
const UNIT_SETTLE: Duration = Duration::from_secs(120);
/// How long one health.d script may run.
const SCRIPT_TIMEOUT: &str = "300";

#[derive(Debug, Clone, Default)]
pub struct HealthOptions {
    /// Reboot when a check fails on a boot-counted boot.
    pub reboot_on_failure: bool,
}

pub fn run(host: &mut Host, opts: &HealthOptions) -> Result<HealthRecord> {
    let mut failures = Vec::new();
    for unit in &host.config.required_units {
        if let Err(e) = unit_active(unit) {
            failures.push(format!("{e:#}"));
        }
    }
    if let Err(e) = container_runtime() {
        failures.push(format!("container runtime: {e:#}"));
    }
    failures.extend(scripts(&host.paths.etc.join("health.d")));
    let checksum = host.booted.csum().to_string();
    let record = HealthRecord {
        version: host.version_of(&checksum),
        checksum: checksum.clone(),
        boot_id: state::boot_id(),
        at: state::now(),
        ok: failures.is_empty(),
        failures,
    };
    state::write(&state::health_path(&host.paths.state, &checksum), &record)?;
    // A healthy or not, this boot may be the end of an automatic rollback.
    if let Err(e) = super::rollback::reconcile(host) {
        log::warn!("recording the rollback: {e:#}");
    }
    // The update agent gives its FleetLock slot back from a healthy boot.
    super::agent::after_health(host, record.ok);
    if !record.ok {
        for f in &record.failures {
            log::error!("health: {f}");
        }
        if opts.reboot_on_failure && Path::new(BOOT_COUNT_VAR).exists() {
            log::error!("this boot is on trial and failed its health check: rebooting");
            Cmd::new("systemctl").args(["reboot", "--no-block"]).run()?;
        }
    }
    Ok(record)
}

fn unit_active(unit: &str) -> Result<()> {
    let start = Instant::now();
    loop {
        let state = Cmd::new("systemctl")
            .args(["show", "--property=ActiveState", "--value", unit])
            .output_string()
            .unwrap_or_default();
        let state = state.trim();
        match state {
            "active" => return Ok(()),
            "activating" | "reloading" if start.elapsed() < UNIT_SETTLE => {
                std::thread::sleep(Duration::from_secs(2))
            }
            other => anyhow::bail!("required unit {unit} is {other}"),
        }
    }
}

/// Runs a throw-away container with no network and the host's own /usr,
/// read-only, as its root file system: no image registry is needed.
fn container_runtime() -> Result<()> {
    if Path::new("/usr/bin/podman").exists() {
        Cmd::new("podman")
            .args([
                "run",
                "--rm",
                "--network=none",
                "--pull=never",
                "--rootfs",
                "/:O",
                "/usr/bin/true",
            ])
            .run()
            .context("podman could not run a container")?;
    } else if Path::new("/usr/bin/ctr").exists() {
        Cmd::new("ctr")
            .arg("version")
            .run()
            .context("containerd does not answer")?;
    }
    Ok(())
}

/// Runs each executable file in `dir` in name order; one line per failure.
fn scripts(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut failures = Vec::new();
    for p in paths {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            continue;
        }
        if let Err(e) = Cmd::new("timeout").arg(SCRIPT_TIMEOUT).arg(&p).run() {
            failures.push(format!("{}: {e:#}", p.display()));
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_run_in_order_and_report_failures() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        use std::os::unix::fs::PermissionsExt;
        let write = |name: &str, body: &str, mode: u32| {
            std::fs::write(d.join(name), body).unwrap();
            std::fs::set_permissions(d.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("10-ok", "#!/bin/sh\nexit 0\n", 0o755);
        write("20-fail", "#!/bin/sh\necho broken >&2\nexit 1\n", 0o755);
        write("30-not-executable", "#!/bin/sh\nexit 1\n", 0o644);
        let f = scripts(d);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].contains("20-fail") && f[0].contains("broken"),
            "{}",
            f[0]
        );
        assert!(scripts(&d.join("missing")).is_empty());
    }
}
