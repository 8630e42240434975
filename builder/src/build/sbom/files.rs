//! Where a document is kept: its JSON text, the copy in the tree, the file in
//! out/, and the copy read back from a commit.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cap_std::fs::Dir;

use super::{Document, TREE_PATH};
/// The document's JSON text (pretty, newline-terminated).
pub fn to_json(doc: &Document) -> Result<String> {
    Ok(serde_json::to_string_pretty(doc).context("serializing the SBOM")? + "\n")
}

/// Parses a document; `what` names it in the error.
pub fn from_json(text: &str, what: &str) -> Result<Document> {
    let doc: Document = serde_json::from_str(text)
        .with_context(|| format!("{what}: not an SPDX 2.3 JSON document"))?;
    if !doc.spdx_version.starts_with("SPDX-2.") {
        bail!(
            "{what}: spdxVersion is {}, hull reads SPDX-2.x",
            doc.spdx_version
        );
    }
    Ok(doc)
}

/// Writes the document into a tree at [`TREE_PATH`].
pub fn write_into_tree(root: &Dir, doc: &Document) -> Result<()> {
    let dir = Path::new(TREE_PATH).parent().expect("a path with a parent");
    root.create_dir_all(dir)
        .with_context(|| format!("creating /{}", dir.display()))?;
    root.write(TREE_PATH, to_json(doc)?)
        .with_context(|| format!("writing /{TREE_PATH}"))
}

/// `out/<name>-<arch>.spdx.json`.
pub fn out_path(out: &Path, name: &str, arch: &str) -> PathBuf {
    out.join(format!("{name}-{arch}.spdx.json"))
}

/// Writes `doc` to `path` through a temp file renamed into place.
pub fn write_file(path: &Path, doc: &Document) -> Result<()> {
    crate::util::write_atomic(path, to_json(doc)?.as_bytes())
}

/// The document shipped in a commit; `None` when it has none (built by a
/// hull before SBOMs).
pub fn read_commit(repo: &ostree::Repo, commit: &str) -> Result<Option<Document>> {
    let (root, _) = repo
        .read_commit(commit, ostree::gio::Cancellable::NONE)
        .with_context(|| format!("reading commit {commit}"))?;
    let Some(bytes) = crate::build::rootfs::accounts::read_commit_file(repo, &root, TREE_PATH)
        .with_context(|| format!("reading /{TREE_PATH} of commit {commit}"))?
    else {
        return Ok(None);
    };
    let text = String::from_utf8(bytes)
        .with_context(|| format!("/{TREE_PATH} of commit {commit} is not UTF-8"))?;
    from_json(&text, &format!("/{TREE_PATH} of commit {commit}")).map(Some)
}
