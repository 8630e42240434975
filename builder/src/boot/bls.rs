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
use crate::boot::fat::{EspFile, EspSource};
use crate::util::arch::Arch;

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
/// The sort key of every hull entry: with it, systemd-boot orders entries by
/// their `version` line, highest first.
const SORT_KEY: &str = "hull";

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

/// An entry file name on the ESP: `hull-<prio>-<csum>-<serial>[+left[-done]].conf`.
/// `prio` orders entries (highest boots by default); the `+left-done`
/// suffix is systemd-boot's boot counter, which systemd-boot and
/// systemd-bless-boot rename.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryName {
    pub prio: u64,
    pub csum: String,
    pub serial: u32,
    pub tries_left: Option<u32>,
    pub tries_done: Option<u32>,
}

impl EntryName {
    pub fn parse(file: &str) -> Option<EntryName> {
        let stem = file.strip_suffix(".conf")?;
        let (id, counter) = match stem.rsplit_once('+') {
            Some((id, c)) => (id, Some(c)),
            None => (stem, None),
        };
        let (tries_left, tries_done) = match counter {
            None => (None, None),
            Some(c) => match c.split_once('-') {
                Some((l, d)) => (Some(l.parse().ok()?), Some(d.parse().ok()?)),
                None => (Some(c.parse().ok()?), None),
            },
        };
        let rest = id.strip_prefix("hull-")?;
        let (prio, rest) = rest.split_once('-')?;
        let (csum, serial) = rest.split_once('-')?;
        if csum.len() != 64 || !csum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(EntryName {
            prio: prio.parse().ok()?,
            csum: csum.to_string(),
            serial: serial.parse().ok()?,
            tries_left,
            tries_done,
        })
    }

    pub fn file_name(&self) -> String {
        let counter = match (self.tries_left, self.tries_done) {
            (Some(l), Some(d)) => format!("+{l}-{d}"),
            (Some(l), None) => format!("+{l}"),
            _ => String::new(),
        };
        format!(
            "hull-{}-{}-{}{counter}.conf",
            self.prio, self.csum, self.serial
        )
    }

    /// True when systemd-boot will not pick this entry by default any more.
    pub fn exhausted(&self) -> bool {
        self.tries_left == Some(0)
    }

    /// True while the entry is on trial (has a counter).
    pub fn on_trial(&self) -> bool {
        self.tries_left.is_some()
    }

    pub fn is_for(&self, key: &DeploymentKey) -> bool {
        self.csum == key.csum && self.serial == key.serial
    }
}

/// One entry file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFile {
    pub name: String,
    pub text: String,
}

/// The entry files to add and remove to turn `existing` (the names in the
/// ESP's entries directory) into `planned`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntryChanges {
    /// Every planned entry, default first, with its file name and text.
    pub all: Vec<EntryFile>,
    /// The files of `all` not on the ESP yet.
    pub write: Vec<EntryFile>,
    /// Files to delete once `write` is on disk.
    pub remove: Vec<String>,
}

/// An entry file already on the ESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingEntry {
    pub name: String,
    pub text: String,
}

/// The text of an entry file: the planned entry with hull's sort key and
/// its priority as the version.
fn entry_text(p: &PlannedEntry, prio: u64) -> String {
    let mut fields = p.entry.fields.clone();
    let at = fields
        .iter()
        .position(|(k, _)| k == "title")
        .map_or(0, |i| i + 1);
    fields.insert(at, ("sort-key".into(), SORT_KEY.into()));
    fields.insert(at + 1, ("version".into(), prio.to_string()));
    BlsEntry { fields }.render()
}

/// Names the planned entries so that systemd-boot sorts them in plan order.
/// An existing entry file is kept (and with it its boot counter) when its
/// text is still right and its place in the order allows; otherwise the
/// entry gets a new file, with a priority above every existing one and the
/// old file's counter, and the old file is removed once the new one is
/// written. No file is ever rewritten in place, so a power cut leaves the
/// old file or the new one, whole. `new_tries` gives a deployment that has
/// no entry yet a boot counter.
pub fn name_entries(
    planned: &[PlannedEntry],
    existing: &[ExistingEntry],
    new_tries: Option<(&DeploymentKey, u32)>,
) -> EntryChanges {
    let parsed: Vec<(&ExistingEntry, EntryName)> = existing
        .iter()
        .filter_map(|e| Some((e, EntryName::parse(&e.name)?)))
        .collect();
    let mut max_prio = parsed.iter().map(|(_, e)| e.prio).max().unwrap_or(0);
    let mut files: Vec<EntryFile> = Vec::with_capacity(planned.len());
    // From the last (lowest) to the default: each must sort above the one after it.
    let mut below: Option<u64> = None;
    for p in planned.iter().rev() {
        let current = parsed
            .iter()
            .filter(|(_, e)| e.is_for(&p.key))
            .max_by_key(|(_, e)| e.prio);
        let keep = current.filter(|(file, e)| {
            below.map_or(true, |b| e.prio > b) && file.text == entry_text(p, e.prio)
        });
        let (name, text) = match keep {
            Some((file, e)) => (e.clone(), file.text.clone()),
            None => {
                max_prio = max_prio.max(below.unwrap_or(0)) + 1;
                let (tries_left, tries_done) = match (current, new_tries) {
                    (Some((_, e)), _) => (e.tries_left, e.tries_done),
                    (None, Some((k, n))) if *k == p.key => (Some(n), None),
                    (None, _) => (None, None),
                };
                let name = EntryName {
                    prio: max_prio,
                    csum: p.key.csum.clone(),
                    serial: p.key.serial,
                    tries_left,
                    tries_done,
                };
                let text = entry_text(p, max_prio);
                (name, text)
            }
        };
        below = Some(name.prio);
        files.push(EntryFile {
            name: name.file_name(),
            text,
        });
    }
    files.reverse();
    let mut changes = EntryChanges::default();
    for file in files {
        if !existing.iter().any(|e| e.name == file.name) {
            changes.write.push(file.clone());
        }
        changes.all.push(file);
    }
    let keep: std::collections::BTreeSet<&str> =
        changes.all.iter().map(|e| e.name.as_str()).collect();
    changes.remove = existing
        .iter()
        .map(|e| e.name.clone())
        .filter(|n| n.ends_with(".conf") && !keep.contains(n.as_str()))
        .collect();
    changes
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

    const CSUM_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const CSUM_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

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

    fn key(csum: &str, serial: u32) -> DeploymentKey {
        DeploymentKey {
            osname: "minimal".into(),
            csum: csum.into(),
            serial,
        }
    }

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

    #[test]
    fn entry_names_round_trip() {
        let cases = [
            (format!("hull-3-{CSUM_A}-0.conf"), Some((3, None, None))),
            (
                format!("hull-12-{CSUM_A}-1+3.conf"),
                Some((12, Some(3), None)),
            ),
            (
                format!("hull-2-{CSUM_A}-0+0-3.conf"),
                Some((2, Some(0), Some(3))),
            ),
            (format!("hull-2-{CSUM_A}-0+x.conf"), None),
            ("hull-2-abc-0.conf".to_string(), None),
            ("ostree-1-minimal.conf".to_string(), None),
            (format!("hull-2-{CSUM_A}-0"), None),
        ];
        for (name, want) in cases {
            let got = EntryName::parse(&name);
            assert_eq!(
                got.as_ref().map(|e| (e.prio, e.tries_left, e.tries_done)),
                want,
                "{name}"
            );
            if let Some(e) = got {
                assert_eq!(e.file_name(), name);
            }
        }
        assert!(EntryName::parse(&format!("hull-2-{CSUM_A}-0+0-3.conf"))
            .unwrap()
            .exhausted());
    }

    fn planned(keys: &[DeploymentKey]) -> Vec<PlannedEntry> {
        keys.iter()
            .map(|k| PlannedEntry {
                key: k.clone(),
                entry: BlsEntry::parse(&format!(
                    "title t\noptions ostree=/{}\nlinux /k\n",
                    k.dir()
                ))
                .unwrap(),
            })
            .collect()
    }

    /// Existing files: (name, whether its text is still what the plan
    /// would write). A stale file is one whose bootlink OSTree moved.
    fn on_esp(planned: &[PlannedEntry], files: &[(&str, bool)]) -> Vec<ExistingEntry> {
        files
            .iter()
            .map(|(name, current)| {
                let parsed = EntryName::parse(name);
                let plan = parsed
                    .as_ref()
                    .and_then(|e| planned.iter().find(|p| e.is_for(&p.key)));
                let text = match (parsed, plan) {
                    (Some(e), Some(p)) if *current => entry_text(p, e.prio),
                    _ => "title stale\noptions ostree=/ostree/boot.0/minimal/abc/0\n".into(),
                };
                ExistingEntry {
                    name: name.to_string(),
                    text,
                }
            })
            .collect()
    }

    /// Plan order, files on the ESP, new tries → names of all, written, removed.
    #[test]
    fn naming_keeps_files_and_counters_and_orders_by_priority() {
        let a = key(CSUM_A, 0);
        let b = key(CSUM_B, 0);
        let a1 = format!("hull-1-{CSUM_A}-0.conf");
        let b2 = |c: &str| format!("hull-2-{CSUM_B}-0{c}.conf");
        let a3 = format!("hull-3-{CSUM_A}-0.conf");
        type Case<'a> = (
            &'a str,
            Vec<DeploymentKey>,
            Vec<(String, bool)>,
            Option<(&'a DeploymentKey, u32)>,
            Vec<String>,
            Vec<String>,
            Vec<String>,
        );
        let cases: Vec<Case> = vec![
            (
                "first image",
                vec![a.clone()],
                vec![],
                None,
                vec![a1.clone()],
                vec![a1.clone()],
                vec![],
            ),
            (
                "update: B on top with 3 tries, A untouched",
                vec![b.clone(), a.clone()],
                vec![(a1.clone(), true)],
                Some((&b, 3)),
                vec![b2("+3"), a1.clone()],
                vec![b2("+3")],
                vec![],
            ),
            (
                "update that moved A's bootlink: A gets a new file, B goes above it",
                vec![b.clone(), a.clone()],
                vec![(a1.clone(), false)],
                Some((&b, 3)),
                vec![
                    format!("hull-3-{CSUM_B}-0+3.conf"),
                    format!("hull-2-{CSUM_A}-0.conf"),
                ],
                vec![
                    format!("hull-3-{CSUM_B}-0+3.conf"),
                    format!("hull-2-{CSUM_A}-0.conf"),
                ],
                vec![a1.clone()],
            ),
            (
                "B being tried keeps its file and counter",
                vec![b.clone(), a.clone()],
                vec![(a1.clone(), true), (b2("+1-2"), true)],
                Some((&b, 3)),
                vec![b2("+1-2"), a1.clone()],
                vec![],
                vec![],
            ),
            (
                "rollback: A moves above B with a new file; B keeps its counter",
                vec![a.clone(), b.clone()],
                vec![(a1.clone(), true), (b2("+0-3"), true)],
                None,
                vec![a3.clone(), b2("+0-3")],
                vec![a3.clone()],
                vec![a1.clone()],
            ),
            (
                "a stale entry with a counter is replaced, the counter carried over",
                vec![a.clone(), b.clone()],
                vec![(a3.clone(), true), (b2("+0-3"), false)],
                None,
                vec![
                    format!("hull-5-{CSUM_A}-0.conf"),
                    format!("hull-4-{CSUM_B}-0+0-3.conf"),
                ],
                vec![
                    format!("hull-5-{CSUM_A}-0.conf"),
                    format!("hull-4-{CSUM_B}-0+0-3.conf"),
                ],
                vec![a3.clone(), b2("+0-3")],
            ),
            (
                "prune: A gone, stale files gone",
                vec![b.clone()],
                vec![
                    (a1.clone(), true),
                    (b2(""), true),
                    ("ostree-1-minimal.conf".into(), false),
                    ("notes.txt".into(), false),
                ],
                None,
                vec![b2("")],
                vec![],
                vec![a1.clone(), "ostree-1-minimal.conf".into()],
            ),
        ];
        for (what, order, files, tries, all, write, remove) in cases {
            let plan = planned(&order);
            let files: Vec<(&str, bool)> = files.iter().map(|(n, c)| (n.as_str(), *c)).collect();
            let c = name_entries(&plan, &on_esp(&plan, &files), tries);
            let names = |v: &[EntryFile]| v.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
            assert_eq!(names(&c.all), all, "{what}: all");
            assert_eq!(names(&c.write), write, "{what}: write");
            assert_eq!(c.remove, remove, "{what}: remove");
            for e in &c.all {
                let prio = EntryName::parse(&e.name).unwrap().prio;
                assert!(
                    e.text
                        .contains(&format!("\nsort-key hull\nversion {prio}\n")),
                    "{what}: {}",
                    e.text
                );
            }
        }
    }
}
