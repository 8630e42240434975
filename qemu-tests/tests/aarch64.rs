//! The aarch64 image, for real: built from Debian's arm64 archive on this
//! (x86_64) machine and booted under qemu-system-aarch64 (virt, AAVMF, TCG).
//!
//! One boot of one image checks everything: the update fixture's A for
//! aarch64 (the minimal image, updatable), built into
//! `$HULL_TEST_OUT/update-aarch64` together with B, runs the aarch64 checks
//! (guest/aarch64-check.sh) and the x86_64 boot checks (guest/boot-check.sh)
//! on its first boot, then updates to B and rolls back, as tests/updates.rs
//! does on x86_64 (three boots of one QEMU process).
//!
//! Needs HULL_QEMU_TESTS=1, root, qemu-user-static, qemu-system-arm,
//! qemu-efi-aarch64, nginx, socat and the aarch64 agent
//! (`cargo build --release -p hull --target aarch64-unknown-linux-gnu`).

use anyhow::{ensure, Result};
use hull::manifest::Arch;
use hull_qemu_tests::nginx::Nginx;
use hull_qemu_tests::updates::fixture_ab;
use hull_qemu_tests::{enabled, guest, report_arch, Boot};

#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn aarch64_update_a_to_b_and_roll_back() -> Result<()> {
    if !enabled("aarch64_update_a_to_b_and_roll_back") {
        return Ok(());
    }
    let f = &fixture_ab(Arch::Aarch64)?;
    ensure!(
        f.b.ostree_ref.contains("/aarch64/"),
        "B's ref is {}",
        f.b.ostree_ref
    );
    let nginx = Nginx::serve(&[("/repo/", &f.repo("b"))])?;
    let fleet = hull_qemu_tests::fleet::Fleet::start()?;
    ensure!(report_arch(&f.a)? == Arch::Aarch64, "A is {}", f.a.arch);
    let script = guest::update_script_with_boot_checks(
        &[("A", &f.a.commit), ("B", &f.b.commit)],
        guest::UPDATE_AB,
        true,
    );
    let mut b = Boot::new("aarch64_update_a_to_b", &f.a.image, Arch::Aarch64)?
        .check_script(&script)
        .expect_boots(3);
    b.spec_mut().update_port = Some(nginx.port);
    b.spec_mut().lock_port = Some(fleet.port);
    let o = b.run()?;
    eprintln!("{}", o.summary());
    guest::require_update_ab(&o, &nginx, &fleet)?;
    guest::require_boot_checks(
        &o,
        &[guest::AARCH64_CHECK_NAMES, &guest::boot_check_names()].concat(),
        &f.a.commit,
    )
}
