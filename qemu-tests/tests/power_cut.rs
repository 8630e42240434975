//! Power cuts during `hull update`: QEMU is killed (SIGKILL) as the update
//! reaches a stage, then the same disk (a qcow2 overlay over image A, kept
//! across the two QEMU runs) boots again. The host must come up on A or B,
//! with no failed unit and the ESP fsck'd and mounted read-write, and a new
//! `hull update` must complete.
//!
//! CI cuts at two stages (the pull, the ESP entry write): one before anything
//! on the ESP changes, one while it changes. Each cut costs two boots (about
//! six minutes under TCG), so the cut after the ESP write, whose outcome is an
//! ordinary trial boot of B, is left to the soak (14 cuts, every stage twice,
//! docs/benchmarks.md), with the deploy and the stages between.
//! The second cut's disk starts torn, as a cut while Linux adds a
//! directory entry leaves the ESP (`hull_qemu_tests::esp_tear`): its first
//! boot must report that `hull-esp-repair.service` cleared it before the
//! ESP was mounted, and the first cut's, that there was nothing to clear.
//!
//! `HULL_POWER_CUTS=N` runs N cuts instead, at
//! stages and delays spread over the whole update (bench/power-cut-soak.sh);
//! the test prints `power cuts: N cuts, M bootable`.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hull_qemu_tests::nginx::Nginx;
use hull_qemu_tests::updates::fixture;
use hull_qemu_tests::{enabled, guest, report_arch, Boot};

/// (console line the cut waits for, delay after it).
const CI_CUTS: &[(&str, u64)] = &[("update: pulling", 0), ("writing entries", 0)];

/// Every stage `hull update` announces, for the soak.
const STAGES: &[&str] = &[
    "update: pulling",
    "update: deploying",
    "writing the deployment list",
    "writing the ESP",
    "writing entries",
    "removing what no deployment uses",
    "cleaning up old deployments",
];

fn cuts() -> Vec<(String, u64)> {
    match std::env::var("HULL_POWER_CUTS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        None => CI_CUTS.iter().map(|(p, d)| (p.to_string(), *d)).collect(),
        Some(n) => (0..n)
            .map(|i| {
                // Deterministic spread: each stage in turn, delays 0 ms to 4.5 s.
                let stage = STAGES[i % STAGES.len()];
                let delay = ((i / STAGES.len()) as u64 * 1500 + (i as u64 * 337)) % 4500;
                (stage.to_string(), delay)
            })
            .collect(),
    }
}

#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn power_cut_during_update() -> Result<()> {
    if !enabled("power_cut_during_update") {
        return Ok(());
    }
    let f = fixture()?;
    let arch = report_arch(&f.a)?;
    let nginx = Nginx::serve(&[("/repo/", &f.repo("b"))])?;
    let commits = [("A", f.a.commit.as_str()), ("B", f.b.commit.as_str())];
    let plan = cuts();
    let mut bootable = 0;
    let mut failures = Vec::new();
    for (i, (pattern, delay)) in plan.iter().enumerate() {
        let dir = tempfile::Builder::new().prefix("hull-cut").tempdir()?;
        let disk = dir.path().join("disk.qcow2");
        let torn = i == 1;
        let base = if torn {
            let copy = dir.path().join("torn.raw");
            hull::util::cmd::Cmd::new("cp")
                .arg("--sparse=always")
                .arg(&f.a.image)
                .arg(&copy)
                .run()?;
            let n = hull_qemu_tests::esp_tear::tear_entries(&copy)?;
            eprintln!("cut {i}: tore loader/entries on the ESP ({n} slots past its end marker)");
            copy
        } else {
            f.a.image.clone()
        };
        hull::util::cmd::Cmd::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&base)
            .arg(&disk)
            .run()?;
        let name = format!("power_cut_{i}");
        let mut first = Boot::new(&name, &disk, arch)?
            .check_script(&guest::update_script(&commits, guest::POWER_CUT_UPDATE))
            .cut_on(pattern, Duration::from_millis(*delay));
        first.spec_mut().snapshot = false;
        first.spec_mut().update_port = Some(nginx.port);
        let cut = first
            .run()
            .with_context(|| format!("cut {i} at {pattern:?}"))?;
        let repair = cut.detail("esp-repair").unwrap_or("(no esp-repair check)");
        let want = if torn {
            "repaired LOADER/ENTRIES:"
        } else {
            "nothing to repair"
        };
        if !repair.contains(want) {
            failures.push(format!(
                "cut {i}: before the cut, hull-esp-repair said {repair:?}, not {want:?}"
            ));
        }
        if !cut.cut {
            failures.push(format!(
                "cut {i} at {pattern:?} +{delay} ms: the update finished first"
            ));
        }
        let mut second = Boot::new(&format!("{name}_after"), &disk, arch)?
            .check_script(&guest::update_script(&commits, guest::POWER_CUT_AFTER));
        second.spec_mut().snapshot = false;
        second.spec_mut().update_port = Some(nginx.port);
        match second.run() {
            Ok(o) => match o.require(&[
                "bootable",
                "no-failed-units",
                "esp-fsck",
                "esp-repair",
                "status-works",
                "update-after-cut",
            ]) {
                Ok(()) => {
                    bootable += 1;
                    eprintln!(
                        "cut {i} at {pattern:?} +{delay} ms: came up on {}; ESP: {}",
                        o.detail("bootable").unwrap_or("?"),
                        o.detail("esp-repair").unwrap_or("?")
                    );
                }
                Err(e) => failures.push(format!("cut {i} at {pattern:?} +{delay} ms: {e:#}")),
            },
            Err(e) => failures.push(format!(
                "cut {i} at {pattern:?} +{delay} ms: did not boot: {e:#}"
            )),
        }
    }
    eprintln!("power cuts: {} cuts, {bootable} bootable", plan.len());
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
