//! One image, many nodes (issue 15, items 3 to 5) in one boot: the minimal
//! image (the build boot_minimal uses, when both run from one
//! HULL_TEST_OUT) with a system extension made by `hull sysext` from a real
//! Debian package the image lacks (`hello`) written into its /var/lib/extensions,
//! converted to qcow2 by the function `[image] formats` uses, and booted as a
//! 10 GiB qcow2 overlay of it. guest/node-image-check.sh reports the sizes;
//! this test asserts the root grew to the disk (> 9 GiB), the ESP kept its
//! size, the backup GPT moved to the end, and `hello` ran from the merged /usr.
//!
//! Needs HULL_QEMU_TESTS=1, root, QEMU with OVMF, mkfs.erofs and the Debian
//! mirror; `cargo test` lists it as ignored (run it with `--ignored`):
//! `HULL_QEMU_TESTS=1 cargo test -p hull-qemu-tests --test node_image -- --ignored --nocapture`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use hull::build::image::formats;
use hull::manifest::image_formats::ImageFormat;
use hull::util::cmd::Cmd;
use hull_qemu_tests::{build, enabled, report_arch, test_out, Boot};

const SCRIPT: &str = include_str!("../guest/node-image-check.sh");
const CHECKS: &[&str] = &[
    "disk-size",
    "root-fs-size",
    "root-part-size",
    "esp-size",
    "unit-systemd-repart.service",
    "unit-systemd-growfs-root.service",
    "unit-systemd-sysext.service",
    "gpt-backup-at-end",
    "sysext-merged",
    "sysext-binary-runs",
    "usr-still-readonly",
];
const GIB: u64 = 1 << 30;
const DISK: u64 = 10 * GIB;

/// Runs debugfs `request` on the ext4 at `offset` in `disk`.
fn debugfs(disk: &Path, offset: u64, request: &str) -> Result<String> {
    Cmd::new("debugfs")
        .args(["-R", request])
        .arg(format!("{}?offset={offset}", disk.display()))
        .output_string()
}

#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn node_image() -> Result<()> {
    if !enabled("node_image") {
        return Ok(());
    }
    let report = build("manifests/minimal.toml")?;
    let arch = report_arch(&report)?;
    let ext = hull_qemu_tests::hello_sysext(arch)?;
    eprintln!(
        "sysext {} ({} bytes): {:?}",
        ext.path.display(),
        ext.size,
        ext.packages
    );
    if !ext.packages.iter().any(|p| p.starts_with("hello ")) {
        bail!("the extension does not carry hello: {:?}", ext.packages);
    }

    // A copy of the raw image with the extension in the stateroot's /var.
    let work = tempfile::Builder::new()
        .prefix("node-image-")
        .tempdir_in(test_out())?;
    let raw = work.path().join("node.raw");
    Cmd::new("cp")
        .arg("--sparse=always")
        .arg(&report.image)
        .arg(&raw)
        .run()?;
    let (root_offset, esp_before) = partitions(&raw)?;
    let var = format!("/ostree/deploy/{}/var", report.name);
    // One debugfs session: `write` names a file in the current directory.
    let requests = work.path().join("debugfs.cmds");
    std::fs::write(
        &requests,
        format!(
            "mkdir {var}/lib\nmkdir {var}/lib/extensions\ncd {var}/lib/extensions\nwrite {} hello.raw\n",
            ext.path.display()
        ),
    )?;
    Cmd::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&requests)
        .arg(format!("{}?offset={root_offset}", raw.display()))
        .run()?;
    let stat = debugfs(
        &raw,
        root_offset,
        &format!("stat {var}/lib/extensions/hello.raw"),
    )?;
    if !stat.contains(&format!("Size: {}", ext.size)) {
        bail!("the extension did not land in {var}/lib/extensions: {stat}");
    }

    // qcow2 as `[image] formats` writes it, then a 10 GiB overlay on it.
    let started = std::time::Instant::now();
    let qcow2 = formats::convert(&raw, ImageFormat::Qcow2)?;
    eprintln!(
        "{} ({} MiB) in {:.0} s",
        qcow2.path.display(),
        qcow2.size >> 20,
        started.elapsed().as_secs_f64()
    );
    std::fs::remove_file(&raw)?;
    let node = work.path().join("node-10g.qcow2");
    Cmd::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&qcow2.path)
        .arg(&node)
        .arg(DISK.to_string())
        .run()?;

    let mut boot = Boot::new("node_image", &node, arch)?.check_script(SCRIPT);
    boot.spec_mut().snapshot = false;
    let outcome = boot.run()?;
    eprintln!("{}", outcome.summary());
    outcome.require(CHECKS)?;

    let num = |name: &str| -> Result<u64> {
        let d = outcome.detail(name).unwrap_or_default();
        d.trim()
            .parse()
            .with_context(|| format!("{name}: {d:?} is not a number"))
    };
    let (disk, root_fs, root_part, esp) = (
        num("disk-size")?,
        num("root-fs-size")?,
        num("root-part-size")?,
        num("esp-size")?,
    );
    if disk != DISK {
        bail!("the guest sees a disk of {disk} bytes, not {DISK}");
    }
    if root_fs <= 9 * GIB || root_part <= 9 * GIB {
        bail!("the root did not grow to the 10 GiB disk: partition {root_part} bytes, file system {root_fs} bytes");
    }
    if esp != esp_before {
        bail!("the ESP changed size: {esp_before} bytes in the image, {esp} in the guest");
    }
    Ok(())
}

/// (byte offset of the root partition, bytes of the ESP), read from the
/// GPT of `disk` (the ESP is entry 1, the root entry 2, as hull writes them).
fn partitions(disk: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(disk).with_context(|| format!("opening {}", disk.display()))?;
    let mut header = [0u8; 92];
    f.read_exact_at(&mut header, 512)?;
    if &header[..8] != b"EFI PART" {
        bail!("{}: no GPT header at LBA 1", disk.display());
    }
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let entries = u64_at(&header, 72);
    let entry_size = u32::from_le_bytes(header[84..88].try_into().unwrap()) as u64;
    let mut two = vec![0u8; 2 * entry_size as usize];
    f.read_exact_at(&mut two, entries * 512)?;
    let (esp, root) = two.split_at(entry_size as usize);
    let esp_bytes = (u64_at(esp, 40) - u64_at(esp, 32) + 1) * 512;
    Ok((u64_at(root, 32) * 512, esp_bytes))
}
