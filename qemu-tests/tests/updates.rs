//! `hull update`, `hull rollback` and automatic rollback, for real: image A
//! booted in QEMU pulls signed commits from nginx on 127.0.0.1 through
//! QEMU's restricted user network (the guest reaches nothing else), and a
//! script in the guest proves each step from the inside.
//!
//! The fixture ([`hull_qemu_tests::updates`]) builds A, B (A's next version)
//! and C (a version whose health check fails) with `hull build`, signed;
//! A's update agent runs under fleet-lock against `hull fleet-lock serve` on
//! etcd ([`hull_qemu_tests::fleet`]), reached as http://10.0.2.101/.
//! Needs HULL_QEMU_TESTS=1, root, QEMU with OVMF, nginx, socat and etcd.

use std::sync::OnceLock;

use anyhow::{ensure, Result};
use hull_qemu_tests::fleet::{node_id_of, Fleet};
use hull_qemu_tests::nginx::Nginx;
use hull_qemu_tests::updates::{fixture, tamper_repos, Fixture};
use hull_qemu_tests::{enabled, guest, report_arch, Boot};

fn shared() -> Result<&'static Fixture> {
    static F: OnceLock<Fixture> = OnceLock::new();
    if let Some(f) = F.get() {
        return Ok(f);
    }
    let f = fixture()?;
    Ok(F.get_or_init(|| f))
}

fn boot(
    name: &str,
    f: &Fixture,
    nginx: &Nginx,
    fleet: Option<&Fleet>,
    script: String,
    boots: u32,
    guest_boots_per_marker: u32,
) -> Result<hull_qemu_tests::Outcome> {
    let b = Boot::new(name, &f.a.image, report_arch(&f.a)?)?
        .check_script(&script)
        .expect_boots(boots);
    // The limit runs from one HULL-CHECK-DONE to the next: as many boots'
    // worth as the guest boots in between.
    let per_boot = b.current_timeout();
    let mut b = b.timeout(per_boot * guest_boots_per_marker);
    b.spec_mut().update_port = Some(nginx.port);
    b.spec_mut().lock_port = fleet.map(|f| f.port);
    let outcome = b.run()?;
    eprintln!("{}", outcome.summary());
    Ok(outcome)
}

#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn update_a_to_b_and_roll_back() -> Result<()> {
    if !enabled("update_a_to_b_and_roll_back") {
        return Ok(());
    }
    let f = shared()?;
    let nginx = Nginx::serve(&[("/repo/", &f.repo("b"))])?;
    let fleet = Fleet::start()?;
    // A's first boot also runs the image's own boot checks (boot-check.sh).
    let script = guest::update_script_with_boot_checks(
        &[("A", &f.a.commit), ("B", &f.b.commit)],
        guest::UPDATE_AB,
        false,
    );
    let o = boot("update_a_to_b", f, &nginx, Some(&fleet), script, 3, 1)?;
    guest::require_update_ab(&o, &nginx, &fleet)?;
    guest::require_boot_checks(&o, &guest::boot_check_names(), &f.a.commit)?;
    // A measurement for docs/benchmarks.md, not a check.
    let (requests, bytes) = nginx.served();
    eprintln!(
        "update A→B: {requests} HTTP requests, {bytes} bytes ({:.1} MiB) served",
        bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}

#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn update_refuses_spoiled_commits() -> Result<()> {
    if !enabled("update_refuses_spoiled_commits") {
        return Ok(());
    }
    let f = shared()?;
    let spoiled = tamper_repos(f)?;
    let mut locations: Vec<(String, std::path::PathBuf)> =
        vec![("/repo/".to_string(), f.repo("b"))];
    for (kind, path) in &spoiled {
        locations.push((format!("/{kind}/repo/"), path.clone()));
    }
    let locs: Vec<(&str, &std::path::Path)> = locations
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_path()))
        .collect();
    let nginx = Nginx::serve(&locs)?;
    let script = guest::update_script(
        &[("A", &f.a.commit), ("B", &f.b.commit)],
        guest::UPDATE_TAMPER,
    );
    let o = boot("update_tamper", f, &nginx, None, script, 1, 1)?;
    o.require(&[
        "refused-non-root",
        "refused-unsigned",
        "refused-wrongkey",
        "refused-corrupt",
        "refused-misref",
        "refused-misarch",
        "refused-downgrade",
        "refused-stale",
        "stale-reported",
        "refused-unsigned-summary",
        "refused-esp-full",
        "good-still-available",
        "nothing-staged",
        "refused-etc-conflict",
        "etc-fixed-retry",
    ])?;
    // A commit refused on its signature, binding, age or source is refused
    // before any of its content is downloaded.
    let log = nginx.access_log();
    for kind in [
        "unsigned",
        "wrongkey",
        "misref",
        "misarch",
        "downgrade",
        "stale",
        "unsigned-summary",
    ] {
        ensure!(
            !log.lines()
                .any(|l| l.contains(&format!("/{kind}/repo/objects/")) && l.contains(".filez")),
            "file objects of the {kind} commit were downloaded:\n{log}"
        );
    }
    // The retry after the /etc fix downloaded nothing twice.
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for l in log.lines() {
        if let Some(path) = l.split_whitespace().find(|w| {
            w.starts_with("/etc-conflict/repo/objects/")
                && !w.ends_with(".commit")
                && !w.ends_with(".commitmeta")
        }) {
            *seen.entry(path).or_default() += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(
        twice.is_empty(),
        "objects downloaded again on the retry: {twice:?}"
    );
    ensure!(
        !seen.is_empty(),
        "the etc-conflict update downloaded no object at all:\n{log}"
    );
    Ok(())
}

#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn update_that_fails_its_health_check_rolls_back() -> Result<()> {
    if !enabled("update_that_fails_its_health_check_rolls_back") {
        return Ok(());
    }
    let f = shared()?;
    let nginx = Nginx::serve(&[("/repo/", &f.repo("c"))])?;
    let fleet = Fleet::start()?;
    let script = guest::update_script(
        &[("A", &f.a.commit), ("C", &f.c()?.commit)],
        guest::UPDATE_BROKEN,
    );
    // Between its two markers the guest boots C on each of its tries, then A.
    let o = boot(
        "update_broken",
        f,
        &nginx,
        Some(&fleet),
        script,
        2,
        1 + hull_qemu_tests::updates::BOOT_TRIES,
    )?;
    o.require(&[
        "booted-a",
        "update",
        "early-status",
        "reconciled-early",
        "back-on-a",
        "rollback-reported",
        "rollback-reason",
        "c-failed",
        "a-default",
        "esp-exhausted",
        "both-failed",
        "no-reboot-loop",
        "node-id",
        "lock-kept",
        "metrics-rollbacks",
        "metrics-lock-held",
        "c-not-again",
    ])?;
    // The bad update stopped the rollout: etcd still has this node as the
    // group's one holder.
    let node = node_id_of(&o)?;
    let holders = fleet.holders("default")?;
    ensure!(
        holders == Some(vec![node.clone()]),
        "etcd's semaphore of group default: holders {holders:?}, expected [{node}]"
    );
    let trials = o.checks.iter().filter(|c| c.name == "trial-boot-c").count();
    ensure!(
        trials == hull_qemu_tests::updates::BOOT_TRIES as usize,
        "C booted {trials} times, expected {} tries",
        hull_qemu_tests::updates::BOOT_TRIES
    );
    Ok(())
}
