//! The suite's `InRelease` file: downloaded, its OpenPGP signature checked
//! with `gpgv`, and the signed text (date, sha256 of each index) parsed.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use super::{download, sha256_hex, Archive};
use crate::util::cmd::Cmd;

/// A verified InRelease file.
#[derive(Debug)]
pub struct Release {
    pub date: String,
    /// `Valid-Until:`, when the file has one.
    pub valid_until: Option<String>,
    pub sha256: String,
    /// `SHA256:` section: path → (sha256, size).
    pub files: BTreeMap<String, (String, u64)>,
}

/// Downloads `InRelease` and checks its signature with gpgv against `keyring`.
pub fn fetch_release(archive: &Archive, cache: &Path, keyring: &Path) -> Result<Release> {
    let url = archive.url("InRelease");
    let path = release_path(cache, &archive.suite);
    let dir = path.parent().unwrap_or(cache);
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    download(&url, &path, None)?;
    let signed = verify_signature(&path, keyring, &url)?;
    let file = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_release(&signed, &sha256_hex(&file)).with_context(|| format!("parsing {url}"))
}

/// Where [`fetch_release`] keeps the InRelease of `suite` under `cache`, as
/// fetched, byte for byte (replaced by each fetch).
pub fn release_path(cache: &Path, suite: &str) -> std::path::PathBuf {
    cache.join("dists").join(suite).join("InRelease")
}

/// Checks an inline-signed file with gpgv and returns the text the signature
/// covers, as gpgv itself extracts it (`--output -`): only that is read, never
/// what an attacker might add around the signed part. The error names the
/// file and URL.
pub fn verify_signature(path: &Path, keyring: &Path, url: &str) -> Result<String> {
    if !keyring.is_file() {
        bail!(
            "keyring {} not found: install the Debian package debian-archive-keyring",
            keyring.display()
        );
    }
    Cmd::new("gpgv")
        .arg("--keyring")
        .arg(keyring)
        .args(["--output", "-"])
        .arg(path)
        .output_string()
        .with_context(|| format!("signature check of {url} ({}) failed", path.display()))
}

/// Parses the signed text of an InRelease file, as [`verify_signature`]
/// returns it; `sha256` is the whole file's (lowercase hex).
pub fn parse_release(body: &str, sha256: &str) -> Result<Release> {
    let mut date = None;
    let mut valid_until = None;
    let mut files = BTreeMap::new();
    let mut in_sha256 = false;
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix(' ') {
            if in_sha256 {
                let mut it = rest.split_whitespace();
                if let (Some(h), Some(size), Some(name)) = (it.next(), it.next(), it.next()) {
                    let size = size
                        .parse()
                        .with_context(|| format!("bad size in `{line}`"))?;
                    files.insert(name.to_string(), (h.to_string(), size));
                }
            }
            continue;
        }
        in_sha256 = line.starts_with("SHA256:");
        if let Some(d) = line.strip_prefix("Date:") {
            date = Some(d.trim().to_string());
        }
        if let Some(v) = line.strip_prefix("Valid-Until:") {
            valid_until = Some(v.trim().to_string());
        }
    }
    if files.is_empty() {
        bail!("no SHA256 section");
    }
    Ok(Release {
        date: date.ok_or_else(|| anyhow!("no Date field"))?,
        valid_until,
        sha256: sha256.to_string(),
        files,
    })
}

/// A signing key made for a test, in a GnuPG home of its own under a
/// temporary directory: its public keyring for gpgv, and clear-signing.
#[cfg(test)]
pub(crate) struct TestSigner {
    home: std::path::PathBuf,
    /// The public key, exported (what gpgv's `--keyring` reads).
    pub keyring: std::path::PathBuf,
}

#[cfg(test)]
impl TestSigner {
    /// Makes an ed25519 key under `dir` (`dir/gnupg`, `dir/keyring.gpg`).
    pub(crate) fn new(dir: &Path) -> TestSigner {
        let home = dir.join("gnupg");
        fs::create_dir_all(&home).unwrap();
        let signer = TestSigner {
            home,
            keyring: dir.join("keyring.gpg"),
        };
        signer.gpg(&[
            "--quick-gen-key",
            "hull test <t@hull.invalid>",
            "ed25519",
            "sign",
            "never",
        ]);
        fs::write(&signer.keyring, signer.gpg(&["--export"])).unwrap();
        signer
    }

    /// Writes `plain` clear-signed to `signed`, as an InRelease is.
    pub(crate) fn clearsign(&self, plain: &Path, signed: &Path) {
        self.gpg(&[
            "--clearsign",
            "--output",
            signed.to_str().unwrap(),
            plain.to_str().unwrap(),
        ]);
    }

    fn gpg(&self, args: &[&str]) -> Vec<u8> {
        Cmd::new("gpg")
            .env("GNUPGHOME", &self.home)
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_parsing_reads_the_sha256_section() {
        let text = concat!(
            "Origin: Debian\n",
            "Date: Sat, 12 Sep 2026 07:55:41 UTC\nMD5Sum:\n 0123 10 main/binary-amd64/Packages.xz\n",
            "SHA256:\n abcd 10 main/binary-amd64/Packages.xz\n efgh 20 main/binary-arm64/Packages.xz\n",
        );
        let r = parse_release(text, "s").unwrap();
        assert_eq!(r.date, "Sat, 12 Sep 2026 07:55:41 UTC");
        assert_eq!(
            r.files["main/binary-amd64/Packages.xz"],
            ("abcd".to_string(), 10)
        );
        assert_eq!(r.files.len(), 2);
        assert!(parse_release("Date: x\n", "s").is_err());
    }

    /// A real gpgv check against a keyring made in the test: a good signature
    /// passes, a changed byte fails with an error naming the URL.
    #[test]
    fn gpgv_accepts_good_and_refuses_tampered_signature() {
        let dir = tempfile::tempdir().unwrap();
        let signer = TestSigner::new(dir.path());
        let keyring = signer.keyring.clone();
        let plain = dir.path().join("Release");
        fs::write(
            &plain,
            "Date: today\nSHA256:\n abcd 10 main/binary-amd64/Packages.xz\n",
        )
        .unwrap();
        let signed = dir.path().join("InRelease");
        signer.clearsign(&plain, &signed);
        // What follows the signature is not signed: gpgv's output leaves it out.
        let mut text = fs::read_to_string(&signed).unwrap();
        text.push_str("SHA256:\n ffff 99 main/binary-amd64/Packages.xz\n");
        fs::write(&signed, &text).unwrap();
        let body = verify_signature(&signed, &keyring, "http://m/InRelease").unwrap();
        assert_eq!(body, fs::read_to_string(&plain).unwrap());
        let r = parse_release(&body, "s").unwrap();
        assert_eq!(
            r.files["main/binary-amd64/Packages.xz"],
            ("abcd".to_string(), 10)
        );

        let text = fs::read_to_string(&signed).unwrap().replace("abcd", "abce");
        fs::write(&signed, text).unwrap();
        let err = format!(
            "{:#}",
            verify_signature(&signed, &keyring, "http://m/InRelease").unwrap_err()
        );
        assert!(
            err.contains("signature check of http://m/InRelease"),
            "{err}"
        );
        assert!(err.contains("BAD signature"), "{err}");
    }
}
