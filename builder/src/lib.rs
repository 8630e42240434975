//! hull: build minimal, immutable container-host OS images from one manifest.
//!
//! The build flows one way through one module per stage:
//! [`manifest`] → [`packages`] → [`rootfs`] → [`commit`] → [`deploy`] →
//! [`image`] (with [`bootloader`] planning the ESP); [`build`] runs them in
//! order; [`qemu`] boots the result; [`cli`] is the command line.

pub mod binfmt;
pub mod boot;
pub mod bootloader;
pub mod build;
pub mod cli;
pub mod cmd;
pub mod commit;
pub mod deploy;
pub mod fleetlock;
pub mod freshness;
pub mod hardening;
pub mod host;
pub mod image;
pub mod lock;
pub mod manifest;
pub mod metrics;
pub mod packages;
pub mod progress;
pub mod qemu;
pub mod reproducible;
pub mod rootfs;
pub mod sbom;
pub mod scan;
pub mod sign;
pub mod strategy;
pub mod summary;
pub mod util;
