//! The node config: what makes one booted image a particular node (host
//! name, users and keys, network, files, units, update settings, system
//! extensions), read by `hull provision` at first boot. [`config`] is
//! hull's TOML format; [`cloud`] translates the `#cloud-config` subset of a
//! NoCloud seed into it; [`extensions`] names the system extensions. Key by
//! key: docs/provisioning.md.

pub mod cloud;
pub mod config;
pub mod extensions;

/// The systemd credential that carries a node config (`hull run --config`
/// passes it as SMBIOS type 11 `io.systemd.credential:hull.node=...`).
pub const CREDENTIAL: &str = "hull.node";
