//! Static deltas: each build's change from its parent commit as a few
//! compressed files, so that a host one build behind downloads a handful of
//! delta parts instead of every changed object whole.
//!
//! libostree writes a delta `FROM-TO` under `deltas/` (a superblock naming
//! its parts, then the parts), and [`crate::repo::summary`]'s regeneration
//! lists every delta in the summary (`ostree.static-deltas`), which is how a
//! pulling host learns of them: libostree's pull takes a delta whose `FROM`
//! it already holds and falls back to single objects when there is none.
//! A repository keeps only the deltas that lead to a ref's head or to its
//! parent (a host that read the previous summary may still be pulling it);
//! [`prune`] deletes the others.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, Result};
use base64::Engine;
use ostree::gio;
use ostree::prelude::*;

/// libostree's `min-fallback-size` for hull's deltas, in MB.
const MIN_FALLBACK_MB: u32 = 1000;

/// Summary metadata key (libostree's): delta name `FROM-TO` → the sha256
/// of its superblock.
pub const SUMMARY_KEY: &str = "ostree.static-deltas";

/// The deltas a summary file lists, `(from, to, superblock sha256)` in hex
/// (`from` empty for a delta from nothing); none when it lists none.
///
/// Errors: not a well-formed summary.
pub fn listed_in_summary(summary: &[u8]) -> Result<Vec<(String, String, String)>> {
    let v = ostree::glib::Variant::from_data_with_type(
        summary,
        ostree::glib::VariantTy::new("(a(s(taya{sv}))a{sv})").expect("summary type"),
    );
    anyhow::ensure!(v.is_normal_form(), "not a well-formed OSTree summary");
    let meta = ostree::glib::VariantDict::new(Some(&v.child_value(1)));
    let Some(deltas) = meta.lookup_value(SUMMARY_KEY, None) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in deltas.iter() {
        let name: String = entry.child_value(0).get().unwrap_or_default();
        let value = entry
            .child_value(1)
            .as_variant()
            .unwrap_or(entry.child_value(1));
        let digest = hex::encode(value.fixed_array::<u8>().unwrap_or_default());
        let (from, to) = match name.split_once('-') {
            Some((f, t)) => (f.to_string(), t.to_string()),
            None => (String::new(), name.clone()),
        };
        out.push((from, to, digest));
    }
    Ok(out)
}

/// What [`generate`] made.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaReport {
    pub from: String,
    pub to: String,
    /// Delta parts (files other than the superblock).
    pub parts: usize,
    /// Bytes of the delta's files, superblock included.
    pub bytes: u64,
    /// Seconds libostree took.
    pub seconds: f64,
}

impl DeltaReport {
    /// One line for the build log.
    pub fn describe(&self) -> String {
        format!(
            "static delta {}… → {}…: {} part(s), {} bytes, made in {:.2} s",
            &self.from[..self.from.len().min(12)],
            &self.to[..self.to.len().min(12)],
            self.parts,
            self.bytes,
            self.seconds
        )
    }
}

/// Generates the static delta `from` → `to` (both commits in `repo`) with
/// libostree's "major" settings (rollsum and bsdiff for changed files,
/// parts of at most 32 MiB before compression).
///
/// Errors: a commit is missing, or the repository cannot be written.
pub fn generate(repo: &ostree::Repo, from: &str, to: &str) -> Result<DeltaReport> {
    let start = Instant::now();
    // libostree reads its parameters without checking for NULL. Every
    // object goes into the parts (no "fallback" objects, which a host would
    // fetch whole and which stop `hull pull-commit` applying the delta
    // itself): a minimum fallback size of 1 GB.
    let params = ostree::glib::VariantDict::new(None);
    params.insert("min-fallback-size", MIN_FALLBACK_MB);
    let params = params.end();
    repo.static_delta_generate(
        ostree::StaticDeltaGenerateOpt::Major,
        Some(from),
        to,
        None,
        Some(&params),
        gio::Cancellable::NONE,
    )
    .with_context(|| format!("generating the static delta {from} → {to}"))?;
    let seconds = (start.elapsed().as_secs_f64() * 100.0).round() / 100.0;
    let dir = repo_path(repo)?.join(relative_path(from, to)?);
    let (parts, bytes) = dir_stats(&dir)?;
    Ok(DeltaReport {
        from: from.into(),
        to: to.into(),
        parts,
        bytes,
        seconds,
    })
}

/// A delta being generated on another thread, off the build's critical
/// path (the deployment and the image are made meanwhile). Dropping it waits
/// for the thread, so no delta is left half-written by an early return.
pub struct Background(Option<JoinHandle<Result<DeltaReport>>>);

impl Background {
    /// Starts [`generate`] of `from` → `to` in the repository at `repo_path`
    /// (opened again on the new thread).
    pub fn spawn(repo_path: PathBuf, from: String, to: String) -> Background {
        Background(Some(std::thread::spawn(move || {
            let repo = crate::repo::commit::open_or_create(&repo_path)?;
            generate(&repo, &from, &to)
        })))
    }

    /// Waits for the delta. Errors: [`generate`]'s.
    pub fn wait(mut self) -> Result<DeltaReport> {
        let handle = self.0.take().expect("waited once");
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("the static delta's thread panicked"))?
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

/// The deltas in `repo`, as `(from, to)` checksums (`from` empty for a
/// delta from nothing).
pub fn list(repo: &ostree::Repo) -> Result<Vec<(String, String)>> {
    let names = repo
        .list_static_delta_names(gio::Cancellable::NONE)
        .context("listing the repository's static deltas")?;
    Ok(names
        .iter()
        .map(|n| match n.split_once('-') {
            Some((f, t)) => (f.to_string(), t.to_string()),
            None => (String::new(), n.to_string()),
        })
        .collect())
}

/// The commits deltas may lead to: each ref's head and that head's parent.
pub fn wanted_targets(repo: &ostree::Repo) -> Result<BTreeSet<String>> {
    let refs = repo
        .list_refs(None, gio::Cancellable::NONE)
        .context("listing the repository's refs")?;
    let mut keep = BTreeSet::new();
    for (_, head) in refs {
        let head = head.to_string();
        if let Ok((commit, _)) = repo.load_commit(&head) {
            if let Some(p) = ostree::commit_get_parent(&commit) {
                keep.insert(p.to_string());
            }
        }
        keep.insert(head);
    }
    Ok(keep)
}

/// The targets of deltas to delete: those not in `keep` (sorted, unique).
pub fn stale_targets(deltas: &[(String, String)], keep: &BTreeSet<String>) -> Vec<String> {
    let stale: BTreeSet<&String> = deltas
        .iter()
        .map(|(_, to)| to)
        .filter(|to| !keep.contains(*to))
        .collect();
    stale.into_iter().cloned().collect()
}

/// Deletes every delta whose target is neither a ref's head nor its
/// parent ([`wanted_targets`]); returns the targets whose deltas went.
pub fn prune(repo: &ostree::Repo) -> Result<Vec<String>> {
    let stale = stale_targets(&list(repo)?, &wanted_targets(repo)?);
    for to in &stale {
        repo.prune_static_deltas(Some(to), gio::Cancellable::NONE)
            .with_context(|| format!("deleting the static deltas to {to}"))?;
    }
    Ok(stale)
}

/// `deltas/AB/CDEF…-GHIJ…`: libostree's place for the delta `from` → `to`
/// (each checksum as unpadded base64 with `_` for `/`, the first two
/// characters a directory).
pub fn relative_path(from: &str, to: &str) -> Result<PathBuf> {
    let b64 = |hex_sum: &str| -> Result<String> {
        let raw = hex::decode(hex_sum).with_context(|| format!("{hex_sum} is not a checksum"))?;
        Ok(base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(raw)
            .replace('/', "_"))
    };
    let name = format!("{}-{}", b64(from)?, b64(to)?);
    let (head, rest) = name.split_at(2);
    Ok(Path::new("deltas").join(head).join(rest))
}

/// (parts, bytes) of a delta's directory.
fn dir_stats(dir: &Path) -> Result<(usize, u64)> {
    let mut parts = 0;
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let meta = entry
            .metadata()
            .with_context(|| format!("reading {}", entry.path().display()))?;
        bytes += meta.len();
        if entry.file_name().to_string_lossy().parse::<u64>().is_ok() {
            parts += 1;
        }
    }
    Ok((parts, bytes))
}

fn repo_path(repo: &ostree::Repo) -> Result<PathBuf> {
    repo.path()
        .path()
        .context("the OSTree repository has no local path")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::commit;

    #[test]
    fn stale_targets_table() {
        let keep: BTreeSet<String> = ["c3", "c2"].iter().map(|s| s.to_string()).collect();
        let d = |f: &str, t: &str| (f.to_string(), t.to_string());
        let cases = [
            (vec![], vec![]),
            (vec![d("c2", "c3"), d("c1", "c2")], vec![]),
            (vec![d("c1", "c2"), d("c0", "c1")], vec!["c1"]),
            (vec![d("", "c0"), d("c9", "c0"), d("c2", "c3")], vec!["c0"]),
        ];
        for (deltas, want) in cases {
            let got = stale_targets(&deltas, &keep);
            assert_eq!(got, want, "{deltas:?}");
        }
    }

    /// Four real commits on one ref, a delta to each: with the ref at 3,
    /// the deltas to 3 and to its parent 2 stay; at 4, the delta to 2 goes.
    #[test]
    fn generates_lists_and_prunes_real_deltas() {
        let (t, repo, c1) = commit::test_repo_with_commit(&vec![7u8; 300_000]);
        let r = "hull/t/x86_64/stable";
        let tree = t.path().join("tree");
        let next = |n: u8| {
            let mut data = vec![7u8; 300_000];
            data[1000] = n;
            std::fs::write(tree.join("usr/file"), &data).unwrap();
            let c = commit::commit_tree(&repo, &tree, r, &commit::test_meta(&n.to_string()))
                .unwrap()
                .checksum;
            commit::move_ref(&repo, r, &c).unwrap();
            c
        };
        let c2 = next(2);
        let d = generate(&repo, &c1, &c2).unwrap();
        assert!(d.parts >= 1 && d.bytes > 0, "{d:?}");
        assert!(d.describe().contains("part(s)"));
        assert_eq!(list(&repo).unwrap(), vec![(c1.clone(), c2.clone())]);
        let c3 = next(3);
        generate(&repo, &c2, &c3).unwrap();
        // The ref is at 3, whose parent is 2: both deltas lead somewhere kept.
        assert!(prune(&repo).unwrap().is_empty());
        let c4 = next(4);
        generate(&repo, &c3, &c4).unwrap();
        assert_eq!(prune(&repo).unwrap(), vec![c2.clone()]);
        let mut left = list(&repo).unwrap();
        left.sort();
        let mut want = vec![(c2, c3.clone()), (c3, c4)];
        want.sort();
        assert_eq!(left, want);
        assert!(!t
            .path()
            .join("repo")
            .join(relative_path(&c1, &want[0].0).unwrap())
            .exists());
    }
}
