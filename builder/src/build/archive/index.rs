//! The signed `Packages` index: fetched (or taken from the cache) at the
//! sha256 the InRelease file names, parsed into what hull keeps of each
//! package, merged across sources, and checked against the manifest.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use super::{download, sha256_file, Archive, Release, COMPONENT};

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
    pub fn parse(mut reader: impl BufRead) -> Result<PackageIndex> {
        let mut index = PackageIndex::default();
        let mut st = Stanza::default();
        // One buffer for every line, and each line's first byte picks the
        // fields it may start: a trixie index has 1.3 million lines, most of
        // them fields hull does not keep or continuation lines.
        let mut buf = String::new();
        loop {
            buf.clear();
            if reader
                .read_line(&mut buf)
                .context("reading Packages index")?
                == 0
            {
                break;
            }
            let line = buf.strip_suffix('\n').unwrap_or(&buf);
            let line = line.strip_suffix('\r').unwrap_or(line);
            match line.as_bytes().first() {
                None => index.finish(std::mem::take(&mut st)),
                Some(b'P') => {
                    if let Some(v) = line.strip_prefix("Package: ") {
                        st.name = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("Pre-Depends: ") {
                        st.depends.push(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("Provides: ") {
                        index.provides(st.name.as_deref(), v);
                    }
                }
                Some(b'V') => {
                    if let Some(v) = line.strip_prefix("Version: ") {
                        st.version = Some(v.trim().to_string());
                    }
                }
                Some(b'A') => {
                    if let Some(v) = line.strip_prefix("Architecture: ") {
                        st.arch = Some(v.trim().to_string());
                    }
                }
                Some(b'S') => {
                    if let Some(v) = line.strip_prefix("SHA256: ") {
                        st.sha256 = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("Size: ") {
                        st.size = v.trim().parse().ok();
                    }
                }
                Some(b'F') => {
                    if let Some(v) = line.strip_prefix("Filename: ") {
                        st.filename = Some(v.trim().to_string());
                    }
                }
                Some(b'D') => {
                    if let Some(v) = line.strip_prefix("Depends: ") {
                        st.depends.push(v.trim().to_string());
                    }
                }
                Some(_) => {}
            }
        }
        index.finish(st);
        Ok(index)
    }

    /// Records a `Provides:` field `value` of package `by`.
    fn provides(&mut self, by: Option<&str>, value: &str) {
        for p in value.split(',') {
            if let Some(n) = p.split_whitespace().next() {
                if let Some(by) = by {
                    let list = self.providers.entry(n.to_string()).or_default();
                    if !list.iter().any(|b| b == by) {
                        list.push(by.to_string());
                    }
                }
                self.provided.insert(n.to_string());
            }
        }
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
        if self.is_vacant() {
            // The first source: nothing to compare with, take it whole
            // rather than insert its entries one by one.
            *self = other;
            return;
        }
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

    /// Whether nothing at all was parsed or merged into this index.
    fn is_vacant(&self) -> bool {
        self.versions.is_empty()
            && self.provided.is_empty()
            && self.debs.is_empty()
            && self.depends.is_empty()
            && self.providers.is_empty()
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

/// The folder of the cache the indexes are kept in.
pub(super) const INDEXES: &str = "indexes";

/// Fetches (or takes from the cache) the Packages index and checks its hash.
pub fn fetch_index(archive: &Archive, release: &Release, cache: &Path) -> Result<PackageIndex> {
    let rel = archive.packages_path();
    let (sha, size) = release
        .files
        .get(&rel)
        .ok_or_else(|| anyhow!("{} does not list {rel}", archive.url("InRelease")))?;
    let dir = cache.join(INDEXES);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{sha}-Packages.xz"));
    let url = archive.url(&rel);
    let plain = super::unpacked::signed(release, &rel);
    if let Some((psha, psize)) = plain {
        if let Some(bytes) = super::unpacked::read_cached(&dir, psha, psize)? {
            log::info!("using cached {url} (unpacked)");
            return PackageIndex::parse(bytes.as_slice())
                .with_context(|| format!("reading the unpacked {}", path.display()));
        }
    }
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
    if let Some((psha, psize)) = plain {
        let bytes = super::unpacked::unpack_and_keep(&path, &dir, psha, psize, &url)?;
        return PackageIndex::parse(bytes.as_slice())
            .with_context(|| format!("reading the unpacked {}", path.display()));
    }
    let file = fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    PackageIndex::parse(BufReader::new(xz2::read::XzDecoder::new(file)))
        .with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Arch;

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
        let mut first = PackageIndex::parse(suite.as_bytes()).unwrap();
        first.set_mirror("http://deb.debian.org/debian");
        // As resolve merges: the first source into an empty index.
        let mut idx = PackageIndex::default();
        idx.merge(first);
        assert!(!idx.is_vacant());
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

    /// CRLF line ends and a last line without one read as plain ones.
    #[test]
    fn crlf_and_unterminated_last_line() {
        let text = "Package: a\r\nVersion: 1\r\nProvides: x, y (= 2)\r\n\r\nPackage: b\nVersion: 2";
        let idx = PackageIndex::parse(text.as_bytes()).unwrap();
        assert_eq!(idx.version("a"), Some("1"));
        assert_eq!(idx.version("b"), Some("2"));
        assert_eq!(idx.providers("y"), ["a"]);
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
}
