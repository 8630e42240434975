//! A flat apt repository of the cached `.deb`s a locked build installs
//! because the mirror no longer lists them (`crate::build::lock::cached`).
//!
//! apt installs only versions an index lists, so those files are given to
//! mmdebstrap as one more source, made for that build in its work directory:
//! the `.deb`s (hard links, or copies across file systems) and a `Packages`
//! file whose stanzas are each `.deb`'s own control fields (`dpkg-deb -f`)
//! plus `Filename`, `Size` and `SHA256`.
//!
//! The source is `copy://`, not `file://`: mmdebstrap runs apt outside the
//! chroot and dpkg inside it, and with `file://` apt hands dpkg the file's
//! path in the repository, which the chroot does not see (mmdebstrap then
//! needs a bind mount, and one that outlives a failed run is a mount left
//! behind). With `copy://` apt copies each `.deb` into the chroot's
//! `/var/cache/apt/archives`, as it does a download.
//!
//! The source is `[trusted=yes]` (no signed Release): that is sound because
//! every `.deb` in it had, just before, the sha256 the lock names, and the
//! lock was written from the indexes of signed InRelease files; apt's
//! pinning and the check of the installed set against the lock
//! (`crate::build::lock::verify_installed`) still hold.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::util::cmd::Cmd;

/// The `Packages` stanza of one `.deb`: its control fields as `dpkg-deb -f`
/// prints them (`Package: ...` lines, continuation lines kept), then
/// `Filename: ./FILE`, `Size` (bytes) and `SHA256` (lowercase hex), and the
/// blank line that ends a stanza. Errors: control text with no `Package:`.
pub fn stanza(control: &str, file_name: &str, size: u64, sha256: &str) -> Result<String> {
    let fields = control.trim_end_matches('\n');
    if !fields.lines().any(|l| l.starts_with("Package: ")) {
        bail!("{file_name}: its control fields name no package");
    }
    Ok(format!(
        "{fields}\nFilename: ./{file_name}\nSize: {size}\nSHA256: {sha256}\n\n"
    ))
}

/// The apt source line of the repository in `dir` (an absolute path).
pub fn source_line(dir: &Path) -> String {
    format!("deb [trusted=yes] copy://{} ./", dir.display())
}

/// Makes the repository in `dir` (emptied first) from `debs`; returns the
/// file names it holds. Errors name the `.deb` or the path that failed.
pub fn write(dir: &Path, debs: &[PathBuf]) -> Result<Vec<String>> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => {}
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut packages = String::new();
    let mut names = Vec::new();
    for deb in debs {
        let name = deb
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{}: not a file name", deb.display()))?;
        let dest = dir.join(&name);
        if fs::hard_link(deb, &dest).is_err() {
            fs::copy(deb, &dest)
                .with_context(|| format!("copying {} to {}", deb.display(), dest.display()))?;
        }
        let control = Cmd::new("dpkg-deb").arg("-f").arg(&dest).output_string()?;
        let size = fs::metadata(&dest)
            .with_context(|| format!("reading {}", dest.display()))?
            .len();
        let sha256 = crate::build::archive::sha256_file(&dest)?;
        packages.push_str(&stanza(&control, &name, size, &sha256)?);
        names.push(name);
    }
    let index = dir.join("Packages");
    crate::util::write_atomic(&index, packages.as_bytes())?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanza_of_a_deb() {
        let control = "Package: hull-test-cached\nVersion: 1.0\nArchitecture: all\n\
                       Description: a test\n two lines\n";
        assert_eq!(
            stanza(control, "hull-test-cached_1.0_all.deb", 700, "ab").unwrap(),
            "Package: hull-test-cached\nVersion: 1.0\nArchitecture: all\nDescription: a test\n \
             two lines\nFilename: ./hull-test-cached_1.0_all.deb\nSize: 700\nSHA256: ab\n\n"
        );
        let e = stanza("Version: 1\n", "x.deb", 1, "ab").unwrap_err();
        assert_eq!(e.to_string(), "x.deb: its control fields name no package");
        assert_eq!(
            source_line(Path::new("/o/.work/x86_64/local-debs")),
            "deb [trusted=yes] copy:///o/.work/x86_64/local-debs ./"
        );
    }

    /// A real `.deb` made with `dpkg-deb --build`, indexed, and read back
    /// with hull's own `Packages` parser.
    #[test]
    fn repository_of_a_real_deb() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("pkg");
        fs::create_dir_all(src.join("DEBIAN")).unwrap();
        fs::create_dir_all(src.join("usr/share/hull-test")).unwrap();
        fs::write(src.join("usr/share/hull-test/file"), "cached\n").unwrap();
        fs::write(
            src.join("DEBIAN/control"),
            "Package: hull-test-cached\nVersion: 1:1.0\nArchitecture: all\n\
             Maintainer: hull <hull@example.org>\nDescription: test\n",
        )
        .unwrap();
        let deb = t.path().join("hull-test-cached_1%3a1.0_all.deb");
        Cmd::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&src)
            .arg(&deb)
            .output()
            .unwrap();
        let repo = t.path().join("repo");
        fs::create_dir_all(&repo).unwrap();
        fs::write(repo.join("stale"), "").unwrap();
        let names = write(&repo, std::slice::from_ref(&deb)).unwrap();
        assert_eq!(names, ["hull-test-cached_1%3a1.0_all.deb"]);
        assert!(!repo.join("stale").exists(), "emptied first");
        let text = fs::read_to_string(repo.join("Packages")).unwrap();
        let index = crate::build::archive::PackageIndex::parse(text.as_bytes()).unwrap();
        let d = index.deb("hull-test-cached", "1:1.0", "all").unwrap();
        assert_eq!(d.filename, "./hull-test-cached_1%3a1.0_all.deb");
        assert_eq!(d.sha256, crate::build::archive::sha256_file(&deb).unwrap());
        assert_eq!(d.size, fs::metadata(&deb).unwrap().len());
    }
}
