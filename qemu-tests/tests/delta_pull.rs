//! Pulls through a static delta (issue 18 item 3; libostree releases have
//! broken delta pulls before), without building an image or booting: two real
//! commits A → B in an archive repository, B's delta made by hull's build
//! code, the repository served by the real nginx on 127.0.0.1, and hull's own
//! pull code (`hull::host::pull::pull_exact`, what `hull pull-commit` runs on
//! a host: its delta fetch and libostree's offline apply, then libostree's
//! pull) pulling B into a fresh bare repository that holds A; fsck and B's
//! bytes checked. Then the same with the delta removed: the pull falls back
//! to objects and still gives B.
//!
//! Needs HULL_QEMU_TESTS=1, root and nginx. A few seconds.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use hull::host::pull::{pull_exact, PullSpec, PullStats};
use hull::repo::{commit, delta};
use hull_qemu_tests::enabled;
use hull_qemu_tests::nginx::Nginx;
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

const REF: &str = "hull/delta/x86_64/stable";
const REMOTE: &str = "hull";

/// Deterministic bytes that do not compress (xorshift).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A tree of 40 files of 64 KiB and a 4 MiB "library"; `version` changes
/// 64 bytes in the library's middle and one small file.
fn write_tree(dir: &Path, version: u8) -> Result<Vec<u8>> {
    std::fs::create_dir_all(dir.join("usr/lib"))?;
    for i in 0..40u64 {
        std::fs::write(
            dir.join(format!("usr/lib/data{i}")),
            noise(i + 100, 64 << 10),
        )?;
    }
    let mut lib = noise(7, 4 << 20);
    for b in &mut lib[(2 << 20)..(2 << 20) + 64] {
        *b = b.wrapping_add(version);
    }
    std::fs::write(dir.join("usr/lib/libexample.so.1"), &lib)?;
    std::fs::write(dir.join("usr/lib/version"), format!("{version}\n"))?;
    Ok(lib)
}

fn meta(version: u8) -> commit::CommitMeta {
    commit::CommitMeta {
        version: format!("{version}.0"),
        manifest_sha256: "m".into(),
        input_sha256: format!("in-{version}"),
        packages: vec![],
        kver: "6.12".into(),
        release: String::new(),
        boot_bytes: 0,
        kargs: vec![],
        ref_binding: vec![REF.into()],
        arch: "x86_64".into(),
        rollout: None,
    }
}

/// A fresh bare repository holding A (pulled from the server's directory),
/// with the remote `hull` pointing at `url`.
fn client(dir: &Path, server: &Path, a: &str, url: &str) -> Result<ostree::Repo> {
    std::fs::create_dir_all(dir)?;
    let repo = ostree::Repo::new_for_path(dir);
    repo.create(ostree::RepoMode::Bare, gio::Cancellable::NONE)?;
    let opts = glib::VariantDict::new(None);
    opts.insert_value("refs", &vec![REF.to_string()].to_variant());
    opts.insert_value("override-commit-ids", &vec![a.to_string()].to_variant());
    repo.pull_with_options(
        &format!("file://{}", server.display()),
        &opts.end(),
        None,
        gio::Cancellable::NONE,
    )
    .context("pulling A locally")?;
    let remote_opts = glib::VariantDict::new(None);
    remote_opts.insert("gpg-verify", false);
    repo.remote_add(
        REMOTE,
        Some(url),
        Some(&remote_opts.end()),
        gio::Cancellable::NONE,
    )?;
    Ok(repo)
}

/// Pulls B with hull's code, then checks the repository (fsck) and the
/// pulled library's bytes.
fn pull_b(repo: &ostree::Repo, dir: &Path, b: &str, lib_b: &[u8]) -> Result<PullStats> {
    let stats = pull_exact(
        repo,
        &PullSpec {
            remote: REMOTE,
            ostree_ref: REF,
            checksum: b,
        },
    )?;
    hull::util::cmd::Cmd::new("ostree")
        .arg("fsck")
        .arg(format!("--repo={}", dir.display()))
        .run()
        .context("fsck of the pulled repository")?;
    let bytes = hull::util::cmd::Cmd::new("ostree")
        .arg("cat")
        .arg(format!("--repo={}", dir.display()))
        .arg(b)
        .arg("/usr/lib/libexample.so.1")
        .output()?;
    ensure!(bytes == lib_b, "the pulled library differs from B's");
    Ok(stats)
}

#[test]
#[ignore = "needs root and nginx; qemu-tests/run-tests.sh runs it"]
fn a_host_pulls_through_the_static_delta_and_falls_back_to_objects_without_it() -> Result<()> {
    if !enabled("a_host_pulls_through_the_static_delta_and_falls_back_to_objects_without_it") {
        return Ok(());
    }
    let start = std::time::Instant::now();
    let t = tempfile::tempdir()?;
    let server_dir = t.path().join("srv/repo");
    let server = commit::open_or_create(&server_dir)?;
    let tree = t.path().join("tree");
    write_tree(&tree, 1)?;
    let a = commit::commit_tree(&server, &tree, REF, &meta(1))?.checksum;
    commit::move_ref(&server, REF, &a)?;
    let lib_b = write_tree(&tree, 2)?;
    let b = commit::commit_tree(&server, &tree, REF, &meta(2))?.checksum;
    commit::move_ref(&server, REF, &b)?;
    let d = delta::generate(&server, &a, &b)?;
    eprintln!("{}", d.describe());
    server.regenerate_summary(None, gio::Cancellable::NONE)?;
    let view = hull::util::cmd::Cmd::new("ostree")
        .arg("summary")
        .arg("--view")
        .arg(format!("--repo={}", server_dir.display()))
        .output_string()?;
    ensure!(
        view.contains(&format!("{a}-{b}")),
        "`ostree summary --view` lists no delta {a}-{b}:\n{view}"
    );

    let nginx = Nginx::serve(&[("/repo/", &server_dir)])?;
    let url = format!("http://127.0.0.1:{}/repo", nginx.port);

    // Through the delta.
    let dir = t.path().join("client-delta");
    let repo = client(&dir, &server_dir, &a, &url)?;
    let stats = pull_b(&repo, &dir, &b, &lib_b)?;
    let (requests, bytes) = nginx.served();
    eprintln!(
        "through the delta: {} ({requests} requests, {bytes} bytes served)",
        stats.describe()
    );
    ensure!(
        stats.delta_parts >= 1,
        "no delta part was fetched: {stats:?}"
    );
    ensure!(
        nginx.access_log().contains("/repo/deltas/"),
        "nginx served no delta file:\n{}",
        nginx.access_log()
    );
    // 64 changed bytes of a 4 MiB library: the delta is far below the object.
    ensure!(
        bytes < 1 << 20 && requests <= 10,
        "{bytes} bytes in {requests} requests for a 64-byte change"
    );

    // Without it: objects one by one.
    server.prune_static_deltas(Some(&b), gio::Cancellable::NONE)?;
    server.regenerate_summary(None, gio::Cancellable::NONE)?;
    ensure!(delta::list(&server)?.is_empty(), "the delta is still there");
    let dir = t.path().join("client-objects");
    let repo = client(&dir, &server_dir, &a, &url)?;
    let stats = pull_b(&repo, &dir, &b, &lib_b)?;
    let (requests2, bytes2) = nginx.served();
    eprintln!(
        "without the delta: {} ({} requests, {} bytes served)",
        stats.describe(),
        requests2 - requests,
        bytes2 - bytes
    );
    ensure!(
        stats.delta_parts == 0 && stats.fetched >= 2,
        "expected objects one by one: {stats:?}"
    );
    eprintln!("took {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
