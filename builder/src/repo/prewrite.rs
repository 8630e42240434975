//! A cold commit's file objects compressed on every core.
//!
//! libostree compresses a tree's files on one thread: 12–14 s of the
//! minimal image's cold build on the project's 2-core machine, the second
//! largest stage. Before such a commit, [`prewrite`] splits the tree's
//! regular files into one share per core (largest first, each to the
//! lightest share: [`plan`]), and each thread commits its share, with its
//! own repository object and transaction, through libostree's ordinary
//! commit walk, a filter leaving out the files of the other shares. Only
//! the file objects are kept (no tree, no commit), and the checksums the
//! walks computed. The commit itself then runs as a child commit does
//! ([`super::reuse`]), each file known by those checksums, so none is read
//! again; the tree, the metadata and the size list come out as a plain
//! cold commit's, checksum for checksum (`reuse.rs` tests it).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use ostree::gio;

/// Splits `files` (`(path, bytes)`) into `shares` sets of paths whose byte
/// totals are as even as the greedy rule makes them: largest file first,
/// each to the share with the fewest bytes so far (ties: the lowest index).
/// Deterministic for the same input.
pub fn plan(files: &[(String, u64)], shares: usize) -> Vec<HashSet<String>> {
    let shares = shares.max(1);
    let mut order: Vec<&(String, u64)> = files.iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut out = vec![HashSet::new(); shares];
    let mut bytes = vec![0u64; shares];
    for (path, len) in order {
        let i = (0..shares)
            .min_by_key(|&i| (bytes[i], i))
            .expect("shares ≥ 1");
        bytes[i] += len;
        out[i].insert(path.clone());
    }
    out
}

/// The regular files of `tree` as libostree's commit walk names them (`/`
/// and the path from the tree's root), with their lengths.
fn regular_files(tree: &Path) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(tree).follow_links(false) {
        let entry = entry.with_context(|| format!("walking {}", tree.display()))?;
        if entry.file_type().is_file() {
            let rel = entry.path().strip_prefix(tree).expect("under the tree");
            let len = entry
                .metadata()
                .with_context(|| format!("reading {}", entry.path().display()))?
                .len();
            out.push((format!("/{}", rel.display()), len));
        }
    }
    Ok(out)
}

/// Checksums of regular files by path (`/` and the path from the tree's
/// root), as libostree's commit walk computed them.
pub type Checksums = HashMap<String, String>;

/// Writes the file objects of `tree` into the archive repository at
/// `repo_path` on `threads` threads, each in a transaction of its own;
/// returns every regular file's checksum, so that the commit need not
/// compute them again. Errors name the tree; a failed share aborts its
/// transaction, and the objects other shares wrote stay (an object is whole
/// or absent; `ostree prune` drops the unreferenced).
pub fn prewrite(repo_path: &Path, tree: &Path, threads: usize) -> Result<Checksums> {
    let files = regular_files(tree)?;
    let shares = plan(&files, threads);
    let handles: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let (repo_path, tree) = (repo_path.to_path_buf(), tree.to_path_buf());
            std::thread::spawn(move || write_share(&repo_path, &tree, Arc::new(share)))
        })
        .collect();
    let mut all = Checksums::new();
    let mut first = Ok(());
    for h in handles {
        match h
            .join()
            .unwrap_or_else(|_| Err(anyhow!("compressing a share of the tree panicked")))
        {
            Ok(found) => all.extend(found),
            Err(e) if first.is_ok() => first = Err(e),
            Err(_) => {}
        }
    }
    first.map(|_| all)
}

/// The checksums `mtree` holds for the paths of `share`, `prefix` being
/// its path from the tree's root (`` for the root).
fn share_checksums(
    mtree: &ostree::MutableTree,
    prefix: &str,
    share: &HashSet<String>,
    out: &mut Checksums,
) {
    for (name, checksum) in mtree.copy_files() {
        let path = format!("{prefix}/{name}");
        if share.contains(&path) {
            out.insert(path, checksum);
        }
    }
    for (name, sub) in mtree.copy_subdirs() {
        share_checksums(&sub, &format!("{prefix}/{name}"), share, out);
    }
}

/// One thread's share: libostree's commit walk over the whole tree, every
/// regular file outside `share` left out, in its own transaction; the
/// checksums of the share's files.
fn write_share(repo_path: &Path, tree: &Path, share: Arc<HashSet<String>>) -> Result<Checksums> {
    let cancellable = gio::Cancellable::NONE;
    let repo = ostree::Repo::new_for_path(repo_path);
    repo.open(cancellable)
        .with_context(|| format!("opening OSTree repository {}", repo_path.display()))?;
    repo.prepare_transaction(cancellable)
        .context("starting an OSTree transaction")?;
    let result = (|| -> Result<Checksums> {
        let mine = share.clone();
        let filter = move |_: &ostree::Repo, path: &str, info: &gio::FileInfo| {
            if info.file_type() == gio::FileType::Regular && !mine.contains(path) {
                ostree::RepoCommitFilterResult::Skip
            } else {
                ostree::RepoCommitFilterResult::Allow
            }
        };
        let modifier = ostree::RepoCommitModifier::new(
            ostree::RepoCommitModifierFlags::NONE,
            Some(Box::new(filter)),
        );
        let mtree = ostree::MutableTree::new();
        let dir =
            std::fs::File::open(tree).with_context(|| format!("opening {}", tree.display()))?;
        use std::os::fd::AsRawFd;
        repo.write_dfd_to_mtree(dir.as_raw_fd(), ".", &mtree, Some(&modifier), cancellable)
            .with_context(|| format!("writing {} into the repository", tree.display()))?;
        repo.commit_transaction(cancellable)
            .context("finishing the OSTree transaction")?;
        let mut found = Checksums::new();
        share_checksums(&mtree, "", &share, &mut found);
        if found.len() != share.len() {
            anyhow::bail!(
                "committing {}: {} of {} files of a share were not written",
                tree.display(),
                share.len() - found.len(),
                share.len()
            );
        }
        Ok(found)
    })();
    if result.is_err() {
        let _ = repo.abort_transaction(cancellable);
    }
    result
}

/// Threads for [`prewrite`]: the cores this process may use.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Table: every file lands in exactly one share, and the shares' bytes
    /// are as even as largest-first greedy makes them.
    #[test]
    fn shares_cover_every_file_once_and_balance_bytes() {
        let cases: &[(&[u64], usize, &[u64])] = &[
            (&[], 2, &[0, 0]),
            (&[5], 2, &[5, 0]),
            (&[10, 9, 1], 2, &[10, 10]),
            (&[7, 7, 7, 7], 2, &[14, 14]),
            (&[100, 1, 1, 1], 2, &[100, 3]),
            (&[3, 3, 3], 3, &[3, 3, 3]),
            (&[4, 4], 1, &[8]),
            (&[4, 4], 0, &[8]),
        ];
        for (sizes, shares, want) in cases {
            let files: Vec<(String, u64)> = sizes
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("/f{i}"), *s))
                .collect();
            let got = plan(&files, *shares);
            let totals: Vec<u64> = got
                .iter()
                .map(|s| files.iter().filter(|f| s.contains(&f.0)).map(|f| f.1).sum())
                .collect();
            assert_eq!(&totals, want, "{sizes:?} into {shares}");
            let mut all: Vec<&String> = got.iter().flatten().collect();
            all.sort();
            assert_eq!(all.len(), files.len(), "{sizes:?}: each file once");
            assert_eq!(plan(&files, *shares), got, "deterministic");
        }
    }
}
