//! An incremental commit: files whose object the repository already holds
//! are neither compressed nor copied again.
//!
//! In archive mode libostree compresses every file of a tree into a temp
//! file before it learns, from the checksum, that the object exists; for a
//! tree that differs from its parent in a few files that is nearly all of a
//! commit's time. [`Reuse`] is a commit filter that checksums each regular
//! file itself (libostree's own `ostree_checksum_file_at`: the same header,
//! xattrs and sha256 as a commit) and, when the object is there, leaves the
//! file out of the walk and records its checksum; [`Reuse::graft`] then puts
//! those checksums into the mutable tree. The result is the tree a plain
//! commit gives, object for object.
//!
//! The size list the commit carries is made from the committed tree
//! afterwards (`repo/sizes.rs`), so a commit built this way has the
//! checksum of a plain commit of the same tree (tested below).

use std::cell::{Cell, RefCell};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::rc::Rc;

use anyhow::{anyhow, Context, Result};
use ostree::gio;

use super::checksum_cache::ChecksumCache;

/// Files found already in the repository: `(path from the tree's root with
/// a leading '/', content checksum)`.
type Found = Rc<RefCell<Vec<(String, String)>>>;

/// The commit filter and what it found.
pub struct Reuse {
    found: Found,
    /// Checksums by inode for the next commit of the same tree.
    next: Rc<RefCell<ChecksumCache>>,
    /// Files whose checksum came from the previous cache, unread.
    cached: Rc<Cell<usize>>,
}

impl Reuse {
    /// A commit modifier whose filter leaves out every regular file of
    /// `tree` (opened directory) whose object `repo` holds. A file that
    /// `previous` knows (same inode and ctime: repo/checksum_cache.rs) is
    /// not read.
    pub fn modifier(
        repo: &ostree::Repo,
        tree: &std::fs::File,
        previous: ChecksumCache,
    ) -> Result<(Self, ostree::RepoCommitModifier)> {
        let dfd = tree
            .try_clone()
            .context("duplicating the tree's descriptor")?;
        let repo = repo.clone();
        let cached: Rc<Cell<usize>> = Rc::default();
        let hits = cached.clone();
        Self::skipping(tree, cached, move |path, st| {
            let rel = Path::new(path.trim_start_matches('/'));
            let known = st.and_then(|(dev, st)| previous.get(dev, st).map(str::to_string));
            if known.is_some() {
                hits.set(hits.get() + 1);
            }
            // Any error here: the file goes the ordinary way, where libostree
            // reports it with its path.
            known
                .or_else(|| {
                    ostree::checksum_file_at(
                        dfd.as_raw_fd(),
                        rel,
                        None,
                        ostree::ObjectType::File,
                        ostree::ChecksumFlags::NONE,
                        gio::Cancellable::NONE,
                    )
                    .ok()
                    .map(|c| c.to_string())
                })
                .filter(|c| {
                    repo.has_object(ostree::ObjectType::File, c, gio::Cancellable::NONE)
                        .unwrap_or(false)
                })
        })
    }

    /// A commit modifier whose filter leaves out every regular file of
    /// `known` (by the path libostree's walk gives it) and records its
    /// checksum, reading nothing: the files [`super::prewrite`] just wrote
    /// from `tree`.
    pub fn known(
        tree: &std::fs::File,
        known: super::prewrite::Checksums,
    ) -> Result<(Self, ostree::RepoCommitModifier)> {
        Self::skipping(tree, Rc::default(), move |path, _| known.get(path).cloned())
    }

    /// The filter both constructors share: a regular file whose path
    /// `lookup` gives a checksum for is left out of the walk and recorded,
    /// and its checksum kept by inode for the next commit. `lookup` is given
    /// the file's device and `lstat` when they could be read.
    fn skipping(
        tree: &std::fs::File,
        cached: Rc<Cell<usize>>,
        lookup: impl Fn(&str, Option<(u64, &rustix::fs::Stat)>) -> Option<String> + 'static,
    ) -> Result<(Self, ostree::RepoCommitModifier)> {
        let dfd = tree
            .try_clone()
            .context("duplicating the tree's descriptor")?;
        let dev = rustix::fs::fstat(&dfd)
            .context("reading the tree's device")?
            .st_dev;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        let found: Found = Rc::default();
        let next = Rc::new(RefCell::new(ChecksumCache::new(dev)));
        let (f, n) = (found.clone(), next.clone());
        let filter = move |_: &ostree::Repo, path: &str, info: &gio::FileInfo| {
            if info.file_type() != gio::FileType::Regular {
                return ostree::RepoCommitFilterResult::Allow;
            }
            let st = rustix::fs::statat(
                &dfd,
                path.trim_start_matches('/'),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .ok();
            match lookup(path, st.as_ref().map(|s| (dev, s))) {
                Some(c) => {
                    if let Some(st) = &st {
                        n.borrow_mut().record(st, &c, now);
                    }
                    f.borrow_mut().push((path.to_string(), c));
                    ostree::RepoCommitFilterResult::Skip
                }
                None => ostree::RepoCommitFilterResult::Allow,
            }
        };
        let modifier = ostree::RepoCommitModifier::new(
            ostree::RepoCommitModifierFlags::NONE,
            Some(Box::new(filter)),
        );
        Ok((
            Reuse {
                found,
                next,
                cached,
            },
            modifier,
        ))
    }

    /// How many files' checksums came from the previous cache.
    pub fn cached(&self) -> usize {
        self.cached.get()
    }

    /// The checksums by inode of the files this commit skipped, for the
    /// next commit of the same tree.
    pub fn checksums(&self) -> ChecksumCache {
        self.next.borrow().clone()
    }

    /// How many files the filter found in the repository.
    pub fn reused(&self) -> usize {
        self.found.borrow().len()
    }

    /// Puts the files the filter left out into `mtree` (their directories
    /// are there: the walk made every directory).
    pub fn graft(&self, mtree: &ostree::MutableTree) -> Result<()> {
        for (path, checksum) in self.found.borrow().iter() {
            let mut dir = mtree.clone();
            let mut parts = path.trim_start_matches('/').split('/').peekable();
            while let Some(name) = parts.next() {
                if parts.peek().is_none() {
                    dir.replace_file(name, checksum)
                        .with_context(|| format!("adding {path} to the tree"))?;
                } else {
                    dir = dir
                        .lookup(name)
                        .with_context(|| format!("looking up {path} in the tree"))?
                        .1
                        .ok_or_else(|| anyhow!("{path}: its directory is not in the tree"))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::commit::{commit_tree_at, move_ref, open_or_create, test_meta, Objects};
    use std::os::unix::fs::PermissionsExt;

    /// A tree with what a rootfs has: nested directories, an empty one,
    /// hard links, symlinks, odd modes, an owner other than root, xattrs.
    fn tree_a(root: &Path) {
        let w = |p: &str, data: &[u8]| {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        };
        w("usr/bin/tool", &vec![b'x'; 200_000]);
        w("usr/lib/a.so", b"library a");
        w("usr/share/doc/same", b"library a"); // a second path to one object
        w("usr/etc/config", b"setting = 1\n");
        std::fs::create_dir_all(root.join("usr/empty")).unwrap();
        std::fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool2")).unwrap();
        std::os::unix::fs::symlink("../lib/a.so", root.join("usr/bin/link")).unwrap();
        std::fs::set_permissions(
            root.join("usr/bin/tool"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        rustix::fs::setxattr(
            root.join("usr/lib/a.so").as_path(),
            "user.hull-test",
            b"on",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(root.join("usr/etc/config"), Some(100), Some(101)).unwrap();
        }
    }

    /// B: A with one file changed, one added (with an xattr), one removed, a
    /// symlink retargeted and a new directory.
    fn tree_b(root: &Path) {
        std::fs::write(root.join("usr/etc/config"), b"setting = 2\n").unwrap();
        std::fs::write(root.join("usr/lib/new.so"), b"library new").unwrap();
        rustix::fs::setxattr(
            root.join("usr/lib/new.so").as_path(),
            "user.hull-test",
            b"new",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        std::fs::remove_file(root.join("usr/share/doc/same")).unwrap();
        std::fs::remove_file(root.join("usr/bin/link")).unwrap();
        std::os::unix::fs::symlink("../lib/new.so", root.join("usr/bin/link")).unwrap();
        std::fs::create_dir_all(root.join("usr/share/new")).unwrap();
        std::fs::write(root.join("usr/share/new/copy"), vec![b'x'; 200_000]).unwrap();
    }

    /// A commit of B on top of A, once the plain way (libostree compresses
    /// every file) and once skipping what the repository holds: the same
    /// checksum (so the same tree, metadata and size list), and `ostree
    /// fsck` finds both repositories sound.
    /// Their parent A is likewise committed plainly in one and with
    /// [`Objects::Parallel`] in the other.
    #[test]
    fn a_child_commit_that_skips_known_files_is_the_plain_commit() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        tree_a(&tree);
        let r = "hull/t/x86_64/stable";
        let now = 1_700_000_000;
        let mut heads = vec![];
        // A, cold: once plain, once with its files compressed on two
        // threads first (repo/prewrite.rs): the same commit.
        for (name, objects) in [("plain", Objects::Plain), ("reuse", Objects::Parallel(2))] {
            let repo = open_or_create(&t.path().join(name)).unwrap();
            let a = commit_tree_at(&repo, &tree, r, &test_meta("1"), now, objects).unwrap();
            move_ref(&repo, r, &a.checksum).unwrap();
            heads.push(a.checksum);
        }
        assert_eq!(heads[0], heads[1], "the parallel cold commit differs");
        tree_b(&tree);
        let mut children = vec![];
        for (name, objects) in [("plain", Objects::Plain), ("reuse", Objects::Reuse)] {
            let repo = open_or_create(&t.path().join(name)).unwrap();
            let b = commit_tree_at(&repo, &tree, r, &test_meta("2"), now + 1, objects).unwrap();
            assert_eq!(b.parent.as_deref(), Some(heads[0].as_str()));
            children.push(b.checksum);
        }
        assert_eq!(
            children[0], children[1],
            "the skipping commit differs from the plain one"
        );
        let repo = open_or_create(&t.path().join("reuse")).unwrap();
        crate::repo::sizes::tests::lists_exactly_what_the_parent_lacks(
            &repo,
            &heads[0],
            &children[1],
        );
        // Every regular file of B is in the repository now: the filter
        // skips all six (tool and tool2 are one inode, counted by path).
        let dir = std::fs::File::open(&tree).unwrap();
        let (reuse, modifier) = Reuse::modifier(&repo, &dir, ChecksumCache::default()).unwrap();
        repo.prepare_transaction(gio::Cancellable::NONE).unwrap();
        let mtree = ostree::MutableTree::new();
        use std::os::fd::AsRawFd;
        repo.write_dfd_to_mtree(
            dir.as_raw_fd(),
            ".",
            &mtree,
            Some(&modifier),
            gio::Cancellable::NONE,
        )
        .unwrap();
        reuse.graft(&mtree).unwrap();
        repo.abort_transaction(gio::Cancellable::NONE).unwrap();
        assert_eq!(reuse.reused(), 6);
        for name in ["plain", "reuse"] {
            crate::util::cmd::Cmd::new("ostree")
                .arg("fsck")
                .arg(format!("--repo={}", t.path().join(name).display()))
                .run()
                .unwrap();
        }
    }

    /// The content checksum of `path` in `commit`.
    fn file_checksum(repo: &ostree::Repo, commit: &str, path: &str) -> String {
        use ostree::prelude::*;
        let (root, _) = repo.read_commit(commit, gio::Cancellable::NONE).unwrap();
        let f = root.resolve_relative_path(path);
        let f = f.downcast::<ostree::RepoFile>().unwrap();
        f.ensure_resolved().unwrap();
        f.checksum().to_string()
    }

    /// A child commit given the checksums by inode of the tree's last
    /// commit is the plain commit of the same tree; and it takes a file's
    /// checksum from them, unread (an entry planted for an unchanged file
    /// shows in the commit), while a changed file is read.
    #[test]
    fn a_commit_with_the_last_commits_checksums_takes_them_for_unchanged_files() {
        use crate::repo::commit::commit_tree_full;
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        tree_a(&tree);
        // Old enough to be recorded (repo/checksum_cache.rs).
        std::thread::sleep(std::time::Duration::from_millis(600));
        let (r, now) = ("hull/t/x86_64/stable", 1_700_000_000);
        let repo = open_or_create(&t.path().join("cached")).unwrap();
        let (a, cache) = commit_tree_full(
            &repo,
            &tree,
            r,
            &test_meta("1"),
            now,
            Objects::Parallel(2),
            ChecksumCache::default(),
        )
        .unwrap();
        move_ref(&repo, r, &a.checksum).unwrap();
        // tool and tool2 are one inode: five regular files, four inodes.
        assert_eq!(cache.len(), 4, "{cache:?}");
        let plain = open_or_create(&t.path().join("plain")).unwrap();
        let pa = commit_tree_at(&plain, &tree, r, &test_meta("1"), now, Objects::Plain);
        assert_eq!(pa.unwrap().checksum, a.checksum);
        move_ref(&plain, r, &a.checksum).unwrap();
        let st = |p: &str| rustix::fs::lstat(tree.join(p).as_path()).unwrap();
        let config_before = st("usr/etc/config");
        tree_b(&tree);
        let (b, _) = commit_tree_full(
            &repo,
            &tree,
            r,
            &test_meta("2"),
            now + 1,
            Objects::Reuse,
            cache.clone(),
        )
        .unwrap();
        let pb = commit_tree_at(&plain, &tree, r, &test_meta("2"), now + 1, Objects::Plain);
        assert_eq!(pb.unwrap().checksum, b.checksum);

        // Plant usr/bin/tool's checksum for usr/lib/a.so's key: the next
        // commit takes it without reading a.so. usr/etc/config changed in
        // B, so its entry (planted with its key before) is not taken.
        let tool = file_checksum(&repo, &b.checksum, "usr/bin/tool");
        let mut planted = ChecksumCache::new(cache.dev);
        let settled = i128::MAX / 2;
        planted.record(&st("usr/lib/a.so"), &tool, settled);
        planted.record(&config_before, &tool, settled);
        let json = t.path().join("planted.json");
        std::fs::write(&json, planted.to_json()).unwrap();
        let (c, _) = commit_tree_full(
            &repo,
            &tree,
            r,
            &test_meta("3"),
            now + 2,
            Objects::Reuse,
            ChecksumCache::load(&json),
        )
        .unwrap();
        assert_eq!(file_checksum(&repo, &c.checksum, "usr/lib/a.so"), tool);
        assert_ne!(file_checksum(&repo, &c.checksum, "usr/etc/config"), tool);
    }
}
