//! The signed size facts of an update: what a pull would download and
//! store, before any object is fetched.
//!
//! A commit lists the objects its tree adds to its parent's
//! (`hull.sizes-since-parent`, `repo/sizes.rs`). What this host lacks is
//! the union of those lists from the new commit down its parent chain to
//! the first commit the local repository holds whole (the booted one, for a
//! host one build behind: then no other commit is fetched), less the
//! objects it has. A commit made by an older hull carries libostree's
//! `ostree.sizes` (every object of its tree) instead, which ends the walk.
//! The ancestors are fetched by checksum: the signed commit names its
//! parent, which names its own, so each is as trusted as the signed one.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use ostree::gio;
use ostree::glib;

use crate::repo::sizes::{
    META_OSTREE_SIZES, META_SIZES_SINCE_PARENT, OBJTYPE_DIR_META, OBJTYPE_DIR_TREE,
};

/// How many ancestors an update may walk down before it gives up: a host
/// this far behind refuses (fail closed) rather than fetch without end.
pub const MAX_ANCESTORS: usize = 100;

/// Bytes of the objects an update needs that a repository lacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Missing {
    /// As stored once pulled.
    pub unpacked: u64,
    /// As transferred (compressed).
    pub archived: u64,
}

/// A commit's size list: since its parent, or (older commits) its whole tree.
#[derive(Debug, PartialEq, Eq)]
pub enum SizeList {
    SinceParent(Vec<SizeEntry>),
    Whole(Vec<SizeEntry>),
}

/// The size list in a commit's metadata; `None` when it has none. Errors
/// when a list is malformed.
pub fn size_list(meta: &glib::VariantDict) -> Result<Option<SizeList>> {
    let ty = glib::VariantTy::new("aay").expect("type");
    let (key, list) = match meta.lookup_value(META_SIZES_SINCE_PARENT, Some(ty)) {
        Some(l) => (META_SIZES_SINCE_PARENT, l),
        None => match meta.lookup_value(META_OSTREE_SIZES, Some(ty)) {
            Some(l) => (META_OSTREE_SIZES, l),
            None => return Ok(None),
        },
    };
    let mut entries = Vec::with_capacity(list.n_children());
    for entry in list.iter() {
        let bytes = entry.fixed_array::<u8>().unwrap_or_default();
        let Some(e) = parse_size_entry(bytes) else {
            bail!("the commit's {key} metadata is malformed");
        };
        entries.push(e);
    }
    Ok(Some(match key {
        META_SIZES_SINCE_PARENT => SizeList::SinceParent(entries),
        _ => SizeList::Whole(entries),
    }))
}

/// Whether `repo` holds commit `c` with all of its objects.
fn holds_whole(repo: &ostree::Repo, c: &str) -> bool {
    repo.load_commit(c)
        .is_ok_and(|(_, state)| !state.contains(ostree::RepoCommitState::PARTIAL))
}

/// What pulling `commit` (checksum `checksum`, its signature checked) into
/// `repo` needs that `repo` lacks. `fetch` gives an ancestor's commit
/// object by checksum, its bytes checked against it; it is called only
/// for ancestors `repo` does not hold whole. Errors (fail closed) when a
/// commit on the way has no size list, or the walk passes
/// `MAX_ANCESTORS` (100).
pub fn missing_bytes(
    repo: &ostree::Repo,
    checksum: &str,
    commit: &glib::Variant,
    mut fetch: impl FnMut(&str) -> Result<glib::Variant>,
) -> Result<Missing> {
    if holds_whole(repo, checksum) {
        return Ok(Missing::default());
    }
    let mut needed: HashMap<String, SizeEntry> = HashMap::new();
    let mut current = (checksum.to_string(), commit.clone());
    for walked in 0.. {
        let (c, variant) = &current;
        let meta = glib::VariantDict::new(Some(&variant.child_value(0)));
        let whole = match size_list(&meta)? {
            None => bail!(
                "commit {c} has no {META_SIZES_SINCE_PARENT}: its size on disk is unknown, refusing it"
            ),
            Some(SizeList::SinceParent(l)) => {
                needed.extend(l.into_iter().map(|e| (e.checksum.clone(), e)));
                false
            }
            Some(SizeList::Whole(l)) => {
                needed.extend(l.into_iter().map(|e| (e.checksum.clone(), e)));
                true
            }
        };
        let parent = match ostree::commit_get_parent(variant) {
            Some(p) if !whole => p.to_string(),
            _ => break,
        };
        if holds_whole(repo, &parent) {
            break;
        }
        if walked + 1 >= MAX_ANCESTORS {
            bail!(
                "commit {checksum} is more than {MAX_ANCESTORS} commits ahead of any this host holds: \
                 its size on disk is unknown, refusing it"
            );
        }
        let next = fetch(&parent)
            .with_context(|| format!("reading the sizes of {checksum}'s ancestor {parent}"))?;
        current = (parent, next);
    }
    let mut total = Missing::default();
    for e in needed.values() {
        let objtype = match e.objtype {
            Some(OBJTYPE_DIR_TREE) => ostree::ObjectType::DirTree,
            Some(OBJTYPE_DIR_META) => ostree::ObjectType::DirMeta,
            _ => ostree::ObjectType::File,
        };
        if !repo.has_object(objtype, &e.checksum, gio::Cancellable::NONE)? {
            total.unpacked += e.unpacked;
            total.archived += e.archived;
        }
    }
    Ok(total)
}

/// One `ostree.sizes` entry: 32 checksum bytes, then the archived and
/// unpacked sizes as LEB128 varints, then (newer ostree) the object type.
#[derive(Debug, PartialEq, Eq)]
pub struct SizeEntry {
    pub checksum: String,
    pub archived: u64,
    pub unpacked: u64,
    pub objtype: Option<u8>,
}

pub fn parse_size_entry(bytes: &[u8]) -> Option<SizeEntry> {
    let checksum = hex::encode(bytes.get(..32)?);
    let mut rest = &bytes[32..];
    let mut varint = || -> Option<u64> {
        let mut value = 0u64;
        for (i, b) in rest.iter().enumerate().take(10) {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                rest = &rest[i + 1..];
                return Some(value);
            }
        }
        None
    };
    let archived = varint()?;
    let unpacked = varint()?;
    Some(SizeEntry {
        checksum,
        archived,
        unpacked,
        objtype: rest.first().copied(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::commit::{commit_tree_at, move_ref, open_or_create, test_meta, Objects};

    #[test]
    fn size_entries_parse() {
        let mut e = vec![0xab; 32];
        e.extend([0x96, 0x01]); // 150
        e.extend([0x05]);
        e.push(1);
        assert_eq!(
            parse_size_entry(&e),
            Some(SizeEntry {
                checksum: "ab".repeat(32),
                archived: 150,
                unpacked: 5,
                objtype: Some(1)
            })
        );
        assert_eq!(parse_size_entry(&e[..33]), None);
        assert_eq!(parse_size_entry(&e[..34]), None);
        assert!(parse_size_entry(&[0u8; 10]).is_none());
    }

    /// A chain A → B → C on a "server" repository; hosts holding A, B, C or
    /// nothing, each asking what C needs: the walk fetches exactly the
    /// ancestors the host lacks, and the bytes are those of the objects
    /// the host lacks (the union of the lists on the way).
    #[test]
    fn the_walk_stops_at_what_the_host_holds() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        let r = "hull/t/x86_64/stable";
        let server = open_or_create(&t.path().join("server")).unwrap();
        let mut chain = vec![];
        for (i, files) in [
            vec![("usr/a", 10_000usize), ("usr/b", 20_000)],
            vec![("usr/c", 40_000)],
            vec![("usr/d/e", 80_000)],
        ]
        .into_iter()
        .enumerate()
        {
            for (p, n) in files {
                let p = tree.join(p);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                // Bytes that do not compress, so archived ≈ unpacked.
                let data: Vec<u8> = (0..n).map(|j| (j * 7919 % 251) as u8 ^ i as u8).collect();
                std::fs::write(p, data).unwrap();
            }
            let c = commit_tree_at(
                &server,
                &tree,
                r,
                &test_meta(&i.to_string()),
                1 + i as u64,
                Objects::Reuse,
            )
            .unwrap();
            move_ref(&server, r, &c.checksum).unwrap();
            chain.push(c.checksum);
        }
        let (head, _) = server.load_commit(&chain[2]).unwrap();
        // A host holding chain[..held] (pulled from the server).
        for (held, fetched, lower) in [
            (3usize, 0usize, 0u64),
            (2, 0, 80_000),
            (1, 1, 120_000),
            (0, 2, 150_000),
        ] {
            let host = open_or_create(&t.path().join(format!("host{held}"))).unwrap();
            if held > 0 {
                let opts = glib::VariantDict::new(None);
                let src = format!("file://{}", t.path().join("server").display());
                opts.insert("refs", &vec![chain[held - 1].as_str()][..]);
                host.pull_with_options(&src, &opts.end(), None, gio::Cancellable::NONE)
                    .unwrap();
            }
            let mut asked = vec![];
            let missing = missing_bytes(&host, &chain[2], &head, |c| {
                asked.push(c.to_string());
                Ok(server.load_commit(c)?.0)
            })
            .unwrap();
            assert_eq!(asked.len(), fetched, "held {held}: fetched {asked:?}");
            assert!(missing.unpacked >= lower, "held {held}: {missing:?}");
            // The directory objects on top are a few hundred bytes.
            assert!(missing.unpacked < lower + 4_000, "held {held}: {missing:?}");
            if held == 3 {
                assert_eq!(missing, Missing::default());
            }
        }
        // A host two commits behind whose server cannot give the middle
        // commit refuses, naming it.
        let host = open_or_create(&t.path().join("host0")).unwrap();
        let e =
            missing_bytes(&host, &chain[2], &head, |c| anyhow::bail!("404 for {c}")).unwrap_err();
        assert!(format!("{e:#}").contains(&chain[1]), "{e:#}");
    }
}
