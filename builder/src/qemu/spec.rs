//! [`RunSpec`]: everything about one QEMU run, and the checks on it that the
//! command line cannot express (credential names, sizes, counts).

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::command::smbios_credential;
use super::credentials;
use super::firmware::Firmware;
use crate::manifest::Arch;
/// Linux refuses a single argument longer than this (MAX_ARG_STRLEN).
pub(super) const MAX_ARG_LEN: usize = 128 * 1024;
/// The longest SMBIOS type 11 string: OVMF refuses a structure over 64 KiB
/// (its 5-byte header and two NULs included) and then drops every table
/// QEMU gave, every credential with it ([`credentials`]).
const MAX_SMBIOS_STRING: usize = 65535 - 7;

/// QEMU's accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// Software emulation: slow, works everywhere.
    Tcg,
    /// Hardware virtualization (/dev/kvm, guest architecture = host architecture).
    Kvm,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// Where the guest's serial console goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serial {
    /// This terminal, multiplexed with the QEMU monitor (Ctrl-a x quits, Ctrl-a c
    /// switches to the monitor).
    Stdio,
    /// A file (created or truncated), for tests that follow the console; no
    /// display and no monitor.
    File(PathBuf),
}

/// Everything about one QEMU run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// The disk image (raw; `.qcow2` files are passed as qcow2).
    pub image: PathBuf,
    pub arch: Arch,
    pub memory_mib: u32,
    pub cpus: u32,
    pub accel: Accel,
    /// Write to a temporary overlay instead of the image.
    pub snapshot: bool,
    /// Forward 127.0.0.1:PORT to the guest's port 22.
    pub ssh_port: Option<u16>,
    /// Let the guest reach 127.0.0.1:PORT on the host as
    /// http://10.0.2.100/ (an update server), and nothing else. Without it
    /// and `ssh_port` the guest has no NIC.
    pub update_port: Option<u16>,
    /// Let the guest reach 127.0.0.1:PORT as http://10.0.2.101/ (a
    /// FleetLock server), like `update_port`.
    pub lock_port: Option<u16>,
    pub serial: Serial,
    /// systemd credentials (name, contents), passed as SMBIOS type 11 strings.
    pub credentials: Vec<(String, Vec<u8>)>,
    /// Credentials too large for SMBIOS, each passed from a file through
    /// fw_cfg ([`credentials`]).
    pub credential_files: Vec<credentials::CredentialFile>,
    /// More raw disks after the image, read-only (a NoCloud seed).
    pub extra_drives: Vec<PathBuf>,
    pub firmware: Firmware,
}

impl RunSpec {
    /// A spec with the defaults of `hull run`: 2 GiB, 2 CPUs, TCG, on a
    /// snapshot, no network, console on this terminal, no credentials.
    pub fn new(image: impl Into<PathBuf>, arch: Arch, firmware: Firmware) -> RunSpec {
        RunSpec {
            image: image.into(),
            arch,
            memory_mib: 2048,
            cpus: 2,
            accel: Accel::Tcg,
            snapshot: true,
            ssh_port: None,
            update_port: None,
            lock_port: None,
            serial: Serial::Stdio,
            credentials: Vec::new(),
            credential_files: Vec::new(),
            extra_drives: Vec::new(),
            firmware,
        }
    }

    /// Checks what [`command`](super::command()) cannot express: credential names, sizes, counts.
    pub fn validate(&self) -> Result<()> {
        if self.memory_mib < 256 {
            bail!(
                "memory: {} MiB is too little to boot (at least 256)",
                self.memory_mib
            );
        }
        if self.cpus == 0 {
            bail!("cpus: at least 1");
        }
        if self.ssh_port == Some(0) {
            bail!("ssh port: 0 is not a port");
        }
        if self.update_port == Some(0) {
            bail!("update port: 0 is not a port");
        }
        for (name, value) in &self.credentials {
            validate_credential_name(name)?;
            if smbios_credential(name, value).len() > MAX_ARG_LEN {
                bail!(
                    "credential {name}: {} bytes is too large to pass on the QEMU command line",
                    value.len()
                );
            }
            let b64 = value.len().div_ceil(3) * 4;
            if "io.systemd.credential.binary:=".len() + name.len() + b64 > MAX_SMBIOS_STRING {
                bail!(
                    "credential {name}: {} bytes is too large for an SMBIOS type 11 string (about 48 KiB: OVMF drops SMBIOS structures over 64 KiB)",
                    value.len()
                );
            }
        }
        let inline = self
            .credentials
            .iter()
            .map(|(n, v)| (n.as_str(), v.len() as u64));
        let files = self
            .credential_files
            .iter()
            .map(|f| (f.name.as_str(), f.size));
        credentials::check_total(inline.chain(files))?;
        Ok(())
    }
}

/// systemd's rules for a credential name, plus no `=` (the SMBIOS string is
/// `NAME=VALUE`, split at the first `=`).
pub fn validate_credential_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > 255
        || name
            .chars()
            .any(|c| c == '/' || c == '=' || c.is_control() || c.is_whitespace());
    if bad {
        bail!(
            "credential name {name:?} is not valid: 1 to 255 characters, no '/', '=', spaces or control characters, not . or .."
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::qemu::firmware::test_firmware as fw;

    #[test]
    fn credential_names_are_checked() {
        for good in [
            "hull.check.sh",
            "systemd.extra-unit.hull-check.service",
            "a,b",
        ] {
            validate_credential_name(good).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a=b", "a b", "a\nb", &"x".repeat(256)] {
            assert!(validate_credential_name(bad).is_err(), "{bad:?}");
        }
        let mut spec = RunSpec::new("/i.raw", Arch::X86_64, fw(Arch::X86_64));
        spec.credentials = vec![("big".into(), vec![0; MAX_ARG_LEN])];
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.contains("big") && err.contains("too large"), "{err}");
        // Under the command line's limit, over what OVMF keeps.
        spec.credentials = vec![("big".into(), vec![0; 49 << 10])];
        let err = spec.validate().unwrap_err().to_string();
        assert!(
            err.contains("too large for an SMBIOS type 11 string"),
            "{err}"
        );
        spec.credentials = vec![("ok".into(), vec![0; 47 << 10])];
        spec.validate().unwrap();
    }
}
