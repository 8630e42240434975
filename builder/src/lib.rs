//! hull: build minimal, immutable container-host OS images from one manifest,
//! and keep the hosts booted from them up to date.
//!
//! The folders follow the data (docs/architecture.md is the map):
//! [`manifest`] (pure data: raw → composed → validated) → [`build`] (archive
//! → rootfs → commit → deploy → image) using [`repo`] (the OSTree repository,
//! signatures, the summary) and [`boot`] (the kernel command line, BLS
//! entries, the ESP). [`host`] is the on-host agent (update, rollback,
//! health, status); [`fleetlock`] coordinates reboots across a fleet;
//! [`qemu`] boots images; [`util`] holds what everything shares; [`cli`] is
//! the command line.

pub mod boot;
pub mod build;
pub mod cli;
pub mod fleetlock;
pub mod host;
pub mod manifest;
pub mod qemu;
pub mod repo;
pub mod util;
