//! Builds manifests/minimal.toml, the default manifest (the build provision
//! and reproducible use, when they run from one HULL_TEST_OUT), asserts its
//! deployed tree stays under the size bar, and boots it once with
//! guest/hardening-check.sh: the hardening
//! profile is in force on the host (sysctls, kernel arguments, read-only
//! /usr, no exposed TCP listener, default-deny firewall, audit, nosuid,nodev
//! temp dirs, sshd off, the pruned units off, the sandboxed services at low
//! exposure) and a rootless container runs as the dedicated account under
//! seccomp, with no-new-privileges, the reduced capabilities and uid 0
//! mapped to that unprivileged account; a syscall the seccomp profile
//! blocks fails.
//!
//! Needs HULL_QEMU_TESTS=1, root and QEMU with OVMF; `cargo test` lists it as ignored (run it with `--ignored`). Run:
//! `HULL_QEMU_TESTS=1 cargo test -p hull-qemu-tests --test hardening -- --ignored --nocapture`.

use anyhow::Result;
use hull_qemu_tests::{build, enabled, report_arch, Boot};

/// The checks hardening-check.sh prints, in order.
const CHECKS: &[&str] = &[
    "failed-units",
    "sysctls",
    "kernel-cmdline",
    "lockdown",
    "usr-readonly",
    "mount-tmp",
    "mount-var-tmp",
    "tcp-listeners",
    "firewall",
    "audit",
    "sshd-off",
    "pruned-units",
    "sandboxed",
    "rootless-user",
    "container-image",
    "podman-rootless",
    "container-seccomp",
    "container-nnp",
    "container-caps",
    "container-pids",
    "container-uidmap",
    "container-host-uid",
    "seccomp-blocks",
    "container-default-network",
    "rootful-userns-auto",
    "rootful-apparmor",
];

const SCRIPT: &str = include_str!("../guest/hardening-check.sh");

#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn hardening() -> Result<()> {
    if !enabled("hardening") {
        return Ok(());
    }
    let report = build("manifests/minimal.toml")?;
    // The deployed tree, security fixes in (docs/supply-chain.md, "Size").
    const MAX_TREE: u64 = 300_000_000;
    anyhow::ensure!(
        report.rootfs_size < MAX_TREE,
        "the minimal tree is {} bytes, over the bar of {MAX_TREE}",
        report.rootfs_size
    );
    let outcome = Boot::new("hardening", &report.image, report_arch(&report)?)?
        .check_script(SCRIPT)
        .run()?;
    eprintln!("{}", outcome.summary());
    outcome.require(CHECKS)
}
