//! The signed size facts of a commit (`ostree.sizes`): what a pull would
//! download and store, before any object is fetched.

use anyhow::{bail, Result};
use ostree::gio;
use ostree::glib;
/// Bytes of the objects in a commit's `ostree.sizes` that a repository lacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Missing {
    /// As stored once pulled.
    pub unpacked: u64,
    /// As transferred (compressed).
    pub archived: u64,
}

/// The objects of the commit's `ostree.sizes` that the local repository
/// lacks. Errors when the commit has no `ostree.sizes` (fail closed).
pub fn missing_bytes(repo: &ostree::Repo, meta: &glib::VariantDict) -> Result<Missing> {
    let Some(sizes) = meta.lookup_value(
        "ostree.sizes",
        Some(glib::VariantTy::new("aay").expect("type")),
    ) else {
        bail!("the commit has no ostree.sizes: its size on disk is unknown, refusing it");
    };
    let mut total = Missing::default();
    for entry in sizes.iter() {
        let bytes = entry.fixed_array::<u8>().unwrap_or_default();
        let Some(e) = parse_size_entry(bytes) else {
            bail!("the commit's ostree.sizes metadata is malformed");
        };
        let objtype = match e.objtype {
            Some(2) => ostree::ObjectType::DirTree,
            Some(3) => ostree::ObjectType::DirMeta,
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

    /// ostree.sizes as libostree writes it into a real commit.
    #[test]
    fn sizes_of_a_real_commit() {
        let (t, repo, c) = crate::repo::commit::test_repo_with_commit(&[7u8; 5000]);
        let (commit, _) = repo.load_commit(&c).unwrap();
        let dict = glib::VariantDict::new(Some(&commit.child_value(0)));
        // Everything is present locally: nothing missing.
        assert_eq!(missing_bytes(&repo, &dict).unwrap(), Missing::default());
        // An empty repository lacks the 5000-byte file (and the tree objects).
        let empty = crate::repo::commit::open_or_create(&t.path().join("empty")).unwrap();
        let missing = missing_bytes(&empty, &dict).unwrap();
        assert!(missing.unpacked >= 5000, "{missing:?}");
        assert!(missing.archived > 0, "{missing:?}");
    }
}
