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

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::rc::Rc;

use anyhow::{anyhow, Context, Result};
use ostree::gio;

/// Files found already in the repository: `(path from the tree's root with
/// a leading '/', content checksum)`.
type Found = Rc<RefCell<Vec<(String, String)>>>;

/// The commit filter and what it found.
pub struct Reuse {
    found: Found,
}

impl Reuse {
    /// A commit modifier whose filter leaves out every regular file of
    /// `tree` (opened directory) whose object `repo` holds.
    pub fn modifier(
        repo: &ostree::Repo,
        tree: &std::fs::File,
    ) -> Result<(Self, ostree::RepoCommitModifier)> {
        let dfd = tree
            .try_clone()
            .context("duplicating the tree's descriptor")?;
        let repo = repo.clone();
        Ok(Self::skipping(move |path| {
            let rel = Path::new(path.trim_start_matches('/'));
            // Any error here: the file goes the ordinary way, where libostree
            // reports it with its path.
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
            .filter(|c| {
                repo.has_object(ostree::ObjectType::File, c, gio::Cancellable::NONE)
                    .unwrap_or(false)
            })
        }))
    }

    /// A commit modifier whose filter leaves out every regular file of
    /// `known` (by the path libostree's walk gives it) and records its
    /// checksum, reading nothing: the files [`super::prewrite`] just wrote.
    pub fn known(known: super::prewrite::Checksums) -> (Self, ostree::RepoCommitModifier) {
        Self::skipping(move |path| known.get(path).cloned())
    }

    /// The filter both constructors share: a regular file whose path
    /// `lookup` gives a checksum for is left out of the walk and recorded.
    fn skipping(
        lookup: impl Fn(&str) -> Option<String> + 'static,
    ) -> (Self, ostree::RepoCommitModifier) {
        let found: Found = Rc::default();
        let f = found.clone();
        let filter = move |_: &ostree::Repo, path: &str, info: &gio::FileInfo| {
            if info.file_type() != gio::FileType::Regular {
                return ostree::RepoCommitFilterResult::Allow;
            }
            match lookup(path) {
                Some(c) => {
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
        (Reuse { found }, modifier)
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
        let (reuse, modifier) = Reuse::modifier(&repo, &dir).unwrap();
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
}
