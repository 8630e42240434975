//! The objects of the last deployed commit, kept between builds
//! (`out/cache/deployed/<arch>`), so that deploying a child commit
//! decompresses only what changed (issue 18, goal 1).
//!
//! Without it, every deploy pulls the whole commit out of the archive
//! repository into a fresh sysroot, inflating each of its ~5,000 zlib
//! objects again (2.5–3 s for the minimal image, the largest stage of a
//! one-file rebuild after the image hash). With it:
//!
//! 1. the new commit is pulled from the archive into the cache, a `bare`
//!    repository that already holds the previous commit: only the new
//!    objects are inflated;
//! 2. the sysroot's repository pulls it from the cache: a local pull between
//!    two `bare` repositories on one file system, which libostree makes of
//!    hard links;
//! 3. once the image is written, the sysroot's repository (exactly the
//!    commit's objects, no more) is renamed into place as the next cache,
//!    the old one removed in the background.
//!
//! A hard link is trusted without a checksum, so the cache is used only
//! when its stamp (`<arch>.complete` beside it) says it was written whole
//! and synced to disk: the stamp is removed before the cache is touched and
//! written again only after a `syncfs` of the new cache, off the critical
//! path. A crash or power cut anywhere in between leaves no stamp, and the
//! next build deploys from the archive as a cold build does. `--refresh`
//! does the same.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ostree::gio;

use crate::build::rootfs::Removals;
use crate::manifest::Arch;

/// Where one architecture's deployed objects are kept.
#[derive(Debug, Clone)]
pub struct DeployCache {
    /// The `bare` repository: `out/cache/deployed/<arch>`.
    pub repo: PathBuf,
    /// Its stamp: `out/cache/deployed/<arch>.complete`.
    pub stamp: PathBuf,
}

impl DeployCache {
    /// The cache of `arch` under the build cache directory `cache`.
    pub fn at(cache: &Path, arch: Arch) -> Self {
        let dir = cache.join("deployed");
        DeployCache {
            repo: dir.join(arch.as_str()),
            stamp: dir.join(format!("{}.complete", arch.as_str())),
        }
    }

    /// Whether the cache was written whole: its stamp and its repository
    /// are there.
    pub fn is_complete(&self) -> bool {
        self.stamp.is_file() && self.repo.join("config").is_file()
    }

    /// Step 1: when the cache is complete, pulls `commit` from the archive
    /// repository `source` into it and returns its path, the repository the
    /// sysroot should pull from; else `None` (deploy from `source`). The
    /// stamp is gone from here on. Errors name the cache.
    pub fn prepare(&self, source: &Path, commit: &str, refresh: bool) -> Result<Option<PathBuf>> {
        let complete = !refresh && self.is_complete();
        self.unstamp()?;
        if !complete {
            return Ok(None);
        }
        let repo = ostree::Repo::new_for_path(&self.repo);
        repo.open(gio::Cancellable::NONE)
            .with_context(|| format!("opening {}", self.repo.display()))?;
        // Made durable as a whole by the syncfs before the next stamp.
        repo.set_disable_fsync(true);
        crate::build::deploy::pull_commit(&repo, source, commit).with_context(|| {
            format!(
                "pulling {commit} from {} into {}",
                source.display(),
                self.repo.display()
            )
        })?;
        Ok(Some(self.repo.clone()))
    }

    /// Step 3: makes the repository of `sysroot` (deployed, its image
    /// written) the next cache. The old cache is removed on a thread of
    /// `removals`; another thread syncs the new one's file system and then
    /// stamps it. Errors name the paths.
    pub fn keep(&self, sysroot: &Path, removals: &mut Removals) -> Result<()> {
        let from = sysroot.join("ostree/repo");
        let dir = self.repo.parent().expect("under cache/deployed");
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        removals.remove(&self.repo)?;
        fs::rename(&from, &self.repo)
            .with_context(|| format!("renaming {} to {}", from.display(), self.repo.display()))?;
        let (repo, stamp) = (self.repo.clone(), self.stamp.clone());
        removals.spawn(move || {
            let d = fs::File::open(&repo).with_context(|| format!("opening {}", repo.display()))?;
            rustix::fs::syncfs(&d).with_context(|| format!("syncing {}", repo.display()))?;
            crate::util::write_atomic(&stamp, b"")
        });
        Ok(())
    }

    /// Removes the stamp, durably, before anything changes the cache.
    fn unstamp(&self) -> Result<()> {
        match fs::remove_file(&self.stamp) {
            Ok(()) => {
                let dir = self.stamp.parent().expect("under cache/deployed");
                fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .with_context(|| format!("syncing {}", dir.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", self.stamp.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::deploy::{deploy, DeploySpec};
    use crate::repo::commit::{commit_tree_at, move_ref, open_or_create, test_meta, Objects};
    use std::os::unix::fs::MetadataExt;

    /// The least libostree deploys: a kernel, an initramfs, /usr/etc/os-release.
    fn tree(root: &Path, version: &str) {
        let modules = root.join("usr/lib/modules/6.1.0-test");
        fs::create_dir_all(&modules).unwrap();
        fs::create_dir_all(root.join("usr/etc")).unwrap();
        fs::create_dir_all(root.join("usr/share/hull")).unwrap();
        fs::write(modules.join("vmlinuz"), "kernel").unwrap();
        fs::write(modules.join("initramfs.img"), "initramfs").unwrap();
        fs::write(root.join("usr/etc/hostname"), "test\n").unwrap();
        fs::write(root.join("usr/etc/os-release"), "ID=debian\n").unwrap();
        fs::write(root.join("usr/share/hull/same"), vec![b's'; 100_000]).unwrap();
        fs::write(root.join("usr/share/hull/version"), version).unwrap();
    }

    fn deploy_from(sysroot: &Path, source: &Path, commit: &str) -> crate::build::deploy::Deployed {
        deploy(&DeploySpec {
            sysroot,
            source,
            ostree_ref: "hull/t/x86_64/stable",
            commit,
            osname: "t",
            kargs: &[],
            remote: None,
        })
        .unwrap()
    }

    /// Cold: no cache, so the deploy pulls from the archive, and its
    /// repository becomes the cache, stamped. Child: the cache is pulled
    /// into, and the sysroot's objects are hard links to its own. A missing
    /// stamp or --refresh: not used.
    #[test]
    fn a_kept_deploy_repository_feeds_the_next_deploy_by_hard_links() {
        let t = tempfile::tempdir().unwrap();
        let (archive_path, src) = (t.path().join("repo"), t.path().join("tree"));
        let archive = open_or_create(&archive_path).unwrap();
        let r = "hull/t/x86_64/stable";
        let cache = DeployCache::at(&t.path().join("cache"), Arch::X86_64);

        tree(&src, "1");
        let a = commit_tree_at(
            &archive,
            &src,
            r,
            &test_meta("1"),
            1_700_000_000,
            Objects::Plain,
        )
        .unwrap();
        move_ref(&archive, r, &a.checksum).unwrap();
        assert_eq!(
            cache.prepare(&archive_path, &a.checksum, false).unwrap(),
            None
        );
        let s1 = t.path().join("s1");
        deploy_from(&s1, &archive_path, &a.checksum);
        let mut removals = Removals::default();
        cache.keep(&s1, &mut removals).unwrap();
        removals.finish().unwrap();
        assert!(cache.is_complete());

        tree(&src, "2");
        let b = commit_tree_at(
            &archive,
            &src,
            r,
            &test_meta("2"),
            1_700_000_001,
            Objects::Reuse,
        )
        .unwrap();
        let from = cache.prepare(&archive_path, &b.checksum, false).unwrap();
        assert_eq!(from.as_deref(), Some(cache.repo.as_path()));
        assert!(
            !cache.stamp.exists(),
            "the stamp goes before the cache changes"
        );
        let s2 = t.path().join("s2");
        let d = deploy_from(&s2, &cache.repo, &b.checksum);
        assert_eq!(
            fs::read_to_string(d.deployment.join("usr/share/hull/version")).unwrap(),
            "2"
        );
        let same = fs::metadata(d.deployment.join("usr/share/hull/same")).unwrap();
        let obj = |dir: &Path| {
            walkdir::WalkDir::new(dir.join("objects"))
                .into_iter()
                .map(|e| e.unwrap())
                .find(|e| e.metadata().unwrap().ino() == same.ino())
        };
        assert!(
            obj(&cache.repo).is_some(),
            "the unchanged file is the cache's own object (a hard link), not a copy"
        );
        let mut removals = Removals::default();
        cache.keep(&s2, &mut removals).unwrap();
        removals.finish().unwrap();
        assert!(cache.is_complete());
        assert!(!s2.join("ostree/repo").exists());

        // --refresh, or no stamp: deploy from the archive.
        assert_eq!(
            cache.prepare(&archive_path, &b.checksum, true).unwrap(),
            None
        );
        assert!(!cache.is_complete());
        assert_eq!(
            cache.prepare(&archive_path, &b.checksum, false).unwrap(),
            None
        );
    }
}
