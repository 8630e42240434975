//! Builds manifests/k8s-node.toml and boots it once with
//! guest/k8s-node-check.sh: containerd answers (`ctr version`), its CRI
//! plugin is up with the configuration kubelet needs, the Kubernetes modules
//! and sysctls are in force alongside the hardening profile, and there is no
//! swap; containerd has the gVisor runtime handler `runsc` ([containers]
//! sandbox in the manifest). (Debian ships no crictl; `ctr plugins ls` shows the CRI plugin's
//! state instead.)
//!
//! Needs HULL_QEMU_TESTS=1, root and QEMU with OVMF; `cargo test` lists it as ignored (run it with `--ignored`). Run:
//! `HULL_QEMU_TESTS=1 cargo test -p hull-qemu-tests --test k8s_node -- --ignored --nocapture`.

use anyhow::Result;
use hull_qemu_tests::{build, enabled, report_arch, Boot};

/// The checks k8s-node-check.sh prints, in order.
const CHECKS: &[&str] = &[
    "failed-units",
    "ctr-version",
    "cri-plugin",
    "cri-config",
    "runsc-handler",
    "modules",
    "sysctls",
    "swap-off",
    "firewall",
];

const SCRIPT: &str = include_str!("../guest/k8s-node-check.sh");

#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn k8s_node() -> Result<()> {
    if !enabled("k8s_node") {
        return Ok(());
    }
    let report = build("manifests/k8s-node.toml")?;
    let outcome = Boot::new("k8s_node", &report.image, report_arch(&report)?)?
        .check_script(SCRIPT)
        .run()?;
    eprintln!("{}", outcome.summary());
    outcome.require(CHECKS)
}
