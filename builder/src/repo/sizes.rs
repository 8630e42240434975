//! The signed size facts a commit carries: the objects its tree has and its
//! parent's tree does not, each with the bytes it takes on the wire and on
//! disk ([`META_SIZES_SINCE_PARENT`]).
//!
//! libostree's own `ostree.sizes` lists every object of the tree: about
//! 38 bytes per object, 238 kB for a minimal host, travelling in the commit
//! object (and so in every static delta's superblock) even when one file
//! changed. A host that has the parent, which is what a fleet updating
//! build by build has, needs only the new objects; a host further behind
//! takes the union of the lists along the parent chain down to a commit it
//! has whole (`host/update/sizes.rs`). A commit without a parent lists every
//! object. Each entry is in libostree's `ostree.sizes` format
//! ([`size_entry`]), so one parser reads both; and where an agent older than
//! this list may be updating, the commit carries `ostree.sizes` as well
//! ([`metadata_with_sizes`]).

use std::collections::{BTreeMap, HashSet};

use anyhow::{anyhow, Context, Result};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

/// Metadata key (`aay`, sorted by checksum): one `ostree.sizes`-format
/// entry per object of the commit's tree that its parent's tree lacks
/// (every object, for a commit without a parent).
pub const META_SIZES_SINCE_PARENT: &str = "hull.sizes-since-parent";
/// libostree's key for the size list of every object of a commit's tree,
/// which commits made by hull before [`META_SIZES_SINCE_PARENT`] carry (and
/// the commits [`metadata_with_sizes`] gives both).
pub const META_OSTREE_SIZES: &str = "ostree.sizes";

/// libostree's object types as `ostree.sizes` stores them (one byte).
pub const OBJTYPE_FILE: u8 = 1;
pub const OBJTYPE_DIR_TREE: u8 = 2;
pub const OBJTYPE_DIR_META: u8 = 3;

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

fn hex_of(v: &glib::Variant) -> Result<String> {
    Ok(hex::encode(
        v.fixed_array::<u8>().map_err(|e| anyhow!("{e}"))?,
    ))
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

/// The objects of the tree whose root is `contents`/`meta`, each once as
/// `(object type byte, checksum)`, leaving out the subtrees whose dirtree
/// `skip` holds (a tree holding that dirtree holds all of it).
fn tree_objects(
    repo: &ostree::Repo,
    contents: &str,
    meta: &str,
    skip: &HashSet<String>,
) -> Result<Vec<(u8, String)>> {
    let mut out = vec![(OBJTYPE_DIR_META, meta.to_string())];
    let mut seen: HashSet<String> = HashSet::from([meta.to_string()]);
    let mut stack = vec![contents.to_string()];
    while let Some(tree) = stack.pop() {
        if skip.contains(&tree) || !seen.insert(tree.clone()) {
            continue;
        }
        out.push((OBJTYPE_DIR_TREE, tree.clone()));
        let v = repo
            .load_variant(ostree::ObjectType::DirTree, &tree)
            .with_context(|| format!("loading dirtree {tree}"))?;
        for f in v.child_value(0).iter() {
            let c = hex_of(&f.child_value(1))?;
            if seen.insert(c.clone()) {
                out.push((OBJTYPE_FILE, c));
            }
        }
        for d in v.child_value(1).iter() {
            let m = hex_of(&d.child_value(2))?;
            if seen.insert(m.clone()) {
                out.push((OBJTYPE_DIR_META, m));
            }
            stack.push(hex_of(&d.child_value(1))?);
        }
    }
    Ok(out)
}

/// Every object checksum of commit `c`'s tree.
fn commit_objects(repo: &ostree::Repo, c: &str) -> Result<HashSet<String>> {
    let (commit, _) = repo
        .load_commit(c)
        .with_context(|| format!("loading commit {c}"))?;
    let contents = hex_of(&commit.child_value(6))?;
    let meta = hex_of(&commit.child_value(7))?;
    Ok(tree_objects(repo, &contents, &meta, &HashSet::new())?
        .into_iter()
        .map(|(_, c)| c)
        .collect())
}

/// The [`META_SIZES_SINCE_PARENT`] list (`aay`, sorted by checksum) of the
/// tree whose root is `contents`/`meta` in the archive repository `repo`,
/// committed on top of `parent` (in `repo`) or of nothing: an entry for each
/// object the parent's tree lacks, as libostree's GENERATE_SIZES records it
/// (dirtree and dirmeta objects by their length, file objects by their
/// object file and unpacked size).
pub fn sizes_since_parent(
    repo: &ostree::Repo,
    contents: &str,
    meta: &str,
    parent: Option<&str>,
) -> Result<glib::Variant> {
    let old = match parent {
        Some(p) => commit_objects(repo, p)?,
        None => HashSet::new(),
    };
    let mut entries: BTreeMap<[u8; 32], Vec<u8>> = BTreeMap::new();
    for (code, c) in tree_objects(repo, contents, meta, &old)? {
        if old.contains(&c) {
            continue;
        }
        let key = checksum_bytes(&c)?;
        let entry = match code {
            OBJTYPE_FILE => {
                let (archived, unpacked) = file_sizes(repo, &c)?;
                size_entry(&key, archived, unpacked, code)
            }
            _ => {
                let objtype = match code {
                    OBJTYPE_DIR_TREE => ostree::ObjectType::DirTree,
                    _ => ostree::ObjectType::DirMeta,
                };
                let len = repo
                    .load_variant(objtype, &c)
                    .with_context(|| format!("loading {c}"))?
                    .size() as u64;
                size_entry(&key, len, len, code)
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

/// `metadata` (`a{sv}`) with the size lists of the tree `contents`/`meta`
/// committed on top of `parent` appended: [`META_SIZES_SINCE_PARENT`]
/// always, and libostree's [`META_OSTREE_SIZES`] (every object, last, where
/// libostree puts it) when a hull agent from before
/// [`META_SIZES_SINCE_PARENT`] may be updating to this commit, which it
/// refuses without that list: a commit without a parent (a new image's
/// first, which such a host may be rebased to) and the first commit on top
/// of a parent without [`META_SIZES_SINCE_PARENT`] (a fleet's hosts update
/// through it to an agent that reads the shorter list). Every later commit
/// carries the short list only. (No commit of `repo`'s object may have
/// used libostree's GENERATE_SIZES: libostree keeps it on for that object
/// and writes its own partial list over these.)
pub fn metadata_with_sizes(
    repo: &ostree::Repo,
    metadata: &glib::Variant,
    contents: &str,
    meta: &str,
    parent: Option<&str>,
) -> Result<glib::Variant> {
    let since = sizes_since_parent(repo, contents, meta, parent)?;
    let whole = match parent {
        None => Some(since.clone()),
        Some(p) if !has_since_parent(repo, p)? => {
            Some(sizes_since_parent(repo, contents, meta, None)?)
        }
        Some(_) => None,
    };
    let mut added = vec![(META_SIZES_SINCE_PARENT, since)];
    added.extend(whole.map(|w| (META_OSTREE_SIZES, w)));
    let entries = metadata.iter().chain(
        added
            .into_iter()
            .map(|(k, v)| glib::variant::DictEntry::new(k.to_string(), v).to_variant()),
    );
    Ok(glib::Variant::array_from_iter_with_type(
        glib::VariantTy::new("{sv}").expect("a valid type"),
        entries,
    ))
}

/// Whether commit `c` (in `repo`) carries [`META_SIZES_SINCE_PARENT`].
fn has_since_parent(repo: &ostree::Repo, c: &str) -> Result<bool> {
    let (commit, _) = repo
        .load_commit(c)
        .with_context(|| format!("loading commit {c}"))?;
    let dict = glib::VariantDict::new(Some(&commit.child_value(0)));
    Ok(dict.contains(META_SIZES_SINCE_PARENT))
}

/// The entries (raw bytes) under `key` in commit `c`'s metadata.
#[cfg(test)]
pub(crate) fn entries_of(repo: &ostree::Repo, c: &str, key: &str) -> Vec<Vec<u8>> {
    let (commit, _) = repo.load_commit(c).unwrap();
    let dict = glib::VariantDict::new(Some(&commit.child_value(0)));
    dict.lookup_value(key, Some(glib::VariantTy::new("aay").unwrap()))
        .map(|l| {
            l.iter()
                .map(|e| e.fixed_array::<u8>().unwrap().to_vec())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::repo::commit::{commit_tree_at, move_ref, open_or_create, test_meta, Objects};
    use std::collections::BTreeSet;
    use std::os::fd::AsRawFd;

    fn names(entries: &[Vec<u8>]) -> BTreeSet<String> {
        entries.iter().map(|e| hex::encode(&e[..32])).collect()
    }

    /// `child`'s list has one entry for each object of its tree that
    /// `parent`'s tree lacks, and nothing else; `parent` (a commit without
    /// a parent) lists its whole tree.
    pub(crate) fn lists_exactly_what_the_parent_lacks(
        repo: &ostree::Repo,
        parent: &str,
        child: &str,
    ) {
        let old = commit_objects(repo, parent).unwrap();
        let new = commit_objects(repo, child).unwrap();
        let want: BTreeSet<String> = new.difference(&old).cloned().collect();
        assert!(!want.is_empty());
        let got = entries_of(repo, child, META_SIZES_SINCE_PARENT);
        assert_eq!(got.len(), want.len(), "one entry per object");
        assert_eq!(names(&got), want);
        let root = entries_of(repo, parent, META_SIZES_SINCE_PARENT);
        assert_eq!(names(&root), old.into_iter().collect());
        // For older agents: the first commit also has libostree's list,
        // the same one; its child does not.
        assert_eq!(entries_of(repo, parent, META_OSTREE_SIZES), root);
        assert!(entries_of(repo, child, META_OSTREE_SIZES).is_empty());
    }

    /// A commit without a parent lists what libostree's own GENERATE_SIZES
    /// lists for the same tree in an empty repository, byte for byte.
    #[test]
    fn a_first_commit_lists_what_libostree_lists() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        std::fs::create_dir_all(tree.join("usr/lib/empty")).unwrap();
        std::fs::write(tree.join("usr/lib/a"), vec![b'a'; 100_000]).unwrap();
        std::fs::write(tree.join("usr/b"), b"b").unwrap();
        std::os::unix::fs::symlink("lib/a", tree.join("usr/link")).unwrap();
        let hull = open_or_create(&t.path().join("hull")).unwrap();
        let r = "hull/t/x86_64/stable";
        let c = commit_tree_at(&hull, &tree, r, &test_meta("1"), 1, Objects::Plain).unwrap();
        move_ref(&hull, r, &c.checksum).unwrap();
        let ours = entries_of(&hull, &c.checksum, META_SIZES_SINCE_PARENT);

        let plain = open_or_create(&t.path().join("libostree")).unwrap();
        let cancellable = gio::Cancellable::NONE;
        plain.prepare_transaction(cancellable).unwrap();
        let mtree = ostree::MutableTree::new();
        let modifier =
            ostree::RepoCommitModifier::new(ostree::RepoCommitModifierFlags::GENERATE_SIZES, None);
        let dir = std::fs::File::open(&tree).unwrap();
        plain
            .write_dfd_to_mtree(dir.as_raw_fd(), ".", &mtree, Some(&modifier), cancellable)
            .unwrap();
        let root = plain.write_mtree(&mtree, cancellable).unwrap();
        let root = root.downcast::<ostree::RepoFile>().unwrap();
        let theirs = plain
            .write_commit(None, None, None, None, &root, cancellable)
            .unwrap();
        plain.commit_transaction(cancellable).unwrap();
        let theirs_list = entries_of(&plain, &theirs, META_OSTREE_SIZES);
        assert!(theirs_list.len() >= 8, "{} entries", theirs_list.len());
        assert_eq!(ours, theirs_list);

        // hull's first commit on top of that one (which has no short list)
        // carries both: the short list for new agents, the whole one for
        // agents that know only ostree.sizes. (On a repository object of
        // its own: libostree keeps GENERATE_SIZES on for the object that
        // used it, and would write its own list over hull's.)
        let plain = open_or_create(&t.path().join("libostree")).unwrap();
        move_ref(&plain, r, &theirs).unwrap();
        std::fs::write(tree.join("usr/b"), b"b2").unwrap();
        let child = commit_tree_at(&plain, &tree, r, &test_meta("2"), 2, Objects::Reuse).unwrap();
        assert_eq!(child.parent.as_deref(), Some(theirs.as_str()));
        move_ref(&plain, r, &child.checksum).unwrap();
        let whole = entries_of(&plain, &child.checksum, META_OSTREE_SIZES);
        let all = commit_objects(&plain, &child.checksum).unwrap();
        assert_eq!(names(&whole), all.into_iter().collect());
        let since = entries_of(&plain, &child.checksum, META_SIZES_SINCE_PARENT);
        assert!(!since.is_empty() && since.len() < whole.len());
        // And the next commit, on top of one with the short list, only that.
        std::fs::write(tree.join("usr/b"), b"b3").unwrap();
        let next = commit_tree_at(&plain, &tree, r, &test_meta("3"), 3, Objects::Reuse).unwrap();
        assert!(entries_of(&plain, &next.checksum, META_OSTREE_SIZES).is_empty());
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
