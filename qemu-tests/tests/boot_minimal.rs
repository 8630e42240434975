//! Builds manifests/minimal.toml (once; later runs find it up to date) and
//! boots it twice in one QEMU process with guest/boot-check.sh: the OSTree
//! deployment of the built commit boots, /usr is read-only, /etc writable,
//! podman runs, no unit failed, and /var survives the reboot.
//!
//! Needs HULL_QEMU_TESTS=1, root (the build) and QEMU with OVMF; skipped
//! otherwise. Run: `sudo HULL_QEMU_TESTS=1 cargo test -p hull-qemu-tests
//! --test boot_minimal -- --nocapture` (or `bash qemu-tests/run-tests.sh`).

use anyhow::{ensure, Result};
use hull_qemu_tests::{build, enabled, guest, report_arch, Boot};

#[test]
fn boot_minimal() -> Result<()> {
    if !enabled("boot_minimal") {
        return Ok(());
    }
    let report = build("manifests/minimal.toml")?;
    let outcome = Boot::new("boot_minimal", &report.image, report_arch(&report)?)?
        .check_script(guest::BOOT_CHECK)
        .expect_boots(2)
        .run()?;
    eprintln!("{}", outcome.summary());

    outcome.require(&[guest::BOOT_CHECK_FIRST, guest::BOOT_CHECK_SECOND].concat())?;
    ensure!(
        outcome.done_boots == [1, 2],
        "expected HULL-CHECK-DONE for boots [1, 2], got {:?} (log {})",
        outcome.done_boots,
        outcome.log.display()
    );
    ensure!(
        outcome.detail("deployment") == Some(report.commit.as_str()),
        "the guest booted commit {:?}, the build made {} (log {})",
        outcome.detail("deployment"),
        report.commit,
        outcome.log.display()
    );
    ensure!(
        outcome.detail("var-persists") == outcome.detail("var-write"),
        "/var token written on boot 1 ({:?}) differs from the one read on boot 2 ({:?})",
        outcome.detail("var-write"),
        outcome.detail("var-persists")
    );
    Ok(())
}
