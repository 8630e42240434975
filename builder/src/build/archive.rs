//! Stage 2: the package set, checked against the signed Debian archive.
//!
//! Before anything is installed, hull fetches the suite's `InRelease`, checks
//! its OpenPGP signature with `gpgv` against debian-archive-keyring, fetches
//! the `Packages` index the signed file names, checks its sha256, and makes
//! sure every package the manifest asks for exists for the target
//! architecture. apt (driven by mmdebstrap in the rootfs stage) then checks
//! each `.deb` against the same signed hashes. Indexes are cached by their
//! sha256, so a warm build re-downloads only the small `InRelease`.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::manifest::{Arch, Manifest};
use crate::util::cmd::Cmd;
use crate::util::progress;

/// The keyring Debian's archive is signed with (package debian-archive-keyring).
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The components hull installs from.
const COMPONENT: &str = "main";

/// What the rootfs stage installs, resolved against the archive.
#[derive(Debug, Clone, Serialize)]
pub struct PackagePlan {
    pub mirror: String,
    pub suite: String,
    pub arch: Arch,
    /// The kernel package first, then the manifest's packages.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// `Date:` of the signed InRelease the plan was checked against.
    pub release_date: String,
    /// sha256 of that InRelease file.
    pub release_sha256: String,
    /// Candidate version of each requested package (virtual ones map to "virtual").
    pub versions: BTreeMap<String, String>,
    /// Every source the packages come from, the suite first (see
    /// [`Manifest::sources`]), as checked.
    #[serde(default)]
    pub sources: Vec<SignedSource>,
    /// With a lock (see [`crate::build::lock`]): the version apt is pinned to, by
    /// package name. Empty without one (and then not serialized, so the
    /// installed-tree cache keys of unlocked builds stay as they were).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub locked: BTreeMap<String, String>,
    /// With a lock: the `.deb` files, in the build's cache, of the locked
    /// versions the mirror no longer lists (each checked against the lock's
    /// sha256); the install serves them from a local repository. Not
    /// serialized: the installed tree is the same wherever a `.deb` came from.
    #[serde(skip)]
    pub local_debs: Vec<std::path::PathBuf>,
}

/// One source at the time its signed InRelease was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SignedSource {
    /// Mirror root URL.
    pub url: String,
    pub suite: String,
    /// `Date:` of the InRelease file.
    pub date: String,
    /// sha256 of the InRelease file, lowercase hex.
    pub sha256: String,
}

impl SignedSource {
    /// `URL SUITE SHA256 DATE`: how commit metadata stores it (the date,
    /// which holds spaces, last).
    pub fn to_line(&self) -> String {
        format!("{} {} {} {}", self.url, self.suite, self.sha256, self.date)
    }

    /// Parses [`SignedSource::to_line`].
    pub fn from_line(line: &str) -> Option<SignedSource> {
        let mut it = line.splitn(4, ' ');
        Some(SignedSource {
            url: it.next()?.into(),
            suite: it.next()?.into(),
            sha256: it.next()?.into(),
            date: it.next()?.into(),
        })
    }
}

impl PackagePlan {
    /// The sources as (mirror, suite): [`PackagePlan::sources`], or the
    /// plan's own mirror and suite when it lists none.
    pub fn source_list(&self) -> Vec<(String, String)> {
        if self.sources.is_empty() {
            return vec![(self.mirror.clone(), self.suite.clone())];
        }
        self.sources
            .iter()
            .map(|s| (s.url.clone(), s.suite.clone()))
            .collect()
    }

    /// `MIRROR SUITE, ...`, for messages.
    pub fn sources_text(&self) -> String {
        self.source_list()
            .iter()
            .map(|(m, s)| format!("{m} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where a suite's files live on the mirror.
#[derive(Debug, Clone)]
pub struct Archive {
    pub mirror: String,
    pub suite: String,
    pub arch: Arch,
}

impl Archive {
    fn url(&self, rel: &str) -> String {
        format!(
            "{}/dists/{}/{}",
            self.mirror.trim_end_matches('/'),
            self.suite,
            rel
        )
    }

    /// Path of the Packages index inside the release, as the Release file names it.
    fn packages_path(&self) -> String {
        format!("{COMPONENT}/binary-{}/Packages.xz", self.arch.debian())
    }
}

/// Checks the manifest's packages against the archive and returns the plan.
pub fn resolve(manifest: &Manifest, arch: Arch, cache: &Path) -> Result<PackagePlan> {
    resolve_with_index(manifest, arch, cache).map(|(plan, _)| plan)
}

/// [`resolve`], also returning the signed index the plan was checked
/// against: it knows each `.deb`'s sha256, size and pool path (the SBOM
/// names them).
pub fn resolve_with_index(
    manifest: &Manifest,
    arch: Arch,
    cache: &Path,
) -> Result<(PackagePlan, PackageIndex)> {
    resolve_locked(manifest, arch, cache, &BTreeMap::new())
}

/// [`resolve_with_index`] for a locked build: `locked` (package name →
/// locked version) are known even when no index lists them, at the locked
/// version: their `.deb` may be in the cache (`crate::build::lock::apply`
/// decides, and names them when it is not).
pub fn resolve_locked(
    manifest: &Manifest,
    arch: Arch,
    cache: &Path,
    locked: &BTreeMap<String, String>,
) -> Result<(PackagePlan, PackageIndex)> {
    // The suite, then -updates and -security: each signed, each index
    // hash-checked; a package's candidate is the highest version of all.
    let mut index = PackageIndex::default();
    let mut sources = Vec::new();
    for (mirror, suite) in manifest.sources() {
        let archive = Archive {
            mirror: mirror.clone(),
            suite: suite.clone(),
            arch,
        };
        let release = fetch_release(&archive, cache, Path::new(DEBIAN_KEYRING))?;
        let mut one = fetch_index(&archive, &release, cache)?;
        one.set_mirror(&mirror);
        index.merge(one);
        sources.push(SignedSource {
            url: mirror,
            suite,
            date: release.date,
            sha256: release.sha256,
        });
    }
    let main = sources[0].clone();
    let archive = Archive {
        mirror: main.url.clone(),
        suite: main.suite.clone(),
        arch,
    };

    let target = manifest.target(arch);
    let mut include = vec![target.kernel.package.clone()];
    include.extend(target.packages.include.iter().cloned());
    let mut seen = HashSet::new();
    include.retain(|p| seen.insert(p.clone()));

    let (indexed, from_lock): (Vec<String>, Vec<String>) = include
        .iter()
        .cloned()
        .partition(|n| index.version(n).is_some() || !locked.contains_key(n));
    let mut versions = index.check(&indexed, &manifest.path, &archive)?;
    versions.extend(
        from_lock
            .into_iter()
            .map(|n| (n.clone(), locked[&n].clone())),
    );
    let plan = PackagePlan {
        mirror: archive.mirror,
        suite: archive.suite,
        arch,
        include,
        exclude: target.packages.exclude.clone(),
        release_date: main.date,
        release_sha256: main.sha256,
        versions,
        sources,
        locked: BTreeMap::new(),
        local_debs: Vec::new(),
    };
    Ok((plan, index))
}

/// A verified InRelease file.
#[derive(Debug)]
pub struct Release {
    pub date: String,
    pub sha256: String,
    /// `SHA256:` section: path → (sha256, size).
    pub files: BTreeMap<String, (String, u64)>,
}

/// Downloads `InRelease` and checks its signature with gpgv against `keyring`.
pub fn fetch_release(archive: &Archive, cache: &Path, keyring: &Path) -> Result<Release> {
    let url = archive.url("InRelease");
    let dir = cache.join("dists").join(&archive.suite);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("InRelease");
    download(&url, &path, None)?;
    let signed = verify_signature(&path, keyring, &url)?;
    let file = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_release(&signed, &sha256_hex(&file)).with_context(|| format!("parsing {url}"))
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
    }
    if files.is_empty() {
        bail!("no SHA256 section");
    }
    Ok(Release {
        date: date.ok_or_else(|| anyhow!("no Date field"))?,
        sha256: sha256.to_string(),
        files,
    })
}

/// Package names (and names they provide) available in one index.
#[derive(Debug, Default)]
pub struct PackageIndex {
    versions: BTreeMap<String, String>,
    provided: HashSet<String>,
    /// (name, version, architecture) → the `.deb` the signed index names.
    debs: BTreeMap<(String, String, String), Deb>,
    /// (name, version) → its `Pre-Depends` and `Depends`, comma-joined as
    /// written (what `crate::build::sysext` resolves an extension's packages by).
    depends: BTreeMap<(String, String), String>,
    /// Virtual name → the packages that provide it.
    providers: BTreeMap<String, Vec<String>>,
}

/// One `.deb` as a signed `Packages` index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deb {
    /// sha256 of the `.deb` file, lowercase hex.
    pub sha256: String,
    /// Size of the `.deb` file, bytes.
    pub size: u64,
    /// Path on the mirror, relative to its root (`pool/main/...`).
    pub filename: String,
    /// Root URL of the mirror whose index lists it (empty until set).
    pub mirror: String,
}

/// The fields of one stanza of a `Packages` file that hull keeps.
#[derive(Debug, Default)]
struct Stanza {
    name: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    sha256: Option<String>,
    size: Option<u64>,
    filename: Option<String>,
    depends: Vec<String>,
}

impl PackageIndex {
    /// Parses a Debian `Packages` file.
    pub fn parse(reader: impl BufRead) -> Result<PackageIndex> {
        let mut index = PackageIndex::default();
        let mut st = Stanza::default();
        for line in reader.lines() {
            let line = line.context("reading Packages index")?;
            if line.is_empty() {
                index.finish(std::mem::take(&mut st));
            } else if let Some(v) = line.strip_prefix("Package: ") {
                st.name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                st.version = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Architecture: ") {
                st.arch = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("SHA256: ") {
                st.sha256 = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Size: ") {
                st.size = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("Filename: ") {
                st.filename = Some(v.trim().to_string());
            } else if let Some(v) = line
                .strip_prefix("Depends: ")
                .or_else(|| line.strip_prefix("Pre-Depends: "))
            {
                st.depends.push(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Provides: ") {
                for p in v.split(',') {
                    if let Some(n) = p.split_whitespace().next() {
                        if let Some(by) = &st.name {
                            let list = index.providers.entry(n.to_string()).or_default();
                            if !list.contains(by) {
                                list.push(by.clone());
                            }
                        }
                        index.provided.insert(n.to_string());
                    }
                }
            }
        }
        index.finish(st);
        Ok(index)
    }

    fn finish(&mut self, st: Stanza) {
        let (Some(n), Some(v)) = (st.name, st.version) else {
            return;
        };
        if !st.depends.is_empty() {
            self.depends
                .insert((n.clone(), v.clone()), st.depends.join(", "));
        }
        if let (Some(arch), Some(sha256), Some(size), Some(filename)) =
            (st.arch, st.sha256, st.size, st.filename)
        {
            self.debs.insert(
                (n.clone(), v.clone(), arch),
                Deb {
                    sha256,
                    size,
                    filename,
                    mirror: String::new(),
                },
            );
        }
        self.versions.insert(n, v);
    }

    /// Records the mirror every `.deb` of this index is downloaded from.
    pub fn set_mirror(&mut self, mirror: &str) {
        for d in self.debs.values_mut() {
            d.mirror = mirror.to_string();
        }
    }

    /// Adds another source's index: each name's candidate is the higher
    /// version in dpkg's order (as apt picks), every `.deb` is kept.
    pub fn merge(&mut self, other: PackageIndex) {
        for (name, v) in other.versions {
            match self.versions.get(&name) {
                Some(old) if !newer(&v, old) => {}
                _ => {
                    self.versions.insert(name, v);
                }
            }
        }
        self.provided.extend(other.provided);
        self.depends.extend(other.depends);
        for (name, by) in other.providers {
            let list = self.providers.entry(name).or_default();
            for p in by {
                if !list.contains(&p) {
                    list.push(p);
                }
            }
        }
        for (k, d) in other.debs {
            self.debs.entry(k).or_insert(d);
        }
    }

    /// `Pre-Depends` and `Depends` of `name` at `version`, comma-joined as
    /// the index writes them (`libc6 (>= 2.34), libjq1 (= 1.7.1-3)`).
    pub fn depends(&self, name: &str, version: &str) -> Option<&str> {
        self.depends
            .get(&(name.to_string(), version.to_string()))
            .map(String::as_str)
    }

    /// The packages that provide the virtual package `name`.
    pub fn providers(&self, name: &str) -> &[String] {
        self.providers.get(name).map_or(&[], Vec::as_slice)
    }

    /// The candidate version of `name`, when the index has the package.
    pub fn version(&self, name: &str) -> Option<&str> {
        self.versions.get(name).map(String::as_str)
    }

    /// The `.deb` of `name` at `version` for `arch` (a Debian architecture
    /// name, or `all`), when the index lists it.
    pub fn deb(&self, name: &str, version: &str, arch: &str) -> Option<&Deb> {
        self.debs
            .get(&(name.to_string(), version.to_string(), arch.to_string()))
    }

    /// Lists a `.deb` that is in no signed index but in the build's cache
    /// at the lock's sha256 (`crate::build::lock::apply`), with no pool path
    /// (`filename` and `mirror` empty): the SBOM then gives its sha256 and
    /// no download location. Its version does not become a candidate.
    pub fn insert_cached(
        &mut self,
        name: &str,
        version: &str,
        arch: &str,
        sha256: &str,
        size: u64,
    ) {
        self.debs.insert(
            (name.to_string(), version.to_string(), arch.to_string()),
            Deb {
                sha256: sha256.to_string(),
                size,
                filename: String::new(),
                mirror: String::new(),
            },
        );
    }

    pub fn len(&self) -> usize {
        self.versions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// Returns the version of each wanted package; an unknown one is an error
    /// naming it, the manifest and the archive.
    pub fn check(
        &self,
        wanted: &[String],
        manifest: &Path,
        archive: &Archive,
    ) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let mut unknown = Vec::new();
        for name in wanted {
            match self.versions.get(name) {
                Some(v) => {
                    out.insert(name.clone(), v.clone());
                }
                None if self.provided.contains(name) => {
                    out.insert(name.clone(), "virtual".into());
                }
                None => unknown.push(name.as_str()),
            }
        }
        if !unknown.is_empty() {
            bail!(
                "{}: packages: unknown package{} {} in {} {} {}",
                manifest.display(),
                if unknown.len() > 1 { "s" } else { "" },
                unknown.join(", "),
                archive.suite,
                COMPONENT,
                archive.arch.debian()
            );
        }
        Ok(out)
    }
}

/// Whether `a` is a higher Debian version than `b` (dpkg's order); an
/// unparsable version is never higher.
fn newer(a: &str, b: &str) -> bool {
    match (
        a.parse::<debversion::Version>(),
        b.parse::<debversion::Version>(),
    ) {
        (Ok(a), Ok(b)) => a > b,
        _ => false,
    }
}

/// Fetches (or takes from the cache) the Packages index and checks its hash.
pub fn fetch_index(archive: &Archive, release: &Release, cache: &Path) -> Result<PackageIndex> {
    let rel = archive.packages_path();
    let (sha, size) = release
        .files
        .get(&rel)
        .ok_or_else(|| anyhow!("{} does not list {rel}", archive.url("InRelease")))?;
    let dir = cache.join("indexes");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{sha}-Packages.xz"));
    let url = archive.url(&rel);
    if !path.is_file() || sha256_file(&path)? != *sha {
        download(&url, &path, Some(*size))?;
        let got = sha256_file(&path)?;
        if got != *sha {
            let _ = fs::remove_file(&path);
            bail!("sha256 mismatch for {url}: the signed InRelease says {sha}, got {got}");
        }
    } else {
        log::info!("using cached {url}");
    }
    let file = fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    PackageIndex::parse(BufReader::new(xz2::read::XzDecoder::new(file)))
        .with_context(|| format!("reading {}", path.display()))
}

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

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKAGES: &str = "Package: podman\nVersion: 5.4.2+ds1-2\nArchitecture: amd64\n\
Filename: pool/main/libp/libpod/podman_5.4.2+ds1-2_amd64.deb\nSize: 17000000\nSHA256: ab12\n\n\
Package: systemd-sysv\nVersion: 257.8-1\nProvides: sysvinit-core\n\n\
Package: crun\nVersion: 1.21-1\nProvides: oci-runtime (= 1.21)\n";

    fn archive() -> Archive {
        Archive {
            mirror: "http://deb.example/debian".into(),
            suite: "trixie".into(),
            arch: Arch::X86_64,
        }
    }

    #[test]
    fn index_finds_packages_and_provides() {
        let idx = PackageIndex::parse(PACKAGES.as_bytes()).unwrap();
        assert_eq!(idx.len(), 3);
        let got = idx
            .check(
                &["podman".into(), "oci-runtime".into()],
                Path::new("m.toml"),
                &archive(),
            )
            .unwrap();
        assert_eq!(got["podman"], "5.4.2+ds1-2");
        assert_eq!(got["oci-runtime"], "virtual");
        assert_eq!(
            idx.deb("podman", "5.4.2+ds1-2", "amd64"),
            Some(&Deb {
                sha256: "ab12".into(),
                size: 17000000,
                filename: "pool/main/libp/libpod/podman_5.4.2+ds1-2_amd64.deb".into(),
                mirror: String::new(),
            })
        );
        assert_eq!(idx.deb("podman", "5.4.2+ds1-1", "amd64"), None);
        assert_eq!(
            idx.deb("crun", "1.21-1", "amd64"),
            None,
            "no hash, no entry"
        );
    }

    /// The security archive's newer kernel wins over the suite's; an older
    /// version elsewhere does not replace a newer one.
    #[test]
    fn merged_indexes_take_the_highest_version() {
        let suite = "Package: linux-image-6.12.57+deb13-cloud-amd64\nVersion: 6.12.57-1\n\
Architecture: amd64\nFilename: pool/main/l/a.deb\nSize: 1\nSHA256: aa\n\n\
Package: zstd\nVersion: 1.5.7+dfsg-1\nArchitecture: amd64\nFilename: pool/main/z/z.deb\nSize: 2\nSHA256: bb\n";
        let security = "Package: linux-image-6.12.57+deb13-cloud-amd64\nVersion: 6.12.57-1+deb13u1\n\
Architecture: amd64\nFilename: pool/updates/main/l/a.deb\nSize: 3\nSHA256: cc\n\n\
Package: zstd\nVersion: 1.5.7~rc1-1\nArchitecture: amd64\nFilename: pool/updates/main/z/z.deb\nSize: 4\nSHA256: dd\n";
        let mut idx = PackageIndex::parse(suite.as_bytes()).unwrap();
        idx.set_mirror("http://deb.debian.org/debian");
        let mut sec = PackageIndex::parse(security.as_bytes()).unwrap();
        sec.set_mirror("http://deb.debian.org/debian-security");
        idx.merge(sec);
        let k = "linux-image-6.12.57+deb13-cloud-amd64";
        assert_eq!(idx.version(k), Some("6.12.57-1+deb13u1"));
        assert_eq!(idx.version("zstd"), Some("1.5.7+dfsg-1"));
        let d = idx.deb(k, "6.12.57-1+deb13u1", "amd64").unwrap();
        assert_eq!(d.mirror, "http://deb.debian.org/debian-security");
        assert_eq!(d.filename, "pool/updates/main/l/a.deb");
        assert_eq!(
            idx.deb(k, "6.12.57-1", "amd64").unwrap().mirror,
            "http://deb.debian.org/debian"
        );
    }

    #[test]
    fn source_lines_round_trip() {
        let s = SignedSource {
            url: "http://deb.debian.org/debian-security".into(),
            suite: "trixie-security".into(),
            date: "Sun, 29 Nov 2026 18:03:11 UTC".into(),
            sha256: "ab".repeat(32),
        };
        assert_eq!(SignedSource::from_line(&s.to_line()), Some(s));
        assert_eq!(SignedSource::from_line("x y"), None);
    }

    #[test]
    fn unknown_package_is_named() {
        let idx = PackageIndex::parse(PACKAGES.as_bytes()).unwrap();
        let err = idx
            .check(
                &["podman".into(), "no-such-pkg".into()],
                Path::new("m.toml"),
                &archive(),
            )
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "m.toml: packages: unknown package no-such-pkg in trixie main amd64"
        );
    }

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
        let home = dir.path().join("gnupg");
        fs::create_dir(&home).unwrap();
        let gpg = |args: &[&str]| {
            Cmd::new("gpg")
                .env("GNUPGHOME", &home)
                .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
                .args(args)
                .output()
                .unwrap()
        };
        gpg(&[
            "--quick-gen-key",
            "hull test <t@hull.invalid>",
            "ed25519",
            "sign",
            "never",
        ]);
        let keyring = dir.path().join("keyring.gpg");
        fs::write(&keyring, gpg(&["--export"])).unwrap();
        let plain = dir.path().join("Release");
        fs::write(
            &plain,
            "Date: today\nSHA256:\n abcd 10 main/binary-amd64/Packages.xz\n",
        )
        .unwrap();
        let signed = dir.path().join("InRelease");
        gpg(&[
            "--clearsign",
            "--output",
            signed.to_str().unwrap(),
            plain.to_str().unwrap(),
        ]);
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
