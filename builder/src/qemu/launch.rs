//! Starting QEMU: the prerequisites (QEMU, image, firmware, KVM), a private
//! copy of the firmware's variable store, then the run in this terminal or
//! in the background.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Stdio};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use super::command::{command, qemu_program};
use super::firmware::firmware_package;
use super::spec::{Accel, RunSpec, Serial};
use crate::util::cmd::{require_program, Cmd};

/// Checks that QEMU can start `spec`, copies the variable store and returns
/// the command with the temporary directory holding the copy.
fn prepare(spec: &RunSpec) -> Result<(Cmd, TempDir)> {
    spec.validate()?;
    let (program, package) = qemu_program(spec.arch);
    require_program(program, package)?;
    if !spec.image.is_file() {
        bail!(
            "image {} not found: build it with `hull build MANIFEST`",
            spec.image.display()
        );
    }
    if !spec.snapshot {
        let meta = fs::metadata(&spec.image)
            .with_context(|| format!("reading {}", spec.image.display()))?;
        if meta.permissions().readonly() {
            bail!(
                "image {} is read-only: drop --persist to boot it on a snapshot",
                spec.image.display()
            );
        }
    }
    for f in [&spec.firmware.code, &spec.firmware.vars_template] {
        if !f.is_file() {
            bail!(
                "UEFI firmware {} not found: install the Debian package {}",
                f.display(),
                firmware_package(spec.arch)
            );
        }
    }
    if spec.accel == Accel::Kvm {
        if std::env::consts::ARCH != spec.arch.as_str() {
            bail!(
                "--accel kvm cannot run an {} guest on this {} host: use --accel tcg",
                spec.arch,
                std::env::consts::ARCH
            );
        }
        if !Path::new("/dev/kvm").exists() {
            bail!("--accel kvm: /dev/kvm does not exist (no KVM on this host): use --accel tcg");
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("hull-qemu-")
        .tempdir()
        .context("creating a temporary directory for the UEFI variable store")?;
    let vars = dir.path().join("efivars.fd");
    fs::copy(&spec.firmware.vars_template, &vars).with_context(|| {
        format!(
            "copying {} to {}",
            spec.firmware.vars_template.display(),
            vars.display()
        )
    })?;
    fs::set_permissions(&vars, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} writable", vars.display()))?;
    if let Serial::File(log) = &spec.serial {
        if let Some(parent) = log.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    Ok((command(spec, &vars), dir))
}

/// Boots `spec` with this terminal attached; returns when QEMU exits.
pub fn run(spec: &RunSpec) -> Result<()> {
    let (cmd, _vars) = prepare(spec)?;
    if spec.snapshot {
        log::info!(
            "booting {} on a snapshot: the image is not changed",
            spec.image.display()
        );
    } else {
        log::warn!(
            "booting {} with --persist: the guest writes to the image",
            spec.image.display()
        );
    }
    if spec.serial == Serial::Stdio {
        eprintln!("hull run: serial console follows; quit QEMU with Ctrl-a x");
    }
    cmd.run_interactive()
}

/// Starts QEMU for `spec` in the background (stdin is /dev/null). Keep the
/// returned directory alive until QEMU exits: it holds the variable store.
pub fn spawn(spec: &RunSpec, stdout: Stdio, stderr: Stdio) -> Result<(Child, TempDir)> {
    let (cmd, dir) = prepare(spec)?;
    let child = cmd.spawn(stdout, stderr)?;
    Ok((child, dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Arch;

    use crate::qemu::firmware::test_firmware as fw;

    #[test]
    fn missing_image_is_named() {
        let mut spec = RunSpec::new("/nonexistent/x-x86_64.raw", Arch::X86_64, fw(Arch::X86_64));
        spec.serial = Serial::File("/nonexistent/log".into());
        let err = spawn(&spec, Stdio::null(), Stdio::null())
            .unwrap_err()
            .to_string();
        // Either QEMU is missing (named with its package) or the image is.
        assert!(
            err.contains("/nonexistent/x-x86_64.raw") || err.contains("qemu-system-x86"),
            "{err}"
        );
    }
}
