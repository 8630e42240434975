//! The load step: every file a composed manifest names, read into plain data
//! before validation, so that [`super::validate`] does no I/O.
//!
//! The manifest files themselves were read by [`super::compose`], which keeps
//! their bytes (`Composed::bytes`). This step reads the rest: the `update.keys`
//! files, the cosign key files of `[containers.trust]`, and the overlay
//! directories (found under their `rootfs-overlays`, canonicalized, their
//! trees checked).
//!
//! A read that fails is not an error here: its message is kept as data and
//! reported by validation when it reaches the key that names the file, so the
//! wording and the order of errors are those of a validation that read each
//! file itself (a bad `name` is still reported before a missing key file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::compose::Composed;
use super::validate::overlays::check_overlay_name;
use super::validate::OVERLAY_ROOT;

/// What the files a manifest names hold, keyed by the names the composed
/// manifest uses. A path or overlay missing from a map is reported by
/// validation as not loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// `update.keys`: each path as composed (relative paths joined to the
    /// directory of the file naming them) → the file's text, or the read
    /// error (`std::io::Error`'s text).
    pub update_keys: BTreeMap<String, Result<String, String>>,
    /// `containers.trust` key files: each path as composed → the file's
    /// bytes, or the read error.
    pub image_keys: BTreeMap<String, Result<Vec<u8>, String>>,
    /// `overlays`: each name → the canonical directory, checked to be a
    /// directory strictly under its overlay root whose every entry OSTree can
    /// store; or why not. Names that are not plain relative paths are left
    /// out (validation refuses them before it looks here).
    pub overlays: BTreeMap<String, Result<PathBuf, OverlayError>>,
}

/// Why an overlay could not be loaded: the one-line message, and which key
/// it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlayError {
    /// No `rootfs-overlays` near the file naming the overlay: reported under
    /// `overlays`.
    Root(String),
    /// The overlay directory itself (missing, not a directory, outside the
    /// root, or an entry OSTree cannot store): reported under `overlays[<i>]`.
    Dir(String),
}

/// Reads every file `composed` (composed from the manifest at `path`) names.
/// Never fails: failures are data (see the module documentation).
pub fn load(path: &Path, composed: &Composed) -> Loaded {
    let raw = &composed.raw;
    let mut loaded = Loaded::default();
    let update_keys = raw.update.as_ref().and_then(|u| u.keys.as_ref());
    for p in update_keys.into_iter().flatten().filter(|p| !p.is_empty()) {
        let text = std::fs::read_to_string(p).map_err(|e| e.to_string());
        loaded.update_keys.insert(p.clone(), text);
    }
    let trust = raw.containers.as_ref().and_then(|c| c.trust.as_ref());
    for p in trust.into_iter().flat_map(|t| t.values()).flatten() {
        if !p.is_empty() {
            let bytes = std::fs::read(p).map_err(|e| e.to_string());
            loaded.image_keys.insert(p.clone(), bytes);
        }
    }
    for name in raw.overlays.iter().flatten() {
        if check_overlay_name(name).is_err() || loaded.overlays.contains_key(name) {
            continue;
        }
        let declared_in = composed
            .overlay_origins
            .get(name)
            .map(PathBuf::as_path)
            .unwrap_or(path);
        loaded
            .overlays
            .insert(name.clone(), overlay_dir(declared_in, name));
    }
    loaded
}

/// The overlay `name` (a plain relative path) under the overlay root nearest
/// to `declared_in`, the file that named it.
fn overlay_dir(declared_in: &Path, name: &str) -> Result<PathBuf, OverlayError> {
    let root = overlay_root(declared_in).map_err(OverlayError::Root)?;
    let joined = root.join(name);
    let dir = std::fs::canonicalize(&joined)
        .map_err(|e| OverlayError::Dir(format!("{}: {e}", joined.display())))?;
    if !dir.is_dir() {
        return Err(OverlayError::Dir(format!(
            "{} is not a directory",
            joined.display()
        )));
    }
    if dir == root || !dir.starts_with(&root) {
        return Err(OverlayError::Dir(format!(
            "{} resolves to {}, outside {}",
            joined.display(),
            dir.display(),
            root.display()
        )));
    }
    check_overlay_tree(&dir).map_err(OverlayError::Dir)?;
    Ok(dir)
}

/// Every entry of the overlay at `dir` against what an OSTree commit can
/// hold (libostree's `ostree_validate_filename()` and its commit of a
/// directory): names and symlink targets in UTF-8 (the commit stores them
/// as GVariant strings), only directories, regular files and symlinks. The
/// message names the path; `.`, `..`, empty names and names with `/` never
/// come out of a directory listing.
fn check_overlay_tree(dir: &Path) -> Result<(), String> {
    use cap_std::ambient_authority;
    use cap_std::fs::Dir;
    let root = Dir::open_ambient_dir(dir, ambient_authority())
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let shown = |p: &Path| format!("{:?}", dir.join(p));
        let entries = if rel.as_os_str().is_empty() {
            root.entries()
        } else {
            root.read_dir(&rel)
        }
        .map_err(|e| format!("{}: {e}", shown(&rel)))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", shown(&rel)))?;
            let path = rel.join(entry.file_name());
            if entry.file_name().to_str().is_none() {
                return Err(format!(
                    "{}: the name is not UTF-8, which OSTree cannot store: rename it",
                    shown(&path)
                ));
            }
            let meta = root
                .symlink_metadata(&path)
                .map_err(|e| format!("{}: {e}", shown(&path)))?;
            let kind = meta.file_type();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_symlink() {
                let target = root
                    .read_link_contents(&path)
                    .map_err(|e| format!("{}: {e}", shown(&path)))?;
                if target.to_str().is_none() {
                    return Err(format!(
                        "{}: the symlink's target {target:?} is not UTF-8: OSTree would store \"[Invalid UTF-8]\" instead",
                        shown(&path)
                    ));
                }
            } else if !kind.is_file() {
                return Err(format!(
                    "{}: not a file, directory or symlink (a socket, FIFO or device node), which \
                     OSTree cannot store",
                    shown(&path)
                ));
            }
        }
    }
    Ok(())
}

/// The canonical `rootfs-overlays` directory in the nearest of the manifest's
/// directory and its ancestors that has one.
fn overlay_root(manifest: &Path) -> Result<PathBuf, String> {
    let parent = match manifest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let start = std::fs::canonicalize(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    for dir in start.ancestors() {
        let candidate = dir.join(OVERLAY_ROOT);
        if candidate.is_dir() {
            return std::fs::canonicalize(&candidate)
                .map_err(|e| format!("{}: {e}", candidate.display()));
        }
    }
    Err(format!(
        "no {OVERLAY_ROOT} directory in {} or any directory above it",
        start.display()
    ))
}

#[cfg(test)]
mod tests;
