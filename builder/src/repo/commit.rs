//! Stage 4: the tree committed into an OSTree repository.
//!
//! The repository is in archive mode, so `out/repo` can be served as static
//! files over HTTP. Each build of a manifest adds a child commit to its ref;
//! the commit's metadata records what went into it, and hull's input digest
//! lets an unchanged rebuild reuse the commit instead of building again.

use std::path::Path;

use anyhow::{Context, Result};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

use super::checksum_cache::ChecksumCache;
use crate::util::progress;

/// Metadata key: sha256 of the composed manifest files.
pub const META_MANIFEST_SHA256: &str = "hull.manifest-sha256";
/// Metadata key: digest of every build input (manifest, overlays, hull itself).
pub const META_INPUT_SHA256: &str = "hull.input-sha256";
/// Metadata key: the installed packages, `name version arch`.
pub const META_PACKAGES: &str = "hull.packages";
/// Metadata key: the signed InRelease files the packages came from, one
/// `URL SUITE SHA256 DATE` line each ([`crate::build::archive::SignedSource`]).
pub const META_RELEASE: &str = "hull.debian-release";
/// Metadata key: bytes of the kernel and initramfs, which an update copies to
/// the ESP (checked against its free space before anything is downloaded).
pub const META_BOOT_BYTES: &str = "hull.boot-bytes";
/// Metadata key (libostree's own, `as`): the refs a commit may be served
/// under. Upstream libostree refuses, on pull, a commit bound to other refs;
/// `hull update` checks it before pulling.
pub const META_REF_BINDING: &str = "ostree.ref-binding";
/// Metadata key: the architecture the tree was built for (`x86_64`, `aarch64`).
pub const META_ARCH: &str = "hull.arch";
/// Metadata key: the kernel arguments of a deployment of this commit (without
/// `ostree=`); an update deploys with the new commit's arguments.
pub const META_KARGS: &str = "hull.kargs";
/// The rollout period of `hull build --rollout`, seconds (u64, big-endian);
/// the rollout starts at the commit's timestamp (see `host::wave`).
pub const META_ROLLOUT: &str = "hull.rollout-seconds";

/// What goes into a commit's metadata.
#[derive(Debug, Clone)]
pub struct CommitMeta {
    pub version: String,
    pub manifest_sha256: String,
    pub input_sha256: String,
    pub packages: Vec<String>,
    pub kver: String,
    pub release: String,
    /// Size of /usr/lib/modules/$KVER/{vmlinuz,initramfs.img}.
    pub boot_bytes: u64,
    pub kargs: Vec<String>,
    /// The refs the commit is bound to: the one it is built for, and the
    /// one its hosts follow when the manifest names another.
    pub ref_binding: Vec<String>,
    /// `x86_64` or `aarch64`.
    pub arch: String,
    /// `hull build --rollout`: the rollout period in seconds.
    pub rollout: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub checksum: String,
    pub parent: Option<String>,
}

/// Opens the archive-mode repository at `path`, creating it when absent.
pub fn open_or_create(path: &Path) -> Result<ostree::Repo> {
    let repo = ostree::Repo::new_for_path(path);
    if path.join("config").is_file() {
        repo.open(gio::Cancellable::NONE)
            .with_context(|| format!("opening OSTree repository {}", path.display()))?;
    } else {
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        repo.create(ostree::RepoMode::Archive, gio::Cancellable::NONE)
            .with_context(|| format!("creating OSTree repository {}", path.display()))?;
    }
    Ok(repo)
}

/// The commit `ostree_ref` points to, if any.
pub fn head(repo: &ostree::Repo, ostree_ref: &str) -> Result<Option<String>> {
    Ok(repo
        .resolve_rev(ostree_ref, true)
        .with_context(|| format!("resolving {ostree_ref}"))?
        .map(|s| s.to_string()))
}

/// A commit's metadata dictionary.
fn metadata(repo: &ostree::Repo, checksum: &str) -> Result<glib::VariantDict> {
    let (commit, _) = repo
        .load_commit(checksum)
        .with_context(|| format!("loading commit {checksum}"))?;
    Ok(glib::VariantDict::new(Some(&commit.child_value(0))))
}

/// Reads one string entry of a commit's metadata.
pub fn metadata_string(repo: &ostree::Repo, checksum: &str, key: &str) -> Result<Option<String>> {
    Ok(metadata(repo, checksum)?
        .lookup::<String>(key)
        .ok()
        .flatten())
}

/// Reads one big-endian u64 entry of a commit's metadata.
pub fn metadata_u64(repo: &ostree::Repo, checksum: &str, key: &str) -> Result<Option<u64>> {
    Ok(metadata(repo, checksum)?
        .lookup::<u64>(key)
        .ok()
        .flatten()
        .map(u64::from_be))
}

/// Reads the package list of a commit.
pub fn metadata_packages(repo: &ostree::Repo, checksum: &str) -> Result<Vec<String>> {
    metadata_strings(repo, checksum, META_PACKAGES)
}

/// Reads a list-of-strings entry of a commit's metadata (empty when absent).
pub fn metadata_strings(repo: &ostree::Repo, checksum: &str, key: &str) -> Result<Vec<String>> {
    Ok(metadata(repo, checksum)?
        .lookup::<Vec<String>>(key)
        .ok()
        .flatten()
        .unwrap_or_default())
}

/// Writes `tree` as a commit whose parent is `ostree_ref`'s head, without
/// moving the ref: [`move_ref`] does that once the commit's image was
/// written, so a failed build leaves the ref (and what a served repository
/// advertises) where it was. The objects stay in the repository either way.
pub fn commit_tree(
    repo: &ostree::Repo,
    tree: &Path,
    ostree_ref: &str,
    meta: &CommitMeta,
) -> Result<CommitInfo> {
    commit_tree_cached(repo, tree, ostree_ref, meta, ChecksumCache::default()).map(|(c, _)| c)
}

/// [`commit_tree`] of a tree kept on disk between commits: a file that
/// `previous` knows (same inode and ctime, repo/checksum_cache.rs) is not
/// read again. Returns the commit and the checksums by inode to give the
/// next commit of the same tree.
pub fn commit_tree_cached(
    repo: &ostree::Repo,
    tree: &Path,
    ostree_ref: &str,
    meta: &CommitMeta,
    previous: ChecksumCache,
) -> Result<(CommitInfo, ChecksumCache)> {
    let objects = match head(repo, ostree_ref)? {
        Some(_) => Objects::Reuse,
        None => match super::prewrite::threads() {
            1 => Objects::Plain,
            n => Objects::Parallel(n),
        },
    };
    commit_tree_full(
        repo,
        tree,
        ostree_ref,
        meta,
        crate::util::build_time(),
        objects,
        previous,
    )
}

/// How a commit writes the objects of its files. Each gives the same commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Objects {
    /// libostree's walk compresses every file, on one thread.
    Plain,
    /// Files the repository holds are skipped (repo/reuse.rs; a child
    /// commit does).
    Reuse,
    /// The files are compressed first on this many threads
    /// (repo/prewrite.rs), then committed as [`Objects::Reuse`] does (a cold
    /// commit on a machine with more than one core).
    Parallel(usize),
}

/// [`commit_tree`] at timestamp `now`, its objects written as `objects` says.
#[cfg(test)]
pub(crate) fn commit_tree_at(
    repo: &ostree::Repo,
    tree: &Path,
    ostree_ref: &str,
    meta: &CommitMeta,
    now: u64,
    objects: Objects,
) -> Result<CommitInfo> {
    commit_tree_full(
        repo,
        tree,
        ostree_ref,
        meta,
        now,
        objects,
        ChecksumCache::default(),
    )
    .map(|(c, _)| c)
}

/// [`commit_tree_at`] with the checksums by inode of the tree's last commit
/// ([`commit_tree_cached`]).
pub(crate) fn commit_tree_full(
    repo: &ostree::Repo,
    tree: &Path,
    ostree_ref: &str,
    meta: &CommitMeta,
    now: u64,
    objects: Objects,
    previous: ChecksumCache,
) -> Result<(CommitInfo, ChecksumCache)> {
    let parent = head(repo, ostree_ref)?;
    let mut known = None;
    if let Objects::Parallel(threads) = objects {
        let path = repo.path().path().context("the repository's path")?;
        let started = std::time::Instant::now();
        let bar = progress::spinner(&format!(
            "compressing the files of {} on {threads} threads",
            tree.display()
        ));
        let files = super::prewrite::prewrite(&path, tree, threads);
        bar.finish_and_clear();
        let files = files?;
        log::debug!(
            "commit: {} files compressed on {threads} threads in {:.1} s",
            files.len(),
            started.elapsed().as_secs_f64()
        );
        known = Some(files);
    }
    let reuse = objects != Objects::Plain;
    let bar = progress::spinner(&format!("committing {} to {ostree_ref}", tree.display()));
    let mut checksums = ChecksumCache::default();
    let result = (|| -> Result<String> {
        let cancellable = gio::Cancellable::NONE;
        repo.prepare_transaction(cancellable)
            .context("starting an OSTree transaction")?;
        let mtree = ostree::MutableTree::new();
        let dir =
            std::fs::File::open(tree).with_context(|| format!("opening {}", tree.display()))?;
        use std::os::fd::AsRawFd;
        // A child commit skips the files already in the repository
        // (repo/reuse.rs): same commit, no recompression.
        let (reuse, modifier) = match (reuse, known.take()) {
            (true, Some(known)) => {
                let (r, m) = super::reuse::Reuse::known(&dir, known)?;
                (Some(r), m)
            }
            (true, None) => {
                let (r, m) = super::reuse::Reuse::modifier(repo, &dir, previous)?;
                (Some(r), m)
            }
            (false, _) => (
                None,
                ostree::RepoCommitModifier::new(ostree::RepoCommitModifierFlags::NONE, None),
            ),
        };
        repo.write_dfd_to_mtree(dir.as_raw_fd(), ".", &mtree, Some(&modifier), cancellable)
            .with_context(|| format!("writing {} into the repository", tree.display()))?;
        if let Some(r) = &reuse {
            r.graft(&mtree)?;
            log::debug!(
                "commit: {} files already in the repository ({} of them known unchanged, not read)",
                r.reused(),
                r.cached()
            );
            checksums = r.checksums();
        }
        let root = repo
            .write_mtree(&mtree, cancellable)
            .context("writing the tree")?;
        let root = root
            .downcast::<ostree::RepoFile>()
            .map_err(|_| anyhow::anyhow!("ostree returned a tree that is not a RepoFile"))?;

        let dict = glib::VariantDict::new(None);
        dict.insert("version", &meta.version);
        dict.insert("ostree.linux", &meta.kver);
        dict.insert(META_MANIFEST_SHA256, &meta.manifest_sha256);
        dict.insert(META_INPUT_SHA256, &meta.input_sha256);
        dict.insert(META_RELEASE, &meta.release);
        // Integers in commit metadata are big-endian, as OSTree stores its own.
        dict.insert(META_BOOT_BYTES, meta.boot_bytes.to_be());
        dict.insert_value(META_REF_BINDING, &meta.ref_binding.to_variant());
        dict.insert(META_ARCH, &meta.arch);
        dict.insert_value(META_KARGS, &meta.kargs.to_variant());
        dict.insert_value(META_PACKAGES, &meta.packages.to_variant());
        if let Some(r) = meta.rollout {
            dict.insert(META_ROLLOUT, r.to_be());
        }
        // The sizes of what a host at the parent lacks let it know, before
        // pulling, what an update takes on its disk (repo/sizes.rs).
        let metadata = super::sizes::metadata_with_sizes(
            repo,
            &dict.end(),
            &root
                .tree_get_contents_checksum()
                .context("the tree's checksum")?,
            &root
                .tree_get_metadata_checksum()
                .context("the tree's checksum")?,
            parent.as_deref(),
        )?;

        let subject = format!("{ostree_ref} {}", meta.version);
        let checksum = repo
            .write_commit_with_time(
                parent.as_deref(),
                Some(&subject),
                None,
                Some(&metadata),
                &root,
                now,
                cancellable,
            )
            .context("writing the commit")?;
        repo.commit_transaction(cancellable)
            .context("finishing the OSTree transaction")?;
        Ok(checksum.to_string())
    })();
    bar.finish_and_clear();
    if result.is_err() {
        let _ = repo.abort_transaction(gio::Cancellable::NONE);
    }
    Ok((
        CommitInfo {
            checksum: result?,
            parent,
        },
        checksums,
    ))
}

/// Points `ostree_ref` at `checksum`, which must be in `repo`.
pub fn move_ref(repo: &ostree::Repo, ostree_ref: &str, checksum: &str) -> Result<()> {
    repo.set_ref_immediate(None, ostree_ref, Some(checksum), gio::Cancellable::NONE)
        .with_context(|| format!("moving {ostree_ref} to {checksum}"))
}

/// Metadata for test commits: `version`, the rest placeholders.
#[cfg(test)]
pub(crate) fn test_meta(version: &str) -> CommitMeta {
    CommitMeta {
        version: version.into(),
        manifest_sha256: "m".into(),
        input_sha256: format!("i-{version}"),
        packages: vec![],
        kver: "6.12".into(),
        release: "r".into(),
        boot_bytes: 0,
        kargs: vec![],
        ref_binding: vec!["hull/t/x86_64/stable".into()],
        arch: "x86_64".into(),
        rollout: None,
    }
}

/// A real archive repository in a temp dir with one commit of a tree holding
/// `usr/file` (`contents`): the fixture of every test that needs a commit.
#[cfg(test)]
pub(crate) fn test_repo_with_commit(contents: &[u8]) -> (tempfile::TempDir, ostree::Repo, String) {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    std::fs::create_dir_all(tree.join("usr")).unwrap();
    std::fs::write(tree.join("usr/file"), contents).unwrap();
    let repo = open_or_create(&t.path().join("repo")).unwrap();
    let meta = test_meta("1");
    let r = "hull/t/x86_64/stable";
    let c = commit_tree(&repo, &tree, r, &meta).unwrap().checksum;
    move_ref(&repo, r, &c).unwrap();
    (t, repo, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(v: &str) -> CommitMeta {
        CommitMeta {
            version: v.into(),
            manifest_sha256: "m".into(),
            input_sha256: format!("in-{v}"),
            packages: vec!["base-files 13 amd64".into(), "podman 5.4 amd64".into()],
            kver: "6.12".into(),
            release: "r".into(),
            boot_bytes: 1,
            kargs: vec!["rw".into()],
            ref_binding: vec!["hull/test/x86_64/stable".into()],
            arch: "x86_64".into(),
            rollout: None,
        }
    }

    /// A real archive-mode repository in a temp dir: two commits on one ref
    /// are linked parent to child and carry their metadata.
    #[test]
    fn commits_chain_and_carry_metadata() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
        std::fs::write(tree.join("usr/bin/hello"), "hi").unwrap();
        let repo = open_or_create(&t.path().join("repo")).unwrap();
        let r = "hull/test/x86_64/stable";
        let a = commit_tree(&repo, &tree, r, &meta("1")).unwrap();
        assert_eq!(a.parent, None);
        assert_eq!(
            head(&repo, r).unwrap(),
            None,
            "writing a commit moves no ref"
        );
        move_ref(&repo, r, &a.checksum).unwrap();
        std::fs::write(tree.join("usr/bin/hello"), "hi again").unwrap();
        let b = commit_tree(&repo, &tree, r, &meta("2")).unwrap();
        assert_eq!(b.parent.as_deref(), Some(a.checksum.as_str()));
        assert_eq!(
            head(&repo, r).unwrap().as_deref(),
            Some(a.checksum.as_str()),
            "the ref stays on the older commit until it is moved"
        );
        move_ref(&repo, r, &b.checksum).unwrap();
        assert_eq!(
            head(&repo, r).unwrap().as_deref(),
            Some(b.checksum.as_str())
        );
        assert_eq!(
            metadata_string(&repo, &b.checksum, "version")
                .unwrap()
                .as_deref(),
            Some("2")
        );
        assert_eq!(
            metadata_string(&repo, &b.checksum, META_INPUT_SHA256)
                .unwrap()
                .as_deref(),
            Some("in-2")
        );
        assert_eq!(metadata_packages(&repo, &a.checksum).unwrap().len(), 2);
        // A rollout period only where given, read back as written.
        assert_eq!(
            metadata_u64(&repo, &b.checksum, META_ROLLOUT).unwrap(),
            None
        );
        std::fs::write(tree.join("usr/bin/hello"), "wave").unwrap();
        let c = commit_tree(
            &repo,
            &tree,
            r,
            &CommitMeta {
                rollout: Some(86_400),
                ..meta("3")
            },
        )
        .unwrap();
        assert_eq!(
            metadata_u64(&repo, &c.checksum, META_ROLLOUT).unwrap(),
            Some(86_400)
        );
        // reopening finds the same repository
        let again = open_or_create(&t.path().join("repo")).unwrap();
        assert_eq!(head(&again, r).unwrap(), Some(b.checksum));
        assert_eq!(head(&again, "hull/none/x86_64/stable").unwrap(), None);
    }
}
