//! What a build writes once its tree is committed and deployed: the SBOM
//! in the tree and beside the image, the disk image, and the publishing of
//! the commit (signature, ref, deltas, summary).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::Dir;

use super::BuildReport;
use crate::boot::{self, bls};
use crate::build::{archive, deploy, image, rootfs, sbom};
use crate::manifest::{Arch, Manifest};
use crate::repo::{commit, sign};

/// Ships the SBOM in the tree (/usr/share/hull/sbom.spdx.json).
pub(super) fn write_tree_sbom(
    manifest: &Manifest,
    arch: Arch,
    plan: &archive::PackagePlan,
    index: &archive::PackageIndex,
    input: &str,
    agent: &Path,
    tree: &rootfs::Rootfs,
) -> Result<()> {
    let doc = sbom::document(&sbom::SbomInput {
        name: &manifest.name,
        version: &manifest.version,
        arch,
        suite: &plan.suite,
        mirror: &plan.mirror,
        ostree_ref: &manifest.ostree_ref(arch),
        input_sha256: input,
        agent_sha256: &archive::sha256_file(agent)?,
        installed: &tree.installed,
        index: Some(index),
        created: sbom::creation_time(),
    })?;
    let root = Dir::open_ambient_dir(&tree.dir, ambient_authority())
        .with_context(|| format!("opening {}", tree.dir.display()))?;
    sbom::write_into_tree(&root, &doc)
}

/// Writes `out/<name>-<arch>.spdx.json`: the commit's own SBOM, with the
/// commit's checksum added.
pub(super) fn write_out_sbom(repo: &ostree::Repo, report: &BuildReport, out: &Path) -> Result<()> {
    let path = sbom::out_path(out, &report.name, &report.arch);
    match sbom::read_commit(repo, &report.commit)? {
        Some(doc) => {
            sbom::write_file(&path, &sbom::with_commit(doc, &report.commit))?;
            log::info!("wrote the SBOM {}", path.display());
        }
        None => log::warn!(
            "commit {} carries no SBOM (/{}): {} not written; rebuild with --refresh",
            report.commit,
            sbom::TREE_PATH,
            path.display()
        ),
    }
    Ok(())
}

pub(super) fn write_image(
    manifest: &Manifest,
    arch: Arch,
    deployed: &deploy::Deployed,
    commit: &str,
    image_path: &Path,
) -> Result<image::DiskReport> {
    let sysroot = Dir::open_ambient_dir(&deployed.sysroot, ambient_authority())
        .with_context(|| format!("opening {}", deployed.sysroot.display()))?;
    let (efi_in_tree, _) = boot::systemd_boot_paths(arch);
    let systemd_boot = deployed.deployment.join(efi_in_tree);
    if !systemd_boot.is_file() {
        bail!(
            "{}: packages: the tree has no /{efi_in_tree}: add systemd-boot-efi to packages.include",
            manifest.path.display()
        );
    }
    let esp_files = bls::plan(&sysroot, &deployed.sysroot, arch, &systemd_boot)?.into_files();
    let spec = image::DiskSpec {
        arch,
        size: image::formats::disk_size(manifest.image.size, &manifest.image_formats),
        esp_size: manifest.image.esp_size,
        esp_files,
        root_dir: &deployed.sysroot,
        root_label: boot::ROOT_LABEL.to_string(),
        esp_label: boot::ESP_LABEL.to_string(),
        // Not the boot checksum, which only the kernel and initramfs move:
        // every image would share its root file system UUID.
        seed: commit.to_string(),
    };
    image::write_disk(&spec, image_path).map_err(|e| {
        match e.downcast_ref::<image::fit::TooSmall>() {
            Some(small) => anyhow!("{}: {small}", manifest.path.display()),
            None => e,
        }
    })
}

/// Makes a commit whose image was written public: signs it with `key`,
/// moves `ostree_ref` to it, deletes the static deltas no ref leads to and
/// regenerates the summary (which lets `ostree remote refs` and pulls list
/// the refs and the deltas). Runs last, so that a failure in
/// any stage before leaves the ref, the signatures and the summary as they were.
pub(super) fn publish(
    repo: &ostree::Repo,
    repo_path: &Path,
    ostree_ref: &str,
    checksum: &str,
    key: Option<&sign::SecretKey>,
    summary_lifetime: u64,
) -> Result<()> {
    if let Some(key) = key {
        sign::sign_commit(repo, checksum, key)?;
        log::info!("signed {checksum} with {}", key.path.display());
    }
    commit::move_ref(repo, ostree_ref, checksum)?;
    for to in crate::repo::delta::prune(repo)? {
        log::info!("deleted the static deltas to {to}: no ref leads to it any more");
    }
    // The summary lets `ostree remote refs` and pulls list the refs; signed,
    // it is what hosts take a ref's head from, until it expires.
    match key {
        Some(key) => {
            let p =
                crate::repo::summary::publish(repo, key, crate::util::now() + summary_lifetime)?;
            log::info!(
                "signed the summary of {} until {}",
                repo_path.display(),
                crate::repo::summary::utc(p.expires)
            );
            Ok(())
        }
        None => repo
            .regenerate_summary(None, ostree::gio::Cancellable::NONE)
            .with_context(|| format!("writing the summary of {}", repo_path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A real repository: a commit written by the commit stage stays
    /// unpublished (ref, signature, summary) when a later stage fails, and
    /// is published once they succeed.
    #[test]
    fn only_a_commit_with_an_image_is_published() {
        let (t, repo, first) = commit::test_repo_with_commit(b"one");
        let r = "hull/t/x86_64/stable";
        let repo_path = t.path().join("repo");
        let tree = t.path().join("tree");
        fs::write(tree.join("usr/file"), "two").unwrap();
        let meta = commit::test_meta("2");
        let second = commit::commit_tree(&repo, &tree, r, &meta)
            .unwrap()
            .checksum;
        let key_path = t.path().join("secret");
        fs::write(&key_path, sign::secret_text(&sign::generate().unwrap())).unwrap();
        let key = sign::load_secret(&key_path).unwrap();
        let summary = repo_path.join("summary");

        // The stages after the commit, as build_arch runs them: a failing
        // image stage, then publishing.
        let run = |image: Result<()>| -> Result<()> {
            image?;
            publish(&repo, &repo_path, r, &second, Some(&key), 3600)
        };
        run(Err(anyhow!("mkfs.ext4 failed"))).unwrap_err();
        assert_eq!(
            commit::head(&repo, r).unwrap().as_deref(),
            Some(first.as_str())
        );
        assert!(!summary.exists(), "no summary written");
        let detached = repo
            .read_commit_detached_metadata(&second, ostree::gio::Cancellable::NONE)
            .unwrap();
        assert!(detached.is_none(), "not signed");

        run(Ok(())).unwrap();
        assert_eq!(
            commit::head(&repo, r).unwrap().as_deref(),
            Some(second.as_str())
        );
        let bytes = fs::read(&summary).unwrap();
        let raw = hex::decode(&second).unwrap();
        assert!(bytes.windows(32).any(|w| w == raw), "the summary lists it");
        let keys = [key.public()];
        // Ok(index of the key that signed it)
        assert_eq!(sign::verify_in_repo(&repo, &second, &keys).unwrap(), 0);
    }
}
