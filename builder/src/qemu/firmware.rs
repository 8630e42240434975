//! The UEFI firmware QEMU boots with: where Debian installs OVMF and AAVMF,
//! and which package to install when it is missing.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::manifest::Arch;
/// UEFI firmware: the read-only code and the template of the variable store
/// (copied for every run, since the firmware writes to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    pub code: PathBuf,
    pub vars_template: PathBuf,
}

/// Where Debian installs the firmware, best first: (code, vars) relative to /.
fn firmware_candidates(arch: Arch) -> &'static [(&'static str, &'static str)] {
    match arch {
        Arch::X86_64 => &[
            (
                "usr/share/OVMF/OVMF_CODE_4M.fd",
                "usr/share/OVMF/OVMF_VARS_4M.fd",
            ),
            ("usr/share/OVMF/OVMF_CODE.fd", "usr/share/OVMF/OVMF_VARS.fd"),
        ],
        Arch::Aarch64 => &[(
            "usr/share/AAVMF/AAVMF_CODE.fd",
            "usr/share/AAVMF/AAVMF_VARS.fd",
        )],
    }
}

/// The Debian package holding the UEFI firmware for `arch`.
pub(super) fn firmware_package(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "ovmf",
        Arch::Aarch64 => "qemu-efi-aarch64",
    }
}

impl Firmware {
    /// The firmware Debian installs for `arch`.
    pub fn find(arch: Arch) -> Result<Firmware> {
        Firmware::find_in(arch, Path::new("/"))
    }

    /// Like [`Firmware::find`], with the Debian paths taken relative to `root`.
    pub fn find_in(arch: Arch, root: &Path) -> Result<Firmware> {
        let candidates = firmware_candidates(arch);
        for (code, vars) in candidates {
            let fw = Firmware {
                code: root.join(code),
                vars_template: root.join(vars),
            };
            if fw.code.is_file() && fw.vars_template.is_file() {
                return Ok(fw);
            }
        }
        let (code, vars) = candidates[0];
        let missing = if root.join(code).is_file() {
            vars
        } else {
            code
        };
        bail!(
            "UEFI firmware for {arch} not found: {} is missing; install the Debian package {}",
            root.join(missing).display(),
            firmware_package(arch)
        )
    }
}

/// Firmware paths for tests of the command line and spec (nothing is read).
#[cfg(test)]
pub(crate) fn test_firmware(arch: Arch) -> Firmware {
    match arch {
        Arch::X86_64 => Firmware {
            code: "/fw/OVMF_CODE_4M.fd".into(),
            vars_template: "/fw/OVMF_VARS_4M.fd".into(),
        },
        Arch::Aarch64 => Firmware {
            code: "/fw/AAVMF_CODE.fd".into(),
            vars_template: "/fw/AAVMF_VARS.fd".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn firmware_lookup() {
        let root = tempfile::tempdir().unwrap();
        let err = Firmware::find_in(Arch::X86_64, root.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("OVMF_CODE_4M.fd") && err.contains("package ovmf"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1);
        let err = Firmware::find_in(Arch::Aarch64, root.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("AAVMF_CODE.fd") && err.contains("qemu-efi-aarch64"),
            "{err}"
        );

        let ovmf = root.path().join("usr/share/OVMF");
        fs::create_dir_all(&ovmf).unwrap();
        fs::write(ovmf.join("OVMF_CODE_4M.fd"), b"").unwrap();
        let err = Firmware::find_in(Arch::X86_64, root.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("OVMF_VARS_4M.fd is missing"), "{err}");
        fs::write(ovmf.join("OVMF_VARS_4M.fd"), b"").unwrap();
        let found = Firmware::find_in(Arch::X86_64, root.path()).unwrap();
        assert_eq!(found.code, ovmf.join("OVMF_CODE_4M.fd"));
        assert_eq!(found.vars_template, ovmf.join("OVMF_VARS_4M.fd"));
    }
}
