//! The initramfs, compressed by hull on the host.
//!
//! dracut must run as the target: it copies the target's programs,
//! libraries and kernel modules into the archive. Its last step, though, is
//! compressing that archive (44 MB of cpio; Debian's dracut picks `gzip -9`,
//! about 8 s natively, 15 s under qemu-user on aarch64), and the check of
//! the result (lsinitrd) decompressed it three times more. So dracut writes
//! the archive uncompressed (`BUILD_UNCOMPRESSED`), and hull checks it holds
//! ostree-prepare-root and compresses it on the host ([`finish`]): with
//! `zstd -3 --rsyncable` when every kernel of the tree reads zstd
//! (`CONFIG_RD_ZSTD=y`: 0.3 s, and slightly smaller than `gzip -9`; zstd is
//! what mkosi and Fedora use), else with the compressor dracut would have
//! picked, with dracut's own options (gzip's output is byte-identical to
//! the one dracut makes in the tree).
//!
//! Whatever hull should not second-guess (a `compress=`, `uefi=` or squash
//! setting in a dracut configuration file, `INITRD_COMPRESS`, a compressor
//! hull has no host equivalent for) is left to dracut in the tree
//! ([`Plan::InTree`]).

use std::path::Path;

use anyhow::{bail, Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::util::cmd::{require_program, Cmd};

/// The shell run inside the tree once packages are in: every kernel's
/// initramfs, as [`super::mmdebstrap::BUILD_INITRAMFS`] builds it but left
/// uncompressed for [`finish`], which checks it holds ostree-prepare-root. Through INITRD_COMPRESS=cat, not `--no-compress`:
/// dracut records its command line in the image
/// (usr/lib/dracut/build-parameter.txt), so the option would make the
/// archive differ from the one a native build makes; the environment is
/// not recorded.
pub(super) const BUILD_UNCOMPRESSED: &str = r#"set -e
for m in /usr/lib/modules/*; do
  k=${m##*/}
  INITRD_COMPRESS=cat dracut --force --kver "$k" "/boot/initrd.img-$k"
done"#;

/// Where dracut looks for compressors, in its order, when its
/// configuration names none (dracut 106: zstd first, then pigz, gzip ...).
pub const DRACUT_AUTO_ORDER: &[&str] = &[
    "zstd", "pigz", "gzip", "lz4", "lzop", "lzma", "xz", "lbzip2", "bzip2",
];

/// The host command (program and options) that compresses as dracut does
/// with `pick`, for the compressors hull runs natively; `None` for the rest.
/// The options are dracut's own for each (dracut.sh, "choose the right
/// arguments for the compressor"); hull adds `-c FILE`.
pub fn native_command(pick: &str) -> Option<&'static [&'static str]> {
    match pick {
        "gzip" => Some(&["gzip", "-n", "-9", "--rsyncable"]),
        "zstd" => Some(&["zstd", "-15", "-q", "-T0"]),
        _ => None,
    }
}

/// hull's own compression, when every kernel of the tree reads zstd: level
/// 3, rsyncable (as dracut's gzip is: an unchanged stretch of the archive
/// compresses to the same bytes, so a static delta between two images'
/// initramfs finds it), on every core (zstd's output does not depend on the
/// number of workers).
pub const HULL_ZSTD: &[&str] = &["zstd", "-q", "-3", "--rsyncable", "-T0"];

/// Whether every kernel configuration (`/boot/config-*` text) can unpack a
/// zstd initramfs; `false` when there is none.
pub fn kernels_read_zstd(configs: &[String]) -> bool {
    !configs.is_empty()
        && configs
            .iter()
            .all(|c| c.lines().any(|l| l.trim() == "CONFIG_RD_ZSTD=y"))
}

/// The compressor dracut picks on its own: the first of
/// [`DRACUT_AUTO_ORDER`] the tree has (`has` says whether a program is on
/// dracut's PATH in the tree); `None` when it has none (dracut then writes
/// the archive uncompressed).
pub fn dracut_pick(has: impl Fn(&str) -> bool) -> Option<&'static str> {
    DRACUT_AUTO_ORDER.iter().copied().find(|p| has(p))
}

/// Whether a dracut configuration file sets how the image is compressed or
/// packed: any setting line (not a comment) naming `compress` (compress=,
/// squash_compress=), `uefi` (a UKI is no cpio) or `squash` (the squash
/// module leaves the archive uncompressed). Such a tree keeps dracut's own
/// compression: hull does not interpret shell.
pub fn conf_sets_packing(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .any(|l| ["compress", "uefi", "squash"].iter().any(|w| l.contains(w)))
}

/// What becomes of the initramfs of a tree built under emulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// dracut wrote it uncompressed; this host command compresses it.
    Native(&'static [&'static str]),
    /// dracut builds it again in the tree, compressing it itself: why.
    InTree(String),
}

/// The directories dracut puts on its PATH (dracut.sh), relative to `/`.
const DRACUT_PATH: &[&str] = &["usr/sbin", "sbin", "usr/bin", "bin"];

/// Where dracut reads its configuration, relative to `/`: the main file
/// and the two drop-in directories (`*.conf`).
const CONF_FILE: &str = "etc/dracut.conf";
const CONF_DIRS: &[&str] = &["etc/dracut.conf.d", "usr/lib/dracut/dracut.conf.d"];

/// The plan for `root`'s initramfs: its dracut configuration (`confs`:
/// path and text of each file) and the programs it has decide, with
/// `env_compress` (INITRD_COMPRESS is set: dracut would use it) and `zstd`
/// (every kernel reads zstd: [`HULL_ZSTD`]).
pub fn plan(
    confs: &[(String, String)],
    has: impl Fn(&str) -> bool,
    env_compress: bool,
    zstd: bool,
) -> Plan {
    if env_compress {
        return Plan::InTree("INITRD_COMPRESS is set".into());
    }
    if let Some((path, _)) = confs.iter().find(|(_, t)| conf_sets_packing(t)) {
        return Plan::InTree(format!("/{path} sets compression or packing"));
    }
    if zstd {
        return Plan::Native(HULL_ZSTD);
    }
    match dracut_pick(has) {
        None => Plan::InTree("the tree has no compressor dracut knows".into()),
        Some(pick) => match native_command(pick) {
            Some(cmd) => Plan::Native(cmd),
            None => Plan::InTree(format!("hull does not run {pick} natively")),
        },
    }
}

/// Every dracut configuration file of the tree: path (relative) and text.
fn read_confs(root: &Dir) -> Result<Vec<(String, String)>> {
    let mut paths = Vec::new();
    if root.is_file(CONF_FILE) {
        paths.push(CONF_FILE.to_string());
    }
    for dir in CONF_DIRS {
        if !root.is_dir(dir) {
            continue;
        }
        for entry in root
            .read_dir(dir)
            .with_context(|| format!("reading /{dir}"))?
        {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") {
                paths.push(format!("{dir}/{name}"));
            }
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = root
                .read_to_string(&p)
                .with_context(|| format!("reading /{p}"))?;
            Ok((p, text))
        })
        .collect()
}

/// One newc cpio entry: its name, and the offset just past its data.
fn entry_at(data: &[u8], at: usize) -> Result<(String, usize)> {
    let field = |i: usize| -> Result<usize> {
        let s = data
            .get(at + 6 + 8 * i..at + 14 + 8 * i)
            .context("truncated cpio header")?;
        usize::from_str_radix(std::str::from_utf8(s)?, 16).context("bad cpio header field")
    };
    match data.get(at..at + 6) {
        Some(b"070701") | Some(b"070702") => {}
        _ => bail!("no cpio (newc) header at byte {at}"),
    }
    let (size, namesize) = (field(6)?, field(11)?);
    let name = data
        .get(at + 110..at + 110 + namesize)
        .context("truncated cpio name")?;
    let name = String::from_utf8_lossy(name.strip_suffix(&[0]).unwrap_or(name)).into_owned();
    let data_at = (at + 110 + namesize).next_multiple_of(4);
    Ok((name, (data_at + size).next_multiple_of(4)))
}

/// The names in the archive starting at `at`, and the offset just past its
/// trailer.
fn archive_at(data: &[u8], mut at: usize) -> Result<(Vec<String>, usize)> {
    let mut names = Vec::new();
    loop {
        let (name, next) = entry_at(data, at)?;
        if next > data.len() {
            bail!("cpio entry {name} runs past the end");
        }
        at = next;
        if name == "TRAILER!!!" {
            return Ok((names, at));
        }
        names.push(name);
    }
}

/// The first cpio archive of an image: the main one (its entry names), or
/// the early one of microcode and ACPI tables, which the kernel reads
/// uncompressed, followed by the main archive at `next`.
enum First {
    Main(Vec<String>),
    Early { next: usize },
}

fn first_archive(image: &[u8]) -> Result<First> {
    let (names, end) = archive_at(image, 0)?;
    if !names
        .iter()
        .any(|n| n.trim_start_matches("./") == "early_cpio")
    {
        return Ok(First::Main(names));
    }
    // cpio pads an archive with zeros (to 512 bytes); the next one follows.
    let next = end
        + image[end..]
            .iter()
            .position(|b| *b != 0)
            .context("an early cpio archive and nothing after it")?;
    Ok(First::Early { next })
}

/// Splits dracut's uncompressed output (one or more cpio archives, the
/// first may be the early one): the offset where the main archive starts
/// (0 when there is no early archive) and the main archive's entry names.
pub fn split(image: &[u8]) -> Result<(usize, Vec<String>)> {
    match first_archive(image)? {
        First::Main(names) => Ok((0, names)),
        First::Early { next } => Ok((next, archive_at(image, next)?.0)),
    }
}

/// The entry names of the main archive of an initramfs file as dracut and
/// [`finish`] lay it out (an uncompressed early archive, if any, then the
/// main one: zstd, gzip or uncompressed, unpacked with the host's `zstd` or
/// `gzip`), as `lsinitrd` lists them; for tests and checks that must not
/// depend on the tree having the decompressor.
pub fn list(path: &Path) -> Result<Vec<String>> {
    let image = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let main = match image.get(..6) {
        Some(b"070701") | Some(b"070702") => match first_archive(&image)? {
            First::Main(names) => return Ok(names),
            First::Early { next } => next,
        },
        _ => 0,
    };
    let tool = match image.get(main..main + 4) {
        Some([0x28, 0xb5, 0x2f, 0xfd]) => "zstd",
        Some([0x1f, 0x8b, ..]) => "gzip",
        _ => bail!(
            "{}: the main archive is neither zstd nor gzip",
            path.display()
        ),
    };
    let mut packed = tempfile::NamedTempFile::new()?;
    std::io::Write::write_all(&mut packed, &image[main..])?;
    let cpio = Cmd::new(tool).arg("-dc").arg(packed.path()).output()?;
    Ok(archive_at(&cpio, 0)?.0)
}

/// Compresses the initramfs dracut left uncompressed in `target` (the
/// tree's root) with `BUILD_UNCOMPRESSED`, per [`plan`]: natively, after
/// checking each holds ostree-prepare-root; or, when the plan says so, by
/// dracut again in the tree (`in_tree_script`, run under chroot).
pub fn finish(target: &Path, in_tree_script: &str) -> Result<()> {
    let root = Dir::open_ambient_dir(target, ambient_authority())
        .with_context(|| format!("opening {}", target.display()))?;
    let has = |p: &str| DRACUT_PATH.iter().any(|d| root.is_file(format!("{d}/{p}")));
    let plan = plan(
        &read_confs(&root)?,
        has,
        std::env::var_os("INITRD_COMPRESS").is_some(),
        kernels_read_zstd(&kernel_configs(&root)?),
    );
    let cmd = match plan {
        Plan::InTree(why) => {
            log::info!("initramfs: dracut compresses it in the tree: {why}");
            return super::customize::chroot(target, &["/bin/sh", "-c", in_tree_script]);
        }
        Plan::Native(cmd) => cmd,
    };
    log::debug!("initramfs: compressed on the host with {}", cmd.join(" "));
    require_program(cmd[0], cmd[0])?;
    let images = boot_files(&root, "initrd.img-")?;
    if images.is_empty() {
        bail!("no /boot/initrd.img-*: dracut did not run");
    }
    for name in images {
        let path = target.join("boot").join(&name);
        compress_one(&path, cmd).with_context(|| format!("compressing {}", path.display()))?;
    }
    Ok(())
}

/// The names in the tree's `/boot` that start with `prefix`, sorted.
fn boot_files(root: &Dir, prefix: &str) -> Result<Vec<String>> {
    let mut names: Vec<String> = root
        .read_dir("boot")
        .context("reading /boot")?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    Ok(names)
}

/// The text of every `/boot/config-*` of the tree (the kernels' build
/// configurations, which Debian's kernel packages install).
fn kernel_configs(root: &Dir) -> Result<Vec<String>> {
    boot_files(root, "config-")?
        .iter()
        .map(|n| {
            root.read_to_string(format!("boot/{n}"))
                .with_context(|| format!("reading /boot/{n}"))
        })
        .collect()
}

/// [`finish`] with dracut's usual run for the in-tree fallback: what the
/// rootfs stage and an overlay that changes dracut's input both call once
/// `BUILD_UNCOMPRESSED` has run in the tree.
pub fn finish_default(target: &Path) -> Result<()> {
    finish(target, super::mmdebstrap::BUILD_INITRAMFS)
}

/// Replaces one uncompressed image by its early archive (if any) followed
/// by the main archive compressed with `cmd`, as dracut lays them out.
fn compress_one(path: &Path, cmd: &[&str]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let image = std::fs::read(path)?;
    let (main, names) = split(&image)?;
    if !names.iter().any(|n| n.contains("ostree-prepare-root")) {
        bail!("the initramfs has no ostree-prepare-root: is ostree-boot installed?");
    }
    let dir = path.parent().context("an image path with no directory")?;
    let mut input = tempfile::NamedTempFile::new_in(dir)?;
    input.write_all(&image[main..])?;
    input.flush()?;
    let compressed = Cmd::new(cmd[0])
        .args(&cmd[1..])
        .arg("-c")
        .arg(input.path())
        .output()?;
    drop(input);
    let mut out = tempfile::NamedTempFile::new_in(dir)?;
    out.write_all(&image[..main])?;
    out.write_all(&compressed)?;
    out.as_file().sync_all()?;
    // dracut writes it under umask 077.
    out.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    out.persist(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dracut_pick_follows_dracut_order() {
        let tree = |have: &'static [&'static str]| move |p: &str| have.contains(&p);
        let table: &[(&[&str], Option<&str>)] = &[
            (&["gzip"], Some("gzip")),
            (&["gzip", "zstd"], Some("zstd")),
            (&["xz", "pigz", "gzip"], Some("pigz")),
            (&["bzip2", "xz"], Some("xz")),
            (&["cat"], None),
            (&[], None),
        ];
        for (have, want) in table {
            assert_eq!(dracut_pick(tree(have)), *want, "{have:?}");
        }
    }

    #[test]
    fn native_commands_are_dracuts() {
        assert_eq!(
            native_command("gzip").unwrap(),
            ["gzip", "-n", "-9", "--rsyncable"]
        );
        assert_eq!(
            native_command("zstd").unwrap(),
            ["zstd", "-15", "-q", "-T0"]
        );
        for p in ["pigz", "xz", "lz4", "bzip2", "cat"] {
            assert_eq!(native_command(p), None, "{p}");
        }
    }

    #[test]
    fn plan_table() {
        let gzip = |p: &str| p == "gzip";
        let conf = |t: &str| vec![("etc/dracut.conf.d/50-hull.conf".to_string(), t.to_string())];
        let hull = conf("hostonly=\"no\"\n# compress=\"xz\" in a comment\nreproducible=\"yes\"\n");
        type Confs = Vec<(String, String)>;
        let table: Vec<(Confs, bool, Plan)> = vec![
            (
                hull.clone(),
                false,
                Plan::Native(native_command("gzip").unwrap()),
            ),
            (vec![], false, Plan::Native(native_command("gzip").unwrap())),
            (
                conf("compress=\"xz\"\n"),
                false,
                Plan::InTree("/etc/dracut.conf.d/50-hull.conf sets compression or packing".into()),
            ),
            (
                conf("  uefi=yes"),
                false,
                Plan::InTree("/etc/dracut.conf.d/50-hull.conf sets compression or packing".into()),
            ),
            (
                conf("add_dracutmodules+=\" squash \""),
                false,
                Plan::InTree("/etc/dracut.conf.d/50-hull.conf sets compression or packing".into()),
            ),
            (
                hull.clone(),
                true,
                Plan::InTree("INITRD_COMPRESS is set".into()),
            ),
        ];
        for (confs, env, want) in table {
            assert_eq!(plan(&confs, gzip, env, false), want, "{confs:?} {env}");
            // A kernel that reads zstd: hull's zstd, unless the tree or the
            // environment asks for dracut's own compression.
            let with_zstd = match want {
                Plan::Native(_) => Plan::Native(HULL_ZSTD),
                w => w,
            };
            assert_eq!(plan(&confs, gzip, env, true), with_zstd, "{confs:?} {env}");
        }
        assert_eq!(
            plan(&hull, |p| p == "xz", false, false),
            Plan::InTree("hull does not run xz natively".into())
        );
        assert_eq!(
            plan(&hull, |_| false, false, false),
            Plan::InTree("the tree has no compressor dracut knows".into())
        );
        assert_eq!(
            plan(&hull, |p| p == "zstd" || p == "gzip", false, false),
            Plan::Native(native_command("zstd").unwrap())
        );
    }

    /// A newc archive of `names` (each file holding its own name), padded
    /// to 512 bytes as cpio -o pads it.
    fn newc(names: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut push = |name: &str, body: &[u8]| {
            out.extend(format!(
                "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
                1, 0o100644, 0, 0, 1, 0, body.len(), 0, 0, 0, 0, name.len() + 1, 0
            ).as_bytes());
            out.extend(name.as_bytes());
            out.push(0);
            out.resize(out.len().next_multiple_of(4), 0);
            out.extend(body);
            out.resize(out.len().next_multiple_of(4), 0);
        };
        for n in names {
            push(n, n.as_bytes());
        }
        push("TRAILER!!!", b"");
        out.resize(out.len().next_multiple_of(512), 0);
        out
    }

    #[test]
    fn split_finds_the_main_archive() {
        let main = newc(&[".", "usr", "usr/lib/ostree/ostree-prepare-root"]);
        let (at, names) = split(&main).unwrap();
        assert_eq!(at, 0);
        assert_eq!(names, [".", "usr", "usr/lib/ostree/ostree-prepare-root"]);

        let early = newc(&[".", "early_cpio", "kernel/x86/microcode/GenuineIntel.bin"]);
        let both = [early.clone(), main.clone()].concat();
        let (at, names) = split(&both).unwrap();
        assert_eq!(at, early.len());
        assert_eq!(&both[at..], &main[..]);
        assert_eq!(names.len(), 3);

        // Not an archive, a truncated one, an early archive alone.
        assert!(split(b"\x1f\x8b\x08\0").is_err());
        assert!(split(&main[..100]).is_err());
        assert!(split(&early).is_err());
    }

    /// The host's gzip, as [`finish`] runs it: the early archive stays as
    /// it is, the main one is compressed after it, the file is private.
    #[test]
    fn compress_one_keeps_the_early_archive_uncompressed() {
        use std::os::unix::fs::PermissionsExt;
        let early = newc(&[".", "early_cpio", "kernel/x86/microcode/GenuineIntel.bin"]);
        let main = newc(&[".", "usr/lib/ostree/ostree-prepare-root"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("initrd.img-6.12");
        std::fs::write(&path, [early.clone(), main.clone()].concat()).unwrap();
        let gzip = native_command("gzip").unwrap();
        compress_one(&path, gzip).unwrap();
        let image = std::fs::read(&path).unwrap();
        assert_eq!(&image[..early.len()], &early[..]);
        assert_eq!(&image[early.len()..early.len() + 2], b"\x1f\x8b");
        let plain = dir.path().join("main.gz");
        std::fs::write(&plain, &image[early.len()..]).unwrap();
        let back = Cmd::new("gzip").args(["-dc"]).arg(&plain).output().unwrap();
        assert_eq!(back, main);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Same input, same bytes.
        std::fs::write(&path, [early.clone(), main.clone()].concat()).unwrap();
        compress_one(&path, gzip).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), image);
        // No ostree-prepare-root: refused, the file left as it was.
        let bare = newc(&[".", "usr/bin/sh"]);
        std::fs::write(&path, &bare).unwrap();
        let err = compress_one(&path, gzip).unwrap_err().to_string();
        assert!(err.contains("no ostree-prepare-root"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bare);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    /// [`list`] reads what [`compress_one`] wrote, behind an early archive.
    #[test]
    fn list_reads_a_compressed_image() {
        let early = newc(&[".", "early_cpio", "kernel/x86/microcode/GenuineIntel.bin"]);
        let main = newc(&[".", "usr/lib/ostree/ostree-prepare-root"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("initrd.img-6.12");
        for cmd in [HULL_ZSTD, native_command("gzip").unwrap()] {
            std::fs::write(&path, [early.clone(), main.clone()].concat()).unwrap();
            compress_one(&path, cmd).unwrap();
            assert_eq!(
                list(&path).unwrap(),
                [".", "usr/lib/ostree/ostree-prepare-root"],
                "{cmd:?}"
            );
        }
        std::fs::write(&path, &main).unwrap();
        assert_eq!(list(&path).unwrap().len(), 2);
    }

    #[test]
    fn zstd_only_when_every_kernel_reads_it() {
        let yes = "CONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=y\n".to_string();
        let no = "CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\n".to_string();
        assert!(kernels_read_zstd(std::slice::from_ref(&yes)));
        assert!(!kernels_read_zstd(std::slice::from_ref(&no)));
        assert!(!kernels_read_zstd(&[yes, no]));
        assert!(!kernels_read_zstd(&[]));
    }

    /// The host's zstd as [`finish`] runs it: the same bytes each time, and
    /// zstd gives the archive back.
    #[test]
    fn zstd_is_reproducible() {
        let main = newc(&[".", "usr/lib/ostree/ostree-prepare-root"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("initrd.img-6.12");
        std::fs::write(&path, &main).unwrap();
        compress_one(&path, HULL_ZSTD).unwrap();
        let once = std::fs::read(&path).unwrap();
        assert_eq!(&once[..4], b"\x28\xb5\x2f\xfd", "zstd's magic");
        std::fs::write(&path, &main).unwrap();
        compress_one(&path, HULL_ZSTD).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), once);
        // One worker or as many as there are cores: the same bytes.
        let one: Vec<&str> = HULL_ZSTD
            .iter()
            .map(|a| if *a == "-T0" { "-T1" } else { a })
            .collect();
        std::fs::write(&path, &main).unwrap();
        compress_one(&path, &one).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), once);
        let back = Cmd::new("zstd").args(["-dc"]).arg(&path).output().unwrap();
        assert_eq!(back, main);
    }

    #[test]
    fn conf_settings_that_keep_dracuts_compression() {
        for (text, want) in [
            ("compress=\"zstd\"", true),
            ("squash_compress=xz", true),
            ("uefi=\"yes\"", true),
            ("#compress=xz\n  # uefi=yes", false),
            ("hostonly=\"no\"\nreproducible=\"yes\"", false),
            ("", false),
        ] {
            assert_eq!(conf_sets_packing(text), want, "{text}");
        }
    }
}
