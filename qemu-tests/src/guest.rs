//! What the tests put into the guest, as systemd credentials (SMBIOS type 11):
//! the unit `hull-check.service`, a drop-in that makes multi-user.target want
//! it, and the check script it runs. The image is not modified.
//!
//! Any test can bring its own script: it runs as root on the console after
//! multi-user.target, prints `HULL-CHECK <name> ok|fail <detail>` lines and
//! `HULL-CHECK-DONE boot=<n>` at the end of each boot, then reboots or powers
//! off. Scripts that span reboots keep their state in /var.

/// The unit that runs the check script.
pub const UNIT_NAME: &str = "hull-check.service";
/// Its text (qemu-tests/guest/hull-check.service).
pub const UNIT: &str = include_str!("../guest/hull-check.service");
/// The credential carrying the script (the unit imports it under this name).
pub const SCRIPT_CREDENTIAL: &str = "hull.check.sh";
/// The minimal image's checks (qemu-tests/guest/boot-check.sh): two boots
/// on its own; with `BOOT_CHECK_LIB=1` in front, only its functions, which
/// [`update_script_with_boot_checks`] calls on image A's first two boots.
pub const BOOT_CHECK: &str = include_str!("../guest/boot-check.sh");
/// The checks BOOT_CHECK prints on the first boot, in order.
pub const BOOT_CHECK_FIRST: &[&str] = &[
    "ostree-booted",
    "deployment",
    "usr-readonly",
    "etc-writable",
    "podman",
    "failed-units",
    "esp-fsck",
    "esp-repair",
    "kernel-cmdline",
    "var-write",
];
/// The checks BOOT_CHECK prints on the second boot.
pub const BOOT_CHECK_SECOND: &[&str] = &["var-persists"];
/// Every check BOOT_CHECK prints, over both boots.
pub fn boot_check_names() -> Vec<&'static str> {
    [BOOT_CHECK_FIRST, BOOT_CHECK_SECOND].concat()
}

/// The aarch64 image's own checks (qemu-tests/guest/aarch64-check.sh): the
/// function `aarch64_checks`, called on the first boot before BOOT_CHECK's
/// (see [`update_script_with_boot_checks`]).
pub const AARCH64_CHECK: &str = include_str!("../guest/aarch64-check.sh");
/// The checks AARCH64_CHECK prints.
pub const AARCH64_CHECK_NAMES: &[&str] = &[
    "arch",
    "agent",
    "esp-bootaa64",
    "root-part-type",
    "console",
    "hardening-cmdline",
];

/// Helpers shared by the update checks (qemu-tests/guest/update-lib.sh).
pub const UPDATE_LIB: &str = include_str!("../guest/update-lib.sh");
/// A → B, then `hull rollback` to A: three boots.
pub const UPDATE_AB: &str = include_str!("../guest/update-ab.sh");
/// A → C (health check fails) → back on A by itself.
pub const UPDATE_BROKEN: &str = include_str!("../guest/update-broken.sh");
/// Spoiled updates refused, one boot.
pub const UPDATE_TAMPER: &str = include_str!("../guest/update-tamper.sh");

/// Power cut, first run: `hull update` with its stages on the console.
pub const POWER_CUT_UPDATE: &str = include_str!("../guest/power-cut-update.sh");
/// Power cut, second run: bootable on A or B, and the update completes.
pub const POWER_CUT_AFTER: &str = include_str!("../guest/power-cut-after.sh");

/// A provisioned node's checks (qemu-tests/tests/provision.rs), one boot;
/// the expectations go in front as shell variables ([`provision_script`]).
pub const PROVISION_CHECK: &str = include_str!("../guest/provision-check.sh");

/// [`PROVISION_CHECK`] with `vars` (name, value) set in front of it.
pub fn provision_script(vars: &[(&str, &str)]) -> String {
    let mut s = String::from("#!/bin/sh\n");
    for (name, value) in vars {
        s.push_str(&format!("{name}='{}'\n", value.replace('\'', r"'\''")));
    }
    s.push_str(PROVISION_CHECK.trim_start_matches("#!/bin/sh\n"));
    s
}

/// What the boot checks must show, whatever else the script ran: every
/// check in `names` ok, the built `commit` deployed on the first boot, and
/// /var's token kept across the reboot.
pub fn require_boot_checks(o: &crate::Outcome, names: &[&str], commit: &str) -> anyhow::Result<()> {
    o.require(names)?;
    anyhow::ensure!(
        o.detail("deployment") == Some(commit),
        "the guest booted commit {:?}, the build made {commit} (log {})",
        o.detail("deployment"),
        o.log.display()
    );
    anyhow::ensure!(
        o.detail("var-persists") == o.detail("var-write"),
        "/var token written on boot 1 ({:?}) differs from the one read on boot 2 ({:?})",
        o.detail("var-write"),
        o.detail("var-persists")
    );
    Ok(())
}

/// The checks [`UPDATE_AB`] prints over its three boots.
pub const UPDATE_AB_CHECKS: &[&str] = &[
    "booted-a",
    "status-a-good",
    "update-check",
    "update",
    "update-delta",
    "status-pending",
    "esp-entries",
    "booted-b",
    "new-usr",
    "etc-merged",
    "blessed",
    "esp-blessed",
    "rollback",
    "status-rollback-pending",
    "rolled-back",
    "no-auto-rollback",
    "etc-kept",
    "agent-timer",
    "agent-status",
    "agent-next-check",
    "agent-lock-free",
    "node-id",
    "agent-took-lock",
    "agent-released",
    "metrics-booted",
    "metrics-lock",
    "window-staged",
    "window-strategy",
    "window-waiting",
    "window-next-boot",
    "window-no-reboot",
];

/// What a run of [`UPDATE_AB`] must show: every check ok, three boots, the
/// guest took the ref's head from the signed summary nginx served (the
/// summary and its signature fetched; the unsigned `refs/heads/` file
/// never), and the agent's FleetLock slot is back: etcd has the group's
/// semaphore (so a slot was taken) with no holder.
pub fn require_update_ab(
    o: &crate::Outcome,
    nginx: &crate::nginx::Nginx,
    fleet: &crate::fleet::Fleet,
) -> anyhow::Result<()> {
    o.require(UPDATE_AB_CHECKS)?;
    crate::fleet::node_id_of(o)?;
    let holders = fleet.holders("default")?;
    anyhow::ensure!(
        holders == Some(vec![]),
        "etcd's semaphore of group default: holders {holders:?}, expected a semaphore with none"
    );
    anyhow::ensure!(o.done_boots == [1, 2, 3], "boots {:?}", o.done_boots);
    let log = nginx.access_log();
    anyhow::ensure!(
        log.contains("GET /repo/summary ") && log.contains("GET /repo/summary.sig "),
        "the guest never fetched the signed summary: {log}"
    );
    anyhow::ensure!(
        log.contains("GET /repo/deltas/"),
        "the guest fetched no static delta for A → B: {log}"
    );
    anyhow::ensure!(
        !log.contains("/refs/heads/"),
        "the guest read an unsigned ref file: {log}"
    );
    Ok(())
}

/// [`update_script`] that also runs the image's own boot checks
/// ([`BOOT_CHECK`], and `aarch64_checks` first when `aarch64`) on A's first
/// boot, and BOOT_CHECK's second-boot check on the next: one boot of A
/// serves both (UPDATE_AB calls the hooks `first_boot_checks` and
/// `second_boot_checks`).
pub fn update_script_with_boot_checks(
    commits: &[(&str, &str)],
    body: &str,
    aarch64: bool,
) -> String {
    let mut hooks = String::from("BOOT_CHECK_LIB=1\n");
    hooks.push_str(BOOT_CHECK.trim_start_matches("#!/bin/sh\n"));
    if aarch64 {
        hooks.push_str(AARCH64_CHECK);
    }
    let first = if aarch64 { "aarch64_checks; " } else { "" };
    hooks.push_str(&format!(
        "first_boot_checks() {{ {first}boot_checks; var_write; }}\nsecond_boot_checks() {{ var_persists; }}\n"
    ));
    update_script(commits, &format!("{hooks}{body}"))
}

/// An update check script: the commits it expects, the helpers, the checks.
pub fn update_script(commits: &[(&str, &str)], body: &str) -> String {
    let mut s = String::from("#!/bin/sh\n");
    for (name, commit) in commits {
        s.push_str(&format!("{name}={commit}\n"));
    }
    s.push_str(UPDATE_LIB);
    s.push_str(body);
    s
}

/// `check`, `pass` and `sysctl_get`, put in front of every check script.
pub const CHECK_LIB: &str = include_str!("../guest/check-lib.sh");

/// `script` with [`CHECK_LIB`] after its `#!` line (or first, without one).
pub fn with_check_lib(script: &str) -> String {
    let body = match script.strip_prefix("#!") {
        Some(rest) => rest.split_once('\n').map_or("", |(_, body)| body),
        None => script,
    };
    format!("#!/bin/sh\n{CHECK_LIB}\n{body}")
}

/// The credentials that make the guest run `script`, with [`CHECK_LIB`],
/// once it is up.
pub fn check_credentials(script: &str) -> Vec<(String, Vec<u8>)> {
    vec![
        (
            format!("systemd.extra-unit.{UNIT_NAME}"),
            UNIT.as_bytes().to_vec(),
        ),
        (
            "systemd.unit-dropin.multi-user.target".to_string(),
            format!("[Unit]\nWants={UNIT_NAME}\n").into_bytes(),
        ),
        (
            SCRIPT_CREDENTIAL.to_string(),
            with_check_lib(script).into_bytes(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::Console;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::Command;

    #[test]
    fn credentials_carry_unit_dropin_and_script() {
        let creds = check_credentials("echo hi\n");
        let names: Vec<&str> = creds.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "systemd.extra-unit.hull-check.service",
                "systemd.unit-dropin.multi-user.target",
                "hull.check.sh"
            ]
        );
        assert_eq!(creds[1].1, b"[Unit]\nWants=hull-check.service\n");
        assert_eq!(creds[2].1, with_check_lib("echo hi\n").into_bytes());
        for (name, _) in &creds {
            hull::qemu::validate_credential_name(name).unwrap();
        }
    }

    #[test]
    fn unit_runs_the_script_on_the_console() {
        for line in [
            "After=multi-user.target",
            "ImportCredential=hull.check.sh",
            "ExecStart=/bin/sh %d/hull.check.sh",
            "StandardOutput=tty",
            "TTYPath=/dev/console",
        ] {
            assert!(
                UNIT.lines().any(|l| l == line),
                "{line} missing from the unit"
            );
        }
        // A oneshot would deadlock on `systemctl is-system-running --wait`.
        assert!(!UNIT.contains("Type=oneshot"));
    }

    #[test]
    fn check_lib_goes_after_the_shebang() {
        let s = with_check_lib("#!/bin/sh\necho hi\n");
        assert!(s.starts_with("#!/bin/sh\n# Put in front"), "{s}");
        assert!(
            s.ends_with("\necho hi\n") && s.matches("#!").count() == 1,
            "{s}"
        );
        assert!(with_check_lib("echo hi\n").ends_with("\necho hi\n"));
        // Every guest script calls the lib's helpers and defines none itself.
        for (name, text) in [
            ("boot-check", BOOT_CHECK),
            ("update-lib", UPDATE_LIB),
            ("aarch64-check", AARCH64_CHECK),
            ("provision-check", PROVISION_CHECK),
        ] {
            assert!(text.contains("check "), "{name}");
            assert!(!text.contains("check() {"), "{name} defines check");
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{CHECK_LIB}\nstatus=kept; check one ok 'a\tb'; pass two 1 bad; echo $status"
            ))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "HULL-CHECK one ok a b\nHULL-CHECK two fail bad\nkept\n"
        );
    }

    /// `esp-repair` is ok only when the unit succeeded and its line
    /// matches the pattern asked for; the detail is that line.
    #[test]
    fn esp_repair_check_needs_success_and_the_pattern() {
        let run = |state: &str, said: &str, pattern: &str| {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "{CHECK_LIB}\nsystemctl() {{ case \"$3\" in ActiveState) echo {state};; *) echo success;; esac; }}\n\
                     journalctl() {{ echo '{said}'; }}\nesp_repair_check {pattern}"
                ))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim_end().to_string()
        };
        let nothing = "/dev/vda1: nothing to repair (7 directories)";
        let repaired = "/dev/vda1: repaired LOADER/ENTRIES: 6 slot(s) after the end marker zeroed";
        assert_eq!(
            run("active", nothing, "'*nothing to repair*'"),
            format!("HULL-CHECK esp-repair ok {nothing}")
        );
        assert_eq!(
            run("active", repaired, ""),
            format!("HULL-CHECK esp-repair ok {repaired}")
        );
        assert_eq!(
            run("active", repaired, "'*nothing to repair*'"),
            format!(
                "HULL-CHECK esp-repair fail hull-esp-repair.service: active success {repaired}"
            )
        );
        assert_eq!(
            run("failed", nothing, ""),
            format!("HULL-CHECK esp-repair fail hull-esp-repair.service: failed success {nothing}")
        );
    }

    /// A long failure keeps its end, where the error is; a long success
    /// its start.
    #[test]
    fn long_failures_keep_their_end() {
        let long = format!("{}error: the end", "x".repeat(1000));
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{CHECK_LIB}\ncheck a fail '{long}'; check b ok '{long}'"
            ))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        let fail = lines[0].strip_prefix("HULL-CHECK a fail ").unwrap();
        assert_eq!(fail.len(), 150 + 5 + 240, "{fail}");
        assert!(
            fail.starts_with("xxx") && fail.ends_with("xxerror: the end"),
            "{fail}"
        );
        assert!(fail.contains("x ... x"), "{fail}");
        let ok = lines[1].strip_prefix("HULL-CHECK b ok ").unwrap();
        assert_eq!(ok, &long[..400]);
    }

    #[test]
    fn provision_script_sets_quoted_variables_first() {
        let s = provision_script(&[("NODE_HOST", "node-a"), ("NODE_FILE_TEXT", "it's")]);
        assert!(
            s.starts_with("#!/bin/sh\nNODE_HOST='node-a'\nNODE_FILE_TEXT='it'\\''s'\n"),
            "{s}"
        );
        assert_eq!(s.matches("#!").count(), 1);
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{}\nprintf '%s' \"$NODE_FILE_TEXT\"",
                s.lines().take(3).collect::<Vec<_>>().join("\n")
            ))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's");
    }

    fn stub(dir: &Path, name: &str, body: &str) {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Runs `script` with the stand-ins in `bin` first on PATH and `root` as
    /// the guest's root; what it printed, parsed as the host would.
    fn run_script(script: &Path, bin: &Path, root: &Path) -> Console {
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("sh")
            .arg(script)
            .env("PATH", path)
            .env("HULL_CHECK_ROOT", root)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        Console::parse(&String::from_utf8_lossy(&out.stdout))
    }

    /// Runs boot-check.sh on this machine with stand-ins for ostree, podman
    /// and systemctl, twice (first and second boot).
    #[test]
    fn boot_check_script_prints_every_check() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let sum = "ab".repeat(32);
        stub(
            &bin,
            "ostree",
            &format!("printf '  other 1111.0 (rollback)\\n* minimal {sum}.0\\n    origin refspec: hull/minimal/x86_64/stable\\n'"),
        );
        stub(&bin, "podman", "echo podman version 5.4.2");
        stub(
            &bin,
            "systemctl",
            "case \"$1\" in is-system-running) echo running;; --failed) echo 'foo.service loaded failed failed Foo';; \
             show) case \"$3\" in ActiveState) echo active;; Result) echo success;; ExecMainStatus) echo 0;; *) echo 4242;; esac;; esac",
        );
        stub(
            &bin,
            "journalctl",
            "case \"$6\" in hull-esp-repair.service) echo '/dev/disk/by-label/HULL-ESP: nothing to repair (10 directories)';; \
             *) printf 'fsck.fat 4.2 (2021-01-31)\\n/dev/vda1: 12 files, 81/129046 clusters\\n';; esac",
        );
        // A stand-in root: /run/ostree-booted and a writable /etc; no /usr, so
        // that touching a file there fails even when the tests run as root.
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("run/ostree-booted"), b"").unwrap();
        let script = dir.path().join("check.sh");
        std::fs::write(&script, with_check_lib(BOOT_CHECK)).unwrap();
        let run = || run_script(&script, &bin, &root);

        let first = run();
        let names: Vec<&str> = first.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, BOOT_CHECK_FIRST);
        assert_eq!(first.done_boots, [1]);
        for name in ["ostree-booted", "usr-readonly", "etc-writable"] {
            let c = first.checks.iter().find(|c| c.name == name).unwrap();
            assert!(c.ok, "{c:?}");
        }
        assert!(!root.join("etc/hull-probe").exists());
        assert!(root.join("var/lib/hull-check/boot1").is_file());
        let get = |c: &Console, n: &str| c.checks.iter().find(|c| c.name == n).unwrap().clone();
        assert_eq!(get(&first, "deployment").detail, sum);
        assert!(get(&first, "deployment").ok);
        assert_eq!(get(&first, "podman").detail, "podman version 5.4.2");
        let failed = get(&first, "failed-units");
        assert!(!failed.ok);
        assert_eq!(failed.detail, "system is running; failed: foo.service");
        let fsck = get(&first, "esp-fsck");
        assert!(fsck.ok, "{fsck:?}");
        assert_eq!(fsck.detail, "/dev/vda1: 12 files, 81/129046 clusters");
        let repair = get(&first, "esp-repair");
        assert!(repair.ok, "{repair:?}");
        assert_eq!(
            repair.detail,
            "/dev/disk/by-label/HULL-ESP: nothing to repair (10 directories)"
        );
        let token = get(&first, "var-write");
        assert!(token.ok && !token.detail.is_empty());

        let second = run();
        assert_eq!(second.done_boots, [2]);
        let names: Vec<&str> = second.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, BOOT_CHECK_SECOND);
        assert_eq!(get(&second, "var-persists").detail, token.detail);
        assert!(get(&second, "var-persists").ok);
    }

    /// Runs the update script with the boot checks off the guest, with
    /// stand-ins: on A's first boot the aarch64 checks, then BOOT_CHECK's
    /// first-boot ones, then the update's; on the next, var-persists.
    #[test]
    fn update_script_runs_the_boot_checks_on_the_first_two_boots() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        stub(&bin, "ostree", "true");
        stub(&bin, "podman", "echo podman version 5.4.2");
        stub(&bin, "systemctl", "true");
        stub(&bin, "uname", "echo aarch64");
        stub(&bin, "hull", "echo hull 0.1.0");
        stub(
            &bin,
            "udevadm",
            "echo ID_PART_ENTRY_TYPE=b921b045-1df0-41c3-af44-4c6f280d3fae",
        );
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        // A body in UPDATE_AB's shape: the hooks, then one check per phase.
        let body = "case $(phase) in\n0) first_boot_checks; check upd ok a; next_phase 1 ;;\n\
                    1) second_boot_checks; check upd2 ok b ;;\nesac\n";
        let script = dir.path().join("check.sh");
        let text = update_script_with_boot_checks(&[("A", "aa")], body, true);
        std::fs::write(&script, with_check_lib(&text)).unwrap();
        let run = || run_script(&script, &bin, &root);
        let first = run();
        let names: Vec<&str> = first.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [AARCH64_CHECK_NAMES, BOOT_CHECK_FIRST, &["upd"]].concat()
        );
        for name in ["arch", "agent", "root-part-type", "var-write"] {
            let c = first.checks.iter().find(|c| c.name == name).unwrap();
            assert!(c.ok, "{c:?}");
        }
        let second = run();
        let names: Vec<&str> = second.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, [BOOT_CHECK_SECOND, &["upd2"]].concat());
        assert!(second.checks[0].ok, "{:?}", second.checks[0]);
        // Without aarch64, no aarch64 checks.
        let x86 = update_script_with_boot_checks(&[("A", "aa")], body, false);
        assert!(!x86.contains("aarch64_checks"), "{x86}");
    }
}
