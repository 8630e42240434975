//! systemd credentials too large for QEMU's command line: each goes into a
//! file that QEMU reads as one SMBIOS type 11 string (`-smbios
//! type=11,path=FILE`), so neither Linux's 128 KiB limit on one argument
//! nor the shell's gets in the way.
//!
//! What limits them is systemd (systemd 257, `src/core/import-creds.c`):
//! PID 1 reads each SMBIOS type 11 object whole only up to 1 MiB
//! (`CREDENTIALS_TOTAL_SIZE_MAX`) and stops reading any further objects at
//! a larger one, and it imports at most 1 MiB of credentials from SMBIOS in
//! all, counted decoded. [`check_total`] refuses what systemd would drop,
//! naming the credential and the limit.
//!
//! QEMU's fw_cfg (`opt/io.systemd.credentials/NAME`) carries the same 1 MiB
//! but needs the `qemu_fw_cfg` module in the initramfs before PID 1 starts;
//! SMBIOS needs nothing hull images lack (they read `hull.node` that way).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use base64::Engine as _;

/// systemd's `CREDENTIALS_TOTAL_SIZE_MAX`: the most credential bytes
/// (decoded) PID 1 imports from SMBIOS, all of them together.
pub const TOTAL_MAX: u64 = 1 << 20;

/// The most one SMBIOS type 11 string may hold: PID 1 reads one object up
/// to [`TOTAL_MAX`] bytes, its header and the terminating NULs included.
pub const STRING_MAX: u64 = TOTAL_MAX - 64;

/// A credential in a file QEMU reads as one SMBIOS type 11 string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialFile {
    pub name: String,
    /// The credential's own size in bytes (decoded).
    pub size: u64,
    /// The file holding `io.systemd.credential.binary:NAME=BASE64`.
    pub path: PathBuf,
}

/// The SMBIOS string carrying credential `name` with `value` (base64, so
/// any bytes pass).
pub fn smbios_string(name: &str, value: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(value);
    format!("io.systemd.credential.binary:{name}={b64}")
}

/// Writes credential `name` with `value` into `dir` as a string QEMU passes
/// whole. `what` names the value's origin in errors (a file the user gave).
/// Refuses a value whose string is over [`STRING_MAX`].
pub fn write(dir: &Path, name: &str, value: &[u8], what: &str) -> Result<CredentialFile> {
    super::validate_credential_name(name)?;
    let string = smbios_string(name, value);
    if string.len() as u64 > STRING_MAX {
        bail!(
            "{what}: {} bytes is too large for the credential {name}: systemd reads at most {} KiB of one SMBIOS string (base64, so about {} KiB of file)",
            value.len(),
            TOTAL_MAX >> 10,
            ((STRING_MAX - name.len() as u64 - 32) / 4 * 3) >> 10
        );
    }
    let path = dir.join(format!("{name}.smbios"));
    crate::util::write_atomic(&path, string.as_bytes())?;
    Ok(CredentialFile {
        name: name.into(),
        size: value.len() as u64,
        path,
    })
}

/// Refuses credentials whose decoded sizes add up to more than
/// [`TOTAL_MAX`]: systemd would skip the ones past it. `sizes` are
/// `(name, bytes)` in the order QEMU passes them.
pub fn check_total<'a>(sizes: impl IntoIterator<Item = (&'a str, u64)>) -> Result<()> {
    let mut sum = 0u64;
    for (name, size) in sizes {
        sum += size;
        if sum > TOTAL_MAX {
            bail!(
                "credential {name}: the credentials add up to {sum} bytes with it, over the {} KiB systemd imports in all",
                TOTAL_MAX >> 10
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_whole_and_refused_when_too_large() {
        let t = tempfile::tempdir().unwrap();
        let f = write(t.path(), "hull.sysext.hello", b"\0\x01abc", "hello.raw").unwrap();
        assert_eq!(f.size, 5);
        assert_eq!(
            std::fs::read_to_string(&f.path).unwrap(),
            "io.systemd.credential.binary:hull.sysext.hello=AAFhYmM="
        );
        let big = vec![7u8; 800 << 10];
        let e = write(t.path(), "hull.sysext.big", &big, "/n/big.raw").unwrap_err();
        let e = e.to_string();
        assert!(
            e.starts_with("/n/big.raw: 819200 bytes is too large for the credential hull.sysext.big: systemd reads at most 1024 KiB"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1);
        assert!(write(t.path(), "a/b", b"", "x").is_err());
        // Just under the limit passes: about 767 KiB of file.
        write(t.path(), "hull.sysext.ok", &vec![1u8; 760 << 10], "ok.raw").unwrap();
    }

    #[test]
    fn the_total_is_bounded() {
        check_total([("a", 600 << 10), ("b", 424 << 10)]).unwrap();
        let e = check_total([("a", 600 << 10), ("b", 425 << 10)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "credential b: the credentials add up to 1049600 bytes with it, over the 1024 KiB systemd imports in all"
        );
    }
}
