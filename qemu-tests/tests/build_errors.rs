//! Package-level tests of `hull build` against the real Debian mirror: bad
//! input stops the build with an error naming the culprit, before anything
//! is installed (or, when only the built tree can tell, before the image is
//! written), and leaves no image, build.json or published commit behind.
//!
//! Needs HULL_QEMU_TESTS=1 and root (like every build); `cargo test` lists it as ignored (run it with `--ignored`).

use std::path::Path;

use anyhow::Result;
use hull::build::pipeline::run_build;
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
    let opts =
        hull_qemu_tests::build_options(&manifest(dir, extra), &out).expect("the hull agents");
    let err = run_build(&opts).expect_err("the build should fail");
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
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
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
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
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
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
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

/// `image.size = "1G"` with 600 MiB of overlay data: the image stage stops
/// before mkfs.ext4 with the figures, and the commit already in out/repo is
/// not published (no ref, no summary).
#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn tree_larger_than_image_size_is_measured_before_mkfs() -> Result<()> {
    if !enabled("tree_larger_than_image_size_is_measured_before_mkfs") {
        return Ok(());
    }
    use std::io::Write;
    let t = tempfile::tempdir()?;
    let data = t.path().join("rootfs-overlays/big/usr/share/big");
    std::fs::create_dir_all(&data)?;
    // Not zeros: mkfs.ext4 leaves holes for blocks of zeros.
    let mut f = std::fs::File::create(data.join("data"))?;
    let block: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8 + 1).collect();
    for _ in 0..600 {
        f.write_all(&block)?;
    }
    drop(f);
    let err = build_err(t.path(), "overlays = [\"big\"]\n[image]\nsize = \"1G\"");
    eprintln!("{err}");
    assert!(
        err.contains("bad.toml: image.size: the tree needs "),
        "{err}"
    );
    assert!(
        err.contains("MiB, the root file system of a 1024 MiB disk has "),
        "{err}"
    );
    assert!(err.contains("stage image"), "{err}");
    assert!(!err.contains("Could not allocate"), "{err}");
    let repo = t.path().join("out/repo");
    assert!(repo.join("objects").is_dir(), "the commit stage ran");
    assert!(
        !repo.join("refs/heads/hull/bad/x86_64/stable").exists(),
        "the ref was not moved"
    );
    assert!(!repo.join("summary").exists(), "no summary");
    Ok(())
}

#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn unreachable_security_archive_is_named() -> Result<()> {
    if !enabled("unreachable_security_archive_is_named") {
        return Ok(());
    }
    let t = tempfile::tempdir()?;
    let err = build_err(
        t.path(),
        "security-mirror = \"http://127.0.0.1:9/debian-security\"",
    );
    assert!(
        err.contains("http://127.0.0.1:9/debian-security/dists/trixie-security/InRelease"),
        "{err}"
    );
    assert!(err.contains("unreachable"), "{err}");
    Ok(())
}

/// A lock beside the manifest that does not hold: a package the manifest
/// names is not locked, then a locked version the mirror no longer has.
/// Each is one line naming the package, before anything is installed.
#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn a_lock_that_does_not_hold_is_refused_before_installing() -> Result<()> {
    if !enabled("a_lock_that_does_not_hold_is_refused_before_installing") {
        return Ok(());
    }
    use hull::build::lock::{ArchLock, LockFile, LockedPackage};
    let t = tempfile::tempdir()?;
    let path = manifest(t.path(), "");
    let m = hull::manifest::Manifest::load(&path)?;
    let arch = hull::manifest::Arch::X86_64;
    let (plan, index) =
        hull::build::archive::resolve_with_index(&m, arch, &t.path().join("out/cache"))?;
    // Every package the manifest names, locked at the mirror's version.
    let mut package: Vec<LockedPackage> = plan
        .include
        .iter()
        .filter(|n| plan.versions[*n] != "virtual")
        .map(|n| {
            let version = index.version(n).unwrap().to_string();
            let (arch, deb) = ["amd64", "all"]
                .iter()
                .find_map(|a| index.deb(n, &version, a).map(|d| (*a, d)))
                .unwrap_or_else(|| panic!("{n} {version} in the index"));
            LockedPackage {
                name: n.clone(),
                version,
                arch: arch.into(),
                sha256: deb.sha256.clone(),
                size: deb.size,
                path: deb.filename.clone(),
            }
        })
        .collect();
    let dropped = package.pop().unwrap();
    let lock = |package: Vec<LockedPackage>| LockFile {
        format: hull::build::lock::FORMAT,
        arches: vec![ArchLock {
            name: "x86_64".into(),
            include: vec![],
            exclude: vec![],
            source: vec![],
            package,
        }],
    };
    let lock_file = hull::build::lock::lock_path(&path);
    hull::build::lock::write(&lock_file, &lock(package.clone()))?;
    let err = build_err(t.path(), "");
    assert!(
        err.contains(&format!("{} in ", dropped.name)) && err.contains("but not locked"),
        "{err}"
    );

    package.push(LockedPackage {
        version: "0.0-0".into(),
        ..dropped.clone()
    });
    hull::build::lock::write(&lock_file, &lock(package))?;
    let err = build_err(t.path(), "");
    assert!(
        err.contains("locked version gone from http://deb.debian.org/debian trixie"),
        "{err}"
    );
    assert!(err.contains(&format!("{} 0.0-0", dropped.name)), "{err}");
    assert!(err.contains("hull lock --update"), "{err}");
    assert!(!t.path().join("out/repo/refs/heads/hull").exists());
    Ok(())
}

/// Makes `hull-test-cached` 1.0 (all), a package the mirror does not have,
/// with `dpkg-deb --build`, in `dir`; returns the `.deb`'s path (apt's name
/// for it, as apt leaves it in the .deb cache).
fn hull_test_cached_deb(dir: &Path) -> Result<std::path::PathBuf> {
    let src = dir.join("hull-test-cached");
    std::fs::create_dir_all(src.join("DEBIAN"))?;
    std::fs::create_dir_all(src.join("usr/share/hull-test-cached"))?;
    std::fs::write(
        src.join("usr/share/hull-test-cached/from-the-cache"),
        "installed from out/cache/debs\n",
    )?;
    std::fs::write(
        src.join("DEBIAN/control"),
        "Package: hull-test-cached\nVersion: 1.0\nArchitecture: all\n\
         Maintainer: hull tests <hull@example.org>\n\
         Description: a package only the .deb cache has\n",
    )?;
    let deb = dir.join("hull-test-cached_1.0_all.deb");
    hull::util::cmd::Cmd::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&src)
        .arg(&deb)
        .run()?;
    Ok(deb)
}

/// A locked version the mirror does not list (`hull-test-cached` 1.0, which
/// it never had) is installed from the build's .deb cache, where its sha256
/// is the locked one: served as a local repository, pinned like every
/// locked package, and the installed set is exactly the lock's. Gone from
/// the cache too, the build stops at the packages stage with one line
/// naming it, and writes nothing.
///
/// The manifest is minimal.toml plus that package, its lock the shipped
/// minimal.lock (refreshed by CI before the lanes start) plus that package;
/// the other .debs are hard-linked from the lane's .deb cache (warm after
/// boot_minimal), so the install downloads little. The tree is installed
/// as `hull build`'s rootfs stage does (resolve, lock, install), without
/// the layout, commit and image stages.
#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn a_locked_deb_gone_from_the_mirror_installs_from_the_cache() -> Result<()> {
    if !enabled("a_locked_deb_gone_from_the_mirror_installs_from_the_cache") {
        return Ok(());
    }
    use hull::build::lock::{self, LockedPackage};
    let started = std::time::Instant::now();
    let shared = hull_qemu_tests::test_out();
    std::fs::create_dir_all(&shared)?;
    // Beside the lane's cache, so its .debs hard-link.
    let t = tempfile::tempdir_in(&shared)?;
    let out = t.path().join("out");
    let cache = out.join("cache");
    let debs = cache.join("debs");
    // The lane's .debs and signed indexes (checked by sha256 when read).
    for (dir, ext) in [("debs", ".deb"), ("indexes", ".xz")] {
        std::fs::create_dir_all(cache.join(dir))?;
        let Ok(entries) = std::fs::read_dir(shared.join("cache").join(dir)) else {
            continue;
        };
        let files = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(ext));
        for e in files {
            let to = cache.join(dir).join(e.file_name());
            if std::fs::hard_link(e.path(), &to).is_err() {
                std::fs::copy(e.path(), &to)?;
            }
        }
    }
    let deb = hull_test_cached_deb(t.path())?;
    let cached = debs.join("hull-test-cached_1.0_all.deb");
    std::fs::copy(&deb, &cached)?;

    let path = t.path().join("cached.toml");
    std::fs::write(
        &path,
        format!(
            "include = [{:?}]\nname = \"cached\"\n[packages]\ninclude = [\"hull-test-cached\"]\n",
            workspace_root()
                .join("manifests/minimal.toml")
                .display()
                .to_string()
        ),
    )?;
    let shipped = lock::read(&workspace_root().join("manifests/minimal.lock"))?
        .expect("manifests/minimal.lock");
    let mut lock_file = shipped.clone();
    lock_file.arches.retain(|a| a.name == "x86_64");
    lock_file.arches[0].package.push(LockedPackage {
        name: "hull-test-cached".into(),
        version: "1.0".into(),
        arch: "all".into(),
        sha256: hull::build::archive::sha256_file(&deb)?,
        size: std::fs::metadata(&deb)?.len(),
        path: String::new(),
    });
    let lock_path = lock::lock_path(&path);
    lock::write(&lock_path, &lock_file)?;

    // As the build's packages and rootfs stages do.
    let m = hull::manifest::Manifest::load(&path)?;
    let arch = hull::manifest::Arch::X86_64;
    let a = &lock_file.arches[0];
    let (mut plan, mut index) =
        hull::build::archive::resolve_locked(&m, arch, &cache, &a.versions())?;
    lock::apply(a, &mut plan, &mut index, &lock_path, &m, &debs)?;
    assert!(
        plan.local_debs.contains(&cached),
        "taken from the cache: {:?}",
        plan.local_debs
    );
    assert_eq!(plan.locked["hull-test-cached"], "1.0");
    // Listed for the SBOM at the locked sha256.
    let listed = index
        .deb("hull-test-cached", "1.0", "all")
        .map(|d| &d.sha256);
    assert_eq!(listed, Some(&a.package.last().unwrap().sha256));
    let work = t.path().join("work");
    let install_start = hull::util::now_secs_f64();
    let (list, _) = hull::build::rootfs::install_or_reuse(
        &plan,
        &work,
        &cache,
        false,
        &hull_qemu_tests::agents()?,
        false,
    )?;
    // Where the seconds went (the hooks' marks), for the CI log.
    let marks = std::fs::read_to_string(work.join("mmdebstrap-phases")).unwrap_or_default();
    for (phase, secs) in hull::build::rootfs::mmdebstrap::phase_times(
        &marks,
        install_start,
        hull::util::now_secs_f64(),
    ) {
        eprintln!("install: {phase}: {secs:.1} s");
    }
    assert!(
        list.lines().any(|l| l == "hull-test-cached\t1.0\tall"),
        "installed: {list}"
    );
    let file = work.join("rootfs/usr/share/hull-test-cached/from-the-cache");
    assert_eq!(
        std::fs::read_to_string(&file)?,
        "installed from out/cache/debs\n"
    );
    let installed: Vec<String> = list
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.replace('\t', " "))
        .collect();
    lock::verify_installed(a, &installed, &lock_path)?;
    hull::build::rootfs::remove_tree(&work)?;
    eprintln!(
        "installed from the lock with hull-test-cached from the cache in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Gone from the cache too: one line, at the packages stage, nothing written.
    std::fs::remove_file(&cached)?;
    let err = run_build(&hull_qemu_tests::build_options(&path, &out)?)
        .expect_err("the build should fail");
    let err = format!("{err:#}");
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(err.contains("stage packages"), "{err}");
    assert!(
        err.contains("locked version gone from http://deb.debian.org/debian trixie"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            " and not in {}: hull-test-cached 1.0 (",
            debs.display()
        )),
        "{err}"
    );
    assert!(err.contains("hull lock --update"), "{err}");
    assert!(!out.join("cached-x86_64.raw").exists(), "no image");
    assert!(!out.join("build.json").exists(), "no build.json");
    assert!(!out.join(".work/x86_64").exists(), "no scratch tree left");
    assert!(!out.join("repo/refs/heads/hull").exists(), "no ref");
    eprintln!("whole test: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
