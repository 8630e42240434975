//! The boot path's fixed files (see `boot/README.md`), compiled in so the
//! installed `hull` needs no data directory.

pub mod bls;
pub mod cmdline;
pub mod esp;
pub mod esp_apply;
pub mod fat;
pub mod fat_dots;
pub mod fat_repair;
mod fat_volume;

use crate::util::arch::Arch;

/// hull's dracut drop-in, installed as /etc/dracut.conf.d/50-hull.conf.
pub const DRACUT_CONF: &str = include_str!("../../../boot/dracut-hull.conf");
/// systemd-boot's loader.conf on the ESP.
pub const LOADER_CONF: &str = include_str!("../../../boot/loader.conf");
/// The unit that runs `hull health` before boot-complete.target.
pub const HEALTH_UNIT: &str = include_str!("../../../boot/hull-health.service");
/// The unit that runs `hull reconcile` early in boot.
pub const RECONCILE_UNIT: &str = include_str!("../../../boot/hull-reconcile.service");
/// The unit that runs `hull provision` early in boot (docs/provisioning.md).
pub const PROVISION_UNIT: &str = include_str!("../../../boot/hull-provision.service");
const EFI_MOUNT: &str = include_str!("../../../boot/efi.mount");
const ESP_REPAIR_UNIT: &str = include_str!("../../../boot/hull-esp-repair.service");
/// Where the ESP is mounted on a host.
pub const ESP_MOUNT: &str = "/efi";

/// The mount unit for the ESP, with its label and the systemd-fsck unit
/// that checks it first filled in.
pub fn efi_mount() -> String {
    EFI_MOUNT
        .replace("@ESP_LABEL@", ESP_LABEL)
        .replace("@ESP_FSCK_UNIT@", &esp_fsck_unit())
}

/// The unit that runs `hull esp-repair` on the ESP before it is checked
/// and mounted, with its device, label and fsck unit filled in.
pub fn esp_repair_unit() -> String {
    ESP_REPAIR_UNIT
        .replace(
            "@ESP_DEVICE_UNIT@",
            &format!("{}.device", escaped_esp_path()),
        )
        .replace("@ESP_LABEL@", ESP_LABEL)
        .replace("@ESP_FSCK_UNIT@", &esp_fsck_unit())
}

/// `systemd-fsck@<device>.service` for the ESP's `/dev/disk/by-label/`
/// path, escaped as `systemd-escape -p` does.
pub fn esp_fsck_unit() -> String {
    format!("systemd-fsck@{}.service", escaped_esp_path())
}

/// The ESP's `/dev/disk/by-label/` path escaped as `systemd-escape -p`
/// does: `/` becomes `-`; ASCII letters, digits, `:`, `_` and a `.` that
/// does not start the name stay; every other byte becomes `\xNN`.
fn escaped_esp_path() -> String {
    let path = format!("dev/disk/by-label/{ESP_LABEL}");
    let mut out = String::new();
    for (i, b) in path.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i > 0 => out.push('.'),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' => out.push(b as char),
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// Label of the root filesystem, named on the kernel command line.
pub const ROOT_LABEL: &str = "hull-root";
/// Label of the ESP's FAT filesystem.
pub const ESP_LABEL: &str = "HULL-ESP";

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

    /// The ESP is fsck'd before it is mounted, under the name systemd gives
    /// the device's fsck unit (as `systemd-escape -p`).
    #[test]
    fn efi_mount_requires_the_esps_fsck() {
        let unit = r"systemd-fsck@dev-disk-by\x2dlabel-HULL\x2dESP.service";
        assert_eq!(esp_fsck_unit(), unit);
        let text = efi_mount();
        for line in [
            format!("Requires={unit}"),
            format!("After={unit}"),
            "What=/dev/disk/by-label/HULL-ESP".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("@ESP_"), "{text}");
        for line in [
            "Wants=hull-esp-repair.service",
            "After=hull-esp-repair.service",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    /// The repair runs on the ESP's device, before its fsck and its mount.
    #[test]
    fn esp_repair_runs_before_the_fsck() {
        let text = esp_repair_unit();
        let device = r"dev-disk-by\x2dlabel-HULL\x2dESP.device";
        for line in [
            format!("BindsTo={device}"),
            format!("After={device}"),
            format!("Before={} efi.mount shutdown.target", esp_fsck_unit()),
            "ExecStart=/usr/bin/hull esp-repair /dev/disk/by-label/HULL-ESP".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("@ESP_"), "{text}");
    }

    #[test]
    fn dracut_conf_carries_ostree() {
        assert!(DRACUT_CONF.contains("ostree"));
        assert!(DRACUT_CONF.contains("hostonly=\"no\""));
    }
}
