//! Boot entries: from OSTree's BLS entries to what systemd-boot reads on the ESP.
//!
//! OSTree writes Boot Loader Specification entries and kernels under the
//! sysroot's `/boot`. systemd-boot reads only FAT, so hull copies them to the
//! ESP. The plan of what to copy is plain data ([`plan`]); the image builder
//! writes it into a FAT image, and the on-host updater will write the same
//! plan into the mounted ESP.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use cap_std::fs::Dir;

use crate::boot;
use crate::image::{EspFile, EspSource};
use crate::manifest::Arch;

/// One Boot Loader Specification entry, keys in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlsEntry {
    pub fields: Vec<(String, String)>,
}

impl BlsEntry {
    pub fn parse(text: &str) -> Result<BlsEntry> {
        let mut fields = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            fields.push((k.to_string(), v.trim().to_string()));
        }
        if fields.is_empty() {
            bail!("empty boot entry");
        }
        Ok(BlsEntry { fields })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a key that may repeat (`initrd`).
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn render(&self) -> String {
        self.fields
            .iter()
            .map(|(k, v)| format!("{k} {v}\n"))
            .collect()
    }
}

/// A path an entry names, as a relative path inside the boot partition;
/// anything absolute-escaping or with `..` is refused.
fn boot_relative(p: &str) -> Result<PathBuf> {
    let rel = Path::new(p.trim_start_matches('/'));
    if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        bail!("boot entry path {p} is not a plain path inside /boot");
    }
    Ok(rel.to_path_buf())
}

/// The ESP's contents for a deployed sysroot: systemd-boot, loader.conf, and
/// each OSTree entry with the kernel and initramfs it names.
///
/// `boot_dir` is the sysroot's `boot` directory (opened as a Dir and also
/// known by host path, from which the large files are streamed);
/// `systemd_boot` is systemd-boot's EFI binary from the deployed tree.
pub fn plan(
    boot_dir: &Dir,
    boot_path: &Path,
    arch: Arch,
    systemd_boot: &Path,
) -> Result<Vec<EspFile>> {
    let (_, efi_name) = boot::systemd_boot_paths(arch);
    let mut files = vec![
        EspFile {
            path: efi_name.to_string(),
            source: EspSource::File(systemd_boot.to_path_buf()),
        },
        EspFile {
            path: "loader/loader.conf".into(),
            source: EspSource::Bytes(boot::LOADER_CONF.as_bytes().to_vec()),
        },
    ];
    let entries_dir = "loader/entries";
    let mut names: Vec<String> = boot_dir
        .read_dir(entries_dir)
        .with_context(|| format!("reading {}/{entries_dir}", boot_path.display()))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    names.retain(|n| n.ends_with(".conf"));
    names.sort();
    if names.is_empty() {
        bail!(
            "OSTree wrote no boot entries under {}/{entries_dir}",
            boot_path.display()
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        let text = boot_dir
            .read_to_string(format!("{entries_dir}/{name}"))
            .with_context(|| format!("reading boot entry {name}"))?;
        let entry = BlsEntry::parse(&text).with_context(|| format!("parsing boot entry {name}"))?;
        let linux = entry
            .get("linux")
            .with_context(|| format!("boot entry {name} has no linux line"))?;
        for p in std::iter::once(linux).chain(entry.get_all("initrd")) {
            let rel = boot_relative(p)?;
            if !boot_dir.is_file(&rel) {
                bail!(
                    "boot entry {name} names {p}, which is not in {}",
                    boot_path.display()
                );
            }
            if seen.insert(rel.clone()) {
                files.push(EspFile {
                    path: rel.to_string_lossy().into_owned(),
                    source: EspSource::File(boot_path.join(&rel)),
                });
            }
        }
        files.push(EspFile {
            path: format!("loader/entries/{name}"),
            source: EspSource::Bytes(entry.render().into_bytes()),
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::ambient_authority;

    const ENTRY: &str = "title Debian GNU/Linux 13 (trixie) 1.0.0 (ostree:0)\nversion 1\n\
options root=LABEL=hull-root rw console=ttyS0 ostree=/ostree/boot.1/minimal/abc/0\n\
linux /ostree/minimal-abc/vmlinuz-6.12\ninitrd /ostree/minimal-abc/initramfs-6.12.img\n";

    #[test]
    fn entry_roundtrip() {
        let e = BlsEntry::parse(ENTRY).unwrap();
        assert_eq!(e.get("version"), Some("1"));
        assert_eq!(e.get("linux"), Some("/ostree/minimal-abc/vmlinuz-6.12"));
        assert!(e
            .get("options")
            .unwrap()
            .contains("ostree=/ostree/boot.1/minimal/abc/0"));
        assert_eq!(BlsEntry::parse(&e.render()).unwrap(), e);
        assert!(BlsEntry::parse("\n# only a comment\n").is_err());
    }

    fn boot_fixture() -> (tempfile::TempDir, Dir) {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open_ambient_dir(t.path(), ambient_authority()).unwrap();
        d.create_dir_all("loader.1/entries").unwrap();
        d.symlink("loader.1", "loader").unwrap();
        d.create_dir_all("ostree/minimal-abc").unwrap();
        d.write("ostree/minimal-abc/vmlinuz-6.12", "k").unwrap();
        d.write("ostree/minimal-abc/initramfs-6.12.img", "i")
            .unwrap();
        d.write("loader.1/entries/ostree-1-minimal.conf", ENTRY)
            .unwrap();
        (t, d)
    }

    #[test]
    fn plan_lists_bootloader_entries_and_kernels() {
        let (t, d) = boot_fixture();
        let files = plan(
            &d,
            t.path(),
            Arch::X86_64,
            Path::new("/x/systemd-bootx64.efi"),
        )
        .unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "EFI/BOOT/BOOTX64.EFI",
                "loader/loader.conf",
                "ostree/minimal-abc/vmlinuz-6.12",
                "ostree/minimal-abc/initramfs-6.12.img",
                "loader/entries/ostree-1-minimal.conf",
            ]
        );
        match &files[2].source {
            EspSource::File(p) => assert_eq!(p, &t.path().join("ostree/minimal-abc/vmlinuz-6.12")),
            _ => panic!("kernel should be streamed from its file"),
        }
        let arm = plan(&d, t.path(), Arch::Aarch64, Path::new("/x/a.efi")).unwrap();
        assert_eq!(arm[0].path, "EFI/BOOT/BOOTAA64.EFI");
    }

    #[test]
    fn plan_refuses_missing_or_escaping_kernels() {
        let (t, d) = boot_fixture();
        d.remove_file("ostree/minimal-abc/initramfs-6.12.img")
            .unwrap();
        let err = plan(&d, t.path(), Arch::X86_64, Path::new("/x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("initramfs-6.12.img"), "{err}");

        let (t, d) = boot_fixture();
        d.write(
            "loader.1/entries/ostree-1-minimal.conf",
            ENTRY.replace("/ostree/minimal-abc/vmlinuz-6.12", "/../../etc/shadow"),
        )
        .unwrap();
        let err = plan(&d, t.path(), Arch::X86_64, Path::new("/x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a plain path"), "{err}");
    }

    #[test]
    fn plan_needs_an_entry() {
        let (t, d) = boot_fixture();
        d.remove_file("loader.1/entries/ostree-1-minimal.conf")
            .unwrap();
        assert!(plan(&d, t.path(), Arch::X86_64, Path::new("/x")).is_err());
    }
}
