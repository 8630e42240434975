//! The on-host side of hull, laid into the tree: the `hull` binary itself,
//! its settings, the update remote with the keys it trusts, the ESP mount
//! and the health check that decides whether a boot counts as good.

use std::path::Path;

use anyhow::{Context, Result};
use cap_std::fs::Dir;

use super::ostree_layout::write_file;
use crate::boot;
use crate::manifest::{Arch, Manifest};

/// The agent's path in the tree.
pub const AGENT_PATH: &str = "usr/bin/hull";
/// The agent's settings, written from the manifest.
pub const HOST_CONFIG: &str = "usr/lib/hull/host.toml";
/// Public keys whose signatures `hull update` accepts, in ostree's format.
pub const TRUSTED_KEYS: &str = "usr/lib/hull/trusted.ed25519";
/// The OSTree remote hosts pull from. In /etc, so a host can point it elsewhere.
pub const REMOTE_CONFIG: &str = "etc/ostree/remotes.d/hull.conf";
/// The remote's name.
pub const REMOTE: &str = "hull";
const HEALTH_UNIT: &str = "usr/lib/systemd/system/hull-health.service";
const RECONCILE_UNIT: &str = "usr/lib/systemd/system/hull-reconcile.service";
const EFI_MOUNT: &str = "usr/lib/systemd/system/efi.mount";
/// Pulled in by efi.mount (no [Install] section): not in [`UNITS`].
const ESP_REPAIR_UNIT: &str = "usr/lib/systemd/system/hull-esp-repair.service";
const PROVISION_UNIT: &str = "usr/lib/systemd/system/hull-provision.service";
/// Units to enable once installed.
pub const UNITS: &[&str] = &[
    "hull-health.service",
    "hull-reconcile.service",
    "efi.mount",
    "hull-provision.service",
];

pub use crate::manifest::host_config::HostConfig;

/// The remote's config: libostree reads it from /etc/ostree/remotes.d.
/// `sign-verify=true` makes a bare `ostree admin upgrade` fail closed on a
/// libostree without ed25519 (Debian's) and verify on one with it; `hull
/// update` checks the signature itself before pulling.
pub fn remote_config(url: &str) -> String {
    format!(
        "# written by hull build; `hull update` pulls from here\n\
         [remote \"{REMOTE}\"]\nurl={url}\ngpg-verify=false\nsign-verify=true\n\
         verification-ed25519-file=/{TRUSTED_KEYS}\n"
    )
}

/// Installs the agent from `agent` (a hull binary built for `arch`) and its
/// configuration into the tree.
pub fn install(root: &Dir, manifest: &Manifest, agent: &Path, arch: Arch) -> Result<()> {
    let bytes = std::fs::read(agent)
        .with_context(|| format!("reading the hull agent {}", agent.display()))?;
    check_elf_arch(&bytes, arch).with_context(|| format!("the hull agent {}", agent.display()))?;
    write_file(root, AGENT_PATH, &bytes, 0o755)?;
    let config = HostConfig::from_manifest(manifest);
    let text = format!(
        "# written by hull build from {}\n{}",
        manifest.path.display(),
        toml::to_string(&config).context("serializing the host config")?
    );
    write_file(root, HOST_CONFIG, text.as_bytes(), 0o644)?;
    write_file(root, HEALTH_UNIT, boot::HEALTH_UNIT.as_bytes(), 0o644)?;
    write_file(root, RECONCILE_UNIT, boot::RECONCILE_UNIT.as_bytes(), 0o644)?;
    write_file(root, EFI_MOUNT, boot::efi_mount().as_bytes(), 0o644)?;
    write_file(
        root,
        ESP_REPAIR_UNIT,
        boot::esp_repair_unit().as_bytes(),
        0o644,
    )?;
    write_file(root, PROVISION_UNIT, boot::PROVISION_UNIT.as_bytes(), 0o644)?;
    if let Some(update) = &manifest.update {
        let keys: String = update
            .keys
            .iter()
            .map(|k| format!("# {}\n{}\n", k.path.display(), k.public))
            .collect();
        write_file(root, TRUSTED_KEYS, keys.as_bytes(), 0o644)?;
        write_file(
            root,
            REMOTE_CONFIG,
            remote_config(&update.url).as_bytes(),
            0o644,
        )?;
    }
    Ok(())
}

/// The ELF machine number of `arch`.
fn elf_machine(arch: Arch) -> u16 {
    match arch {
        Arch::X86_64 => 62,
        Arch::Aarch64 => 183,
    }
}

/// The ELF machine number in `bytes`, when they start an ELF file.
fn machine_of(bytes: &[u8]) -> Option<u16> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return None;
    }
    Some(u16::from_le_bytes([bytes[18], bytes[19]]))
}

/// The architecture the executable at `path` is built for, `None` when it is
/// not an ELF file of an architecture hull builds.
pub fn file_arch(path: &Path) -> Result<Option<Arch>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(20);
    std::fs::File::open(path)
        .and_then(|f| f.take(20).read_to_end(&mut head))
        .with_context(|| format!("reading the hull agent {}", path.display()))?;
    Ok(machine_of(&head).and_then(|m| Arch::ALL.into_iter().find(|a| elf_machine(*a) == m)))
}

/// Refuses an agent built for another machine: it would install, and only
/// fail on the host.
fn check_elf_arch(bytes: &[u8], arch: Arch) -> Result<()> {
    let Some(machine) = machine_of(bytes) else {
        anyhow::bail!("is not an ELF executable");
    };
    let want = elf_machine(arch);
    if machine != want {
        anyhow::bail!("is built for ELF machine {machine}, not {arch} ({want})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_machine_is_checked() {
        let mut elf = b"\x7fELF".to_vec();
        elf.resize(20, 0);
        elf[18] = 62;
        assert!(check_elf_arch(&elf, Arch::X86_64).is_ok());
        let err = check_elf_arch(&elf, Arch::Aarch64).unwrap_err().to_string();
        assert!(err.contains("not aarch64"), "{err}");
        assert!(check_elf_arch(b"#!/bin/sh\n", Arch::X86_64).is_err());
    }

    #[test]
    fn file_arch_names_the_elf_machine() {
        let t = tempfile::tempdir().unwrap();
        for (machine, want) in [
            (62u16, Some(Arch::X86_64)),
            (183, Some(Arch::Aarch64)),
            (8, None),
        ] {
            let mut elf = b"\x7fELF".to_vec();
            elf.resize(20, 0);
            elf[18..20].copy_from_slice(&machine.to_le_bytes());
            let p = t.path().join(format!("hull-{machine}"));
            std::fs::write(&p, &elf).unwrap();
            assert_eq!(file_arch(&p).unwrap(), want, "machine {machine}");
        }
        let script = t.path().join("sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        assert_eq!(file_arch(&script).unwrap(), None);
        assert!(file_arch(&t.path().join("missing")).is_err());
    }

    #[test]
    fn host_config_round_trips_and_refuses_unknown_keys() {
        let c = HostConfig {
            boot_tries: 2,
            required_units: vec!["efi.mount".into()],
        };
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("boot-tries = 2"), "{text}");
        assert_eq!(HostConfig::parse(&text, "host.toml").unwrap(), c);
        let err = format!(
            "{:#}",
            HostConfig::parse("boot-tries = 2\nrequired-units = []\nx = 1\n", "host.toml")
                .unwrap_err()
        );
        assert!(
            err.contains("host.toml") && err.contains("unknown field"),
            "{err}"
        );
    }

    #[test]
    fn remote_config_names_the_keys() {
        let text = remote_config("http://10.0.2.100/repo");
        assert!(text.contains("[remote \"hull\"]\nurl=http://10.0.2.100/repo\n"));
        assert!(text.contains("verification-ed25519-file=/usr/lib/hull/trusted.ed25519"));
    }
}
