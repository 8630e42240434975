//! `/usr/lib/hull/host.toml`: the settings `hull build` writes into an image
//! for the agent on its hosts (boot tries, the units `hull health` needs).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::Manifest;

/// `/usr/lib/hull/host.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HostConfig {
    /// Boots a new deployment gets to pass its health check.
    pub boot_tries: u32,
    /// Units `hull health` requires to be active.
    pub required_units: Vec<String>,
}

impl HostConfig {
    pub fn from_manifest(manifest: &Manifest) -> HostConfig {
        HostConfig {
            boot_tries: manifest
                .update
                .as_ref()
                .map_or(super::validate::DEFAULT_BOOT_TRIES, |u| u.boot_tries),
            required_units: manifest.health.required_units.clone(),
        }
    }

    pub fn parse(text: &str, origin: &str) -> Result<HostConfig> {
        toml::from_str(text).with_context(|| format!("parsing {origin}"))
    }
}
