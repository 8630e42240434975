//! Nothing an overlay holds is dropped or misread on its way into the
//! commit (issue 19): a tree of minimal.toml plus an overlay as a checkout
//! under umask 077 leaves it (directories 0700, files 0600), with files
//! under /opt, /usr/local and /var, a dracut.conf.d file and a file with a
//! capability; the commit is read back with the ostree crate.
//!
//! It builds the tree and the commit only (no image, no boot), from the
//! installed tree the minimal image's build left in `$HULL_TEST_OUT/cache`:
//! about 50 s. Needs HULL_QEMU_TESTS=1 and root; `cargo test` lists it as ignored (run it with `--ignored`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use hull::build::rootfs::accounts::{self, Ids};
use hull::manifest::Manifest;
use hull_qemu_tests::{agents, enabled, test_out, workspace_root};
use ostree::gio;
use ostree::prelude::*;

/// `setcap cap_net_raw+ep`, as the kernel stores it (VFS_CAP_REVISION_2).
const CAP_NET_RAW_EP: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// Writes the overlay as a umask-077 checkout makes it.
fn write_overlay(dir: &Path) -> Result<()> {
    let files: &[(&str, &str, u32)] = &[
        (
            "etc/systemd/network/10-t19.network",
            "[Match]\nName=t19-none\n[Network]\nDHCP=yes\n",
            0o600,
        ),
        (
            "etc/dracut.conf.d/90-t19.conf",
            "install_items+=\" /etc/t19-marker \"\n",
            0o600,
        ),
        ("etc/t19-marker", "in the initramfs\n", 0o600),
        ("opt/t19/bin/hello", "#!/bin/sh\necho hello\n", 0o700),
        ("usr/local/bin/t19-hi", "#!/bin/sh\necho hi\n", 0o700),
        ("usr/local/bin/t19-raw", "#!/bin/sh\n", 0o700),
        ("var/lib/t19/seed", "seed\n", 0o600),
    ];
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    for (path, text, mode) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap())?;
        fs::write(&p, text)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode))?;
    }
    let raw = fs::File::open(dir.join("usr/local/bin/t19-raw"))?;
    rustix::fs::fsetxattr(
        &raw,
        "security.capability",
        &CAP_NET_RAW_EP,
        rustix::fs::XattrFlags::empty(),
    )
    .context("setting a file capability (as root)")?;
    // Every directory 0700, as git makes them under umask 077.
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700))?;
        for e in fs::read_dir(&d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(())
}

/// Extended attributes: name and value.
type Xattrs = Vec<(String, Vec<u8>)>;

/// A path of the commit: its mode and extended attributes.
fn inspect(root: &gio::File, path: &str) -> Result<(u32, Xattrs)> {
    let file = root.resolve_relative_path(path.trim_start_matches('/'));
    let info = file
        .query_info(
            "unix::mode",
            gio::FileQueryInfoFlags::NOFOLLOW_SYMLINKS,
            gio::Cancellable::NONE,
        )
        .with_context(|| format!("{path} in the commit"))?;
    let mode = info.attribute_uint32("unix::mode") & 0o7777;
    let repo_file = file
        .downcast::<ostree::RepoFile>()
        .map_err(|_| anyhow::anyhow!("{path}: not a RepoFile"))?;
    let v = repo_file.xattrs(gio::Cancellable::NONE)?;
    let mut xattrs = Vec::new();
    for i in 0..v.n_children() {
        let pair = v.child_value(i);
        let name = pair.child_value(0).data_as_bytes().to_vec();
        let name = String::from_utf8_lossy(&name)
            .trim_end_matches('\0')
            .to_string();
        xattrs.push((name, pair.child_value(1).data_as_bytes().to_vec()));
    }
    Ok((mode, xattrs))
}

fn cat(repo: &ostree::Repo, root: &gio::File, path: &str) -> Result<String> {
    let bytes = accounts::read_commit_file(repo, root, path.trim_start_matches('/'))?
        .with_context(|| format!("no {path} in the commit"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn overlays_reach_the_commit_whole() -> Result<()> {
    if !enabled("overlays_reach_the_commit_whole") {
        return Ok(());
    }
    let dir = test_out().join("overlays");
    // A fresh repository each run: the commit read back is this run's.
    hull::build::rootfs::remove_tree(&dir.join("repo"))?;
    write_overlay(&dir.join("rootfs-overlays/t19"))?;
    let manifest_path = dir.join("t19.toml");
    fs::write(
        &manifest_path,
        format!(
            "include = [{:?}]\nname = \"t19\"\nversion = \"1\"\noverlays = [\"t19\"]\n",
            workspace_root()
                .join("manifests/minimal.toml")
                .display()
                .to_string()
        ),
    )?;
    let manifest = Manifest::load(&manifest_path)?;
    let arch = manifest.arches[0];
    // The minimal image's cache: the same packages, so its installed tree.
    let cache = test_out().join("cache");
    let work = dir.join("work");
    let plan = hull::build::archive::resolve(&manifest, arch, &cache)?;
    // A previous version had core at 1005 and an account since removed at
    // 1000: core keeps 1005, and rootless, new, does not take 1000.
    let parent = Ids::parse(
        "gone:x:1000:1000::/:/bin/sh\ncore:x:1005:1005::/home/core:/bin/bash\n",
        "gone:x:1000:\ncore:x:1005:\n",
    );
    let planned = accounts::plan(&parent, &accounts::names(&manifest));
    let agent = agents()?.remove(0);
    let start = std::time::Instant::now();
    let tree = hull::build::rootfs::build(&manifest, &plan, &work, &cache, &agent, true, &planned)?;
    let repo = hull::repo::commit::open_or_create(&dir.join("repo"))?;
    let meta = hull::repo::commit::CommitMeta {
        version: "1".into(),
        manifest_sha256: manifest.sha256.clone(),
        input_sha256: "test".into(),
        packages: tree.packages.clone(),
        kver: tree.kver.clone(),
        boot_bytes: tree.boot_bytes,
        kargs: vec![],
        release: "test".into(),
        ref_binding: vec!["hull/t19/x86_64/stable".into()],
        arch: "x86_64".into(),
        rollout: None,
    };
    let commit =
        hull::repo::commit::commit_tree(&repo, &tree.dir, "hull/t19/x86_64/stable", &meta)?;
    // The initramfs's entries, read on the host (the tree has no zstd,
    // which hull compresses it with).
    let initramfs = hull::build::rootfs::initramfs::list(
        &tree
            .dir
            .join(format!("usr/lib/modules/{}/initramfs.img", tree.kver)),
    )?
    .join("\n");
    hull::build::rootfs::remove_tree(&work)?;
    eprintln!("tree and commit in {:.0} s", start.elapsed().as_secs_f64());
    let (root, _) = repo.read_commit(&commit.checksum, gio::Cancellable::NONE)?;

    // 1. Directories the tree has keep 0755; the files keep their 0600.
    for d in [
        "/usr/etc",
        "/usr/etc/systemd",
        "/usr/etc/systemd/network",
        "/usr/etc/dracut.conf.d",
    ] {
        assert_eq!(inspect(&root, d)?.0, 0o755, "{d}");
    }
    assert_eq!(
        inspect(&root, "/usr/etc/systemd/network/10-t19.network")?.0,
        0o600
    );

    // 2. /opt and /usr/local content moved into /usr and linked; /var seeded.
    assert_eq!(
        cat(&repo, &root, "/usr/lib/opt/t19/bin/hello")?,
        "#!/bin/sh\necho hello\n"
    );
    assert_eq!(
        cat(&repo, &root, "/usr/lib/usrlocal/bin/t19-hi")?,
        "#!/bin/sh\necho hi\n"
    );
    assert_eq!(
        cat(&repo, &root, "/usr/share/factory/var/lib/t19/seed")?,
        "seed\n"
    );
    let tmpfiles = cat(&repo, &root, "/usr/lib/tmpfiles.d/hull-var.conf")?;
    for line in [
        "L /var/opt/t19 - - - - /usr/lib/opt/t19",
        "L /var/usrlocal/bin - - - - /usr/lib/usrlocal/bin",
        "d /var/lib/t19 0700 0 0 -",
        "C /var/lib/t19/seed - - - - /usr/share/factory/var/lib/t19/seed",
        // Debian's /root/.bashrc is seeded into root's home too.
        "C /var/roothome/.bashrc - - - - /usr/share/factory/var/roothome/.bashrc",
    ] {
        assert!(tmpfiles.lines().any(|l| l == line), "{line}\n{tmpfiles}");
    }

    // 3. The initramfs was made again with the overlay's dracut.conf.d.
    assert!(
        initramfs.lines().any(|l| l == "etc/t19-marker"),
        "no /etc/t19-marker in the initramfs:\n{initramfs}"
    );

    // 4. The capability is in the commit.
    let (_, xattrs) = inspect(&root, "/usr/lib/usrlocal/bin/t19-raw")?;
    assert!(
        xattrs
            .iter()
            .any(|(n, v)| n == "security.capability" && v == &CAP_NET_RAW_EP),
        "{xattrs:?}"
    );

    // 6. Accounts: core keeps its id, rootless takes a free one.
    let passwd = cat(&repo, &root, "/usr/etc/passwd")?;
    assert!(
        passwd.lines().any(|l| l.starts_with("core:x:1005:1005:")),
        "{passwd}"
    );
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("rootless:x:1001:1001:")),
        "{passwd}"
    );
    // core's sub-id range follows its uid 1005.
    let subuid = cat(&repo, &root, "/usr/etc/subuid")?;
    assert!(subuid.lines().any(|l| l == "core:427680:65536"), "{subuid}");
    Ok(())
}
