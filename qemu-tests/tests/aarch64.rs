//! The aarch64 image, for real: built from Debian's arm64 archive on this
//! (x86_64) machine and booted under qemu-system-aarch64 (virt, AAVMF, TCG).
//!
//! One image serves both tests: the update fixture's A for aarch64 (the
//! minimal image, updatable), built once into `$HULL_TEST_OUT/update-aarch64`
//! together with B. `aarch64_boot_checks` runs the x86_64 boot checks on it
//! plus the aarch64 ones (guest/aarch64-check.sh); `aarch64_update_a_to_b`
//! updates it to B and rolls back, as tests/updates.rs does on x86_64.
//!
//! Needs HULL_QEMU_TESTS=1, root, qemu-user-static, qemu-system-arm,
//! qemu-efi-aarch64, nginx, socat and the aarch64 agent
//! (`cargo build --release -p hull --target aarch64-unknown-linux-gnu`).

use std::sync::OnceLock;

use anyhow::{ensure, Result};
use hull::manifest::Arch;
use hull_qemu_tests::nginx::Nginx;
use hull_qemu_tests::updates::{fixture_ab, Fixture};
use hull_qemu_tests::{enabled, guest, report_arch, Boot};

fn shared() -> Result<&'static Fixture> {
    static F: OnceLock<Fixture> = OnceLock::new();
    if let Some(f) = F.get() {
        return Ok(f);
    }
    let f = fixture_ab(Arch::Aarch64)?;
    Ok(F.get_or_init(|| f))
}

#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn aarch64_boot_checks() -> Result<()> {
    if !enabled("aarch64_boot_checks") {
        return Ok(());
    }
    let f = shared()?;
    ensure!(report_arch(&f.a)? == Arch::Aarch64, "A is {}", f.a.arch);
    let outcome = Boot::new("aarch64_boot", &f.a.image, Arch::Aarch64)?
        .check_script(&guest::aarch64_boot_check())
        .expect_boots(2)
        .run()?;
    eprintln!("{}", outcome.summary());
    guest::require_boot_check(
        &outcome,
        &[
            guest::AARCH64_CHECK_NAMES,
            guest::BOOT_CHECK_FIRST,
            guest::BOOT_CHECK_SECOND,
        ]
        .concat(),
        &f.a.commit,
    )
}

#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn aarch64_update_a_to_b_and_roll_back() -> Result<()> {
    if !enabled("aarch64_update_a_to_b_and_roll_back") {
        return Ok(());
    }
    let f = shared()?;
    ensure!(
        f.b.ostree_ref.contains("/aarch64/"),
        "B's ref is {}",
        f.b.ostree_ref
    );
    let nginx = Nginx::serve(&[("/repo/", &f.repo("b"))])?;
    let fleet = hull_qemu_tests::fleet::Fleet::start()?;
    let script = guest::update_script(&[("A", &f.a.commit), ("B", &f.b.commit)], guest::UPDATE_AB);
    let mut b = Boot::new("aarch64_update_a_to_b", &f.a.image, Arch::Aarch64)?
        .check_script(&script)
        .expect_boots(3);
    b.spec_mut().update_port = Some(nginx.port);
    b.spec_mut().lock_port = Some(fleet.port);
    let o = b.run()?;
    eprintln!("{}", o.summary());
    guest::require_update_ab(&o, &nginx, &fleet)
}
