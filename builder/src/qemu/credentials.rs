//! systemd credentials too large for SMBIOS: each file goes to the guest
//! through QEMU's fw_cfg, `-fw_cfg name=opt/io.systemd.credentials/NAME,file=PATH`,
//! which systemd's PID 1 imports like SMBIOS type 11 strings.
//!
//! Why not SMBIOS: OVMF installs QEMU's SMBIOS tables through EDK2's SMBIOS
//! protocol, which refuses a structure over 64 KiB, and then drops every
//! table QEMU gave, every credential with it (seen: a 160 KiB extension as
//! `-smbios type=11,path=` left the guest without `hull.node`). fw_cfg has
//! no such limit; the guest needs the `qemu_fw_cfg` module when PID 1
//! imports credentials, which hull's images have (qemu-tests/tests/provision.rs).
//!
//! What limits them is systemd (257, `src/core/import-creds.c`): at most
//! 1 MiB of credentials in all from one source (`CREDENTIALS_TOTAL_SIZE_MAX`),
//! and QEMU: a fw_cfg file name of at most 55 bytes. [`check`] and
//! [`check_total`] refuse what either would drop, naming it and the limit.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// systemd's `CREDENTIALS_TOTAL_SIZE_MAX`: the most credential bytes PID 1
/// imports from one source, all of them together.
pub const TOTAL_MAX: u64 = 1 << 20;

/// Where systemd looks for credentials in fw_cfg.
pub const FW_CFG_DIR: &str = "opt/io.systemd.credentials/";

/// QEMU's longest fw_cfg file name (FW_CFG_MAX_FILE_PATH, 56, with its NUL).
pub const FW_CFG_NAME_MAX: usize = 55;

/// A credential QEMU passes from a file through fw_cfg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialFile {
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// The file, passed as it is.
    pub path: PathBuf,
}

impl CredentialFile {
    /// The `-fw_cfg` option's `name=`.
    pub fn fw_cfg_name(&self) -> String {
        format!("{FW_CFG_DIR}{}", self.name)
    }
}

/// The credential `name` with the contents of `path`; `what` names the
/// file's origin in errors (`--config node.toml: extensions[0]: …`).
/// Refuses a name fw_cfg cannot carry and a file over [`TOTAL_MAX`].
pub fn check(name: &str, path: &Path, what: &str) -> Result<CredentialFile> {
    super::validate_credential_name(name)?;
    if FW_CFG_DIR.len() + name.len() > FW_CFG_NAME_MAX {
        bail!(
            "{what}: the credential name {name} is too long for QEMU's fw_cfg (at most {} characters)",
            FW_CFG_NAME_MAX - FW_CFG_DIR.len()
        );
    }
    let size = std::fs::metadata(path)
        .with_context(|| format!("{what}: reading {}", path.display()))?
        .len();
    if size > TOTAL_MAX {
        bail!(
            "{what}: {size} bytes is too large for the credential {name}: systemd imports at most {} KiB of credentials",
            TOTAL_MAX >> 10
        );
    }
    Ok(CredentialFile {
        name: name.into(),
        size,
        path: path.into(),
    })
}

/// Refuses credentials from one source whose sizes add up to more than
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
    fn checked_and_refused_when_too_large_or_too_long() {
        let t = tempfile::tempdir().unwrap();
        let ok = t.path().join("hello.raw");
        std::fs::write(&ok, b"\0\x01abc").unwrap();
        let f = check("hull.sysext.hello", &ok, "hello.raw").unwrap();
        assert_eq!((f.size, f.path.as_path()), (5, ok.as_path()));
        assert_eq!(
            f.fw_cfg_name(),
            "opt/io.systemd.credentials/hull.sysext.hello"
        );
        let big = t.path().join("big.raw");
        std::fs::write(&big, vec![7u8; (1 << 20) + 1]).unwrap();
        let e = check("hull.sysext.big", &big, "/n/big.raw").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/n/big.raw: 1048577 bytes is too large for the credential hull.sysext.big: systemd imports at most 1024 KiB of credentials"
        );
        let e = check("hull.sysext.a-very-long-name-x", &ok, "x").unwrap_err();
        assert!(
            e.to_string()
                .contains("too long for QEMU's fw_cfg (at most 28 characters)"),
            "{e}"
        );
        check("hull.sysext.a-very-long-name", &ok, "x").unwrap();
        assert!(check("a/b", &ok, "x").is_err());
        assert!(check("n", &t.path().join("none"), "x").is_err());
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
