//! Stage 3: the root filesystem tree.
//!
//! [`mmdebstrap`] installs the packages (maintainer scripts run, initramfs
//! built by dracut in the tree), [`customize`] lays the manifest over it and
//! [`ostree_layout`] gives it the shape OSTree deploys.

pub mod customize;
pub mod hardening;
pub mod mmdebstrap;
pub mod ostree_layout;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::boot;
use crate::cmd::{require_program, Cmd};
use crate::manifest::Manifest;
use crate::packages::PackagePlan;
use crate::progress;

/// A finished tree, ready to commit.
#[derive(Debug, Clone)]
pub struct Rootfs {
    pub dir: PathBuf,
    pub kver: String,
    /// `name version arch` of every installed package.
    pub packages: Vec<String>,
}

/// Builds the tree in `work/rootfs` (replacing what was there).
pub fn build(
    manifest: &Manifest,
    plan: &PackagePlan,
    work: &Path,
    deb_cache: &Path,
) -> Result<Rootfs> {
    require_program("mmdebstrap", "mmdebstrap")?;
    let target = work.join("rootfs");
    remove_tree(&target)?;
    fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    fs::create_dir_all(deb_cache).with_context(|| format!("creating {}", deb_cache.display()))?;

    let dracut_conf = work.join("50-hull.conf");
    fs::write(&dracut_conf, boot::DRACUT_CONF)
        .with_context(|| format!("writing {}", dracut_conf.display()))?;
    let prefs = work.join("hull-exclude.pref");
    fs::write(&prefs, mmdebstrap::exclude_preferences(&plan.exclude))
        .with_context(|| format!("writing {}", prefs.display()))?;
    let package_list = work.join("packages.tsv");

    let spec = mmdebstrap::MmdebstrapSpec {
        plan,
        target: target.clone(),
        deb_cache: deb_cache.to_path_buf(),
        dracut_conf,
        apt_preferences: prefs,
        package_list: package_list.clone(),
    };
    let bar = progress::spinner(&format!(
        "installing {} packages and their dependencies from {} {}",
        plan.include.len(),
        plan.suite,
        plan.arch.debian()
    ));
    let result = mmdebstrap::command(&spec).run();
    bar.finish_and_clear();
    result.context("installing packages with mmdebstrap")?;

    let list = fs::read_to_string(&package_list)
        .with_context(|| format!("reading {}", package_list.display()))?;
    let packages = list
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.replace('\t', " "))
        .collect::<Vec<_>>();

    let root = Dir::open_ambient_dir(&target, ambient_authority())
        .with_context(|| format!("opening {}", target.display()))?;
    customize::apply(&target, &root, manifest)?;
    let report = ostree_layout::convert(&root, &list)?;
    log::info!(
        "tree ready: kernel {}, {} packages, {} tmpfiles lines for /var, {} files of /var dropped",
        report.kver,
        packages.len(),
        report.tmpfiles_lines,
        report.var_files_dropped
    );
    Ok(Rootfs {
        dir: target,
        kver: report.kver,
        packages,
    })
}

/// Removes a tree that may hold OSTree deployments (immutable directories).
pub fn remove_tree(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    if fs::remove_dir_all(path).is_err() {
        // OSTree marks deployment roots immutable; clear that and retry.
        let _ = Cmd::new("chattr").args(["-R", "-f", "-i"]).arg(path).run();
        fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// Bytes used by the regular files of a tree (hard links counted once).
pub fn tree_size(root: &Dir) -> Result<u64> {
    use cap_std::fs::MetadataExt;
    use std::collections::HashSet;
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let entries = if rel.as_os_str().is_empty() {
            root.entries()?
        } else {
            root.read_dir(&rel)?
        };
        for entry in entries {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            let meta = root.symlink_metadata(&path)?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_size_counts_hard_links_once() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open_ambient_dir(t.path(), ambient_authority()).unwrap();
        d.create_dir_all("a/b").unwrap();
        d.write("a/one", vec![0u8; 1000]).unwrap();
        d.write("a/b/two", vec![0u8; 24]).unwrap();
        d.hard_link("a/one", &d, "a/b/link").unwrap();
        d.symlink("one", "a/sym").unwrap();
        assert_eq!(tree_size(&d).unwrap(), 1024);
    }
}
