//! Stage 5a: the commit deployed into a fresh OSTree sysroot, the tree that
//! becomes the image's root partition.
//!
//! libostree does the deployment exactly as it will on the host: the stateroot,
//! the merged /etc, the boot loader entries under `boot/loader/entries` (with
//! `sysroot.bootloader=none`, OSTree writes only the BLS entries; hull copies
//! them to the ESP, see [`crate::boot::bls`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

/// A deployed sysroot.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub sysroot: PathBuf,
    /// The deployment's root directory inside the sysroot.
    pub deployment: PathBuf,
    pub bootcsum: String,
}

/// What to deploy, and where.
#[derive(Debug, Clone)]
pub struct DeploySpec<'a> {
    /// Created; must not exist.
    pub sysroot: &'a Path,
    /// The repository to pull `commit` from: the archive one, or the
    /// deploy cache ([`crate::build::deploy_cache`]) it was pulled into.
    pub source: &'a Path,
    /// The ref `commit` is built for; the origin names it when the image is
    /// not updatable. Need not point at `commit` (yet).
    pub ostree_ref: &'a str,
    pub commit: &'a str,
    /// The stateroot.
    pub osname: &'a str,
    pub kargs: &'a [String],
    /// (remote, ref) the host updates from, when the image is updatable.
    pub remote: Option<(&'a str, &'a str)>,
}

/// Creates the sysroot, pulls the commit from the archive repository and
/// deploys it as the default for the stateroot.
pub fn deploy(spec: &DeploySpec) -> Result<Deployed> {
    let DeploySpec {
        sysroot,
        source,
        ostree_ref,
        commit,
        osname,
        kargs,
        remote,
    } = *spec;
    let cancellable = gio::Cancellable::NONE;
    std::fs::create_dir_all(sysroot).with_context(|| format!("creating {}", sysroot.display()))?;
    let sr = ostree::Sysroot::new(Some(&gio::File::for_path(sysroot)));
    sr.ensure_initialized(cancellable)
        .with_context(|| format!("initializing OSTree sysroot {}", sysroot.display()))?;
    sr.load(cancellable).context("loading the sysroot")?;
    sr.init_osname(osname, cancellable)
        .with_context(|| format!("creating stateroot {osname}"))?;

    let repo = sr.repo();
    // The image is fsynced once, when it is written; not per object here.
    repo.set_disable_fsync(true);
    let config = repo.copy_config();
    // hull, not OSTree, puts boot entries where the firmware reads them.
    config.set_string("sysroot", "bootloader", "none");
    repo.write_config(&config)
        .context("writing the sysroot repository config")?;
    sr.load(cancellable).context("reloading the sysroot")?;
    let repo = sr.repo();
    repo.set_disable_fsync(true);

    pull_commit(&repo, source, commit)
        .with_context(|| format!("pulling {commit} ({ostree_ref}) from {}", source.display()))?;
    let refspec = match remote {
        Some((remote, follow)) => {
            repo.set_ref_immediate(Some(remote), follow, Some(commit), cancellable)
                .with_context(|| format!("setting {remote}:{follow}"))?;
            format!("{remote}:{follow}")
        }
        None => ostree_ref.to_string(),
    };
    let origin = sr.origin_new_from_refspec(&refspec);
    let kargs: Vec<&str> = kargs.iter().map(String::as_str).collect();
    let deployment = sr
        .deploy_tree(
            Some(osname),
            commit,
            Some(&origin),
            None,
            &kargs,
            cancellable,
        )
        .with_context(|| format!("deploying {commit}"))?;
    sr.simple_write_deployment(
        Some(osname),
        &deployment,
        None,
        ostree::SysrootSimpleWriteDeploymentFlags::NONE,
        cancellable,
    )
    .context("writing the deployment")?;
    let dir = sysroot.join(sr.deployment_dirpath(&deployment).as_str());
    Ok(Deployed {
        sysroot: sysroot.to_path_buf(),
        deployment: dir,
        bootcsum: deployment.bootcsum().to_string(),
    })
}

/// Pulls `commit` alone (no parents, no ref written) from the local
/// repository `source` into `repo`. By checksum, not by ref: the build
/// moves its ref only once the image is written. Pulling a checksum writes
/// no ref into the sysroot's repository either (one would pin the commit
/// there forever); the host tracks its remote's ref instead (or nothing,
/// when the image is not updatable), and the deployment keeps the commit
/// alive. Callers add which pull it was to the error.
pub(crate) fn pull_commit(repo: &ostree::Repo, source: &Path, commit: &str) -> Result<()> {
    let source = source
        .canonicalize()
        .with_context(|| format!("resolving {}", source.display()))?;
    let opts = glib::VariantDict::new(None);
    opts.insert_value("refs", &vec![commit.to_string()].to_variant());
    opts.insert("depth", 0i32);
    repo.pull_with_options(
        &format!("file://{}", source.display()),
        &opts.end(),
        None,
        gio::Cancellable::NONE,
    )?;
    Ok(())
}
