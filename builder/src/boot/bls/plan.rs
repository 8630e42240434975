//! The ESP plan ([`plan`]): systemd-boot, loader.conf, and an entry per
//! OSTree deployment with the kernel and initramfs it names, read from a
//! deployed sysroot.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use cap_std::fs::Dir;

use super::entry::BlsEntry;
use super::naming::name_entries;
use crate::boot;
use crate::boot::fat::{EspFile, EspSource};
use crate::util::arch::Arch;

/// A path an entry names, as a relative path inside the boot partition;
/// anything absolute-escaping or with `..` is refused.
fn boot_relative(p: &str) -> Result<PathBuf> {
    let rel = Path::new(p.trim_start_matches('/'));
    if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        bail!("boot entry path {p} is not a plain path inside /boot");
    }
    Ok(rel.to_path_buf())
}

/// A deployment as OSTree keeps it: `ostree/deploy/<osname>/deploy/<csum>.<serial>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeploymentKey {
    pub osname: String,
    pub csum: String,
    pub serial: u32,
}

impl DeploymentKey {
    /// The deployment's directory, relative to the sysroot.
    pub fn dir(&self) -> String {
        format!(
            "ostree/deploy/{}/deploy/{}.{}",
            self.osname, self.csum, self.serial
        )
    }
}

/// A boot entry for one deployment, before it gets its ESP name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEntry {
    pub key: DeploymentKey,
    /// title, options, linux, initrd: what does not change while the
    /// deployment exists.
    pub entry: BlsEntry,
}

/// What the ESP should hold: fixed files (systemd-boot, loader.conf, the
/// kernels and initramfs files, all content-addressed) and one entry per
/// deployment, the default first.
#[derive(Debug, Clone)]
pub struct EspPlan {
    pub files: Vec<EspFile>,
    pub entries: Vec<PlannedEntry>,
}

impl EspPlan {
    /// Every file of a fresh ESP (the image builder's view): entries named
    /// in order, none counting boot tries.
    pub fn into_files(self) -> Vec<EspFile> {
        let names = name_entries(&self.entries, &[], None);
        let mut files = self.files;
        files.extend(names.write.into_iter().map(|e| EspFile {
            path: format!("{ENTRIES_DIR}/{}", e.name),
            source: EspSource::Bytes(e.text.into_bytes()),
        }));
        files
    }
}

/// Where systemd-boot reads Type #1 entries, on the ESP.
pub const ENTRIES_DIR: &str = "loader/entries";

/// The ESP's contents for a deployed sysroot: systemd-boot, loader.conf, and
/// an entry per OSTree deployment with the kernel and initramfs it names.
///
/// OSTree's own entries (under `boot/loader/entries`) name a deployment
/// through `ostree=/ostree/boot.N/<os>/<bootcsum>/<n>`, a path that changes
/// each time the deployment list is written. hull's entries point
/// OSTree's bootlinks are what ostree-prepare-root follows and what its
/// system generator parses the stateroot from, so hull's entries keep them;
/// when a write of the deployment list moves them, [`name_entries`] gives
/// the entry a new file rather than rewriting the old one.
///
/// `sysroot` is the OSTree sysroot (opened as a Dir and known by path, from
/// which the large files are streamed); `systemd_boot` is systemd-boot's EFI
/// binary.
pub fn plan(
    sysroot: &Dir,
    sysroot_path: &Path,
    arch: Arch,
    systemd_boot: &Path,
) -> Result<EspPlan> {
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
    let boot_path = sysroot_path.join("boot");
    let entries_dir = "boot/loader/entries";
    let mut names: Vec<String> = sysroot
        .read_dir(entries_dir)
        .with_context(|| format!("reading {}/{entries_dir}", sysroot_path.display()))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    names.retain(|n| n.ends_with(".conf"));
    if names.is_empty() {
        bail!(
            "OSTree wrote no boot entries under {}/{entries_dir}",
            sysroot_path.display()
        );
    }
    let mut found = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        let text = sysroot
            .read_to_string(format!("{entries_dir}/{name}"))
            .with_context(|| format!("reading boot entry {name}"))?;
        let entry = BlsEntry::parse(&text).with_context(|| format!("parsing boot entry {name}"))?;
        // OSTree numbers its entries so that the default has the highest version.
        let order: u64 = entry
            .get("version")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let linux = entry
            .get("linux")
            .with_context(|| format!("boot entry {name} has no linux line"))?;
        for p in std::iter::once(linux).chain(entry.get_all("initrd")) {
            let rel = boot_relative(p)?;
            if !sysroot.is_file(Path::new("boot").join(&rel)) {
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
        let (key, entry) =
            keyed_entry(sysroot, &entry).with_context(|| format!("boot entry {name}"))?;
        found.push((order, PlannedEntry { key, entry }));
    }
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.key.cmp(&b.1.key)));
    Ok(EspPlan {
        files,
        entries: found.into_iter().map(|(_, e)| e).collect(),
    })
}

/// The deployment an entry boots, and the entry without OSTree's
/// position-dependent `version` line and `(ostree:N)` title suffix.
fn keyed_entry(sysroot: &Dir, entry: &BlsEntry) -> Result<(DeploymentKey, BlsEntry)> {
    let options = entry.get("options").context("no options line")?;
    let bootlink = options
        .split_whitespace()
        .find_map(|a| a.strip_prefix("ostree="))
        .context("no ostree= in the options")?;
    let key = resolve_bootlink(sysroot, bootlink)?;
    let mut fields = Vec::new();
    for (k, v) in &entry.fields {
        match k.as_str() {
            "version" | "sort-key" => {}
            "title" => {
                let title = match v.rfind(" (ostree:") {
                    Some(i) if v.ends_with(')') => &v[..i],
                    _ => v.as_str(),
                };
                fields.push((k.clone(), title.to_string()));
            }
            _ => fields.push((k.clone(), v.clone())),
        }
    }
    Ok((key, BlsEntry { fields }))
}

/// Follows `/ostree/boot.N/<os>/<bootcsum>/<n>` to the deployment it names.
fn resolve_bootlink(sysroot: &Dir, bootlink: &str) -> Result<DeploymentKey> {
    let rel = bootlink.trim_start_matches('/');
    let parts: Vec<&str> = rel.split('/').collect();
    let osname = match parts.as_slice() {
        ["ostree", boot, os, _, _] if boot.starts_with("boot.") => *os,
        _ => bail!("ostree={bootlink} is not of the form /ostree/boot.N/<os>/<bootcsum>/<n>"),
    };
    let target = sysroot
        .read_link_contents(rel)
        .with_context(|| format!("reading the link {bootlink}"))?;
    let base = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{bootlink} points to {}", target.display()))?;
    let (csum, serial) = base
        .split_once('.')
        .and_then(|(c, s)| Some((c, s.parse::<u32>().ok()?)))
        .filter(|(c, _)| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .with_context(|| format!("{bootlink} points to {base}, not <checksum>.<serial>"))?;
    Ok(DeploymentKey {
        osname: osname.to_string(),
        csum: csum.to_string(),
        serial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::ambient_authority;

    const ENTRY: &str = "title Debian GNU/Linux 13 (trixie) 1.0.0 (ostree:0)\nversion 1\n\
options root=LABEL=hull-root rw console=ttyS0 ostree=/ostree/boot.1/minimal/abc/0\n\
linux /ostree/minimal-abc/vmlinuz-6.12\ninitrd /ostree/minimal-abc/initramfs-6.12.img\n";

    const CSUM_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    /// A sysroot as OSTree leaves it with one deployment: boot/loader ->
    /// loader.1, the entry naming ostree/boot.1/minimal/abc/0, which links to
    /// the deployment directory.
    fn sysroot_fixture() -> (tempfile::TempDir, Dir) {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open_ambient_dir(t.path(), ambient_authority()).unwrap();
        d.create_dir_all("boot/loader.1/entries").unwrap();
        d.symlink("loader.1", "boot/loader").unwrap();
        d.create_dir_all("boot/ostree/minimal-abc").unwrap();
        d.write("boot/ostree/minimal-abc/vmlinuz-6.12", "k")
            .unwrap();
        d.write("boot/ostree/minimal-abc/initramfs-6.12.img", "i")
            .unwrap();
        d.write("boot/loader.1/entries/ostree-1-minimal.conf", ENTRY)
            .unwrap();
        d.create_dir_all(format!("ostree/deploy/minimal/deploy/{CSUM_A}.0"))
            .unwrap();
        d.create_dir_all("ostree/boot.1.1/minimal/abc").unwrap();
        d.symlink("boot.1.1", "ostree/boot.1").unwrap();
        d.symlink(
            format!("../../../deploy/minimal/deploy/{CSUM_A}.0"),
            "ostree/boot.1.1/minimal/abc/0",
        )
        .unwrap();
        (t, d)
    }

    use super::super::test_key as key;

    #[test]
    fn plan_lists_files_and_an_entry_per_deployment() {
        let (t, d) = sysroot_fixture();
        let plan = plan(
            &d,
            t.path(),
            Arch::X86_64,
            Path::new("/x/systemd-bootx64.efi"),
        )
        .unwrap();
        let paths: Vec<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "EFI/BOOT/BOOTX64.EFI",
                "loader/loader.conf",
                "ostree/minimal-abc/vmlinuz-6.12",
                "ostree/minimal-abc/initramfs-6.12.img",
            ]
        );
        match &plan.files[2].source {
            EspSource::File(p) => {
                assert_eq!(p, &t.path().join("boot/ostree/minimal-abc/vmlinuz-6.12"))
            }
            _ => panic!("kernel should be streamed from its file"),
        }
        assert_eq!(plan.entries.len(), 1);
        let e = &plan.entries[0];
        assert_eq!(e.key, key(CSUM_A, 0));
        assert_eq!(
            e.entry.get("title"),
            Some("Debian GNU/Linux 13 (trixie) 1.0.0")
        );
        assert_eq!(e.entry.get("version"), None);
        let options = e.entry.get("options").unwrap();
        assert!(
            options.contains("ostree=/ostree/boot.1/minimal/abc/0"),
            "OSTree's bootlink is kept: {options}"
        );

        let files = plan.into_files();
        let last = files.last().unwrap();
        assert_eq!(last.path, format!("loader/entries/hull-1-{CSUM_A}-0.conf"));
        let EspSource::Bytes(text) = &last.source else {
            panic!()
        };
        let text = String::from_utf8(text.clone()).unwrap();
        assert!(text.contains("\nsort-key hull\nversion 1\n"), "{text}");

        let arm = super::plan(&d, t.path(), Arch::Aarch64, Path::new("/x/a.efi")).unwrap();
        assert_eq!(arm.files[0].path, "EFI/BOOT/BOOTAA64.EFI");
    }

    #[test]
    fn plan_refuses_missing_or_escaping_kernels_and_dangling_links() {
        let (t, d) = sysroot_fixture();
        d.remove_file("boot/ostree/minimal-abc/initramfs-6.12.img")
            .unwrap();
        let err = format!(
            "{:#}",
            plan(&d, t.path(), Arch::X86_64, Path::new("/x")).unwrap_err()
        );
        assert!(err.contains("initramfs-6.12.img"), "{err}");

        let (t, d) = sysroot_fixture();
        d.write(
            "boot/loader.1/entries/ostree-1-minimal.conf",
            ENTRY.replace("/ostree/minimal-abc/vmlinuz-6.12", "/../../etc/shadow"),
        )
        .unwrap();
        let err = format!(
            "{:#}",
            plan(&d, t.path(), Arch::X86_64, Path::new("/x")).unwrap_err()
        );
        assert!(err.contains("not a plain path"), "{err}");

        let (t, d) = sysroot_fixture();
        d.remove_file("ostree/boot.1.1/minimal/abc/0").unwrap();
        let err = format!(
            "{:#}",
            plan(&d, t.path(), Arch::X86_64, Path::new("/x")).unwrap_err()
        );
        assert!(err.contains("ostree/boot.1/minimal/abc/0"), "{err}");
    }

    #[test]
    fn plan_needs_an_entry() {
        let (t, d) = sysroot_fixture();
        d.remove_file("boot/loader.1/entries/ostree-1-minimal.conf")
            .unwrap();
        assert!(plan(&d, t.path(), Arch::X86_64, Path::new("/x")).is_err());
    }
}
