//! `[image] formats`: the disk image files a build writes besides the raw
//! one. The raw key lives in [`super::raw::RawImage`] (`formats`), and is
//! validated here into [`ImageFormat`]s.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// One output format of the disk image (see `crate::build::image::formats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// The raw GPT disk hull assembles; always written.
    Raw,
    /// qcow2, compressed (QEMU, libvirt, OpenStack, Proxmox).
    Qcow2,
    /// VMDK, streamOptimized (vSphere, OVA and cloud import).
    Vmdk,
    /// VHD (fixed), virtual size a whole number of MiB (Azure).
    Vhd,
}

impl ImageFormat {
    /// Every format, in the order the manifest key documents them.
    pub const ALL: [ImageFormat; 4] = [
        ImageFormat::Raw,
        ImageFormat::Qcow2,
        ImageFormat::Vmdk,
        ImageFormat::Vhd,
    ];

    /// The name in the manifest and the file extension (`raw`, `qcow2`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Vmdk => "vmdk",
            ImageFormat::Vhd => "vhd",
        }
    }
}

impl std::fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Validates `image.formats` of the manifest `file`: `None` is `["raw"]`;
/// the raw image is always written, so it is always in the result (first),
/// and a format named twice counts once. Errors: one line naming the file,
/// `image.formats` and the unknown name, or an empty list.
pub fn formats_of(file: &str, raw: Option<Vec<String>>) -> Result<Vec<ImageFormat>> {
    let Some(names) = raw else {
        return Ok(vec![ImageFormat::Raw]);
    };
    if names.is_empty() {
        bail!("{file}: image.formats: empty: list at least one of raw, qcow2, vmdk, vhd");
    }
    let mut out = vec![ImageFormat::Raw];
    for name in &names {
        let Some(f) = ImageFormat::ALL.iter().find(|f| f.as_str() == name) else {
            bail!("{file}: image.formats: unknown format {name:?}: hull writes raw, qcow2, vmdk and vhd");
        };
        if !out.contains(f) {
            out.push(*f);
        }
    }
    if !names.iter().any(|n| n == "raw") {
        log::info!(
            "{file}: image.formats does not list raw: the raw image is written anyway (the others are converted from it)"
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ImageFormat::*;

    #[test]
    fn formats_table() {
        let s = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        // (key as written, formats written)
        let table = [
            (None, vec![Raw]),
            (s(&["raw"]), vec![Raw]),
            (s(&["qcow2"]), vec![Raw, Qcow2]),
            (
                s(&["raw", "qcow2", "vmdk", "vhd"]),
                vec![Raw, Qcow2, Vmdk, Vhd],
            ),
            (s(&["vhd", "qcow2", "vhd", "raw"]), vec![Raw, Vhd, Qcow2]),
        ];
        for (raw, want) in table {
            assert_eq!(formats_of("m.toml", raw.clone()).unwrap(), want, "{raw:?}");
        }
    }

    #[test]
    fn bad_formats_are_one_line_naming_the_key() {
        for (names, want) in [
            (vec!["qcow"], "unknown format \"qcow\""),
            (vec!["raw", "VHD"], "unknown format \"VHD\""),
            (vec!["vpc"], "unknown format \"vpc\""),
            (vec![], "empty"),
        ] {
            let names = names.iter().map(|s| s.to_string()).collect();
            let e = formats_of("m.toml", Some(names)).unwrap_err().to_string();
            assert!(e.starts_with("m.toml: image.formats: "), "{e}");
            assert!(e.contains(want), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    /// Through `Manifest::load`: the key is read, accumulated across
    /// includes, and an unknown format names the top-level file and the key.
    #[test]
    fn formats_in_a_manifest() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("base.toml");
        std::fs::write(&base, "[image]\nformats = [\"qcow2\"]\n").unwrap();
        let top = t.path().join("m.toml");
        let write = |extra: &str| {
            std::fs::write(
                &top,
                format!("include = [\"base.toml\"]\nname = \"m\"\nversion = \"1\"\n{extra}"),
            )
            .unwrap()
        };
        write("");
        let m = crate::manifest::Manifest::load(&top).unwrap();
        assert_eq!(m.image_formats, [Raw, Qcow2]);
        write("[image]\nformats = [\"vhd\", \"qcow2\"]\n");
        let m = crate::manifest::Manifest::load(&top).unwrap();
        assert_eq!(m.image_formats, [Raw, Qcow2, Vhd]);
        write("[image]\nformats = [\"ova\"]\n");
        let e = crate::manifest::Manifest::load(&top)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("m.toml: image.formats: unknown format \"ova\""),
            "{e}"
        );
        std::fs::write(
            t.path().join("plain.toml"),
            "name = \"p\"\nversion = \"1\"\n",
        )
        .unwrap();
        let m = crate::manifest::Manifest::load(&t.path().join("plain.toml")).unwrap();
        assert_eq!(m.image_formats, [Raw]);
    }
}
