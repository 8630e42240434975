use super::*;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt};

const MARKER: Stamp = (1000, 500);

fn seen(kind: Kind, ino: u64, ctime: Stamp) -> Seen {
    Seen { kind, ino, ctime }
}

/// installed kind, work kind, recorded inode (the work entry's is 7), the
/// work entry's ctime; the actions and whether it is walked into.
type Row = (Kind, Kind, Option<u64>, Stamp, Vec<Action>, bool);

/// The decision for an entry in both trees, as a table: kinds, whether the
/// inode is the recorded one, and the ctime against the marker.
#[test]
fn each_entry_in_both_trees_is_kept_fixed_or_replaced() {
    const FILE: Kind = Kind::Other(0o100000);
    const LINK: Kind = Kind::Other(0o120000);
    let replace = |p: &str| vec![Action::Remove(p.into()), Action::Copy(p.into())];
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        // unchanged file: the recorded inode, ctime not past the marker
        (FILE, FILE, Some(7), (1000, 500), vec![], false),
        (FILE, FILE, Some(7), (999, 999_999_999), vec![], false),
        // changed in place (ctime past the marker): copied again
        (FILE, FILE, Some(7), (1000, 501), replace("p"), false),
        // another inode at the path (a rename, a swap), even with an old ctime
        (FILE, FILE, Some(8), (900, 0), replace("p"), false),
        (FILE, FILE, None, (900, 0), replace("p"), false),
        // a file become a symlink, or a directory a file
        (FILE, LINK, Some(7), (900, 0), replace("p"), false),
        (Kind::Dir, FILE, Some(7), (900, 0), replace("p"), false),
        // a directory: walked into; its metadata checked once its ctime moved
        (Kind::Dir, Kind::Dir, Some(7), (900, 0), vec![], true),
        (Kind::Dir, Kind::Dir, Some(7), (1001, 0), vec![Action::Meta("p".into())], true),
        // a directory moved here from elsewhere: replaced whole, not walked
        (Kind::Dir, Kind::Dir, Some(8), (900, 0), replace("p"), false),
    ];
    for (i, (installed, work, recorded, ctime, want, walk)) in rows.into_iter().enumerate() {
        let mut out = vec![];
        let walked = decide(
            "p",
            seen(installed, 1, (1, 0)),
            seen(work, 7, ctime),
            recorded,
            MARKER,
            &mut out,
        );
        assert_eq!((out, walked), (want, walk), "row {i}");
    }
}

/// Everything of an entry that a commit or a later step can see.
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(0) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        let m = e.path().symlink_metadata().unwrap();
        let what = if m.file_type().is_symlink() {
            format!("-> {}", fs::read_link(e.path()).unwrap().display())
        } else if m.is_file() {
            format!("{:?}", fs::read(e.path()).unwrap())
        } else {
            "dir".into()
        };
        let xattrs = if m.file_type().is_symlink() {
            Default::default()
        } else {
            let f = fs::File::open(e.path()).unwrap();
            super::super::overlay::read_xattrs(&f).unwrap()
        };
        out.insert(
            rel,
            format!(
                "{what} mode {:o} owner {}:{} xattrs {xattrs:?}",
                m.mode(),
                m.uid(),
                m.gid()
            ),
        );
    }
    out
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn installed_tree(root: &Path) {
    write(root, "etc/passwd", b"root:x:0:0\n");
    write(root, "etc/ssh/sshd_config", b"PermitRootLogin no\n");
    write(root, "usr/bin/tool", b"tool v1");
    write(root, "usr/bin/same-size", b"aaaa");
    write(root, "usr/lib/a.so", b"library a");
    write(root, "usr/lib/b.so", b"library b");
    write(root, "var/lib/dpkg/status", b"Package: x\n");
    write(root, "usr/share/doc/readme", b"untouched");
    write(root, "a/f", b"from a");
    write(root, "b/f", b"from b");
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool2")).unwrap();
    std::os::unix::fs::symlink("a.so", root.join("usr/lib/link.so")).unwrap();
    fs::set_permissions(
        root.join("usr/bin/tool"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    rustix::fs::setxattr(
        root.join("usr/lib/a.so").as_path(),
        "user.hull-test",
        b"on",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
}

/// What a build does to its copy: files changed in place (one keeping its
/// size and mtime), modes and attributes changed, entries added, removed
/// and moved, two directories swapped, a directory's mode changed.
fn customize(root: &Path) {
    let old = fs::symlink_metadata(root.join("usr/bin/same-size")).unwrap();
    fs::write(root.join("usr/bin/same-size"), b"bbbb").unwrap();
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(old.mtime() as u64);
    fs::File::options()
        .write(true)
        .open(root.join("usr/bin/same-size"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    fs::write(root.join("etc/passwd"), b"root:x:0:0\ncore:x:1000:1000\n").unwrap();
    fs::set_permissions(
        root.join("usr/bin/tool2"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    rustix::fs::setxattr(
        root.join("usr/lib/b.so").as_path(),
        "user.hull-test",
        b"new",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::removexattr(root.join("usr/lib/a.so").as_path(), "user.hull-test").unwrap();
    write(root, "usr/share/overlay/file", b"from the overlay");
    fs::remove_file(root.join("usr/lib/link.so")).unwrap();
    std::os::unix::fs::symlink("b.so", root.join("usr/lib/link.so")).unwrap();
    fs::create_dir_all(root.join("usr")).unwrap();
    fs::rename(root.join("etc"), root.join("usr/etc")).unwrap();
    fs::remove_dir_all(root.join("var/lib/dpkg")).unwrap();
    fs::rename(root.join("a"), root.join("swap")).unwrap();
    fs::rename(root.join("b"), root.join("a")).unwrap();
    fs::rename(root.join("swap"), root.join("b")).unwrap();
    fs::set_permissions(root.join("var"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(root, fs::Permissions::from_mode(0o750)).unwrap();
}

/// A copy marked, customized as a build does, then planned and restored:
/// it describes exactly as the installed tree does, and the files no step
/// touched are still the same inodes (not copied again).
#[test]
fn a_customized_copy_is_put_back_to_the_installed_tree() {
    let t = tempfile::tempdir().unwrap();
    let (installed, work) = (t.path().join("tree"), t.path().join("work"));
    installed_tree(&installed);
    Cmd::new("cp")
        .arg("-a")
        .arg(&installed)
        .arg(&work)
        .run()
        .unwrap();
    let want = describe(&installed);
    assert_eq!(describe(&work), want);
    let state = mark(&work, t.path()).unwrap();
    let ino = |p: &str| fs::metadata(work.join(p)).unwrap().ino();
    let (tool, readme) = (ino("usr/bin/tool"), ino("usr/share/doc/readme"));
    customize(&work);
    assert_ne!(describe(&work), want);

    let i = Dir::open_ambient_dir(&installed, ambient_authority()).unwrap();
    let w = Dir::open_ambient_dir(&work, ambient_authority()).unwrap();
    let plan = plan_restore(&i, &w, &state).unwrap();
    let done = apply(&installed, &work, &plan).unwrap();
    assert_eq!(describe(&work), want);
    // tool and tool2 are one inode, whose mode changed: copied again.
    assert_ne!(ino("usr/bin/tool"), tool);
    assert_eq!(ino("usr/share/doc/readme"), readme);
    assert!(done.directories_fixed >= 2, "{done:?}");

    // Marked again and left alone: nothing to do.
    let state = mark(&work, t.path()).unwrap();
    let kept = fs::metadata(work.join("usr/bin/same-size")).unwrap().ino();
    let w = Dir::open_ambient_dir(&work, ambient_authority()).unwrap();
    assert_eq!(plan_restore(&i, &w, &state).unwrap(), vec![]);
    assert_eq!(
        fs::metadata(work.join("usr/bin/same-size")).unwrap().ino(),
        kept
    );
}

/// `take`: a kept copy with its state is restored into the target; a copy
/// without one (a crash before its state was written) is removed and not
/// used, and neither is a state without its copy.
#[test]
fn take_uses_a_kept_copy_only_with_its_state() {
    let t = tempfile::tempdir().unwrap();
    let entry = t.path().join("entry");
    installed_tree(&entry.join("tree"));
    let work_dir = t.path().join("build");
    fs::create_dir_all(&work_dir).unwrap();
    let target = work_dir.join("rootfs");
    Cmd::new("cp")
        .arg("-a")
        .arg(entry.join("tree"))
        .arg(&target)
        .run()
        .unwrap();
    let w = WorkingCopy::fresh(&entry, &target).unwrap();
    customize(&target);
    let mut removals = super::super::Removals::default();
    w.keep(&target, b"{}".to_vec(), &mut removals).unwrap();
    removals.finish().unwrap();
    assert!(entry.join(STATE_FILE).is_file() && !target.exists());

    let w = take(&entry, &target).unwrap().expect("a kept copy");
    assert_eq!(describe(&target), describe(&entry.join("tree")));
    assert!(!entry.join(STATE_FILE).exists() && !entry.join(WORK_DIR).exists());
    assert_eq!(w.entry, entry);

    // Kept without its state: removed, not used.
    fs::rename(&target, entry.join(WORK_DIR)).unwrap();
    assert!(take(&entry, &target).unwrap().is_none());
    assert!(!entry.join(WORK_DIR).exists() && !target.exists());
    // A state without its copy: not used.
    fs::write(
        entry.join(STATE_FILE),
        serde_json::to_vec(&w.state).unwrap(),
    )
    .unwrap();
    assert!(take(&entry, &target).unwrap().is_none());
    assert!(!entry.join(STATE_FILE).exists());
}
