//! Downloads made whole or not at all (temp file, then rename), and the
//! sha256 of bytes and files.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use sha2::{Digest, Sha256};

use crate::util::progress;

/// Downloads `url` to `dest` through a temp file renamed into place.
pub fn download(url: &str, dest: &Path, size: Option<u64>) -> Result<()> {
    let resp = ureq::get(url)
        .timeout(std::time::Duration::from_secs(60))
        .call()
        .map_err(|e| match e {
            ureq::Error::Status(code, _) => anyhow!("downloading {url}: HTTP status {code}"),
            ureq::Error::Transport(t) => anyhow!("downloading {url}: mirror unreachable: {t}"),
        })?;
    let len = size.or_else(|| resp.header("Content-Length").and_then(|l| l.parse().ok()));
    let bar = progress::bytes_bar(len, &format!("fetching {url}"));
    let tmp = tmp_path(dest);
    let result = (|| -> Result<()> {
        let mut out =
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut reader = bar.wrap_read(resp.into_reader());
        std::io::copy(&mut reader, &mut out).with_context(|| format!("downloading {url}"))?;
        out.flush()?;
        out.sync_all()?;
        fs::rename(&tmp, dest).with_context(|| format!("renaming {} into place", tmp.display()))
    })();
    bar.finish_and_clear();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn tmp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The sha256 of a file's bytes, lowercase hex: the one file hash, which
/// reads no holes ([`crate::util::sparse::sha256_file`]).
pub use crate::util::sparse::sha256_file;

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn unreachable_mirror_names_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        // Port 9 on loopback: nothing listens, the connection is refused at once.
        let err = download(
            "http://127.0.0.1:9/debian/dists/trixie/InRelease",
            &dest,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("http://127.0.0.1:9/debian/dists/trixie/InRelease"),
            "{err}"
        );
        assert!(err.contains("unreachable"), "{err}");
        assert!(!dest.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn sha256_of_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        fs::write(&p, "abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
