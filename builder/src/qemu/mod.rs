//! Booting images in QEMU: `hull run` for people, [`spawn`] for the boot tests.
//!
//! The machine is always UEFI (OVMF on x86_64, AAVMF on aarch64) with the disk
//! on virtio and `-cpu max`. TCG is the default accelerator: KVM is an explicit
//! opt-in, because on some hosts it hangs stock kernels. The guest reaches
//! nothing outside this machine: no NIC at all by default, and with an SSH port
//! a `restrict=on` user-mode network whose only opening is a forward from
//! 127.0.0.1. The image stays clean unless asked otherwise (`-snapshot`: writes
//! go to a temporary overlay that lives as long as the QEMU process, so a guest
//! reboot keeps them).
//!
//! Checks and settings reach the guest without touching the image, as systemd
//! credentials in SMBIOS type 11 OEM strings ([`RunSpec::credentials`]).
//!
//! [`command()`] only builds the argument vector (unit tested); [`run`] and
//! [`spawn`] check the prerequisites, copy the firmware's variable store to a
//! temporary directory, and start QEMU.

pub mod args;
pub mod command;
pub mod credentials;
pub mod firmware;
pub mod launch;
pub mod node_run;
pub mod spec;

pub use args::{run_cli, CredentialArg, RunArgs};
pub use command::{arch_from_file_name, command, qemu_program, LOCK_ADDR, UPDATE_ADDR};
pub use firmware::Firmware;
pub use launch::{run, spawn};
pub use spec::{validate_credential_name, Accel, RunSpec, Serial};
