//! `hull build`: runs the stages in order and writes out/build.json.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::manifest::Arch;

/// What `hull build` was asked to do.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub manifest: PathBuf,
    pub out: PathBuf,
    /// Build only this architecture (default: the manifest's).
    pub arch: Option<Arch>,
    /// Ignore the cached tree and resolve packages from the mirror again.
    pub refresh: bool,
}

/// out/build.json, one entry per architecture built.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuildReport {
    pub name: String,
    pub version: String,
    pub arch: String,
    #[serde(rename = "ref")]
    pub ostree_ref: String,
    pub commit: String,
    pub image: PathBuf,
    pub image_size: u64,
    pub rootfs_size: u64,
    pub package_count: usize,
    /// Seconds per stage, in the order the stages ran.
    pub stage_seconds: Vec<(String, f64)>,
    /// True when nothing had to be rebuilt.
    pub up_to_date: bool,
}

/// Runs a build; returns the report also written to `out/build.json`.
pub fn run_build(opts: &BuildOptions) -> anyhow::Result<BuildReport> {
    let _ = opts;
    todo!("build pipeline")
}
