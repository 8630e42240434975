//! The build report: `out/build-<arch>.json` and `out/build.json` (what was
//! built, where, how long each stage took), where they are, how they are
//! read, and how they are written (whole or not at all).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::build::{archive, image};
use crate::manifest::Arch;

/// out/build.json.
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
    /// The signed sources the packages came from, each with its InRelease
    /// `Date:` and sha256.
    #[serde(default)]
    pub sources: Vec<archive::SignedSource>,
    /// Every image file written (`[image] formats`), the raw one first.
    #[serde(default)]
    pub outputs: Vec<image::formats::OutputFile>,
}

/// Times stages in order.
#[derive(Default)]
pub(super) struct Stages(pub(super) Vec<(String, f64)>);

impl Stages {
    pub(super) fn run<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        log::info!("stage {name}");
        let start = Instant::now();
        let out = f();
        let secs = (start.elapsed().as_secs_f64() * 100.0).round() / 100.0;
        log::info!("stage {name} took {secs:.2} s");
        self.0.push((name.to_string(), secs));
        out.with_context(|| format!("stage {name}"))
    }
}

/// The JSON file describing the last build in `out`, of any architecture.
pub fn report_path(out: &Path) -> PathBuf {
    out.join("build.json")
}

/// The JSON file describing the last build of `arch` in `out`.
pub fn arch_report_path(out: &Path, arch: Arch) -> PathBuf {
    out.join(format!("build-{arch}.json"))
}

/// Reads out/build.json.
pub fn read_report(out: &Path) -> Result<BuildReport> {
    read_report_at(&report_path(out))
}

/// Reads one build report (`build.json`, `build-<arch>.json`).
pub fn read_report_at(path: &Path) -> Result<BuildReport> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

pub(super) fn write_json_atomically<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    crate::util::write_atomic(path, text.as_bytes())
}
