//! The `Packages` index kept unpacked in the build's cache, so that a build
//! whose archive has not moved reads it without unpacking the `.xz` again
//! (for trixie's main index: 9.7 MB of xz, 57 MB unpacked; the unpacking
//! was most of the packages stage, about a second).
//!
//! The signed InRelease gives the sha256 and size of the uncompressed
//! `Packages` beside those of `Packages.xz`: the unpacked copy is named by
//! that sha256 and checked against it each time it is read, as the `.xz`
//! is. An index whose InRelease lists no uncompressed file is read from the
//! `.xz` as before.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{sha256_hex, Release};
use crate::util::write_atomic;

/// The signed `(sha256, size)` of the uncompressed index beside `xz_rel`
/// (`main/binary-amd64/Packages.xz` → `main/binary-amd64/Packages`), when
/// `release` lists it.
pub fn signed<'a>(release: &'a Release, xz_rel: &str) -> Option<(&'a str, u64)> {
    let plain = xz_rel.strip_suffix(".xz")?;
    release
        .files
        .get(plain)
        .map(|(sha, size)| (sha.as_str(), *size))
}

/// Where [`super::fetch_index`] keeps, under `cache`, the unpacked index
/// whose signed sha256 is `sha` (there only once it has been read).
pub fn unpacked_path(cache: &Path, sha: &str) -> PathBuf {
    path(&cache.join(super::index::INDEXES), sha)
}

/// Where the unpacked index of sha256 `sha` is kept in `dir`.
fn path(dir: &Path, sha: &str) -> PathBuf {
    dir.join(format!("{sha}-Packages"))
}

/// The bytes of the unpacked index kept in `dir`, when it is there with the
/// signed `sha` and `size`; `None` when it is not. A copy that does not
/// match (cut short, changed) is removed, so the caller unpacks it again.
pub fn read_cached(dir: &Path, sha: &str, size: u64) -> Result<Option<Vec<u8>>> {
    let path = path(dir, sha);
    match fs::metadata(&path) {
        Ok(m) if m.len() == size => {}
        Ok(_) => return remove_stale(&path).map(|()| None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    if sha256_hex(&bytes) != sha {
        return remove_stale(&path).map(|()| None);
    }
    Ok(Some(bytes))
}

fn remove_stale(path: &Path) -> Result<()> {
    log::info!(
        "{} does not match its signed sha256: unpacking it again",
        path.display()
    );
    fs::remove_file(path).with_context(|| format!("removing {}", path.display()))
}

/// Unpacks `xz` (already checked against its signed sha256), checks the
/// result against the signed `sha` and `size` of the uncompressed index and
/// keeps it in `dir` (temp file, fsync, rename). Returns the bytes. A
/// mismatch is an error naming `url` (the `.xz`'s) and both hashes; nothing
/// is kept then.
pub fn unpack_and_keep(xz: &Path, dir: &Path, sha: &str, size: u64, url: &str) -> Result<Vec<u8>> {
    let file = fs::File::open(xz).with_context(|| format!("opening {}", xz.display()))?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    xz2::read::XzDecoder::new(file)
        .read_to_end(&mut bytes)
        .with_context(|| format!("unpacking {}", xz.display()))?;
    let got = sha256_hex(&bytes);
    if got != sha || bytes.len() as u64 != size {
        bail!(
            "{url} unpacks to {} bytes with sha256 {got}, but the signed InRelease says \
             {size} bytes with sha256 {sha} for the uncompressed index",
            bytes.len()
        );
    }
    write_atomic(&path(dir, sha), &bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::Write;

    const TEXT: &[u8] = b"Package: a\nVersion: 1\n\nPackage: b\nVersion: 2\n";

    fn xz_of(dir: &Path, bytes: &[u8]) -> PathBuf {
        let p = dir.join("Packages.xz");
        let mut enc = xz2::write::XzEncoder::new(fs::File::create(&p).unwrap(), 6);
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap();
        p
    }

    #[test]
    fn signed_finds_the_uncompressed_entry() {
        let mut files = BTreeMap::new();
        files.insert("main/binary-amd64/Packages".to_string(), ("aa".into(), 7));
        files.insert(
            "main/binary-amd64/Packages.xz".to_string(),
            ("bb".into(), 3),
        );
        let r = Release {
            date: "d".into(),
            valid_until: None,
            sha256: "s".into(),
            files,
        };
        assert_eq!(signed(&r, "main/binary-amd64/Packages.xz"), Some(("aa", 7)));
        assert_eq!(signed(&r, "main/binary-arm64/Packages.xz"), None);
        assert_eq!(signed(&r, "main/binary-amd64/Packages"), None);
    }

    /// Unpacked once, then read from the cache; a changed or cut copy is
    /// removed and not used; a wrong signed hash is an error naming the URL
    /// that keeps nothing.
    #[test]
    fn unpacked_copy_is_kept_checked_and_refused_when_changed() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("indexes");
        fs::create_dir(&dir).unwrap();
        let xz = xz_of(t.path(), TEXT);
        let sha = sha256_hex(TEXT);
        let size = TEXT.len() as u64;
        assert_eq!(read_cached(&dir, &sha, size).unwrap(), None);
        let url = "http://m/debian/dists/trixie/main/binary-amd64/Packages.xz";
        assert_eq!(unpack_and_keep(&xz, &dir, &sha, size, url).unwrap(), TEXT);
        assert_eq!(
            read_cached(&dir, &sha, size).unwrap().as_deref(),
            Some(TEXT)
        );

        let kept = path(&dir, &sha);
        fs::write(&kept, TEXT.to_ascii_uppercase()).unwrap();
        assert_eq!(read_cached(&dir, &sha, size).unwrap(), None);
        assert!(!kept.exists(), "a changed copy is removed");
        fs::write(&kept, &TEXT[..10]).unwrap();
        assert_eq!(read_cached(&dir, &sha, size).unwrap(), None);
        assert!(!kept.exists(), "a cut copy is removed");

        let wrong = "0".repeat(64);
        let err = unpack_and_keep(&xz, &dir, &wrong, size, url)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(url) && err.contains(&wrong) && err.contains(&sha),
            "{err}"
        );
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "nothing kept");
    }
}
