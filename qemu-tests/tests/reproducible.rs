//! Reproducible commits (issue 14): manifests/minimal.toml built a second
//! time from its lock — into another out directory, two days later
//! (faketime), with umask 077 and another time zone — gives the same OSTree
//! commit checksum as the lane's own build. bench/reproducible.sh does the
//! same and, when they differ, shows where with diffoscope.
//!
//! Needs HULL_QEMU_TESTS=1, root, the faketime package and the lock beside
//! the manifest (shipped; run-tests.sh refreshes it). No boot.

use anyhow::{ensure, Context, Result};
use hull_qemu_tests::{build, enabled, test_out, workspace_root};

#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn reproducible_a_second_build_elsewhere_on_another_day_gives_the_same_commit() -> Result<()> {
    if !enabled("reproducible_a_second_build_elsewhere_on_another_day_gives_the_same_commit") {
        return Ok(());
    }
    let manifest = workspace_root().join("manifests/minimal.toml");
    ensure!(
        hull::build::lock::lock_path(&manifest).is_file(),
        "manifests/minimal.lock is missing: `hull lock manifests/minimal.toml` makes it"
    );
    let first = build("manifests/minimal.toml")?;
    // Its own out directory: its own repository and installed-tree cache;
    // only the .debs are shared (apt checks each against the signed index).
    let out = test_out().with_file_name(format!(
        "{}-repro",
        test_out().file_name().unwrap().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(out.join("cache/debs"))?;
    hull::util::cmd::Cmd::new("cp")
        .arg("-a")
        .arg(test_out().join("cache/debs/."))
        .arg(out.join("cache/debs/"))
        .run()?;
    let agent = hull_qemu_tests::agents()?.remove(0);
    let start = std::time::Instant::now();
    hull::util::cmd::Cmd::new("faketime")
        .args(["-f", "+2d", "env", "TZ=Pacific/Kiritimati", "sh", "-c"])
        .arg("umask 077 && exec \"$0\" build \"$1\" --out \"$2\"")
        .arg(&agent)
        .arg(&manifest)
        .arg(&out)
        .run()
        .context("the second build (faketime +2d, umask 077, TZ=Pacific/Kiritimati)")?;
    let second = hull::build::pipeline::read_report(&out)?;
    eprintln!(
        "second build in {:.0} s: {} (first {})",
        start.elapsed().as_secs_f64(),
        second.commit,
        first.commit
    );
    // The lane's repository may hold older builds of the manifest, so its
    // commit may have a parent; then everything but the parent must match.
    let a = commit_parts(&test_out().join("repo"), &first.commit)?;
    let b = commit_parts(&out.join("repo"), &second.commit)?;
    ensure!(
        a.1 == b.1,
        "the same lock built twice gave two commits, {} and {}: run bench/reproducible.sh to see where they differ",
        first.commit,
        second.commit
    );
    if !a.0 {
        ensure!(
            second.commit == first.commit,
            "same trees and metadata, yet commits {} and {}",
            first.commit,
            second.commit
        );
    }
    std::fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    Ok(())
}

/// Whether commit `c` has a parent, and every part of it but its parent:
/// metadata, subject, body, timestamp, root tree and root metadata checksums.
fn commit_parts(repo: &std::path::Path, c: &str) -> Result<(bool, Vec<ostree::glib::Variant>)> {
    let r = ostree::Repo::new_for_path(repo);
    r.open(ostree::gio::Cancellable::NONE)
        .with_context(|| format!("opening {}", repo.display()))?;
    let (v, _) = r
        .load_commit(c)
        .with_context(|| format!("loading {c} from {}", repo.display()))?;
    let has_parent = v.child_value(1).n_children() > 0;
    Ok((
        has_parent,
        [0, 3, 4, 5, 6, 7].map(|i| v.child_value(i)).to_vec(),
    ))
}
