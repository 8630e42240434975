//! `hull update`: fetch the ref's newest commit, verify its signature,
//! check it fits, pull it, deploy it with a limited number of boot tries.
//!
//! The order is what makes it safe. Nothing touches the host's repository
//! before the commit object, fetched over plain HTTP, hashes to the checksum
//! the ref names and carries a signature by a trusted key; the pull then
//! fetches exactly that commit, and libostree checks every object's
//! checksum against the signed tree. Space on the root and the ESP is
//! checked from the signed metadata before any object is downloaded.

use std::io::Read;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;
use serde::Serialize;

use super::{esp, key_of, Host};
use crate::commit::{META_BOOT_BYTES, META_KARGS};
use crate::sign;

/// What `hull update` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    /// Only say whether an update is available.
    pub check: bool,
    /// Download and verify, but do not deploy.
    pub download_only: bool,
    /// Accept a commit older than the booted one.
    pub allow_downgrade: bool,
}

/// What `hull update` did.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateReport {
    pub remote: String,
    pub url: String,
    #[serde(rename = "ref")]
    pub ostree_ref: String,
    pub booted: String,
    pub available: Option<String>,
    pub version: Option<String>,
    /// What happened: up-to-date, available, downloaded, deployed.
    pub result: String,
    pub boot_tries: Option<u32>,
    pub esp: Option<esp::SyncReport>,
}

/// A commit fetched from the remote and verified.
struct RemoteCommit {
    checksum: String,
    variant: glib::Variant,
}

/// Bytes kept free on top of what an update needs: what libostree keeps
/// free by default is 3 % of the disk; this is the margin on top of it.
const ROOT_MARGIN: u64 = 64 << 20;
const ESP_MARGIN: u64 = 1 << 20;

pub fn run(host: &mut Host, opts: &UpdateOptions) -> Result<UpdateReport> {
    let (remote, ostree_ref) = origin_refspec(&host.booted)?;
    let repo = host.sysroot.repo();
    let url = repo
        .remote_get_url(&remote)
        .with_context(|| format!("reading the URL of remote {remote} (/etc/ostree/remotes.d)"))?
        .to_string();
    let booted = host.booted.csum().to_string();
    let mut report = UpdateReport {
        remote: remote.clone(),
        url: url.clone(),
        ostree_ref: ostree_ref.clone(),
        booted: booted.clone(),
        available: None,
        version: None,
        result: String::new(),
        boot_tries: None,
        esp: None,
    };

    let keys_path = host.paths.lib.join("trusted.ed25519");
    let keys_text = std::fs::read_to_string(&keys_path)
        .with_context(|| format!("reading the trusted keys {}", keys_path.display()))?;
    let keys = sign::parse_public_keys(&keys_text, &keys_path.display().to_string())?;
    if keys.is_empty() {
        bail!(
            "{}: no trusted key: refusing every update",
            keys_path.display()
        );
    }

    let fetched = fetch_verified(&url, &ostree_ref, &keys)?;
    let checksum = fetched.checksum.clone();
    let meta = glib::VariantDict::new(Some(&fetched.variant.child_value(0)));
    report.version = meta.lookup::<String>("version").ok().flatten();
    report.available = Some(checksum.clone());
    if checksum == booted {
        report.result = "up-to-date".into();
        return Ok(report);
    }
    // OSTree reuses its boot links between deployments whose kernel,
    // arguments and version are all equal, which would let an old boot
    // entry start the new commit before hull has given it boot tries:
    // every build must carry its own version.
    let booted_version = host.version_of(&booted);
    if report.version.is_some() && report.version == booted_version {
        bail!(
            "{url}: {ostree_ref} is at {checksum}, a different commit with the same version {} as the booted one: \
             refusing it (bump `version` in the manifest for every build)",
            report.version.as_deref().unwrap_or_default()
        );
    }
    let timestamp = ostree::commit_get_timestamp(&fetched.variant);
    if let Ok((booted_commit, _)) = repo.load_commit(&booted) {
        let booted_ts = ostree::commit_get_timestamp(&booted_commit);
        if timestamp < booted_ts && !opts.allow_downgrade {
            bail!(
                "{url}: {ostree_ref} is at {checksum}, which is older than the booted commit {booted}: \
                 refusing a downgrade (--allow-downgrade to take it anyway)"
            );
        }
    }
    if opts.check {
        report.result = "available".into();
        return Ok(report);
    }

    // Space, before anything is downloaded.
    let missing = missing_bytes(&repo, &meta)?;
    let sysroot_dir = host.sysroot_dir()?;
    let root_free = esp::free_bytes(&sysroot_dir)?;
    let esp_dir = host.esp_dir()?;
    let boot_bytes = meta
        .lookup::<u64>(META_BOOT_BYTES)
        .ok()
        .flatten()
        .unwrap_or(0);
    let esp_free = esp::free_bytes(&esp_dir)?;
    check_space(
        &Space {
            needed: missing,
            free: root_free,
            margin: ROOT_MARGIN,
        },
        &Space {
            needed: boot_bytes,
            free: esp_free,
            margin: ESP_MARGIN,
        },
        &host.paths.sysroot.display().to_string(),
        &host.paths.esp.display().to_string(),
    )?;

    host.lock()?;
    log::info!("update: pulling {checksum}");
    pull(&repo, &remote, &ostree_ref, &checksum)?;
    if opts.download_only {
        report.result = "downloaded".into();
        return Ok(report);
    }

    // Deploy: reuse a deployment of this commit if an interrupted update
    // left one, else make one with the booted deployment's /etc merged in.
    let osname = host.osname();
    let existing = host
        .deployments()
        .into_iter()
        .find(|d| d.csum() == checksum.as_str() && d.osname() == osname.as_str());
    let new = match existing {
        Some(d) => d,
        None => {
            log::info!("update: deploying {checksum}");
            let kargs = kernel_args(&host.booted, &meta);
            let kargs: Vec<&str> = kargs.iter().map(String::as_str).collect();
            let origin = host.booted.origin();
            host.sysroot
                .deploy_tree(
                    Some(&osname),
                    &checksum,
                    origin.as_ref(),
                    Some(&host.booted),
                    &kargs,
                    gio::Cancellable::NONE,
                )
                .with_context(|| format!("deploying {checksum}"))?
        }
    };
    let booted_dep = host.booted.clone();
    let tries = host.config.boot_tries;
    let new_key = key_of(&new);
    let sync = host.write_deployments(&[new, booted_dep], Some((&new_key, tries)))?;
    report.boot_tries = Some(tries);
    report.esp = Some(sync);
    report.result = "deployed".into();
    Ok(report)
}

/// `remote:ref` from the booted deployment's origin.
pub fn origin_refspec(booted: &ostree::Deployment) -> Result<(String, String)> {
    let origin = booted
        .origin()
        .context("the booted deployment has no origin file")?;
    let refspec = origin
        .string("origin", "refspec")
        .context("the booted deployment's origin names no refspec")?;
    match refspec.split_once(':') {
        Some((remote, r)) if !remote.is_empty() && !r.is_empty() => {
            Ok((remote.to_string(), r.to_string()))
        }
        _ => bail!(
            "the booted deployment follows {refspec}, which names no remote: this image was built without [update]"
        ),
    }
}

/// The new commit's kernel arguments, else the booted deployment's.
fn kernel_args(booted: &ostree::Deployment, meta: &glib::VariantDict) -> Vec<String> {
    if let Some(k) = meta.lookup::<Vec<String>>(META_KARGS).ok().flatten() {
        if !k.is_empty() {
            return k;
        }
    }
    booted
        .bootconfig()
        .and_then(|b| b.get("options"))
        .map(|o| {
            o.split_whitespace()
                .filter(|a| !a.starts_with("ostree="))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn http() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(Duration::from_secs(60))
        .build()
}

/// GETs `url`; `Ok(None)` on 404.
fn get(agent: &ureq::Agent, url: &str, limit: u64) -> Result<Option<Vec<u8>>> {
    match agent.get(url).call() {
        Ok(resp) => {
            let mut buf = Vec::new();
            resp.into_reader()
                .take(limit + 1)
                .read_to_end(&mut buf)
                .with_context(|| format!("reading {url}"))?;
            if buf.len() as u64 > limit {
                bail!("{url}: larger than {limit} bytes");
            }
            Ok(Some(buf))
        }
        Err(ureq::Error::Status(404, _)) => Ok(None),
        Err(ureq::Error::Status(code, _)) => bail!("{url}: HTTP {code}"),
        Err(e) => Err(anyhow!("{url}: {e}")),
    }
}

/// The ref's commit from the server, its bytes checked against its name
/// and its signature against `keys`.
fn fetch_verified(
    url: &str,
    ostree_ref: &str,
    keys: &[ed25519_dalek::VerifyingKey],
) -> Result<RemoteCommit> {
    let agent = http();
    let base = url.trim_end_matches('/');
    let ref_url = format!("{base}/refs/heads/{ostree_ref}");
    let text = get(&agent, &ref_url, 4096)?
        .with_context(|| format!("{ref_url}: no such ref on the server"))?;
    let checksum = String::from_utf8_lossy(&text).trim().to_string();
    if checksum.len() != 64 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{ref_url}: {checksum:?} is not a commit checksum");
    }
    let (a, b) = checksum.split_at(2);
    let commit_url = format!("{base}/objects/{a}/{b}.commit");
    let bytes = get(&agent, &commit_url, 16 << 20)?.with_context(|| {
        format!("{commit_url}: the commit {ostree_ref} names is not on the server")
    })?;
    let meta_url = format!("{base}/objects/{a}/{b}.commitmeta");
    let detached = get(&agent, &meta_url, 16 << 20)?.unwrap_or_default();
    let signatures =
        sign::signatures_in(&detached, &checksum).with_context(|| format!("reading {meta_url}"))?;
    sign::verify(&checksum, &bytes, &signatures, keys)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("refusing the update from {url}"))?;
    let variant = glib::Variant::from_data_with_type(
        bytes,
        glib::VariantTy::new("(a{sv}aya(say)sstayay)").expect("commit type"),
    );
    if !variant.is_normal_form() {
        bail!("{commit_url}: not a well-formed commit object");
    }
    Ok(RemoteCommit { checksum, variant })
}

/// Pulls exactly `checksum` for `ostree_ref` from `remote`.
fn pull(repo: &ostree::Repo, remote: &str, ostree_ref: &str, checksum: &str) -> Result<()> {
    let opts = glib::VariantDict::new(None);
    opts.insert_value("refs", &vec![ostree_ref.to_string()].to_variant());
    opts.insert_value(
        "override-commit-ids",
        &vec![checksum.to_string()].to_variant(),
    );
    // Verified above, in Rust: Debian's libostree has no ed25519 engine.
    opts.insert("disable-sign-verify", true);
    opts.insert("disable-sign-verify-summary", true);
    let bar = crate::progress::spinner(&format!("pulling {remote}:{ostree_ref} ({checksum})"));
    let result = repo.pull_with_options(remote, &opts.end(), None, gio::Cancellable::NONE);
    bar.finish_and_clear();
    result.with_context(|| format!("pulling {checksum} from remote {remote}"))
}

/// Unpacked bytes of the objects in the commit's `ostree.sizes` that the
/// local repository lacks.
fn missing_bytes(repo: &ostree::Repo, meta: &glib::VariantDict) -> Result<u64> {
    let Some(sizes) = meta.lookup_value(
        "ostree.sizes",
        Some(glib::VariantTy::new("aay").expect("type")),
    ) else {
        return Ok(0);
    };
    let mut total = 0u64;
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
            total += e.unpacked;
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

/// Needed and free bytes on one file system.
#[derive(Debug, Clone, Copy)]
pub struct Space {
    pub needed: u64,
    pub free: u64,
    pub margin: u64,
}

/// Refuses an update that would not fit, naming the file system.
pub fn check_space(root: &Space, esp: &Space, root_name: &str, esp_name: &str) -> Result<()> {
    for (s, name, what) in [
        (root, root_name, "the new deployment's objects"),
        (esp, esp_name, "the new kernel and initramfs"),
    ] {
        if s.needed.saturating_add(s.margin) > s.free {
            bail!(
                "not enough space on {name} for {what}: {} MiB needed (+{} MiB margin), {} MiB free; nothing was changed",
                s.needed.div_ceil(1 << 20),
                s.margin >> 20,
                s.free >> 20
            );
        }
    }
    Ok(())
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

    const MIB: u64 = 1 << 20;

    /// (needed root, free root, needed esp, free esp) → refused on which
    #[test]
    fn space_checks() {
        let cases: &[(u64, u64, u64, u64, Option<&str>)] = &[
            (100 * MIB, 1000 * MIB, 40 * MIB, 200 * MIB, None),
            (
                100 * MIB,
                150 * MIB,
                40 * MIB,
                200 * MIB,
                Some("on /sysroot"),
            ),
            (100 * MIB, 1000 * MIB, 40 * MIB, 40 * MIB, Some("on /efi")),
            (0, 64 * MIB, 0, MIB, None),
        ];
        for &(nr, fr, ne, fe, want) in cases {
            let r = check_space(
                &Space {
                    needed: nr,
                    free: fr,
                    margin: ROOT_MARGIN,
                },
                &Space {
                    needed: ne,
                    free: fe,
                    margin: ESP_MARGIN,
                },
                "/sysroot",
                "/efi",
            );
            match want {
                None => assert!(r.is_ok(), "{nr} {fr} {ne} {fe}: {r:?}"),
                Some(w) => {
                    let e = r.unwrap_err().to_string();
                    assert!(e.contains(w) && e.contains("nothing was changed"), "{e}");
                }
            }
        }
    }

    /// ostree.sizes as libostree writes it into a real commit.
    #[test]
    fn sizes_of_a_real_commit() {
        let (t, repo, c) = crate::commit::test_repo_with_commit(&[7u8; 5000]);
        let (commit, _) = repo.load_commit(&c).unwrap();
        let dict = glib::VariantDict::new(Some(&commit.child_value(0)));
        // Everything is present locally: nothing missing.
        assert_eq!(missing_bytes(&repo, &dict).unwrap(), 0);
        // An empty repository lacks the 5000-byte file (and the tree objects).
        let empty = crate::commit::open_or_create(&t.path().join("empty")).unwrap();
        let missing = missing_bytes(&empty, &dict).unwrap();
        assert!(missing >= 5000, "{missing}");
    }
}
