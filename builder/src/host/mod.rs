//! The on-host agent: `hull status`, `hull update`, `hull rollback` and
//! `hull health`, run by the `hull` binary installed in every image.
//!
//! libostree does the deployments (pull, three-way /etc merge, prune);
//! hull checks signatures before anything is pulled, keeps the ESP's boot
//! entries in step with OSTree's deployment list ([`esp`]), and gives a new
//! deployment a limited number of boot tries that only a passing health
//! check ([`health`]) turns into a good boot.

pub mod agent;
pub mod delta_apply;
pub mod etc_merge;
pub mod fetch;
pub mod health;
pub mod metrics;
pub mod provision;
pub mod pull;
pub mod rollback;
pub mod state;
pub mod status;
pub mod update;
pub mod verdict;
pub mod wave;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use ostree::gio;

use crate::boot::bls::DeploymentKey;
use crate::boot::esp;
use crate::manifest::host_config::HostConfig;
use crate::manifest::Arch;

/// Where a booted host keeps things. Tests point these elsewhere.
#[derive(Debug, Clone)]
pub struct HostPaths {
    /// The physical root (the OSTree sysroot).
    pub sysroot: PathBuf,
    /// The mounted ESP.
    pub esp: PathBuf,
    /// The booted tree's /usr/lib/hull.
    pub lib: PathBuf,
    /// Local settings: /etc/hull (health.d).
    pub etc: PathBuf,
    /// hull's state across boots: /var/lib/hull.
    pub state: PathBuf,
    /// The booted tree: its /etc and /usr/etc are merged into a new deployment.
    pub root: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            sysroot: "/sysroot".into(),
            esp: crate::boot::ESP_MOUNT.into(),
            lib: "/usr/lib/hull".into(),
            etc: "/etc/hull".into(),
            state: "/var/lib/hull".into(),
            root: "/".into(),
        }
    }
}

/// A loaded, booted OSTree host.
pub struct Host {
    pub paths: HostPaths,
    pub sysroot: ostree::Sysroot,
    pub booted: ostree::Deployment,
    pub config: HostConfig,
}

impl Host {
    /// Loads the booted system; fails clearly off an OSTree host.
    pub fn load(paths: HostPaths) -> Result<Host> {
        if !Path::new("/run/ostree-booted").exists() {
            bail!("this is not a booted OSTree system (/run/ostree-booted is missing): hull status, update and rollback run on hosts booted from a hull image");
        }
        let sysroot = ostree::Sysroot::new_default();
        sysroot
            .load(gio::Cancellable::NONE)
            .context("loading the OSTree sysroot")?;
        let booted = sysroot
            .booted_deployment()
            .context("OSTree found no booted deployment")?;
        let config_path = paths.lib.join("host.toml");
        let text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("reading {}", config_path.display()))?;
        let config = HostConfig::parse(&text, &config_path.display().to_string())?;
        Ok(Host {
            paths,
            sysroot,
            booted,
            config,
        })
    }

    pub fn osname(&self) -> String {
        self.booted.osname().to_string()
    }

    pub fn arch() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::X86_64
        }
    }

    /// The sysroot directory, for reading boot entries and links.
    pub fn sysroot_dir(&self) -> Result<Dir> {
        Dir::open_ambient_dir(&self.paths.sysroot, ambient_authority())
            .with_context(|| format!("opening {}", self.paths.sysroot.display()))
    }

    /// The ESP, which must be mounted (efi.mount).
    pub fn esp_dir(&self) -> Result<Dir> {
        esp::open(&self.paths.esp)
    }

    /// Takes OSTree's sysroot lock, then reads the deployments again: what
    /// is acted on is read under the lock. One update, rollback or `ostree
    /// admin` at a time: when another holds the lock, refuses at once.
    pub fn lock(&mut self) -> Result<()> {
        take_lock(&self.sysroot)?;
        self.reload()
    }

    /// Re-reads the deployment list after a write.
    pub fn reload(&mut self) -> Result<()> {
        self.sysroot
            .load(gio::Cancellable::NONE)
            .context("reloading the OSTree sysroot")?;
        self.booted = self
            .sysroot
            .booted_deployment()
            .context("OSTree found no booted deployment")?;
        Ok(())
    }

    /// Writes `deployments` as the new list (first = default) and brings the
    /// ESP in line, then lets OSTree delete what is no longer listed. The ESP
    /// is written after OSTree's own switch and before its cleanup, so every
    /// entry on the ESP names a deployment directory that exists.
    pub fn write_deployments(
        &mut self,
        deployments: &[ostree::Deployment],
        new_tries: Option<(&DeploymentKey, u32)>,
    ) -> Result<esp::SyncReport> {
        log::info!("writing the deployment list");
        let opts = ostree::SysrootWriteDeploymentsOpts {
            do_postclean: false,
        };
        self.sysroot
            .write_deployments_with_options(deployments, &opts, gio::Cancellable::NONE)
            .context("writing the OSTree deployment list")?;
        self.reload()?;
        log::info!("writing the ESP");
        let report = self.sync_esp(new_tries)?;
        log::info!("cleaning up old deployments");
        self.sysroot
            .cleanup(gio::Cancellable::NONE)
            .context("cleaning up old deployments")?;
        Ok(report)
    }

    /// Writes the ESP from OSTree's current deployment list.
    pub fn sync_esp(&self, new_tries: Option<(&DeploymentKey, u32)>) -> Result<esp::SyncReport> {
        let sysroot = self.sysroot_dir()?;
        let (efi_in_tree, _) = crate::boot::systemd_boot_paths(Self::arch());
        let plan = crate::boot::bls::plan(
            &sysroot,
            &self.paths.sysroot,
            Self::arch(),
            &Path::new("/").join(efi_in_tree),
        )?;
        esp::sync(&self.esp_dir()?, &self.paths.esp, plan, new_tries)
    }

    /// OSTree's deployments, default first.
    pub fn deployments(&self) -> Vec<ostree::Deployment> {
        self.sysroot.deployments()
    }

    /// A commit's `version`, from the local repository (None when the
    /// commit or the key is missing).
    pub fn version_of(&self, checksum: &str) -> Option<String> {
        crate::repo::commit::metadata_string(&self.sysroot.repo(), checksum, "version")
            .ok()
            .flatten()
    }
}

/// Takes `sysroot`'s lock without waiting.
///
/// Errors: "another update is running" when another process (or another
/// sysroot object) holds it.
pub fn take_lock(sysroot: &ostree::Sysroot) -> Result<()> {
    let taken = sysroot
        .try_lock()
        .context("taking the OSTree sysroot lock")?;
    if !taken {
        bail!(
            "another update is running (the OSTree sysroot lock is held by hull or ostree admin): nothing was changed"
        );
    }
    Ok(())
}

/// Refuses to go on unless running as root: the agent writes the sysroot,
/// the ESP and /var/lib/hull. `verb` names the command.
pub fn require_root(verb: &str) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("hull {verb} needs root: run it as root or with sudo");
    }
    Ok(())
}

/// The key of an OSTree deployment object.
pub fn key_of(d: &ostree::Deployment) -> DeploymentKey {
    DeploymentKey {
        osname: d.osname().to_string(),
        csum: d.csum().to_string(),
        serial: d.deployserial().max(0) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real sysroot in a temp dir: while one holder has the lock, a second
    /// `hull update` is refused at once.
    #[test]
    fn a_second_update_is_refused_while_one_runs() {
        let t = tempfile::tempdir().unwrap();
        let path = gio::File::for_path(t.path());
        let first = ostree::Sysroot::new(Some(&path));
        first.ensure_initialized(gio::Cancellable::NONE).unwrap();
        first.load(gio::Cancellable::NONE).unwrap();
        take_lock(&first).unwrap();
        let second = ostree::Sysroot::new(Some(&path));
        second.load(gio::Cancellable::NONE).unwrap();
        let e = take_lock(&second).unwrap_err().to_string();
        assert!(e.contains("another update is running"), "{e}");
        first.unlock();
        take_lock(&second).unwrap();
    }
}
