//! The EFI system partition: FAT32 written from user space with `fatfs`
//! (no loop device, no mount: the build host need not have vfat).

use std::io::{self, Read, Seek, Write};

use anyhow::{bail, Context, Result};
use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions};

use super::{EspFile, EspSource};

/// FAT32 needs at least this many clusters (fewer is FAT16 by definition).
const FAT32_MIN_CLUSTERS: u64 = 65_525;

/// The largest cluster size that still makes a valid FAT32 of `size` bytes
/// (large clusters: fewer FAT lookups when the firmware reads a kernel).
pub fn cluster_size(size: u64) -> Result<u32> {
    for bytes in [4096u32, 2048, 1024, 512] {
        // Reserved sectors and two FATs take a little of the space: keep 2%.
        if size / u64::from(bytes) * 98 / 100 >= FAT32_MIN_CLUSTERS {
            return Ok(bytes);
        }
    }
    bail!(
        "image.esp-size: {} MiB is too small for FAT32 (at least 34 MiB)",
        size >> 20
    )
}

/// The label as FAT stores it: 11 bytes, upper case, space padded.
fn fat_label(label: &str) -> Result<[u8; 11]> {
    if label.len() > 11 || !label.is_ascii() {
        bail!("ESP label {label:?} is not at most 11 ASCII characters");
    }
    let mut out = [b' '; 11];
    for (o, c) in out.iter_mut().zip(label.to_ascii_uppercase().bytes()) {
        *o = c;
    }
    Ok(out)
}

/// Formats `dev` (exactly `size` bytes) as FAT32 and writes `files`.
pub fn write_esp<T: Read + Write + Seek>(
    mut dev: T,
    size: u64,
    label: &str,
    files: &[EspFile],
) -> Result<()> {
    let opts = FormatVolumeOptions::new()
        .fat_type(FatType::Fat32)
        .bytes_per_cluster(cluster_size(size)?)
        .volume_label(fat_label(label)?);
    fatfs::format_volume(&mut dev, opts).context("formatting the ESP as FAT32")?;
    dev.seek(io::SeekFrom::Start(0))?;
    let fs = FileSystem::new(&mut dev, FsOptions::new()).context("opening the new ESP")?;
    let root = fs.root_dir();
    for f in files {
        let (parent, _) = f.path.rsplit_once('/').unwrap_or(("", &f.path));
        let mut dir_path = String::new();
        for part in parent.split('/').filter(|p| !p.is_empty()) {
            if !dir_path.is_empty() {
                dir_path.push('/');
            }
            dir_path.push_str(part);
            root.create_dir(&dir_path)
                .with_context(|| format!("creating {dir_path} on the ESP"))?;
        }
        let mut out = root
            .create_file(&f.path)
            .with_context(|| format!("creating {} on the ESP", f.path))?;
        out.truncate()?;
        let copied = match &f.source {
            EspSource::Bytes(b) => out.write_all(b).map(|_| b.len() as u64),
            EspSource::File(p) => {
                let mut src =
                    std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
                io::copy(&mut src, &mut out)
            }
        };
        copied.with_context(|| {
            format!(
                "writing {} to the ESP (is image.esp-size large enough?)",
                f.path
            )
        })?;
        out.flush()?;
    }
    drop(root);
    fs.unmount().context("closing the ESP")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn files(dir: &std::path::Path) -> Vec<EspFile> {
        let kernel = dir.join("vmlinuz");
        std::fs::write(&kernel, vec![7u8; 300_000]).unwrap();
        vec![
            EspFile {
                path: "EFI/BOOT/BOOTX64.EFI".into(),
                source: EspSource::Bytes(b"MZ-efi".to_vec()),
            },
            EspFile {
                path: "loader/loader.conf".into(),
                source: EspSource::Bytes(b"timeout 1\n".to_vec()),
            },
            EspFile {
                path: "ostree/minimal-abc/vmlinuz-6.12".into(),
                source: EspSource::File(kernel),
            },
            EspFile {
                path: "loader/entries/ostree-1-minimal.conf".into(),
                source: EspSource::Bytes(b"title x\n".to_vec()),
            },
        ]
    }

    fn read(fs: &FileSystem<&mut Cursor<Vec<u8>>>, path: &str) -> Vec<u8> {
        let mut v = Vec::new();
        fs.root_dir()
            .open_file(path)
            .unwrap()
            .read_to_end(&mut v)
            .unwrap();
        v
    }

    #[test]
    fn esp_reads_back() {
        let t = tempfile::tempdir().unwrap();
        let size = 64u64 << 20;
        let mut dev = Cursor::new(vec![0u8; size as usize]);
        write_esp(&mut dev, size, "HULL-ESP", &files(t.path())).unwrap();
        dev.set_position(0);
        let fs = FileSystem::new(&mut dev, FsOptions::new()).unwrap();
        assert_eq!(fs.fat_type(), FatType::Fat32);
        assert_eq!(fs.volume_label(), "HULL-ESP");
        assert_eq!(read(&fs, "EFI/BOOT/BOOTX64.EFI"), b"MZ-efi");
        assert_eq!(read(&fs, "loader/loader.conf"), b"timeout 1\n");
        assert_eq!(
            read(&fs, "loader/entries/ostree-1-minimal.conf"),
            b"title x\n"
        );
        assert_eq!(
            read(&fs, "ostree/minimal-abc/vmlinuz-6.12"),
            vec![7u8; 300_000]
        );
    }

    #[test]
    fn cluster_sizes() {
        for (mib, want) in [
            (34u64, 512u32),
            (64, 512),
            (128, 1024),
            (256, 2048),
            (512, 4096),
            (1024, 4096),
        ] {
            assert_eq!(cluster_size(mib << 20).unwrap(), want, "{mib} MiB");
        }
        let err = cluster_size(16 << 20).unwrap_err().to_string();
        assert!(err.contains("image.esp-size"), "{err}");
    }

    #[test]
    fn full_esp_is_an_error_naming_the_file() {
        let t = tempfile::tempdir().unwrap();
        let big = t.path().join("big");
        std::fs::write(&big, vec![1u8; 40 << 20]).unwrap();
        let size = 34u64 << 20;
        let mut dev = Cursor::new(vec![0u8; size as usize]);
        let f = vec![EspFile {
            path: "ostree/initramfs.img".into(),
            source: EspSource::File(big),
        }];
        let err = format!(
            "{:#}",
            write_esp(&mut dev, size, "HULL-ESP", &f).unwrap_err()
        );
        assert!(err.contains("ostree/initramfs.img"), "{err}");
    }

    #[test]
    fn bad_label() {
        assert!(fat_label("MUCH-TOO-LONG-LABEL").is_err());
        assert_eq!(&fat_label("esp").unwrap(), b"ESP        ");
    }
}
