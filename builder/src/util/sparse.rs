//! The sha256 of a file, for every file hull hashes (downloads, agents,
//! images), without reading its holes: a sparse disk image is mostly holes.
//!
//! A 4 GiB raw image holds about 400 MiB of data; the rest are holes. A plain
//! read asks the kernel to zero-fill every page of every hole and copy it
//! out (about a second for 4 GiB on the project's machine, on top of the
//! hashing). Here the file's data segments are found with `lseek`'s
//! `SEEK_DATA`/`SEEK_HOLE` (Linux, every file system hull writes to), only
//! they are read, and each hole is fed to the hash as zeros from one buffer.
//! The digest is the same as `sha256sum`'s: every byte of the file counts.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Bytes hashed per call, and the size of the one zero buffer.
const CHUNK: usize = 1 << 20;

/// A file as data and holes, in order: `(offset, length, is_data)`, bytes.
/// A file system without `SEEK_DATA` support reports one data segment.
pub fn segments(file: &File, len: u64) -> std::io::Result<Vec<(u64, u64, bool)>> {
    let fd = rustix::fd::AsFd::as_fd(file);
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        let data = match rustix::fs::seek(fd, rustix::fs::SeekFrom::Data(pos as i64)) {
            Ok(d) => d.min(len),
            // ENXIO: no data at or after pos, the rest is one hole.
            Err(rustix::io::Errno::NXIO) => len,
            Err(e) => return Err(e.into()),
        };
        if data > pos {
            out.push((pos, data - pos, false));
        }
        if data >= len {
            break;
        }
        let hole = rustix::fs::seek(fd, rustix::fs::SeekFrom::Hole(data as i64))?.min(len);
        out.push((data, hole - data, true));
        pos = hole;
    }
    Ok(out)
}

/// The sha256 of the file at `path` (lowercase hex), its holes hashed as the
/// zeros they read as but never read. Errors name `path`.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let segments = segments(&file, len).with_context(|| format!("reading {}", path.display()))?;
    let mut hash = Sha256::new();
    let zeros = vec![0u8; CHUNK];
    let mut buf = vec![0u8; CHUNK];
    for (offset, length, is_data) in segments {
        let mut left = length;
        if !is_data {
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                hash.update(&zeros[..n]);
                left -= n as u64;
            }
            continue;
        }
        file.seek(SeekFrom::Start(offset))
            .with_context(|| format!("reading {}", path.display()))?;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            file.read_exact(&mut buf[..n])
                .with_context(|| format!("reading {} at byte {offset}", path.display()))?;
            hash.update(&buf[..n]);
            left -= n as u64;
        }
    }
    Ok(hex::encode(hash.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn plain_sha256(path: &Path) -> String {
        hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
    }

    /// Files of holes and data in every order hash as their bytes do.
    #[test]
    fn sparse_files_hash_as_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        // (file length, data written at offsets)
        let cases: &[(u64, &[u64])] = &[
            (0, &[]),
            (5, &[0]),
            (64 << 20, &[]),
            (64 << 20, &[0]),
            (64 << 20, &[(64 << 20) - 3]),
            (64 << 20, &[1 << 20, 9 << 20, 33 << 20]),
            (
                3 * CHUNK as u64 + 17,
                &[CHUNK as u64 - 1, 2 * CHUNK as u64 + 5],
            ),
        ];
        for (i, (len, writes)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("f{i}"));
            let f = File::create(&path).unwrap();
            f.set_len(*len).unwrap();
            for (j, at) in writes.iter().enumerate() {
                let bytes = vec![j as u8 + 1; 3];
                f.write_all_at(&bytes, *at).unwrap();
            }
            f.sync_all().unwrap();
            drop(f);
            assert_eq!(sha256_file(&path).unwrap(), plain_sha256(&path), "case {i}");
        }
    }

    #[test]
    fn holes_are_found_and_data_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let f = File::create(&path).unwrap();
        f.set_len(16 << 20).unwrap();
        f.write_all_at(&[7u8; 4096], 8 << 20).unwrap();
        f.sync_all().unwrap();
        let segs = segments(&f, 16 << 20).unwrap();
        // Every byte covered once, in order.
        let mut pos = 0;
        for (offset, length, _) in &segs {
            assert_eq!(*offset, pos);
            pos += length;
        }
        assert_eq!(pos, 16 << 20);
        // The write is inside a data segment, and the file is not all data
        // (tmpfs and ext4 both report holes).
        assert!(segs
            .iter()
            .any(|&(o, l, d)| d && o <= 8 << 20 && o + l >= (8 << 20) + 4096));
        assert!(segs.iter().any(|&(_, _, d)| !d), "{segs:?}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = sha256_file(Path::new("/nonexistent/disk.raw")).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/disk.raw"), "{e:#}");
    }
}
