//! The build: a manifest in, an OSTree commit and bootable disk images out.
//!
//! The stages, in the order [`pipeline`] runs them:
//! [`archive`] (the signed Debian archive: InRelease, Packages, .deb files)
//! → [`rootfs`] (mmdebstrap, overlays, accounts, hardening, the OSTree
//! layout) → the commit ([`crate::repo::commit`]) → [`deploy`] (an OSTree
//! sysroot) → [`image`] (GPT disk with the ESP and the root file system).
//! Beside them: [`lock`] (the lockfile), [`sbom`] (SPDX), [`scan`] (CVE
//! report), [`sysext`] (system extensions for built images) and [`binfmt`]
//! (qemu-user for foreign architectures).

pub mod archive;
pub mod binfmt;
pub mod deploy;
pub mod deploy_cache;
pub mod freshness;
pub mod image;
pub mod lock;
pub mod pipeline;
pub mod reproducible;
pub mod rootfs;
pub mod sbom;
pub mod scan;
pub mod sysext;
