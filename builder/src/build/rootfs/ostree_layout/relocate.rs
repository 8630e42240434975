//! Moving what the installed tree holds where an OSTree system cannot keep
//! it: a top-level software tree that holds files into `/usr`, everything
//! else into its place in `/var`, merging directories.

use cap_std::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use cap_std::fs::Dir;

use super::set_mode;
use super::var::tmpfiles_path;

/// Moves every top-level entry of `dir` that holds a regular file to
/// `usr_dir`, with a tmpfiles.d link from `var_dir`; what is left (empty
/// directories, symlinks) moves into `var_dir` with the rest of /var.
pub(super) fn relocate(
    root: &Dir,
    dir: &str,
    var_dir: &str,
    usr_dir: &str,
    lines: &mut Vec<String>,
    relocated: &mut Vec<(String, String)>,
) -> Result<()> {
    if !root.symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    let mut names: Vec<_> = root
        .read_dir(dir)
        .with_context(|| format!("reading /{dir}"))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for name in names {
        let from = Path::new(dir).join(&name);
        if !holds_a_file(root, &from)? {
            continue;
        }
        let to = Path::new(usr_dir).join(&name);
        root.create_dir_all(usr_dir)
            .with_context(|| format!("creating /{usr_dir}"))?;
        if root.symlink_metadata(&to).is_ok() {
            bail!(
                "/{} cannot move to /{}: the tree already has it",
                from.display(),
                to.display()
            );
        }
        root.rename(&from, root, &to)
            .with_context(|| format!("moving /{} to /{}", from.display(), to.display()))?;
        let link = Path::new("/").join(var_dir).join(&name);
        lines.push(format!(
            "L {} - - - - /{}\n",
            tmpfiles_path(&link),
            tmpfiles_path(&to)
        ));
        relocated.push((format!("/{}", from.display()), format!("/{}", to.display())));
    }
    move_into(root, Path::new(dir), Path::new(var_dir))
}

/// Whether `path` is, or holds, a regular file.
pub(super) fn holds_a_file(root: &Dir, path: &Path) -> Result<bool> {
    let meta = root.symlink_metadata(path)?;
    if meta.is_file() {
        return Ok(true);
    }
    if !meta.is_dir() {
        return Ok(false);
    }
    for entry in root.read_dir(path)? {
        if holds_a_file(root, &path.join(entry?.file_name()))? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Moves the contents of `from` into `to` (created with `from`'s mode and
/// owner when missing), merging directories; `from` is left empty. A
/// non-directory at the same place in both is an error naming both.
pub(super) fn move_into(root: &Dir, from: &Path, to: &Path) -> Result<()> {
    let Ok(meta) = root.symlink_metadata(from) else {
        return Ok(());
    };
    if !meta.is_dir() {
        return Ok(());
    }
    if root.symlink_metadata(to).is_err() {
        root.create_dir_all(to)
            .with_context(|| format!("creating /{}", to.display()))?;
        set_mode(root, &to.to_string_lossy(), meta.mode() & 0o7777)?;
    }
    for entry in root
        .read_dir(from)
        .with_context(|| format!("reading /{}", from.display()))?
    {
        let name = entry?.file_name();
        let (src, dst) = (from.join(&name), to.join(&name));
        let src_dir = root.symlink_metadata(&src)?.is_dir();
        match root.symlink_metadata(&dst) {
            Err(_) => root
                .rename(&src, root, &dst)
                .with_context(|| format!("moving /{} to /{}", src.display(), dst.display()))?,
            Ok(m) if m.is_dir() && src_dir => move_into(root, &src, &dst)?,
            Ok(_) => bail!(
                "/{} cannot move to /{}: the tree has both",
                src.display(),
                dst.display()
            ),
        }
    }
    Ok(())
}
