//! Content checksums of a tree's regular files, by inode, kept between
//! commits of a tree that stays on disk (the installed tree's working copy,
//! `build/rootfs/working_copy.rs`), so that a child commit reads only the
//! files that changed (issue 18, goal 1).
//!
//! An entry is the file's OSTree content checksum (header, extended
//! attributes and bytes, as `ostree_checksum_file_at` gives it) and the
//! file's inode, ctime and size when it was computed. Any change to the
//! file's contents, mode, owner or attributes sets its ctime to the time of
//! the change, and user space cannot set it back: a file with the recorded
//! inode and ctime is unchanged. As in git's index ("racily clean" files), a
//! file changed within the same clock tick as its checksum could keep its
//! ctime, so an entry is recorded only for a file whose ctime is at least
//! [`SETTLED_NANOS`] older than the commit that computed it (the coarse
//! clock file systems stamp ctimes with ticks in milliseconds).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// How much older than the commit a file's ctime must be for its checksum
/// to be kept, nanoseconds.
pub const SETTLED_NANOS: i128 = 500_000_000;

/// What identifies an unchanged file: inode, ctime (s, ns), size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileKey {
    pub ino: u64,
    pub ctime: (i64, i64),
    pub size: u64,
}

impl FileKey {
    /// The key of `st` (an `lstat` of the file).
    pub fn of(st: &rustix::fs::Stat) -> Self {
        FileKey {
            ino: st.st_ino,
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
            size: st.st_size as u64,
        }
    }
}

/// The checksums of one tree's files, all on device `dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecksumCache {
    pub dev: u64,
    pub entries: Vec<(FileKey, String)>,
    #[serde(skip)]
    index: HashMap<FileKey, usize>,
}

impl ChecksumCache {
    /// An empty cache for a tree on `dev`.
    pub fn new(dev: u64) -> Self {
        ChecksumCache {
            dev,
            ..Default::default()
        }
    }

    /// The cache kept at `path`; empty when there is none or it cannot be
    /// read (said at -v): the commit then reads every file, as it would anyway.
    pub fn load(path: &Path) -> Self {
        let read = std::fs::read(path)
            .map_err(anyhow::Error::from)
            .and_then(|b| Ok(serde_json::from_slice::<ChecksumCache>(&b)?));
        match read {
            Ok(mut c) => {
                c.index = c
                    .entries
                    .iter()
                    .enumerate()
                    .map(|(i, (k, _))| (*k, i))
                    .collect();
                c
            }
            Err(e) => {
                log::debug!("no file checksums from {}: {e:#}", path.display());
                Self::default()
            }
        }
    }

    /// The checksum recorded for the file `st` describes, on device `dev`.
    pub fn get(&self, dev: u64, st: &rustix::fs::Stat) -> Option<&str> {
        if dev != self.dev {
            return None;
        }
        self.index
            .get(&FileKey::of(st))
            .map(|&i| self.entries[i].1.as_str())
    }

    /// Records `checksum` for the file `st` describes, if its ctime is
    /// settled: [`SETTLED_NANOS`] before `now` (nanoseconds since the epoch).
    pub fn record(&mut self, st: &rustix::fs::Stat, checksum: &str, now: i128) {
        let key = FileKey::of(st);
        let ctime = key.ctime.0 as i128 * 1_000_000_000 + key.ctime.1 as i128;
        if ctime > now - SETTLED_NANOS || self.index.contains_key(&key) {
            return;
        }
        self.index.insert(key, self.entries.len());
        self.entries.push((key, checksum.to_string()));
    }

    /// How many files it knows.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it knows none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The cache as JSON, what [`ChecksumCache::load`] reads.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a cache serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(p: &Path) -> rustix::fs::Stat {
        rustix::fs::lstat(p).unwrap()
    }

    /// A settled file is found again by its key, across a save and load;
    /// a file changed since (new ctime), a fresh file (not settled) and
    /// another device are not.
    #[test]
    fn settled_files_are_found_and_changed_ones_are_not() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::write(&a, b"one").unwrap();
        std::fs::write(&b, b"two").unwrap();
        let (sa, sb) = (stat(&a), stat(&b));
        let nanos =
            |s: &rustix::fs::Stat| s.st_ctime as i128 * 1_000_000_000 + s.st_ctime_nsec as i128;
        let now = nanos(&sa) + SETTLED_NANOS;
        let mut c = ChecksumCache::new(sa.st_dev);
        c.record(&sa, "aaaa", now);
        c.record(&sb, "bbbb", nanos(&sb) + SETTLED_NANOS - 1); // not settled
        assert_eq!(c.len(), 1);
        let saved = t.path().join("cache.json");
        std::fs::write(&saved, c.to_json()).unwrap();
        let c = ChecksumCache::load(&saved);
        assert_eq!(c.get(sa.st_dev, &sa), Some("aaaa"));
        assert_eq!(c.get(sa.st_dev + 1, &sa), None);
        assert_eq!(c.get(sb.st_dev, &sb), None);
        // A change (here the mode) moves the ctime: the entry no longer matches.
        std::thread::sleep(std::time::Duration::from_millis(20));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(c.get(sa.st_dev, &stat(&a)), None);
        // A file that is not there, or not a cache, reads as empty.
        assert!(ChecksumCache::load(&t.path().join("none")).is_empty());
        assert!(ChecksumCache::load(&a).is_empty());
    }
}
