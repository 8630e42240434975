//! The hardening benchmark behind bench/hardening-score.sh (ignored: a
//! measurement, not a test). Builds bench/manifests/hull.toml (the minimal
//! image plus lynis and ss) and bench/manifests/baseline.toml (the same
//! suite, kernel and podman, no hardening), boots each once with
//! guest/hardening-score.sh, and prints one Markdown table comparing them.
//!
//! Run: `bash bench/hardening-score.sh` (or `HULL_QEMU_TESTS=1 cargo test -p
//! hull-qemu-tests --test hardening_score -- --ignored --nocapture`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use hull_qemu_tests::{build, enabled, report_arch, Boot, Check};

const SCRIPT: &str = include_str!("../guest/hardening-score.sh");

/// What one image reported, by check name.
struct Measured(BTreeMap<String, Check>);

impl Measured {
    fn with_prefix(&self, prefix: &str) -> Vec<&Check> {
        self.0
            .values()
            .filter(|c| c.name.starts_with(prefix))
            .collect()
    }

    fn detail(&self, name: &str) -> String {
        self.0
            .get(name)
            .map_or_else(|| "not reported".to_string(), |c| c.detail.clone())
    }

    /// `value ✓` when as recommended, `value ✗` otherwise.
    fn marked(&self, name: &str) -> String {
        match self.0.get(name) {
            Some(c) => format!("{} {}", c.detail, if c.ok { "✓" } else { "✗" }),
            None => "not reported".into(),
        }
    }

    fn count_ok(&self, prefix: &str) -> (usize, usize) {
        let all = self.with_prefix(prefix);
        (all.iter().filter(|c| c.ok).count(), all.len())
    }

    fn mean_exposure(&self) -> Option<f64> {
        let scores: Vec<f64> = self
            .with_prefix("exposure:")
            .iter()
            .filter_map(|c| c.detail.parse().ok())
            .collect();
        (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64)
    }
}

fn measure(name: &str, manifest: &str) -> Result<Measured> {
    let report = build(manifest)?;
    // lynis alone runs for minutes under TCG.
    let outcome = Boot::new(name, &report.image, report_arch(&report)?)?
        .check_script(SCRIPT)
        .timeout(Duration::from_secs(1800))
        .run()?;
    let m = Measured(
        outcome
            .checks
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect(),
    );
    // A table without the exposure rows would look like a result.
    anyhow::ensure!(
        !m.with_prefix("exposure:").is_empty(),
        "{name}: no systemd-analyze exposure measured: {} (log {})",
        m.detail("exposure"),
        outcome.log.display()
    );
    Ok(m)
}

fn table(hull: &Measured, base: &Measured) -> String {
    let mut out = String::from("| item | hull minimal | stock-Debian baseline |\n|---|---|---|\n");
    let mut row = |item: &str, h: String, b: String| {
        out.push_str(&format!("| {item} | {h} | {b} |\n"));
    };
    for (prefix, what) in [
        ("cmdline:", "KSPP command-line options"),
        ("sysctl:", "KSPP/CIS sysctls"),
    ] {
        let (h_ok, h_all) = hull.count_ok(prefix);
        let (b_ok, b_all) = base.count_ok(prefix);
        row(
            &format!("**{what} as recommended**"),
            format!("**{h_ok} / {h_all}**"),
            format!("**{b_ok} / {b_all}**"),
        );
        for c in hull.with_prefix(prefix) {
            row(
                &format!("`{}`", c.name),
                hull.marked(&c.name),
                base.marked(&c.name),
            );
        }
    }
    row(
        "**lynis hardening index**",
        format!("**{}**", hull.detail("lynis")),
        format!("**{}**", base.detail("lynis")),
    );
    let mean = |m: &Measured| {
        m.mean_exposure()
            .map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
    };
    row(
        "**systemd-analyze security, mean exposure of enabled services** (0 best, 10 worst)",
        format!("**{}**", mean(hull)),
        format!("**{}**", mean(base)),
    );
    let units: std::collections::BTreeSet<&str> = hull
        .with_prefix("exposure:")
        .into_iter()
        .chain(base.with_prefix("exposure:"))
        .map(|c| c.name.as_str())
        .collect();
    for u in units {
        let get = |m: &Measured| {
            m.0.get(u)
                .map_or("not enabled".into(), |c| c.detail.clone())
        };
        row(
            &format!("`{}`", &u["exposure:".len()..]),
            get(hull),
            get(base),
        );
    }
    row(
        "listening sockets (`ss -tulpn`)",
        hull.detail("listen"),
        base.detail("listen"),
    );
    for f in ["user", "Seccomp", "NoNewPrivs", "CapEff", "uid_map"] {
        let name = format!("container:{f}");
        row(
            &format!("rootless container: {f}"),
            hull.detail(&name),
            base.detail(&name),
        );
    }
    out
}

#[test]
#[ignore = "a benchmark: run bench/hardening-score.sh"]
fn hardening_score() -> Result<()> {
    if !enabled("hardening_score") {
        return Ok(());
    }
    let hull = measure("score-hull", "bench/manifests/hull.toml")?;
    let base = measure("score-baseline", "bench/manifests/baseline.toml")?;
    println!(
        "HARDENING-SCORE-TABLE-BEGIN\n{}HARDENING-SCORE-TABLE-END",
        table(&hull, &base)
    );
    Ok(())
}
