//! Builds manifests/minimal.toml (once; later runs find it up to date) and
//! boots it twice in one QEMU process with guest/boot-check.sh: the OSTree
//! deployment of the built commit boots, /usr is read-only, /etc writable,
//! podman runs, no unit failed, and /var survives the reboot.
//!
//! Needs HULL_QEMU_TESTS=1, root (the build) and QEMU with OVMF; `cargo test`
//! lists it as ignored. Run: `sudo HULL_QEMU_TESTS=1 cargo test -p
//! hull-qemu-tests --test boot_minimal -- --ignored --nocapture` (or `bash
//! qemu-tests/run-tests.sh`).

use anyhow::Result;
use hull_qemu_tests::{build, enabled, guest, report_arch, Boot};

#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn boot_minimal() -> Result<()> {
    if !enabled("boot_minimal") {
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
    let outcome = Boot::new("boot_minimal", &report.image, report_arch(&report)?)?
        .check_script(guest::BOOT_CHECK)
        .expect_boots(2)
        .run()?;
    eprintln!("{}", outcome.summary());

    guest::require_boot_check(
        &outcome,
        &[guest::BOOT_CHECK_FIRST, guest::BOOT_CHECK_SECOND].concat(),
        &report.commit,
    )
}
