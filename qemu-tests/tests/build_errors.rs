//! Package-level tests of `hull build` against the real Debian mirror: bad
//! input stops the build with an error naming the culprit, before anything
//! is installed, and leaves no image or build.json behind.
//!
//! Needs HULL_QEMU_TESTS=1 and root (like every build); skipped otherwise.

use std::path::Path;

use anyhow::Result;
use hull::build::{run_build, BuildOptions};
use hull_qemu_tests::{enabled, workspace_root};

/// Writes a manifest that includes the project's base.toml plus `extra`.
fn manifest(dir: &Path, extra: &str) -> std::path::PathBuf {
    let base = workspace_root().join("manifests/base.toml");
    let path = dir.join("bad.toml");
    let text = format!(
        "include = [{:?}]\nname = \"bad\"\nversion = \"0.1\"\n{extra}\n",
        base.display().to_string()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn build_err(dir: &Path, extra: &str) -> String {
    let out = dir.join("out");
    let err = run_build(&BuildOptions {
        manifest: manifest(dir, extra),
        out: out.clone(),
        arch: None,
        refresh: false,
        agents: hull_qemu_tests::agents().expect("the hull agents"),
        sign_key: None,
        summary_lifetime: hull::summary::DEFAULT_LIFETIME_SECS,
    })
    .expect_err("the build should fail");
    assert!(
        !out.join("bad-x86_64.raw").exists(),
        "no image after a failed build"
    );
    assert!(
        !out.join("build.json").exists(),
        "no build.json after a failed build"
    );
    assert!(!out.join(".work/x86_64").exists(), "no scratch tree left");
    format!("{err:#}")
}

#[test]
fn unknown_package_is_named_before_installing() -> Result<()> {
    if !enabled("unknown_package_is_named_before_installing") {
        return Ok(());
    }
    let t = tempfile::tempdir()?;
    let err = build_err(t.path(), "[packages]\ninclude = [\"hull-no-such-package\"]");
    assert!(
        err.contains("unknown package hull-no-such-package"),
        "{err}"
    );
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("stage packages"), "{err}");
    Ok(())
}

#[test]
fn unreachable_mirror_is_named() -> Result<()> {
    if !enabled("unreachable_mirror_is_named") {
        return Ok(());
    }
    let t = tempfile::tempdir()?;
    // Nothing listens on port 9 of loopback: refused at once, no traffic leaves.
    let err = build_err(t.path(), "mirror = \"http://127.0.0.1:9/debian\"");
    assert!(
        err.contains("http://127.0.0.1:9/debian/dists/trixie/InRelease"),
        "{err}"
    );
    assert!(err.contains("unreachable"), "{err}");
    Ok(())
}

#[test]
fn manifest_error_stops_before_any_download() -> Result<()> {
    if !enabled("manifest_error_stops_before_any_download") {
        return Ok(());
    }
    let t = tempfile::tempdir()?;
    let err = build_err(t.path(), "[packages]\ninclude = [\"Bad_Name\"]");
    assert!(err.contains("packages.include"), "{err}");
    assert!(err.contains("stage manifest"), "{err}");
    // Nothing was fetched: not even the cache directory exists.
    assert!(!t.path().join("out/cache").exists());
    Ok(())
}
