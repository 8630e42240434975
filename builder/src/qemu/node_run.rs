//! `hull run`'s node options: boot an image as one provisioned node.
//!
//! - `--config node.toml`: the node config, checked here as the host will
//!   check it, passed as the systemd credential `hull.node` (SMBIOS type 11);
//!   each system extension it names (`NAME.raw`, beside it) as the
//!   credential `hull.sysext.NAME`, through fw_cfg ([`extension_credentials`]).
//! - `--cloud-init USER-DATA`: a NoCloud seed, a small vfat volume labelled
//!   CIDATA written with `fatfs` ([`write_seed`]), attached as a second disk.
//! - `--disk-size 20G`: the image behind a qcow2 overlay of that virtual size
//!   (`qemu-img create -b`), so the guest sees a larger disk and the image
//!   itself is never written.
//!
//! The seed and the overlay live in a temporary directory that lasts as long
//! as QEMU ([`NodeFiles`]).

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::manifest::node::extensions::Extension;
use crate::manifest::node::{cloud, config, CREDENTIAL};
use crate::qemu::credentials::{self, CredentialFile};
use crate::qemu::RunSpec;
use crate::util::cmd::{require_program, Cmd};

/// Size of a seed volume: FAT12 fits it, and user-data up to most of it.
const SEED_SIZE: u64 = 2 << 20;

/// The temporary files a node boot needs, removed when dropped.
#[derive(Debug)]
pub struct NodeFiles {
    pub dir: Option<tempfile::TempDir>,
}

/// What `hull run` was asked for, node-wise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeOptions {
    pub config: Option<PathBuf>,
    pub cloud_init: Option<PathBuf>,
    /// Bytes.
    pub disk_size: Option<u64>,
}

/// The NoCloud meta-data `hull run` writes: an instance id that follows
/// the user-data (the same user-data is the same instance, a changed one a
/// new instance that is provisioned again).
pub fn meta_data(user_data: &[u8]) -> String {
    let h = hex::encode(Sha256::digest(user_data));
    format!("instance-id: iid-hull-{}\n", &h[..16])
}

/// Writes a NoCloud seed to `path`: a vfat volume labelled CIDATA with
/// `meta-data` and `user-data`.
pub fn write_seed(path: &Path, user_data: &[u8], meta_data: &[u8]) -> Result<()> {
    if (user_data.len() + meta_data.len()) as u64 > SEED_SIZE / 2 {
        bail!(
            "user-data of {} bytes is too large for a NoCloud seed (at most {} KiB)",
            user_data.len(),
            SEED_SIZE / 2 / 1024
        );
    }
    let write = || -> Result<()> {
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        f.set_len(SEED_SIZE)?;
        let opts = fatfs::FormatVolumeOptions::new().volume_label(*b"CIDATA     ");
        fatfs::format_volume(&mut f, opts)?;
        f.seek(SeekFrom::Start(0))?;
        {
            let fs = fatfs::FileSystem::new(&mut f, fatfs::FsOptions::new())?;
            for (name, bytes) in [("meta-data", meta_data), ("user-data", user_data)] {
                let mut file = fs.root_dir().create_file(name)?;
                file.truncate()?;
                file.write_all(bytes)?;
            }
            fs.unmount()?;
        }
        f.sync_all()?;
        Ok(())
    };
    write().with_context(|| format!("writing the NoCloud seed {}", path.display()))
}

/// Adds what `opts` asks for to `spec`: the credential, the seed disk, the
/// overlay. Bad input (a config that does not validate, user-data that is
/// not `#cloud-config`) is refused here, before QEMU starts.
pub fn prepare(spec: &mut RunSpec, opts: &NodeOptions) -> Result<NodeFiles> {
    let mut files = NodeFiles { dir: None };
    if opts == &NodeOptions::default() {
        return Ok(files);
    }
    let dir = tempfile::Builder::new()
        .prefix("hull-run-")
        .tempdir()
        .context("creating a temporary directory for the node's disks")?;
    if let Some(path) = &opts.config {
        let text = fs::read_to_string(path)
            .with_context(|| format!("--config: reading {}", path.display()))?;
        let node = config::load(&text, &path.display().to_string())?;
        spec.credentials
            .push((CREDENTIAL.to_string(), text.into_bytes()));
        let files = extension_credentials(path, &node.extensions)?;
        spec.credential_files.extend(files);
    }
    if let Some(path) = &opts.cloud_init {
        let user_data =
            fs::read(path).with_context(|| format!("--cloud-init: reading {}", path.display()))?;
        let meta = meta_data(&user_data);
        let text = String::from_utf8_lossy(&user_data);
        let t = cloud::translate(&text, &meta)
            .with_context(|| format!("--cloud-init {}", path.display()))?;
        for key in &t.unsupported {
            log::warn!(
                "--cloud-init {}: {key} is not supported: the node will not apply it",
                path.display()
            );
        }
        let seed = dir.path().join("seed.img");
        write_seed(&seed, &user_data, meta.as_bytes())?;
        spec.extra_drives.push(seed);
    }
    if let Some(size) = opts.disk_size {
        let image_size = fs::metadata(&spec.image)
            .with_context(|| format!("reading {}", spec.image.display()))?
            .len();
        if size < image_size {
            bail!(
                "--disk-size: {size} bytes is smaller than the image {} ({image_size} bytes)",
                spec.image.display()
            );
        }
        require_program("qemu-img", "qemu-utils")?;
        let overlay = dir.path().join("disk.qcow2");
        let backing = fs::canonicalize(&spec.image)
            .with_context(|| format!("reading {}", spec.image.display()))?;
        overlay_command(&backing, &overlay, size).run()?;
        spec.image = overlay;
        // The overlay is the throw-away layer: the guest writes to it.
        spec.snapshot = false;
    }
    files.dir = Some(dir);
    Ok(files)
}

/// The credentials `hull.sysext.NAME` for the node config `config`'s
/// `extensions`: each `NAME.raw` beside the config, passed through fw_cfg.
/// Errors name the config, the key and the file (one missing, one over the
/// size systemd takes).
pub fn extension_credentials(
    config: &Path,
    extensions: &[Extension],
) -> Result<Vec<CredentialFile>> {
    let beside = config.parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    for (i, ext) in extensions.iter().enumerate() {
        let file = beside.join(ext.file_name());
        let what = format!("--config {}: extensions[{i}]", config.display());
        out.push(credentials::check(&ext.credential(), &file, &what)?);
    }
    Ok(out)
}

/// `qemu-img create` of a qcow2 overlay of `size` bytes over `backing`.
pub fn overlay_command(backing: &Path, overlay: &Path, size: u64) -> Cmd {
    let format = match backing.extension().and_then(|e| e.to_str()) {
        Some("qcow2") => "qcow2",
        _ => "raw",
    };
    Cmd::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", format, "-b"])
        .arg(backing)
        .arg(overlay)
        .arg(size.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::provision::seed;

    #[test]
    fn seed_round_trips_and_is_labelled_cidata() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("seed.img");
        let ud = b"#cloud-config\nhostname: node-b\n";
        write_seed(&img, ud, meta_data(ud).as_bytes()).unwrap();
        let s = seed::read_vfat(&img).unwrap();
        assert_eq!(s.user_data.as_bytes(), ud);
        assert!(
            s.meta_data.starts_with("instance-id: iid-hull-"),
            "{}",
            s.meta_data
        );
        assert_eq!(meta_data(ud), s.meta_data);
        assert_ne!(meta_data(b"other"), s.meta_data);
        // blkid, which the host uses to find it, sees the label.
        if let Ok(out) = Cmd::new("blkid")
            .args(["-c", "/dev/null", "-o", "export"])
            .arg(&img)
            .output_string()
        {
            let v = seed::parse_blkid_export(&format!("DEVNAME={}\n{out}", img.display()));
            assert_eq!(
                seed::pick(&v).map(|v| v.fs_type.as_deref()),
                Some(Some("vfat")),
                "{out}"
            );
        }
        let e = write_seed(&img, &vec![b'x'; SEED_SIZE as usize], b"").unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
    }

    #[test]
    fn extensions_travel_as_credential_files() {
        let t = tempfile::tempdir().unwrap();
        let cfg = t.path().join("node.toml");
        std::fs::write(&cfg, "extensions = [\"hello.raw\"]\n").unwrap();
        let image = t.path().join("m-x86_64.raw");
        std::fs::write(&image, b"").unwrap();
        let opts = NodeOptions {
            config: Some(cfg.clone()),
            ..NodeOptions::default()
        };
        let firmware = crate::qemu::Firmware {
            code: "/c".into(),
            vars_template: "/v".into(),
        };
        let mut spec = RunSpec::new(&image, crate::manifest::Arch::X86_64, firmware);
        // Not there: the error names the key and the file.
        let e = format!("{:#}", prepare(&mut spec.clone(), &opts).unwrap_err());
        assert!(
            e.contains("extensions[0]: reading ") && e.contains("hello.raw"),
            "{e}"
        );
        std::fs::write(t.path().join("hello.raw"), vec![5u8; 300 << 10]).unwrap();
        let _files = prepare(&mut spec, &opts).unwrap();
        assert_eq!(spec.credential_files.len(), 1);
        let f = &spec.credential_files[0];
        assert_eq!((f.name.as_str(), f.size), ("hull.sysext.hello", 300 << 10));
        assert_eq!(f.path, t.path().join("hello.raw"));
        spec.validate().unwrap();
        let cmd = crate::qemu::command(&spec, Path::new("/vars")).display();
        assert!(
            cmd.contains(&format!(
                "-fw_cfg name=opt/io.systemd.credentials/hull.sysext.hello,file={}",
                f.path.display()
            )),
            "{cmd}"
        );
        // Too large for systemd: refused before QEMU, naming the file and the limit.
        std::fs::write(t.path().join("hello.raw"), vec![5u8; 1100 << 10]).unwrap();
        let e = prepare(&mut spec.clone(), &opts).unwrap_err().to_string();
        assert!(
            e.contains("extensions[0]: 1126400 bytes is too large"),
            "{e}"
        );
        assert!(e.contains("at most 1024 KiB"), "{e}");
    }

    #[test]
    fn overlay_names_the_backing_format() {
        let c = overlay_command(
            Path::new("/o/m-x86_64.raw"),
            Path::new("/t/d.qcow2"),
            10 << 30,
        );
        assert_eq!(
            c.display(),
            "qemu-img create -q -f qcow2 -F raw -b /o/m-x86_64.raw /t/d.qcow2 10737418240"
        );
        let c = overlay_command(Path::new("/o/m.qcow2"), Path::new("/t/d.qcow2"), 1);
        assert!(c.display().contains("-F qcow2"));
    }
}
