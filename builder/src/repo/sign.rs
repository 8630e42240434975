//! ed25519 signatures on commits, stored the way `ostree sign` stores them.
//!
//! A signature covers the commit object's bytes (the serialized commit
//! GVariant, whose sha256 is the commit checksum) and lives in the commit's
//! detached metadata under `ostree.sign.ed25519`, an `aay` of 64-byte
//! signatures. Key files use ostree's format too: base64, one key per line;
//! a public key is 32 bytes, a secret key 64 (libsodium's seed ‖ public key).
//! So an ostree built with libsodium verifies hull's signatures, and keys made
//! by `ostree sign` work with hull.
//!
//! hull verifies in Rust rather than through libostree because Debian's
//! libostree (bookworm's on the build host, trixie's in the image) is built
//! without an ed25519 engine.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use ostree::glib;
use ostree::prelude::*;
use sha2::{Digest, Sha256};

/// The detached-metadata key ostree uses for ed25519 signatures.
pub const META_KEY: &str = "ostree.sign.ed25519";

/// Why a commit's signature was not accepted. Callers match on it to tell
/// "unsigned" from "signed by someone else".
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("commit {0} is not signed (no {META_KEY} in its detached metadata)")]
    Unsigned(String),
    #[error("commit {commit} has {signatures} signature(s), none by the {keys} trusted key(s)")]
    Untrusted {
        commit: String,
        signatures: usize,
        keys: usize,
    },
    #[error("commit {commit}: {reason}")]
    Malformed { commit: String, reason: String },
}

/// A secret key loaded from its file.
pub struct SecretKey {
    key: SigningKey,
    pub path: PathBuf,
}

impl std::fmt::Debug for SecretKey {
    // Never prints the key itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.path.display())
    }
}

impl SecretKey {
    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The 64-byte ed25519 signature of `data`.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        self.key.sign(data).to_bytes().to_vec()
    }
}

/// Makes a key pair from 32 bytes of the kernel's randomness.
pub fn generate() -> Result<SigningKey> {
    let mut seed = [0u8; 32];
    let mut filled = 0;
    while filled < seed.len() {
        filled +=
            rustix::rand::getrandom(&mut seed[filled..], rustix::rand::GetRandomFlags::empty())
                .context("reading random bytes from the kernel")?;
    }
    Ok(SigningKey::from_bytes(&seed))
}

/// The secret key as ostree writes it: base64 of seed ‖ public key.
pub fn secret_text(key: &SigningKey) -> String {
    B64.encode(key.to_keypair_bytes()) + "\n"
}

/// The public key as ostree writes it: base64 of its 32 bytes.
pub fn public_text(key: &VerifyingKey) -> String {
    B64.encode(key.to_bytes()) + "\n"
}

/// `hull keygen`: writes the secret key to `path` (mode 0600) and the public
/// key to `path.pub`. Refuses to overwrite either file.
pub fn write_keypair(path: &Path) -> Result<(PathBuf, PathBuf)> {
    let public_path = PathBuf::from(format!("{}.pub", path.display()));
    for p in [path, public_path.as_path()] {
        if p.symlink_metadata().is_ok() {
            bail!("{} already exists: not overwriting a key", p.display());
        }
    }
    let key = generate()?;
    write_new(path, secret_text(&key).as_bytes(), 0o600)?;
    write_new(
        &public_path,
        public_text(&key.verifying_key()).as_bytes(),
        0o644,
    )?;
    Ok((path.to_path_buf(), public_path))
}

/// Writes a file that must not exist yet, through a temp file in the same
/// directory, so that a failure leaves nothing half-written.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".hull-key")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", tmp.path().display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist_noclobber(path)
        .map_err(|e| anyhow!("writing {}: {}", path.display(), e.error))?;
    Ok(())
}

/// Reads a secret key file (one base64 line of 64 bytes).
pub fn load_secret(path: &Path) -> Result<SecretKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
    let line = key_lines(&text)
        .next()
        .with_context(|| format!("{}: no key in the file", path.display()))?;
    let bytes = B64
        .decode(line)
        .map_err(|e| anyhow!("{}: not base64: {e}", path.display()))?;
    let bytes: [u8; 64] = bytes.as_slice().try_into().map_err(|_| {
        anyhow!(
            "{}: a secret ed25519 key is 64 bytes, this one is {} (is it the .pub file?)",
            path.display(),
            bytes.len()
        )
    })?;
    let key = SigningKey::from_keypair_bytes(&bytes).map_err(|_| {
        anyhow!(
            "{}: the public half does not match the secret half",
            path.display()
        )
    })?;
    Ok(SecretKey {
        key,
        path: path.to_path_buf(),
    })
}

/// Parses public keys: base64 lines of 32 bytes; blank lines and `#`
/// comments are skipped. `origin` names the source in errors.
pub fn parse_public_keys(text: &str, origin: &str) -> Result<Vec<VerifyingKey>> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{origin}:{}", i + 1);
        let bytes = B64
            .decode(line)
            .map_err(|e| anyhow!("{at}: not a base64 key: {e}"))?;
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            anyhow!(
                "{at}: a public ed25519 key is 32 bytes, this one is {} (is it the secret key?)",
                bytes.len()
            )
        })?;
        keys.push(VerifyingKey::from_bytes(&bytes).map_err(|e| anyhow!("{at}: {e}"))?);
    }
    Ok(keys)
}

fn key_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// The signatures in a detached-metadata dictionary (`a{sv}`), serialized.
/// Empty input means no detached metadata at all.
pub fn signatures_in(detached: &[u8], commit: &str) -> Result<Vec<Vec<u8>>, SignatureError> {
    if detached.is_empty() {
        return Ok(Vec::new());
    }
    let v = glib::Variant::from_data_with_type(detached, glib::VariantTy::VARDICT);
    if !v.is_normal_form() {
        return Err(SignatureError::Malformed {
            commit: commit.to_string(),
            reason: "detached metadata is not a valid a{sv} dictionary".into(),
        });
    }
    signatures_of(&v, commit)
}

fn signatures_of(dict: &glib::Variant, commit: &str) -> Result<Vec<Vec<u8>>, SignatureError> {
    let dict = glib::VariantDict::new(Some(dict));
    let Some(sigs) = dict.lookup_value(META_KEY, None) else {
        return Ok(Vec::new());
    };
    if sigs.type_() != glib::VariantTy::new("aay").expect("valid type") {
        return Err(SignatureError::Malformed {
            commit: commit.to_string(),
            reason: format!("{META_KEY} is of type {}, not aay", sigs.type_()),
        });
    }
    Ok(sigs
        .iter()
        .map(|s| {
            s.fixed_array::<u8>()
                .map(<[u8]>::to_vec)
                .unwrap_or_default()
        })
        .collect())
}

/// Checks that `commit_bytes` hash to `commit` and that one of `signatures`
/// over them is by one of `keys`; returns the index of the key that signed.
pub fn verify(
    commit: &str,
    commit_bytes: &[u8],
    signatures: &[Vec<u8>],
    keys: &[VerifyingKey],
) -> Result<usize, SignatureError> {
    let actual = hex::encode(Sha256::digest(commit_bytes));
    if actual != commit {
        return Err(SignatureError::Malformed {
            commit: commit.to_string(),
            reason: format!("the commit object's sha256 is {actual}: it was altered or truncated"),
        });
    }
    if signatures.is_empty() {
        return Err(SignatureError::Unsigned(commit.to_string()));
    }
    if let Some(i) = signing_key(commit_bytes, signatures, keys) {
        return Ok(i);
    }
    Err(SignatureError::Untrusted {
        commit: commit.to_string(),
        signatures: signatures.len(),
        keys: keys.len(),
    })
}

/// The index of the first of `keys` that made one of `signatures` over
/// `data` (strict ed25519 verification), if any.
fn signing_key(data: &[u8], signatures: &[Vec<u8>], keys: &[VerifyingKey]) -> Option<usize> {
    signatures
        .iter()
        .filter_map(|s| Signature::from_slice(s).ok())
        .find_map(|sig| {
            keys.iter()
                .position(|k| k.verify_strict(data, &sig).is_ok())
        })
}

/// True when one of `signatures` over `data` is by one of `keys`.
pub fn verify_data(data: &[u8], signatures: &[Vec<u8>], keys: &[VerifyingKey]) -> bool {
    signing_key(data, signatures, keys).is_some()
}

/// Signs `checksum` in `repo`, adding to any signatures already there.
pub fn sign_commit(repo: &ostree::Repo, checksum: &str, key: &SecretKey) -> Result<()> {
    let commit = repo
        .load_variant(ostree::ObjectType::Commit, checksum)
        .with_context(|| format!("loading commit {checksum}"))?;
    let bytes = commit.data_as_bytes();
    let signature = key.key.sign(&bytes).to_bytes().to_vec();
    let existing = repo
        .read_commit_detached_metadata(checksum, ostree::gio::Cancellable::NONE)
        .with_context(|| format!("reading the detached metadata of {checksum}"))?;
    let dict = glib::VariantDict::new(existing.as_ref());
    let mut sigs = match &existing {
        Some(v) => signatures_of(v, checksum)?,
        None => Vec::new(),
    };
    if !sigs.contains(&signature) {
        sigs.push(signature);
    }
    dict.insert_value(META_KEY, &sigs.to_variant());
    repo.write_commit_detached_metadata(
        checksum,
        Some(&dict.end()),
        ostree::gio::Cancellable::NONE,
    )
    .with_context(|| format!("writing the signature of {checksum}"))?;
    Ok(())
}

/// Verifies a commit already in `repo` against `keys`.
pub fn verify_in_repo(repo: &ostree::Repo, checksum: &str, keys: &[VerifyingKey]) -> Result<usize> {
    let commit = repo
        .load_variant(ostree::ObjectType::Commit, checksum)
        .with_context(|| format!("loading commit {checksum}"))?;
    let detached = repo
        .read_commit_detached_metadata(checksum, ostree::gio::Cancellable::NONE)
        .with_context(|| format!("reading the detached metadata of {checksum}"))?;
    let sigs = match &detached {
        Some(v) => signatures_of(v, checksum)?,
        None => Vec::new(),
    };
    Ok(verify(checksum, &commit.data_as_bytes(), &sigs, keys)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_with_commit() -> (tempfile::TempDir, ostree::Repo, String) {
        crate::repo::commit::test_repo_with_commit(b"x")
    }

    #[test]
    fn keygen_writes_ostree_format_and_refuses_to_overwrite() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("hull.key");
        let (secret, public) = write_keypair(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let key = load_secret(&secret).unwrap();
        let pubs = parse_public_keys(&std::fs::read_to_string(&public).unwrap(), "pub").unwrap();
        assert_eq!(pubs, vec![key.public()]);
        assert_eq!(
            B64.decode(std::fs::read_to_string(&secret).unwrap().trim())
                .unwrap()
                .len(),
            64
        );
        let err = write_keypair(&path).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
    }

    #[test]
    fn key_file_errors_name_the_file_and_line() {
        let t = tempfile::tempdir().unwrap();
        let (secret, public) = write_keypair(&t.path().join("k")).unwrap();
        let err = load_secret(&public).unwrap_err().to_string();
        assert!(err.contains("is it the .pub file"), "{err}");
        let text = format!("# trusted\n\n{}", std::fs::read_to_string(&secret).unwrap());
        let err = parse_public_keys(&text, "keys.pub")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("keys.pub:3: "), "{err}");
        let err = parse_public_keys("not base64!\n", "k")
            .unwrap_err()
            .to_string();
        assert!(err.contains("k:1: not a base64 key"), "{err}");
        std::fs::write(t.path().join("empty"), "# nothing\n").unwrap();
        assert!(load_secret(&t.path().join("empty")).is_err());
    }

    /// A real repository: sign, read the signature back, verify against the
    /// right key, a wrong key and no signature; a tampered commit body fails.
    #[test]
    fn sign_and_verify_in_a_real_repo() {
        let (t, repo, c) = repo_with_commit();
        let good = load_secret(&write_keypair(&t.path().join("good")).unwrap().0).unwrap();
        let other = load_secret(&write_keypair(&t.path().join("other")).unwrap().0).unwrap();

        let err = verify_in_repo(&repo, &c, &[good.public()]).unwrap_err();
        assert_eq!(
            err.downcast_ref::<SignatureError>(),
            Some(&SignatureError::Unsigned(c.clone()))
        );

        sign_commit(&repo, &c, &other).unwrap();
        let err = verify_in_repo(&repo, &c, &[good.public()]).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<SignatureError>(),
            Some(SignatureError::Untrusted { signatures: 1, .. })
        ));

        sign_commit(&repo, &c, &good).unwrap();
        sign_commit(&repo, &c, &good).unwrap(); // idempotent
        assert_eq!(
            verify_in_repo(&repo, &c, &[other.public(), good.public()]).unwrap(),
            0
        );
        assert_eq!(verify_in_repo(&repo, &c, &[good.public()]).unwrap(), 0);

        // The file a server would hand out: same check on raw bytes.
        let (a, b) = c.split_at(2);
        let path = t.path().join(format!("repo/objects/{a}/{b}.commit"));
        let bytes = std::fs::read(&path).unwrap();
        let meta =
            std::fs::read(t.path().join(format!("repo/objects/{a}/{b}.commitmeta"))).unwrap();
        let sigs = signatures_in(&meta, &c).unwrap();
        assert_eq!(sigs.len(), 2);
        assert_eq!(verify(&c, &bytes, &sigs, &[good.public()]), Ok(0));
        let mut tampered = bytes.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(matches!(
            verify(&c, &tampered, &sigs, &[good.public()]),
            Err(SignatureError::Malformed { .. })
        ));
        assert!(matches!(
            verify(&c, &bytes[..bytes.len() / 2], &sigs, &[good.public()]),
            Err(SignatureError::Malformed { .. })
        ));
        assert_eq!(signatures_in(&[], &c), Ok(vec![]));
        assert!(signatures_in(b"\x01garbage", &c).is_err());
    }
}
