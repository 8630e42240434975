//! The load step's contract: validation needs nothing but its output. Every
//! path below exists nowhere on disk, so whatever validation concludes comes
//! from the data it is given.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::*;
use crate::manifest::validate::validate;
use crate::manifest::{Overlay, SourceFile};

const TOP: &str = "/nowhere/m/demo.toml";
const UPDATE_KEY: &str = "/nowhere/m/k.pub";
const IMAGE_KEY: &str = "/nowhere/m/c.pub";
const OVERLAY_DIR: &str = "/nowhere/rootfs-overlays/base";
const P256: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE63l8XlEJgTiQVu2O9Ug59bB35Ugi
L4fSf4/yfT/B8uKcFW7acRcXy0Ex7s6ggzHUmWV9DgqcG6SdWP7ovwWK6A==
-----END PUBLIC KEY-----\n";

fn text(name: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"1.0\"\noverlays = [\"base\"]\n\
         [packages]\ninclude = [\"podman\"]\n\
         [update]\nurl = \"https://u.example/r\"\nkeys = [\"{UPDATE_KEY}\"]\n\
         [containers.trust]\n\"registry.example\" = [\"{IMAGE_KEY}\"]\n"
    )
}

/// `text` as if composed from one file at [`TOP`].
fn composed(text: &str) -> Composed {
    let path = Path::new(TOP);
    Composed {
        raw: crate::manifest::raw::parse_str(path, text).unwrap(),
        files: vec![SourceFile {
            path: path.to_path_buf(),
            sha256: hex::encode(Sha256::digest(text)),
        }],
        bytes: vec![text.as_bytes().to_vec()],
        overlay_origins: BTreeMap::new(),
    }
}

/// Everything [`text`] names, loaded; and the update key's text.
fn loaded() -> (Loaded, String) {
    let key = crate::repo::sign::generate().unwrap();
    let public = crate::repo::sign::public_text(&key.verifying_key());
    let mut l = Loaded::default();
    l.update_keys.insert(UPDATE_KEY.into(), Ok(public.clone()));
    l.image_keys
        .insert(IMAGE_KEY.into(), Ok(P256.as_bytes().to_vec()));
    l.overlays
        .insert("base".into(), Ok(PathBuf::from(OVERLAY_DIR)));
    (l, public.trim().to_string())
}

#[test]
fn validates_from_loaded_data_without_the_files() {
    assert!(
        !Path::new("/nowhere").exists(),
        "the test needs /nowhere absent"
    );
    let text = text("demo");
    let (l, public) = loaded();
    let m = validate(Path::new(TOP), composed(&text), &l).unwrap();
    assert_eq!(
        m.overlays,
        vec![Overlay {
            name: "base".into(),
            dir: OVERLAY_DIR.into()
        }]
    );
    let u = m.update.unwrap();
    assert_eq!(u.keys.len(), 1);
    assert_eq!(u.keys[0].public, public);
    assert_eq!(u.keys[0].path, Path::new(UPDATE_KEY));
    let policy = m.containers.policy.unwrap();
    assert_eq!(policy.trust[0].keys[0].algorithm, "ECDSA P-256");
    assert_eq!(policy.trust[0].keys[0].path, Path::new(IMAGE_KEY));
    // The sha256 is over the composed bytes, framed by their length.
    let mut framed = (text.len() as u64).to_be_bytes().to_vec();
    framed.extend_from_slice(text.as_bytes());
    assert_eq!(m.sha256, hex::encode(Sha256::digest(&framed)));
}

#[test]
fn read_failures_carried_as_data_are_reported_at_their_key() {
    let io = "No such file or directory (os error 2)";
    type Edit = fn(&mut Loaded);
    let cases: [(Edit, String); 6] = [
        (
            |l| {
                l.update_keys.insert(UPDATE_KEY.into(), Err("No such file or directory (os error 2)".into()));
            },
            format!("{TOP}: update.keys[0]: cannot read {UPDATE_KEY}: {io}"),
        ),
        (
            |l| {
                l.update_keys.clear();
            },
            format!("{TOP}: update.keys[0]: cannot read {UPDATE_KEY}: not loaded"),
        ),
        (
            |l| {
                l.image_keys.insert(IMAGE_KEY.into(), Err("No such file or directory (os error 2)".into()));
            },
            format!(
                "{TOP}: containers.trust.\"registry.example\"[0]: cannot read {IMAGE_KEY}: {io}"
            ),
        ),
        (
            |l| {
                l.image_keys.insert(IMAGE_KEY.into(), Ok(b"garbage".to_vec()));
            },
            format!("{TOP}: containers.trust.\"registry.example\"[0]: {IMAGE_KEY}: not a PEM public key"),
        ),
        (
            |l| {
                l.overlays.insert("base".into(), Err(OverlayError::Root("no rootfs-overlays here".into())));
            },
            format!("{TOP}: overlays: no rootfs-overlays here"),
        ),
        (
            |l| {
                l.overlays.insert("base".into(), Err(OverlayError::Dir("base is not a directory".into())));
            },
            format!("{TOP}: overlays[0]: base is not a directory"),
        ),
    ];
    for (edit, want) in cases {
        let (mut l, _) = loaded();
        edit(&mut l);
        let e = validate(Path::new(TOP), composed(&text("demo")), &l)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&want), "want {want:?}, got {e:?}");
        // An earlier key still fails first: the order is validation's.
        let e = validate(Path::new(TOP), composed(&text("Bad")), &l)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&format!("{TOP}: name: ")), "{e}");
    }
}

/// The files validation is made of hold no call that reads the disk: all
/// of it happens in compose and in this load step.
#[test]
fn validation_sources_do_no_io() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/manifest");
    let mut files: Vec<PathBuf> = ["validate", "containers"]
        .iter()
        .flat_map(|d| std::fs::read_dir(here.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "tests.rs"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for io in [
            "std::fs",
            "cap_std",
            "canonicalize",
            "read_dir",
            "File::",
            ".is_dir()",
            ".exists()",
        ] {
            assert!(!text.contains(io), "{}: {io}", file.display());
        }
    }
}
