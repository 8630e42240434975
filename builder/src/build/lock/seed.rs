//! The tree `hull lock` installed, kept for the build that follows it.
//!
//! `hull lock` installs the manifest's packages unpinned to learn the full
//! set; the build then installs the same versions pinned to the lock, a
//! different package plan and so a different installed-tree cache key. The
//! two trees differ only in the apt preferences file hull copies in (the
//! pins), so the lock's tree, with the pinned preferences written into it,
//! is cached under the pinned plan's key too: a build right after `hull lock
//! --update` (as CI runs them) starts from it instead of installing again.

use std::path::Path;

use anyhow::{Context, Result};

use crate::build::archive::PackagePlan;
use crate::build::rootfs::mmdebstrap;

/// Where mmdebstrap's setup hook copies hull's apt preferences in a tree.
pub const TREE_PREFERENCES: &str = "etc/apt/preferences.d/hull-exclude.pref";

/// The plan a build of `lock` makes from the unpinned `plan`.
pub fn pinned(plan: &PackagePlan, lock: &super::ArchLock) -> PackagePlan {
    let mut p = plan.clone();
    p.locked = lock
        .package
        .iter()
        .map(|l| (l.name.clone(), l.version.clone()))
        .collect();
    p
}

/// Rewrites the preferences of the tree at `tree` for `pinned` and caches it
/// under `pinned`'s key (`list`: its installed packages).
pub fn cache_pinned(pinned: &PackagePlan, tree: &Path, cache: &Path, list: &str) -> Result<()> {
    let prefs = tree.join(TREE_PREFERENCES);
    std::fs::write(&prefs, mmdebstrap::preferences(pinned))
        .with_context(|| format!("writing {}", prefs.display()))?;
    let key = crate::build::rootfs::installed_key(pinned)?;
    crate::build::rootfs::save_installed(cache, &key, tree, list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_plan_pins_every_locked_package() {
        let plan = crate::build::rootfs::mmdebstrap::tests::plan();
        let lock = super::super::ArchLock {
            name: "x86_64".into(),
            include: plan.include.clone(),
            exclude: plan.exclude.clone(),
            source: vec![],
            package: vec![super::super::LockedPackage {
                name: "zstd".into(),
                version: "1.5.7-1".into(),
                arch: "amd64".into(),
                sha256: "bb".into(),
                size: 1,
                path: "pool/z".into(),
            }],
        };
        let p = pinned(&plan, &lock);
        assert_eq!(p.locked.get("zstd").map(String::as_str), Some("1.5.7-1"));
        assert_ne!(
            crate::build::rootfs::installed_key(&p).unwrap(),
            crate::build::rootfs::installed_key(&plan).unwrap()
        );
        assert!(mmdebstrap::preferences(&p).contains("Pin: version 1.5.7-1"));
    }
}
