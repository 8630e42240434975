//! Will libostree's three-way /etc merge work? Checked before deploying.
//!
//! libostree carries every local change in /etc (relative to the booted
//! deployment's defaults in /usr/etc) into the new deployment. It cannot
//! when the new defaults change the kind of a path that holds a local
//! change: a locally edited file that the new commit makes a directory, or
//! a directory with local changes inside that becomes a symlink or a file.
//! libostree then fails half-way through `deploy`; hull finds these first
//! and refuses with the paths, before anything is staged, so the operator
//! can fix them and retry (the pulled commit stays in the repository).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ostree::gio;
use ostree::prelude::*;

/// The kind of a path in a tree (symlinks not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::File => "a file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symlink",
        }
    }
}

/// One path of /etc that differs from the booted defaults (edited or added
/// locally), relative to /etc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalChange {
    pub path: PathBuf,
    pub kind: Kind,
}

/// A path the merge cannot carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Relative to /etc: where the new defaults change the kind.
    pub path: PathBuf,
    pub local: Kind,
    pub new: Kind,
    /// The local change that lives there (the path itself, or one below it).
    pub change: PathBuf,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = Path::new("/etc").join(&self.path);
        if self.change == self.path {
            write!(
                f,
                "{} is {} changed locally, and the new version makes it {}",
                at.display(),
                self.local.noun(),
                self.new.noun()
            )
        } else {
            write!(
                f,
                "{} is {} holding a local change ({}), and the new version makes it {}",
                at.display(),
                self.local.noun(),
                Path::new("/etc").join(&self.change).display(),
                self.new.noun()
            )
        }
    }
}

/// The conflicts among `changes`, given the kind of each path in the new
/// commit's defaults (`new_kind(path relative to /etc)`, `None` when absent).
///
/// A change conflicts where the new defaults put a non-directory on one of
/// its parent directories, or change its own kind between directory and
/// non-directory (a file that becomes a symlink is carried: the local file
/// wins, as in libostree). Each conflicting path is reported once.
pub fn conflicts(
    changes: &[LocalChange],
    new_kind: impl Fn(&Path) -> Option<Kind>,
) -> Vec<Conflict> {
    let mut out: Vec<Conflict> = Vec::new();
    for change in changes {
        let mut found = None;
        let mut parent = PathBuf::new();
        let comps: Vec<_> = change.path.components().collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            parent.push(c);
            if let Some(k) = new_kind(&parent).filter(|k| *k != Kind::Dir) {
                found = Some((parent.clone(), Kind::Dir, k));
                break;
            }
        }
        if found.is_none() {
            if let Some(k) = new_kind(&change.path) {
                if (k == Kind::Dir) != (change.kind == Kind::Dir) {
                    found = Some((change.path.clone(), change.kind, k));
                }
            }
        }
        if let Some((path, local, new)) = found {
            if !out.iter().any(|c| c.path == path) {
                out.push(Conflict {
                    path,
                    local,
                    new,
                    change: change.path.clone(),
                });
            }
        }
    }
    out
}

fn kind_of(meta: &std::fs::Metadata) -> Kind {
    let t = meta.file_type();
    if t.is_dir() {
        Kind::Dir
    } else if t.is_symlink() {
        Kind::Symlink
    } else {
        Kind::File
    }
}

/// Whether `local` (in /etc) equals `default` (in /usr/etc) as libostree
/// sees it: same kind, mode, owner, and content or link target.
fn same_as_default(local: &Path, lmeta: &std::fs::Metadata, default: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(dmeta) = std::fs::symlink_metadata(default) else {
        return false;
    };
    if kind_of(lmeta) != kind_of(&dmeta)
        || lmeta.mode() != dmeta.mode()
        || lmeta.uid() != dmeta.uid()
        || lmeta.gid() != dmeta.gid()
    {
        return false;
    }
    match kind_of(lmeta) {
        Kind::Dir => true,
        Kind::Symlink => std::fs::read_link(local).ok() == std::fs::read_link(default).ok(),
        Kind::File => {
            lmeta.len() == dmeta.len()
                && matches!((std::fs::read(local), std::fs::read(default)), (Ok(a), Ok(b)) if a == b)
        }
    }
}

/// The local changes of `etc` against the defaults in `usr_etc`: every
/// non-directory that differs, and every directory the defaults lack.
pub fn local_changes(etc: &Path, usr_etc: &Path) -> Result<Vec<LocalChange>> {
    let mut out = Vec::new();
    let walk = walkdir::WalkDir::new(etc)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name();
    for entry in walk {
        let entry = entry.with_context(|| format!("reading {}", etc.display()))?;
        let rel = entry
            .path()
            .strip_prefix(etc)
            .expect("below etc")
            .to_path_buf();
        let meta = entry
            .metadata()
            .with_context(|| format!("reading {}", entry.path().display()))?;
        let kind = kind_of(&meta);
        let default = usr_etc.join(&rel);
        let changed = match kind {
            Kind::Dir => !default.is_dir() || default.is_symlink(),
            _ => !same_as_default(entry.path(), &meta, &default),
        };
        if changed {
            out.push(LocalChange { path: rel, kind });
        }
    }
    Ok(out)
}

/// The kind of `usr/etc/<rel>` in a commit's tree.
fn commit_kind(root: &gio::File, rel: &Path) -> Option<Kind> {
    let f = root.resolve_relative_path(Path::new("usr/etc").join(rel));
    match f.query_file_type(
        gio::FileQueryInfoFlags::NOFOLLOW_SYMLINKS,
        gio::Cancellable::NONE,
    ) {
        gio::FileType::Directory => Some(Kind::Dir),
        gio::FileType::SymbolicLink => Some(Kind::Symlink),
        gio::FileType::Regular | gio::FileType::Special => Some(Kind::File),
        _ => None,
    }
}

/// Checks that the booted host's /etc changes can be merged into `checksum`
/// (already in `repo`). `etc` and `usr_etc` are the live /etc and the booted
/// defaults.
///
/// Errors: one line naming every conflicting path and how to fix it; the
/// commit stays in the repository, so a retry downloads nothing again.
pub fn check(repo: &ostree::Repo, checksum: &str, etc: &Path, usr_etc: &Path) -> Result<()> {
    let (root, _) = repo
        .read_commit(checksum, gio::Cancellable::NONE)
        .with_context(|| format!("reading commit {checksum}"))?;
    let changes = local_changes(etc, usr_etc)?;
    let found = conflicts(&changes, |p| commit_kind(&root, p));
    if found.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = found.iter().map(Conflict::to_string).collect();
    anyhow::bail!(
        "the local changes in /etc cannot be merged into {checksum}: {}; nothing was staged \
         (restore the default from /usr/etc or move the change aside, then run hull update again: \
         the update is already downloaded)",
        list.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn change(p: &str, kind: Kind) -> LocalChange {
        LocalChange {
            path: p.into(),
            kind,
        }
    }

    /// (local changes, new defaults) → conflicting paths
    #[test]
    fn conflict_table() {
        use Kind::*;
        let new: BTreeMap<&str, Kind> = [
            ("issue.net", Dir),
            ("issue.net/x", File),
            ("foo", Symlink),
            ("motd", Symlink),
            ("ssh", Dir),
            ("ssh/sshd_config", File),
            ("added-here", File),
        ]
        .into();
        let lookup = |p: &Path| new.get(p.to_str().unwrap()).copied();
        let cases: &[(&[LocalChange], &[&str])] = &[
            // An edited file that becomes a directory.
            (&[change("issue.net", File)], &["issue.net"]),
            // A directory with a local change inside that becomes a symlink.
            (&[change("foo/bar.conf", File)], &["foo"]),
            // A file edited into a symlink's place: carried, as libostree does.
            (&[change("motd", File)], &[]),
            // Ordinary edits and additions.
            (
                &[change("ssh/sshd_config", File), change("new.conf", File)],
                &[],
            ),
            // A locally added directory where the new defaults put a file.
            (&[change("added-here", Dir)], &["added-here"]),
            // Two changes under one conflicting directory: reported once.
            (&[change("foo/a", File), change("foo/b", File)], &["foo"]),
            (&[], &[]),
        ];
        for (changes, want) in cases {
            let got: Vec<String> = conflicts(changes, lookup)
                .iter()
                .map(|c| c.path.display().to_string())
                .collect();
            assert_eq!(&got, want, "{changes:?}");
        }
        let c = &conflicts(&[change("foo/bar.conf", File)], lookup)[0];
        assert_eq!(
            c.to_string(),
            "/etc/foo is a directory holding a local change (/etc/foo/bar.conf), and the new version makes it a symlink"
        );
    }

    /// A real /etc and /usr/etc on disk, and a real commit.
    #[test]
    fn finds_changes_on_disk_and_conflicts_in_a_commit() {
        let t = tempfile::tempdir().unwrap();
        let (etc, usr_etc) = (t.path().join("etc"), t.path().join("usr-etc"));
        for d in [&etc, &usr_etc] {
            std::fs::create_dir_all(d.join("ssh")).unwrap();
            std::fs::write(d.join("issue.net"), "Debian\n").unwrap();
            std::fs::write(d.join("ssh/sshd_config"), "x\n").unwrap();
        }
        std::fs::write(etc.join("issue.net"), "local\n").unwrap();
        std::fs::create_dir_all(etc.join("local.d")).unwrap();
        let got = local_changes(&etc, &usr_etc).unwrap();
        assert_eq!(
            got,
            vec![
                change("issue.net", Kind::File),
                change("local.d", Kind::Dir)
            ]
        );

        // The new commit makes issue.net a directory.
        let tree = t.path().join("tree");
        std::fs::create_dir_all(tree.join("usr/etc/issue.net")).unwrap();
        std::fs::write(tree.join("usr/etc/issue.net/x"), "").unwrap();
        let repo = crate::repo::commit::open_or_create(&t.path().join("repo")).unwrap();
        let meta = crate::repo::commit::test_meta("1");
        let c = crate::repo::commit::commit_tree(&repo, &tree, "r", &meta)
            .unwrap()
            .checksum;
        let e = check(&repo, &c, &etc, &usr_etc).unwrap_err().to_string();
        assert!(e.contains("/etc/issue.net is a file changed locally, and the new version makes it a directory"), "{e}");
        // The fix: the default back in place.
        std::fs::copy(usr_etc.join("issue.net"), etc.join("issue.net")).unwrap();
        check(&repo, &c, &etc, &usr_etc).unwrap();
    }
}
