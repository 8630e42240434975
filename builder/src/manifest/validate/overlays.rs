//! `overlays`: named directories laid over the tree, found and checked.

#[allow(unused_imports)]
use super::*;

pub(super) fn overlays_of(
    cx: &Cx,
    manifest: &Path,
    origins: &BTreeMap<String, PathBuf>,
    overlays: Vec<String>,
) -> Result<Vec<Overlay>> {
    if overlays.is_empty() {
        return Ok(Vec::new());
    }
    for (i, o) in overlays.iter().enumerate() {
        check_overlay_name(o).map_err(|m| cx.err(&format!("overlays[{i}]"), m))?;
    }
    let mut out = Vec::new();
    for (i, name) in overlays.into_iter().enumerate() {
        let at = format!("overlays[{i}]");
        let declared_in = origins.get(&name).map(PathBuf::as_path).unwrap_or(manifest);
        let root = overlay_root(declared_in).map_err(|m| cx.err("overlays", m))?;
        let joined = root.join(&name);
        let dir = std::fs::canonicalize(&joined)
            .map_err(|e| cx.err(&at, format!("{}: {e}", joined.display())))?;
        if !dir.is_dir() {
            return Err(cx.err(&at, format!("{} is not a directory", joined.display())));
        }
        if dir == root || !dir.starts_with(&root) {
            return Err(cx.err(
                &at,
                format!(
                    "{} resolves to {}, outside {}",
                    joined.display(),
                    dir.display(),
                    root.display()
                ),
            ));
        }
        check_overlay_tree(&dir).map_err(|m| cx.err(&at, m))?;
        out.push(Overlay { name, dir });
    }
    Ok(out)
}

/// Every entry of the overlay at `dir` against what an OSTree commit can
/// hold (libostree's `ostree_validate_filename()` and its commit of a
/// directory): names and symlink targets in UTF-8 (the commit stores them
/// as GVariant strings), only directories, regular files and symlinks. The
/// message names the path; `.`, `..`, empty names and names with `/` never
/// come out of a directory listing.
pub(super) fn check_overlay_tree(dir: &Path) -> Result<(), String> {
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
pub(super) fn overlay_root(manifest: &Path) -> Result<PathBuf, String> {
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

/// A relative path of plain components (no `..`, `.`, or root).
pub(super) fn check_overlay_name(o: &str) -> Result<(), String> {
    let p = Path::new(o);
    if o.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!(
            "{o:?} must be a relative path of plain names under {OVERLAY_ROOT} (no \"..\", \".\", or leading \"/\")"
        ));
    }
    Ok(())
}
