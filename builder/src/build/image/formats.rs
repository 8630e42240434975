//! Stage 5c: the disk image in other formats, converted from the raw one by
//! `qemu-img convert` (`[image] formats`, docs/manifest.md).
//!
//! Each conversion is planned as plain data ([`convert_args`]), written to a
//! temp file beside the raw image, checked with `qemu-img info`, fsynced and
//! renamed into place, then measured (size, sha256) for build.json.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::manifest::image_formats::ImageFormat;
use crate::util::cmd::{require_program, Cmd};

/// Azure's rule for a VHD: the virtual size is a whole number of MiB.
pub const VHD_ALIGN: u64 = 1 << 20;

/// One image file a build wrote, as build.json lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub format: ImageFormat,
    pub path: PathBuf,
    /// Length of the file, bytes (a sparse raw image counts its holes).
    pub size: u64,
    /// sha256 of the file's bytes, lowercase hex.
    pub sha256: String,
}

/// The size to make the raw disk, bytes: `size`, rounded up to a whole MiB
/// when a VHD is among `formats` (the VHD's virtual size is the raw disk's,
/// and its GPT must end where the disk ends). Saturates at `u64::MAX`,
/// which the layout then refuses, naming `image.size`.
pub fn disk_size(size: u64, formats: &[ImageFormat]) -> u64 {
    if formats.contains(&ImageFormat::Vhd) {
        size.div_ceil(VHD_ALIGN).saturating_mul(VHD_ALIGN)
    } else {
        size
    }
}

/// Where the `format` file of the raw image `raw` goes: beside it, the
/// extension replaced (`minimal-x86_64.raw` → `minimal-x86_64.qcow2`).
pub fn output_path(raw: &Path, format: ImageFormat) -> PathBuf {
    raw.with_extension(format.as_str())
}

/// The `qemu-img` arguments that convert the raw `src` into `dst` as
/// `format`; `None` for [`ImageFormat::Raw`], which is not converted.
pub fn convert_args(format: ImageFormat, src: &Path, dst: &Path) -> Option<Vec<String>> {
    let mut args: Vec<String> = ["convert", "-f", "raw", "-O"].map(String::from).into();
    match format {
        ImageFormat::Raw => return None,
        // -c: compressed clusters, what cloud image downloads ship.
        ImageFormat::Qcow2 => args.extend(["qcow2", "-c"].map(String::from)),
        ImageFormat::Vmdk => {
            args.extend(["vmdk", "-o", "subformat=streamOptimized"].map(String::from))
        }
        // qemu-img's name for VHD is vpc; force_size keeps the virtual size
        // the raw disk's instead of a CHS-rounded one.
        ImageFormat::Vhd => {
            args.extend(["vpc", "-o", "subformat=fixed,force_size=on"].map(String::from))
        }
    }
    args.push(src.display().to_string());
    args.push(dst.display().to_string());
    Some(args)
}

/// What `qemu-img info` says of a file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Info {
    pub format: String,
    #[serde(rename = "virtual-size")]
    pub virtual_size: u64,
}

/// Runs `qemu-img info --output=json` on `path`, read as `format` (qemu's
/// probing cannot tell a fixed VHD, whose only header is a footer, from a
/// raw file; told the format, qemu-img checks that footer).
pub fn info(path: &Path, format: ImageFormat) -> Result<Info> {
    let text = Cmd::new("qemu-img")
        .args(["info", "--output=json", "-f", qemu_name(format)])
        .arg(path)
        .output_string()?;
    serde_json::from_str(&text)
        .with_context(|| format!("reading qemu-img info of {}", path.display()))
}

/// The name `qemu-img info` gives `format`.
fn qemu_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Vhd => "vpc",
        f => f.as_str(),
    }
}

/// Writes `raw` as `format` to [`output_path`] (via a temp file, checked
/// with `qemu-img info`, then renamed) and returns it measured; for
/// [`ImageFormat::Raw`] only measures `raw`. Errors name the file and the
/// command; nothing is left behind on failure.
pub fn convert(raw: &Path, format: ImageFormat) -> Result<OutputFile> {
    let path = output_path(raw, format);
    let raw_size = std::fs::metadata(raw)
        .with_context(|| format!("reading {}", raw.display()))?
        .len();
    if format != ImageFormat::Raw {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        require_program("qemu-img", "qemu-utils")?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(
                ".{}.tmp-",
                path.file_name().unwrap_or_default().to_string_lossy()
            ))
            .tempfile_in(dir)
            .with_context(|| format!("creating a temp file in {}", dir.display()))?;
        let args = convert_args(format, raw, tmp.path()).expect("not raw");
        let started = std::time::Instant::now();
        Cmd::new("qemu-img").args(&args).run()?;
        let got = info(tmp.path(), format)?;
        if got.format != qemu_name(format) || got.virtual_size != raw_size {
            bail!(
                "{}: qemu-img wrote a {} image of {} bytes, not {} of {raw_size} bytes",
                path.display(),
                got.format,
                got.virtual_size,
                qemu_name(format)
            );
        }
        if format == ImageFormat::Vhd && got.virtual_size % VHD_ALIGN != 0 {
            bail!(
                "{}: virtual size {} bytes is not a whole number of MiB (Azure's rule)",
                path.display(),
                got.virtual_size
            );
        }
        // tempfile makes it 0600; an image is readable like the raw one.
        std::fs::File::open(tmp.path())
            .and_then(|f| {
                f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
                f.sync_all()
            })
            .with_context(|| format!("syncing {}", tmp.path().display()))?;
        tmp.persist(&path)
            .map_err(|e| anyhow!("renaming into {}: {}", path.display(), e.error))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))?;
        log::info!(
            "wrote {} in {:.1}s",
            path.display(),
            started.elapsed().as_secs_f64()
        );
    }
    let size = std::fs::metadata(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    Ok(OutputFile {
        format,
        // Holes are hashed without being read: 4 GiB of raw image, ~400 MiB data.
        sha256: crate::util::sparse::sha256_file(&path)?,
        path,
        size,
    })
}

/// [`convert`] for each of `formats`, in order.
pub fn write_outputs(raw: &Path, formats: &[ImageFormat]) -> Result<Vec<OutputFile>> {
    reuse_or_write(raw, formats, &[])
}

/// [`write_outputs`], keeping each file of `previous` (what build.json
/// listed for the same raw image, still current) that is still there at its
/// recorded size; and removing the files of formats no longer asked for, so
/// that no file of an older image stays beside the new one.
pub fn reuse_or_write(
    raw: &Path,
    formats: &[ImageFormat],
    previous: &[OutputFile],
) -> Result<Vec<OutputFile>> {
    for f in ImageFormat::ALL {
        let stale = output_path(raw, f);
        if f != ImageFormat::Raw && !formats.contains(&f) && stale.exists() {
            log::info!(
                "removing {}: image.formats no longer lists {f}",
                stale.display()
            );
            std::fs::remove_file(&stale)
                .with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    let mut out = Vec::new();
    for &format in formats {
        let path = output_path(raw, format);
        let kept = previous.iter().find(|o| {
            o.format == format
                && o.path == path
                && std::fs::metadata(&path).is_ok_and(|m| m.len() == o.size)
        });
        match kept {
            Some(o) => {
                log::info!("{} is current: keeping it", path.display());
                out.push(o.clone());
            }
            None => out.push(convert(raw, format)?),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    const MIB: u64 = 1 << 20;

    #[test]
    fn disk_sizes() {
        use ImageFormat::*;
        // (size asked, formats, size made)
        let table = [
            (4 << 30, vec![Raw, Vhd], 4 << 30),
            (4 * MIB + 512, vec![Raw], 4 * MIB + 512),
            (4 * MIB + 512, vec![Raw, Qcow2, Vmdk], 4 * MIB + 512),
            (4 * MIB + 512, vec![Raw, Vhd], 5 * MIB),
            (5 * MIB - 512, vec![Raw, Vhd], 5 * MIB),
            // saturated, then refused by the layout as not whole sectors
            (u64::MAX - 511, vec![Raw, Vhd], u64::MAX),
        ];
        for (size, formats, want) in table {
            assert_eq!(disk_size(size, &formats), want, "{size} {formats:?}");
        }
    }

    #[test]
    fn args_and_paths() {
        let (src, dst) = (Path::new("/o/m-x86_64.raw"), Path::new("/o/x"));
        assert_eq!(convert_args(ImageFormat::Raw, src, dst), None);
        let line = |f| convert_args(f, src, dst).unwrap().join(" ");
        assert_eq!(
            line(ImageFormat::Qcow2),
            "convert -f raw -O qcow2 -c /o/m-x86_64.raw /o/x"
        );
        assert_eq!(
            line(ImageFormat::Vmdk),
            "convert -f raw -O vmdk -o subformat=streamOptimized /o/m-x86_64.raw /o/x"
        );
        assert_eq!(
            line(ImageFormat::Vhd),
            "convert -f raw -O vpc -o subformat=fixed,force_size=on /o/m-x86_64.raw /o/x"
        );
        assert_eq!(
            output_path(src, ImageFormat::Vhd),
            Path::new("/o/m-x86_64.vhd")
        );
        assert_eq!(output_path(src, ImageFormat::Raw), src);
    }

    /// Real conversions of a small sparse disk: each file reads back, through
    /// qemu-img, as the same bytes of the same virtual size.
    #[test]
    fn conversions_read_back_as_the_raw_disk() {
        let t = tempfile::tempdir().unwrap();
        let raw = t.path().join("disk.raw");
        let mut f = std::fs::File::create(&raw).unwrap();
        f.set_len(6 * MIB).unwrap();
        f.write_all(b"first sector").unwrap();
        f.seek(SeekFrom::Start(3 * MIB + 7)).unwrap();
        f.write_all(&[0xa5; 70_000]).unwrap();
        drop(f);
        let outs = write_outputs(&raw, &ImageFormat::ALL).unwrap();
        assert_eq!(outs.len(), 4);
        for out in &outs {
            assert_eq!(out.path, output_path(&raw, out.format));
            let meta = std::fs::metadata(&out.path).unwrap();
            assert_eq!(out.size, meta.len());
            if out.format != ImageFormat::Raw {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(meta.permissions().mode() & 0o777, 0o644, "{:?}", out.format);
            }
            assert_eq!(
                out.sha256,
                crate::build::archive::sha256_file(&out.path).unwrap()
            );
            let i = info(&out.path, out.format).unwrap();
            assert_eq!(i.format, qemu_name(out.format));
            assert_eq!(i.virtual_size, 6 * MIB, "{:?}", out.format);
            // same bytes: qemu-img compare exits 0
            Cmd::new("qemu-img")
                .args(["compare", "-f", "raw", "-F", qemu_name(out.format)])
                .arg(&raw)
                .arg(&out.path)
                .run()
                .unwrap();
        }
        assert_eq!(outs[0].format, ImageFormat::Raw);
        assert_eq!(outs[0].size, 6 * MIB);
        let qcow2 = &outs[1];
        assert!(qcow2.size < MIB, "compressed: {}", qcow2.size);
        // a fixed VHD is the disk plus a 512-byte footer
        let vhd = outs.iter().find(|o| o.format == ImageFormat::Vhd).unwrap();
        assert_eq!(vhd.size, 6 * MIB + 512);
        let mut names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["disk.qcow2", "disk.raw", "disk.vhd", "disk.vmdk"],
            "no temp file left"
        );
    }

    #[test]
    fn a_failed_conversion_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let raw = t.path().join("missing.raw");
        let e = format!("{:#}", convert(&raw, ImageFormat::Qcow2).unwrap_err());
        assert!(e.contains("missing.raw"), "{e}");
        // a raw file is no VHD: qemu-img info, told the format, refuses it
        std::fs::write(t.path().join("x.raw"), vec![0u8; 4096]).unwrap();
        let e = format!(
            "{:#}",
            info(&t.path().join("x.raw"), ImageFormat::Vhd).unwrap_err()
        );
        assert!(e.contains("qemu-img"), "{e}");
        std::fs::remove_file(t.path().join("x.raw")).unwrap();
        // qemu-img itself failing: a directory is no raw image
        let dir = t.path().join("d.raw");
        std::fs::create_dir(&dir).unwrap();
        let e = format!("{:#}", convert(&dir, ImageFormat::Vmdk).unwrap_err());
        assert!(e.contains("qemu-img"), "{e}");
        let names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["d.raw"], "no temp file left");
    }
}
