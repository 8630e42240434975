//! apt's package lists for the install, given from the indexes hull has
//! already checked, so that mmdebstrap skips its own `apt-get update`.
//!
//! The packages stage ([`crate::build::archive`]) has just fetched each
//! source's `InRelease`, checked its signature with gpgv, and checked the
//! `Packages` index against the sha256 the signed text gives (keeping it
//! unpacked in the cache). mmdebstrap's update would fetch, check and unpack
//! the same files again (≈10 MB of xz for trixie). Instead they are put in
//! the tree's `/var/lib/apt/lists` under the names apt gives them
//! ([`uri_to_file_name`]), and mmdebstrap runs with `--skip=update`.
//!
//! The trust chain stays whole: an `InRelease` is placed only when its bytes
//! have the sha256 the build's plan recorded at its gpgv check (and its
//! signature is checked again here, for the signed text the index hashes are
//! read from), a `Packages` only with the sha256 and size that signed text
//! gives. The sources stay `signed-by` (not `trusted=yes`): apt finds each
//! one's `InRelease` in its lists, so it treats it as signed, and still
//! checks every `.deb` against the index. An `InRelease` past its
//! `Valid-Until` is not placed (apt's update would refuse it).
//!
//! All or nothing: when any source cannot be given (an index the cache does
//! not hold unpacked, a file changed since its check), no file is placed and
//! mmdebstrap runs its update as before; the reason is logged at debug level.
//! mmdebstrap's cleanup empties the lists either way.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::build::archive::{self, PackagePlan};
use crate::manifest::Arch;

/// Characters apt's `URItoFileName` %-quotes (besides bytes ≤ 0x20 and
/// ≥ 0x7f), as apt's `strutl.cc` lists them.
const QUOTED: &str = "\\|{}[]<>\"^~_=!@#$%^&*";

/// The file name apt gives, in `/var/lib/apt/lists`, to what it fetches
/// from `uri` (apt's `URItoFileName`): the scheme and any `user:password@`
/// dropped, the characters apt quotes (`QUOTED`) and bytes outside
/// `!`..`~` written `%xx` (lowercase hex), then each `/` made `_`.
/// `http://deb.debian.org/debian/dists/trixie/InRelease` →
/// `deb.debian.org_debian_dists_trixie_InRelease`.
pub fn uri_to_file_name(uri: &str) -> String {
    // The scheme ends at the first ':' (apt's URI parser).
    let rest = uri.split_once(':').map_or(uri, |(_, r)| r);
    let rest = match rest.strip_prefix("//") {
        Some(r) => {
            let (authority, path) = r.find('/').map_or((r, ""), |i| r.split_at(i));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{host}{path}")
        }
        None => rest.to_string(),
    };
    let mut out = String::with_capacity(rest.len());
    for b in rest.bytes() {
        if b <= 0x20 || b >= 0x7f || QUOTED.as_bytes().contains(&b) {
            out.push_str(&format!("%{b:02x}"));
        } else if b == b'/' {
            out.push('_');
        } else {
            out.push(b as char);
        }
    }
    out
}

/// The lists names of a signed source `mirror suite main`: its `InRelease`
/// and its uncompressed `Packages` of `arch`.
pub fn source_names(mirror: &str, suite: &str, arch: Arch) -> (String, String) {
    let archive = archive::Archive {
        mirror: mirror.to_string(),
        suite: suite.to_string(),
        arch,
    };
    (
        uri_to_file_name(&archive.url("InRelease")),
        uri_to_file_name(&archive.url(&archive.plain_packages_path())),
    )
}

/// The lists name of the `Packages` of the flat local repository in `dir`
/// (`deb [trusted=yes] copy://DIR ./`, see [`super::local_repo`]).
pub fn local_repo_name(dir: &Path) -> String {
    uri_to_file_name(&format!(
        "copy://{}/./Packages",
        dir.display().to_string().trim_end_matches('/')
    ))
}

/// One file to place: its lists name, where hull keeps it, and the sha256
/// and size it must have (`None` for the local repository's index, which
/// hull itself wrote for this build from `.deb`s it checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFile {
    pub name: String,
    pub from: PathBuf,
    pub signed: Option<(String, u64)>,
}

/// The files to place for `plan`, from the InRelease files and unpacked
/// indexes under `cache`, checked as the module says (signatures against
/// `keyring`); `now` (unix seconds) is compared with each `Valid-Until`.
/// The local repository's index (in `local_repo`) comes last. Errors say
/// why a source cannot be given (the caller then lets mmdebstrap update).
pub fn plan_files(
    plan: &PackagePlan,
    cache: &Path,
    local_repo: Option<&Path>,
    keyring: &Path,
    now: i64,
) -> Result<Vec<ListFile>> {
    let mut files = Vec::new();
    for archive::SignedSource {
        url: mirror,
        suite,
        sha256: sha,
        ..
    } in plan.signed_sources()
    {
        let release = archive::release_path(cache, &suite);
        let bytes = fs::read(&release).with_context(|| format!("reading {}", release.display()))?;
        if archive::sha256_hex(&bytes) != sha {
            bail!(
                "{} changed since the build checked it (another build fetched it again?)",
                release.display()
            );
        }
        let source = archive::Archive {
            mirror: mirror.clone(),
            suite: suite.clone(),
            arch: plan.arch,
        };
        let url = source.url("InRelease");
        let body = archive::verify_signature(&release, keyring, &url)?;
        let parsed =
            archive::parse_release(&body, &sha).with_context(|| format!("parsing {url}"))?;
        if let Some(until) = &parsed.valid_until {
            let t = crate::build::reproducible::parse_release_date(until)?;
            if t < now {
                bail!("{url} is past its Valid-Until ({until})");
            }
        }
        let rel = source.plain_packages_path();
        let (psha, psize) = parsed
            .files
            .get(&rel)
            .ok_or_else(|| anyhow!("{url} lists no uncompressed {rel}"))?;
        let (release_name, packages_name) = source_names(&mirror, &suite, plan.arch);
        files.push(ListFile {
            name: release_name,
            from: release,
            signed: Some((sha, bytes.len() as u64)),
        });
        files.push(ListFile {
            name: packages_name,
            from: archive::unpacked_path(cache, psha),
            signed: Some((psha.clone(), *psize)),
        });
    }
    if let Some(dir) = local_repo {
        files.push(ListFile {
            name: local_repo_name(dir),
            from: dir.join("Packages"),
            signed: None,
        });
    }
    Ok(files)
}

/// Writes `files` into `dir` (emptied first) under their lists names, each
/// checked against its sha256 and size as it is read: the bytes written are
/// the bytes checked. Errors name the file that is missing or differs.
pub fn stage(files: &[ListFile], dir: &Path) -> Result<()> {
    super::remove_tree(dir)?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for f in files {
        let bytes = fs::read(&f.from).with_context(|| format!("reading {}", f.from.display()))?;
        if let Some((sha, size)) = &f.signed {
            let got = archive::sha256_hex(&bytes);
            if got != *sha || bytes.len() as u64 != *size {
                bail!(
                    "{} is {} bytes with sha256 {got}, not the signed {size} bytes with sha256 {sha}",
                    f.from.display(),
                    bytes.len()
                );
            }
        }
        fs::write(dir.join(&f.name), &bytes)
            .with_context(|| format!("writing {}", dir.join(&f.name).display()))?;
    }
    Ok(())
}

/// Puts the lists of `plan` in `dir` for the install's setup hook; returns
/// `Some(dir)`, or `None` (debug log saying why, `dir` removed) when any
/// source cannot be given, and mmdebstrap then updates itself.
pub fn prepare(
    plan: &PackagePlan,
    cache: &Path,
    local_repo: Option<&Path>,
    dir: &Path,
) -> Option<PathBuf> {
    let t = std::time::Instant::now();
    let now = jiff::Timestamp::now().as_second();
    let staged = plan_files(
        plan,
        cache,
        local_repo,
        Path::new(archive::DEBIAN_KEYRING),
        now,
    )
    .and_then(|files| stage(&files, dir).map(|()| files));
    match staged {
        Ok(files) => {
            log::debug!(
                "apt lists given from the checked indexes ({} files, {:.1} s): \
                 mmdebstrap skips apt update",
                files.len(),
                t.elapsed().as_secs_f64()
            );
            Some(dir.to_path_buf())
        }
        Err(e) => {
            log::debug!("apt lists not given, mmdebstrap runs apt update: {e:#}");
            let _ = super::remove_tree(dir);
            None
        }
    }
}

#[cfg(test)]
#[path = "apt_lists_tests.rs"]
mod tests;
