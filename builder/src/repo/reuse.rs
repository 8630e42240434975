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
//! libostree records `ostree.sizes` only for the files it wrote itself, so
//! [`sizes`] makes the whole list from the committed tree, in libostree's
//! format (see [`size_entry`]): a commit built this way has the checksum of
//! the commit a cold build of the same tree gets (`commit.rs` tests it).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::rc::Rc;

use anyhow::{anyhow, Context, Result};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

/// The commit metadata key libostree writes its size list under.
pub const META_SIZES: &str = "ostree.sizes";

/// libostree's object types as `ostree.sizes` stores them (one byte).
const OBJTYPE_FILE: u8 = 1;
const OBJTYPE_DIR_TREE: u8 = 2;
const OBJTYPE_DIR_META: u8 = 3;

/// Files found already in the repository: `(path from the tree's root with
/// a leading '/', content checksum)`.
type Found = Rc<RefCell<Vec<(String, String)>>>;

/// The commit filter and what it found.
pub struct Reuse {
    found: Found,
}

impl Reuse {
    /// A commit modifier whose filter leaves out every regular file of
    /// `tree` (opened directory) whose object `repo` holds. No
    /// GENERATE_SIZES: [`sizes`] makes the list.
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

/// A second repository object on `repo`'s directory.
pub fn reopen(repo: &ostree::Repo) -> Result<ostree::Repo> {
    let path = repo.path().path().context("the repository's path")?;
    let again = ostree::Repo::new_for_path(&path);
    again
        .open(gio::Cancellable::NONE)
        .with_context(|| format!("opening OSTree repository {}", path.display()))?;
    Ok(again)
}

/// One `ostree.sizes` entry as libostree 2022.7 writes it: the 32 checksum
/// bytes, the archived (compressed object file) size and the unpacked size
/// as LEB128 varints, then the object type byte.
pub fn size_entry(checksum: &[u8; 32], archived: u64, unpacked: u64, objtype: u8) -> Vec<u8> {
    let mut e = checksum.to_vec();
    for mut v in [archived, unpacked] {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                e.push(byte);
                break;
            }
            e.push(byte | 0x80);
        }
    }
    e.push(objtype);
    e
}

fn checksum_bytes(hex: &str) -> Result<[u8; 32]> {
    let v = hex::decode(hex).with_context(|| format!("checksum {hex}"))?;
    v.try_into()
        .map_err(|_| anyhow!("checksum {hex} is not 32 bytes"))
}

/// The `ostree.sizes` entries of commit `c` by checksum (empty when it has none).
fn parent_sizes(repo: &ostree::Repo, c: &str) -> Result<HashMap<[u8; 32], Vec<u8>>> {
    let (commit, _) = repo
        .load_commit(c)
        .with_context(|| format!("loading commit {c}"))?;
    let dict = glib::VariantDict::new(Some(&commit.child_value(0)));
    let Some(list) = dict.lookup_value(META_SIZES, Some(glib::VariantTy::new("aay").unwrap()))
    else {
        return Ok(HashMap::new());
    };
    let mut map = HashMap::new();
    for e in list.iter() {
        let bytes = e
            .fixed_array::<u8>()
            .map_err(|e| anyhow!("{META_SIZES}: {e}"))?;
        if bytes.len() > 32 {
            map.insert(bytes[..32].try_into().expect("32 bytes"), bytes.to_vec());
        }
    }
    Ok(map)
}

/// The sizes of file object `c` as libostree records them: the stored
/// (compressed) object's bytes, and the file's length or, for a symlink,
/// its target's (new objects are still in the transaction's staging
/// directory; both calls look there too).
fn file_sizes(repo: &ostree::Repo, c: &str) -> Result<(u64, u64)> {
    let archived = repo
        .query_object_storage_size(ostree::ObjectType::File, c, gio::Cancellable::NONE)
        .with_context(|| format!("reading the size of object {c}"))?;
    let (_, info, _) = repo
        .load_file(c, gio::Cancellable::NONE)
        .with_context(|| format!("loading object {c}"))?;
    let unpacked = match info.file_type() {
        gio::FileType::SymbolicLink => info
            .symlink_target()
            .map(|t| t.as_os_str().len() as u64)
            .unwrap_or(0),
        _ => info.size() as u64,
    };
    Ok((archived, unpacked))
}

/// The `ostree.sizes` list (`aay`, sorted by checksum) of the tree whose
/// root is `contents`/`meta` in the archive repository `repo`:
/// every file, dirtree and dirmeta object once, as a plain libostree commit
/// records them. Entries of the parent commit are taken as they are; a new
/// file object's sizes come from its object file.
pub fn sizes(
    repo: &ostree::Repo,
    contents: &str,
    meta: &str,
    parent: Option<&str>,
) -> Result<glib::Variant> {
    let known = match parent {
        Some(p) => parent_sizes(repo, p)?,
        None => HashMap::new(),
    };
    let mut entries: BTreeMap<[u8; 32], Vec<u8>> = BTreeMap::new();
    let mut meta_entry = |objtype: ostree::ObjectType, c: &str, code: u8| -> Result<()> {
        let key = checksum_bytes(c)?;
        if let std::collections::btree_map::Entry::Vacant(e) = entries.entry(key) {
            let v = repo
                .load_variant(objtype, c)
                .with_context(|| format!("loading {c}"))?;
            let len = v.size() as u64;
            e.insert(size_entry(&key, len, len, code));
        }
        Ok(())
    };
    meta_entry(ostree::ObjectType::DirMeta, meta, OBJTYPE_DIR_META)?;
    let mut files: Vec<String> = Vec::new();
    let mut stack = vec![contents.to_string()];
    let mut seen_trees = std::collections::HashSet::new();
    while let Some(tree) = stack.pop() {
        if !seen_trees.insert(tree.clone()) {
            continue;
        }
        meta_entry(ostree::ObjectType::DirTree, &tree, OBJTYPE_DIR_TREE)?;
        let v = repo
            .load_variant(ostree::ObjectType::DirTree, &tree)
            .with_context(|| format!("loading dirtree {tree}"))?;
        for f in v.child_value(0).iter() {
            let c = f.child_value(1);
            files.push(hex::encode(
                c.fixed_array::<u8>().map_err(|e| anyhow!("{e}"))?,
            ));
        }
        for d in v.child_value(1).iter() {
            let t = hex::encode(
                d.child_value(1)
                    .fixed_array::<u8>()
                    .map_err(|e| anyhow!("{e}"))?,
            );
            let m = hex::encode(
                d.child_value(2)
                    .fixed_array::<u8>()
                    .map_err(|e| anyhow!("{e}"))?,
            );
            meta_entry(ostree::ObjectType::DirMeta, &m, OBJTYPE_DIR_META)?;
            stack.push(t);
        }
    }
    for c in files {
        let key = checksum_bytes(&c)?;
        if entries.contains_key(&key) {
            continue;
        }
        let entry = match known.get(&key) {
            Some(e) if e.last() == Some(&OBJTYPE_FILE) => e.clone(),
            _ => {
                let (archived, unpacked) = file_sizes(repo, &c)?;
                size_entry(&key, archived, unpacked, OBJTYPE_FILE)
            }
        };
        entries.insert(key, entry);
    }
    Ok(glib::Variant::array_from_iter_with_type(
        glib::VariantTy::BYTE_STRING,
        entries
            .into_values()
            .map(|e| glib::Variant::array_from_fixed_array(&e)),
    ))
}

/// `metadata` (`a{sv}`) with `ostree.sizes` appended last, where
/// libostree's own GENERATE_SIZES puts it.
pub fn with_sizes(metadata: &glib::Variant, sizes: glib::Variant) -> glib::Variant {
    let entries = metadata.iter().chain(std::iter::once(
        glib::variant::DictEntry::new(META_SIZES.to_string(), sizes).to_variant(),
    ));
    glib::Variant::array_from_iter_with_type(
        glib::VariantTy::new("{sv}").expect("a valid type"),
        entries,
    )
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
    /// every file, GENERATE_SIZES) and once skipping what the repository
    /// holds: the same checksum (so the same tree, metadata and
    /// `ostree.sizes`), and `ostree fsck` finds both repositories sound.
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
        let (commit, _) = repo.load_commit(&children[1]).unwrap();
        let dict = glib::VariantDict::new(Some(&commit.child_value(0)));
        let n = dict.lookup_value(META_SIZES, None).unwrap().n_children();
        // Objects of B: 5 files (tool = tool2 = copy, a.so, config, new.so,
        // link), 7 dirtrees (root, usr, bin, lib, etc, share, new; the
        // empty one is shared with... none here: usr/empty is an 8th) and
        // the dirmetas (several directories share one).
        assert!(n >= 13, "{n} size entries");
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

    /// LEB128 as libostree's `_ostree_write_varuint64`: 7 bits a byte, low first.
    #[test]
    fn size_entries_encode_like_libostree() {
        let c = [7u8; 32];
        for (archived, unpacked, objtype, tail) in [
            (0u64, 0u64, 1u8, vec![0u8, 0, 1]),
            (127, 128, 1, vec![0x7f, 0x80, 0x01, 1]),
            (300, 5, 2, vec![0xac, 0x02, 5, 2]),
            (
                1 << 21,
                16_384,
                3,
                vec![0x80, 0x80, 0x80, 0x01, 0x80, 0x80, 0x01, 3],
            ),
        ] {
            let e = size_entry(&c, archived, unpacked, objtype);
            assert_eq!(&e[..32], &c);
            assert_eq!(e[32..], tail, "{archived} {unpacked}");
        }
    }
}
