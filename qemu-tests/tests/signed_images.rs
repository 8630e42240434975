//! Image trust and the gVisor sandbox, inside a guest. Builds
//! qemu-tests/fixtures/signed.toml (minimal.toml trusting the committed
//! test-only key for `10.0.2.100:80/hull`, `default = "reject"`,
//! `sandbox = "gvisor"`), starts Debian's docker-registry on 127.0.0.1,
//! pushes a signed, an unsigned, a wrongly signed and a tampered busybox
//! image with trixie's skopeo (a tool root made once by mmdebstrap, reused
//! from the test output directory: src/registry.rs), and boots the image
//! once with the registry forwarded to the guest's 10.0.2.100:80 (QEMU's
//! restricted guestfwd). guest/signed-images-check.sh: the signed image pulls
//! and runs, each other is refused with podman's own error, an image outside
//! the scope is refused by the default, and `podman run --runtime runsc` sees
//! gVisor's kernel.
//!
//! Needs HULL_QEMU_TESTS=1, root, docker-registry, mmdebstrap, the Debian
//! mirror and QEMU with OVMF; `cargo test` lists it as ignored. Run:
//! `HULL_QEMU_TESTS=1 cargo test -p hull-qemu-tests --test signed_images -- --ignored --nocapture`.

use std::time::Instant;

use anyhow::{ensure, Result};
use hull_qemu_tests::registry::{publish, signing_tools, Registry};
use hull_qemu_tests::{build, enabled, report_arch, test_out, Boot};

/// The checks signed-images-check.sh prints.
const CHECKS: &[&str] = &[
    "podman-version",
    "trust-policy",
    "signed-pull",
    "signed-run",
    "unsigned-refused",
    "other-key-refused",
    "tampered-refused",
    "default-reject",
    "runsc-kernel",
    "runsc-dmesg",
];

const SCRIPT: &str = include_str!("../guest/signed-images-check.sh");

#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn signed_images() -> Result<()> {
    if !enabled("signed_images") {
        return Ok(());
    }
    let t0 = Instant::now();
    let tools = signing_tools(&test_out())?;
    let registry = Registry::serve()?;
    let published = publish(&tools, registry.port)?;
    eprintln!(
        "signing tools and registry ready in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    let t1 = Instant::now();
    let report = build("qemu-tests/fixtures/signed.toml")?;
    eprintln!("signed.toml built in {:.0} s", t1.elapsed().as_secs_f64());

    let mut boot =
        Boot::new("signed_images", &report.image, report_arch(&report)?)?.check_script(SCRIPT);
    // The guest's 10.0.2.100:80 is the registry (the address the update
    // tests use for their server; this test has none).
    boot.spec_mut().update_port = Some(registry.port);
    let outcome = boot.run()?;
    eprintln!("{}", outcome.summary());
    outcome.require(CHECKS)?;

    // The guest fetched the signed image's signature from this registry:
    // the refusals are podman's verdicts, not missing network.
    let log = registry.log();
    let signed = published.digest("signed").unwrap_or_default();
    let sig = format!("sha256-{}.sig", signed.trim_start_matches("sha256:"));
    ensure!(
        log.contains(&sig),
        "the registry's log shows no request for the signature {sig}:\n{log}"
    );
    Ok(())
}
