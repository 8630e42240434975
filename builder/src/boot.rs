//! The boot path's fixed files (see `boot/README.md`), compiled in so the
//! installed `hull` needs no data directory.

use crate::manifest::Arch;

/// hull's dracut drop-in, installed as /etc/dracut.conf.d/50-hull.conf.
pub const DRACUT_CONF: &str = include_str!("../../boot/dracut-hull.conf");
/// systemd-boot's loader.conf on the ESP.
pub const LOADER_CONF: &str = include_str!("../../boot/loader.conf");
/// The unit that runs `hull health` before boot-complete.target.
pub const HEALTH_UNIT: &str = include_str!("../../boot/hull-health.service");
/// The unit that runs `hull reconcile` early in boot.
pub const RECONCILE_UNIT: &str = include_str!("../../boot/hull-reconcile.service");
/// The unit that runs `hull provision` early in boot (docs/provisioning.md).
pub const PROVISION_UNIT: &str = include_str!("../../boot/hull-provision.service");
const EFI_MOUNT: &str = include_str!("../../boot/efi.mount");
/// Where the ESP is mounted on a host.
pub const ESP_MOUNT: &str = "/efi";

/// The mount unit for the ESP, with its label filled in.
pub fn efi_mount() -> String {
    EFI_MOUNT.replace("@ESP_LABEL@", ESP_LABEL)
}

/// Label of the root filesystem, named on the kernel command line.
pub const ROOT_LABEL: &str = "hull-root";
/// Label of the ESP's FAT filesystem.
pub const ESP_LABEL: &str = "HULL-ESP";

const CMDLINE_COMMON: &str = include_str!("../../boot/cmdline-common");
const CMDLINE_X86_64: &str = include_str!("../../boot/cmdline-x86_64");
const CMDLINE_AARCH64: &str = include_str!("../../boot/cmdline-aarch64");

/// The kernel arguments of a deployment, before OSTree adds `ostree=`.
pub fn kernel_args(arch: Arch, extra: &[String]) -> Vec<String> {
    let per_arch = match arch {
        Arch::X86_64 => CMDLINE_X86_64,
        Arch::Aarch64 => CMDLINE_AARCH64,
    };
    let mut args = vec![format!("root=LABEL={ROOT_LABEL}")];
    args.extend(
        CMDLINE_COMMON
            .split_whitespace()
            .chain(per_arch.split_whitespace())
            .map(String::from),
    );
    args.extend(extra.iter().cloned());
    args
}

/// Where systemd-boot's EFI binary is inside a tree, and its name on the ESP.
pub fn systemd_boot_paths(arch: Arch) -> (&'static str, &'static str) {
    match arch {
        Arch::X86_64 => (
            "usr/lib/systemd/boot/efi/systemd-bootx64.efi",
            "EFI/BOOT/BOOTX64.EFI",
        ),
        Arch::Aarch64 => (
            "usr/lib/systemd/boot/efi/systemd-bootaa64.efi",
            "EFI/BOOT/BOOTAA64.EFI",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_args_order() {
        let args = kernel_args(Arch::X86_64, &["quiet".into()]);
        assert_eq!(args.first().unwrap(), "root=LABEL=hull-root");
        assert!(args.contains(&"console=ttyS0,115200n8".to_string()));
        assert!(args.contains(&"systemd.gpt_auto=0".to_string()));
        assert_eq!(args.last().unwrap(), "quiet");
        let arm = kernel_args(Arch::Aarch64, &[]);
        assert!(arm.contains(&"console=ttyAMA0,115200n8".to_string()));
        assert!(!arm.iter().any(|a| a.contains("ttyS0")));
    }

    #[test]
    fn dracut_conf_carries_ostree() {
        assert!(DRACUT_CONF.contains("ostree"));
        assert!(DRACUT_CONF.contains("hostonly=\"no\""));
    }
}
