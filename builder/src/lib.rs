//! hull: build minimal, immutable container-host OS images from one manifest.
//!
//! The build flows one way through one module per stage:
//! [`manifest`] → [`packages`] → [`rootfs`] → [`commit`] → [`image`];
//! [`build`] runs them in order; [`qemu`] boots the result.

pub mod build;
pub mod cmd;
pub mod manifest;
pub mod image;
pub mod qemu;
