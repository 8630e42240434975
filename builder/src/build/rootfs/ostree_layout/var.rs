//! `/var` as tmpfiles.d lines: its directories and symlinks are recreated
//! at boot, its regular files kept in the factory tree and copied back when
//! missing, its build state dropped and counted.

use cap_std::fs::MetadataExt;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cap_std::fs::Dir;

use super::{LayoutReport, FACTORY, VAR_BUILD_STATE, VAR_LINKS, VAR_LOGS};

/// `d` lines for the /var directories the top-level links point to.
pub(super) fn add_var_dirs(known: &BTreeSet<String>, lines: &mut Vec<String>) {
    let mut dirs = VAR_LINKS.iter().map(|(_, t)| *t).collect::<Vec<_>>();
    dirs.push("var/usrlocal");
    for t in dirs {
        let path = format!("/{t}");
        let listed = lines
            .iter()
            .any(|l| l.split_whitespace().nth(1) == Some(path.as_str()));
        if !known.contains(&path) && !listed {
            let mode = if t == "var/roothome" { "0700" } else { "0755" };
            lines.push(format!("d {path} {mode} root root -\n"));
        }
    }
}

/// A path as a tmpfiles.d field: whitespace, quotes and backslashes escaped.
pub(super) fn tmpfiles_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if c.is_whitespace() || c == '\\' || c == '"' || c == '\'' {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Paths that the tree's own tmpfiles.d files already create.
pub(super) fn known_tmpfiles_paths(root: &Dir) -> Result<BTreeSet<String>> {
    let mut known = BTreeSet::new();
    let dir = "usr/lib/tmpfiles.d";
    if !root.is_dir(dir) {
        return Ok(known);
    }
    for entry in root.read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".conf") {
            continue;
        }
        let text = root
            .read_to_string(format!("{dir}/{name}"))
            .with_context(|| format!("reading /{dir}/{name}"))?;
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            if let (Some(kind), Some(path)) = (fields.next(), fields.next()) {
                if !kind.starts_with('#') {
                    known.insert(path.trim_end_matches('/').to_string());
                }
            }
        }
    }
    Ok(known)
}

/// The walk over /var that turns it into tmpfiles.d lines: directories and
/// symlinks are recreated, regular files are moved to [`FACTORY`] and copied
/// back when missing, build state is dropped and counted.
pub(super) struct VarWalk<'a> {
    pub(super) root: &'a Dir,
    pub(super) known: BTreeSet<String>,
    /// Accounts of the tree: what lies under /var/home/<account> is theirs.
    pub(super) users: BTreeSet<String>,
    pub(super) lines: Vec<String>,
    pub(super) report: &'a mut LayoutReport,
}

impl VarWalk<'_> {
    /// Walks `rel`; `logs` is the [`VAR_LOGS`] entry it lies in, if any.
    pub(super) fn walk(&mut self, rel: &Path, logs: Option<&'static str>) -> Result<()> {
        let mut entries: Vec<_> = self
            .root
            .read_dir(rel)
            .with_context(|| format!("reading /{}", rel.display()))?
            .collect::<std::result::Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = rel.join(entry.file_name());
            let in_var = path.strip_prefix("var").unwrap_or(&path);
            if let Some(state) = VAR_BUILD_STATE.iter().find(|s| in_var == Path::new(s)) {
                let n = count_files(self.root, &path)?;
                if n > 0 {
                    self.report.build_state_dropped.push((state, n));
                }
                continue;
            }
            let logs = logs.or_else(|| VAR_LOGS.iter().find(|s| in_var == Path::new(s)).copied());
            let abs = format!("/{}", path.display());
            let meta = self.root.symlink_metadata(&path)?;
            let ft = meta.file_type();
            let (user, group) = self.owner(in_var, &meta);
            if ft.is_dir() {
                if !self.known.contains(&abs) {
                    self.lines.push(format!(
                        "d {} {:04o} {user} {group} -\n",
                        tmpfiles_path(&path_abs(&path)),
                        meta.mode() & 0o7777,
                    ));
                }
                self.walk(&path, logs)?;
            } else if ft.is_symlink() {
                if !self.known.contains(&abs) {
                    let target = self.root.read_link_contents(&path)?;
                    self.lines.push(format!(
                        "L {} - - - - {}\n",
                        tmpfiles_path(&path_abs(&path)),
                        tmpfiles_path(&target)
                    ));
                }
            } else if let Some(entry) = logs {
                match self
                    .report
                    .build_state_dropped
                    .iter_mut()
                    .find(|(e, _)| *e == entry)
                {
                    Some((_, n)) => *n += 1,
                    None => self.report.build_state_dropped.push((entry, 1)),
                }
            } else if self.known.contains(&abs) {
                self.report.made_by_tmpfiles.push(abs);
            } else {
                let factory = Path::new(FACTORY).join(&path);
                if let Some(parent) = factory.parent() {
                    self.root
                        .create_dir_all(parent)
                        .with_context(|| format!("creating /{}", parent.display()))?;
                }
                // A rename keeps the owner, mode and extended attributes,
                // which the `C` copy carries over.
                self.root
                    .rename(&path, self.root, &factory)
                    .with_context(|| format!("moving {abs} to /{}", factory.display()))?;
                let (user, group) = if user.parse::<u32>().is_ok() {
                    ("-".to_string(), "-".to_string())
                } else {
                    (user, group)
                };
                self.lines.push(format!(
                    "C {} - {user} {group} - {}\n",
                    tmpfiles_path(&path_abs(&path)),
                    tmpfiles_path(&path_abs(&factory))
                ));
                self.report.seeded.push(abs);
            }
        }
        Ok(())
    }

    /// The owner fields of a line: the account for what lies in its home
    /// (overlays lay files as root), else the numeric ids in the tree.
    fn owner(&self, in_var: &Path, meta: &cap_std::fs::Metadata) -> (String, String) {
        let mut parts = in_var.components().map(|c| c.as_os_str().to_string_lossy());
        if let (Some(home), Some(name), Some(_)) = (parts.next(), parts.next(), parts.next()) {
            if home == "home" && self.users.contains(name.as_ref()) {
                return (name.to_string(), name.to_string());
            }
        }
        (meta.uid().to_string(), meta.gid().to_string())
    }
}

pub(super) fn path_abs(p: &Path) -> PathBuf {
    Path::new("/").join(p)
}

/// Regular files under `path` (1 if it is one).
pub(super) fn count_files(root: &Dir, path: &Path) -> Result<usize> {
    let meta = root.symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(usize::from(meta.is_file()));
    }
    let mut n = 0;
    for entry in root.read_dir(path)? {
        n += count_files(root, &path.join(entry?.file_name()))?;
    }
    Ok(n)
}
