use super::*;
use crate::build::rootfs::mmdebstrap::DPKG_PATH_EXCLUDES;
use std::process::{Command, Stdio};

/// hull's own rules, as mmdebstrap passes them to its filter.
fn hull_rules() -> Vec<String> {
    DPKG_PATH_EXCLUDES
        .iter()
        .map(|e| format!("--{e}"))
        .collect()
}

/// dpkg's rules on hull's filters: last match wins, and directories and
/// symlinks on the way to a re-included path stay.
#[test]
fn rules_decide_as_dpkg_does() {
    let f = PathFilter::from_args(&hull_rules()).unwrap();
    // (path, directory or symlink, skipped)
    let cases = [
        ("", true, false),
        ("/usr", true, false),
        ("/usr/bin/bash", false, false),
        ("/usr/share/doc", true, false),
        ("/usr/share/doc/bash", true, false),
        ("/usr/share/doc/bash/README", false, true),
        ("/usr/share/doc/bash/copyright", false, false),
        ("/usr/share/doc/libfoo1", true, false),
        ("/usr/share/doc/bash/examples/x/copyright", false, false),
        ("/usr/share/man/man1", true, true),
        ("/usr/share/man/man1/bash.1.gz", false, true),
        ("/usr/share/locale/locale.alias", false, false),
        ("/usr/share/locale/de", true, true),
        ("/usr/share/locale/de/LC_MESSAGES/x.mo", false, true),
        ("/usr/libexec/podman/podman-testing", false, true),
        ("/usr/libexec/podman/podman-testing2", false, false),
        ("/etc/apparmor.d/usr.bin.man", false, true),
        ("/etc/apparmor.d/abi", true, false),
        ("/etc/apparmor.d/abi/4.0", false, false),
        ("/etc/apparmor.d/tunables/global", false, false),
        ("/etc/apparmor.d/local", true, true),
        ("/usr/lib/udev/hwdb.d/20-pci.hwdb", false, true),
    ];
    for (path, dir, want) in cases {
        assert_eq!(f.skips(path, dir), want, "{path}");
    }
}

#[test]
fn unknown_arguments_are_refused() {
    for bad in [
        vec!["--idshift=5"],
        vec!["--path-exclude", "/x"],
        vec!["--path-exclude=/usr/**x"],
    ] {
        let e = PathFilter::from_args(&bad).unwrap_err();
        assert!(
            format!("{e:#}").contains("hull tar-filter"),
            "{bad:?}: {e:#}"
        );
    }
    assert!(PathFilter::from_args::<&str>(&[]).unwrap().rules.is_empty());
}

/// A package-like tree: long names, symlinks, a hard link, empty files.
fn sample_tree(root: &Path) {
    let long = "usr/share/doc/a-package-with-a-rather-long-name-for-the-test/examples/and-a-deeper-directory-still";
    for d in [
        "usr/bin",
        "usr/share/doc/bash",
        "usr/share/man/man1",
        "usr/share/locale/de/LC_MESSAGES",
        "etc/apparmor.d/abi",
        long,
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (f, body) in [
        ("usr/bin/bash", &b"\x7fELF"[..]),
        ("usr/share/doc/bash/README", b"read me"),
        ("usr/share/doc/bash/copyright", b"GPL"),
        ("usr/share/man/man1/bash.1.gz", b""),
        ("usr/share/locale/de/LC_MESSAGES/bash.mo", b"mo"),
        ("usr/share/locale/locale.alias", b"alias"),
        ("etc/apparmor.d/abi/4.0", b"abi"),
        ("etc/apparmor.d/usr.bin.man", b"profile"),
    ] {
        std::fs::write(root.join(f), body).unwrap();
    }
    std::fs::write(root.join(long).join("copyright"), vec![7u8; 70_000]).unwrap();
    std::fs::write(root.join(long).join("notes-with-a-long-name.txt"), b"x").unwrap();
    std::os::unix::fs::symlink("bash", root.join("usr/share/doc/libbash")).unwrap();
    std::os::unix::fs::symlink("../bin/bash", root.join("usr/share/man/man1/sh.1.gz")).unwrap();
    std::fs::hard_link(root.join("usr/bin/bash"), root.join("usr/bin/rbash")).unwrap();
}

/// `tar` (GNU) writes the tree as dpkg's archives name members: `./path`.
fn tar_of(root: &Path, format: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .args(["--sort=name", &format!("--format={format}"), "-C"])
        .arg(root)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `cmd` with `input` on its stdin (written from a thread, so a large
/// input cannot block on a full output pipe) and returns its stdout; it
/// must succeed.
fn pipe(mut cmd: Command, input: &[u8]) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&feed).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "{cmd:?}");
    out.stdout
}

/// GNU tar's listing of an archive: `(line without dates, name, directory
/// or symlink)` per member.
fn listing(tar: &[u8]) -> Vec<(String, String, bool)> {
    let mut cmd = Command::new("tar");
    cmd.args(["-tvf", "-", "--numeric-owner"]);
    String::from_utf8(pipe(cmd, tar))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let line = [&f[..3], &f[5..]].concat().join(" ");
            let name = f[5].trim_end_matches('/').to_owned();
            (line, name, l.starts_with('d') || l.starts_with('l'))
        })
        .collect()
}

/// Members pass through byte for byte (GNU long names and pax headers
/// included), dropped as the rules say; what GNU tar lists of the result is
/// the input's listing without the dropped members.
#[test]
fn filtered_archives_keep_their_members_whole() {
    let dir = tempfile::tempdir().unwrap();
    sample_tree(dir.path());
    let rules = PathFilter::from_args(&hull_rules()).unwrap();
    for format in ["gnu", "pax"] {
        let input = tar_of(dir.path(), format);
        let mut out = Vec::new();
        let counts = filter(&input[..], &mut out, &rules).unwrap();
        let before = listing(&input);
        let after = listing(&out);
        let kept: Vec<_> = before
            .iter()
            .filter(|(_, name, dir_or_link)| {
                !rules.skips(name.strip_prefix('.').unwrap(), *dir_or_link)
            })
            .cloned()
            .collect();
        assert_eq!(after, kept, "{format}");
        assert_eq!(counts.members as usize, before.len(), "{format}");
        assert_eq!(
            counts.dropped as usize,
            before.len() - kept.len(),
            "{format}"
        );
        let got: Vec<String> = after.iter().map(|(_, n, _)| n.clone()).collect();
        for gone in [
            "./usr/share/doc/bash/README",
            "./usr/share/man/man1",
            "./usr/share/man/man1/bash.1.gz",
            "./usr/share/man/man1/sh.1.gz",
            "./usr/share/locale/de",
            "./etc/apparmor.d/usr.bin.man",
        ] {
            assert!(!got.iter().any(|n| n == gone), "{format}: {gone} kept");
        }
        for kept in [
            "./usr/bin/rbash",
            "./usr/share/doc/bash",
            "./usr/share/doc/bash/copyright",
            "./usr/share/doc/libbash",
            "./usr/share/locale/locale.alias",
            "./etc/apparmor.d/abi/4.0",
            "./usr/share/doc/a-package-with-a-rather-long-name-for-the-test/examples/and-a-deeper-directory-still/copyright",
        ] {
            assert!(got.iter().any(|n| n == kept), "{format}: {kept} dropped");
        }
        // The kept data is the input's: extracting gives the same bytes.
        let x = tempfile::tempdir().unwrap();
        let mut tar = Command::new("tar");
        tar.arg("-C").arg(x.path()).args(["-xf", "-"]);
        pipe(tar, &out);
        let long = "usr/share/doc/a-package-with-a-rather-long-name-for-the-test/examples/and-a-deeper-directory-still/copyright";
        assert_eq!(
            std::fs::read(x.path().join(long)).unwrap(),
            vec![7u8; 70_000]
        );
    }
}

/// The same files as mmdebstrap's own mmtarfilter keeps, where it is
/// installed (mmdebstrap is a build dependency). Directories and symlinks
/// may differ, and only as dpkg's rule says: mmtarfilter's re-include check
/// reads the regular expression its glob became, not the glob, and so drops
/// the ones dpkg keeps (tar makes the directories anyway for the files
/// inside; dpkg's install of the same packages, which follows, lays both
/// down as dpkg's rules say).
#[test]
fn same_files_as_mmtarfilter() {
    let Some(mmtarfilter) = ["/usr/bin/mmtarfilter"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("SKIPPED: no /usr/bin/mmtarfilter on this machine");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    sample_tree(dir.path());
    let input = tar_of(dir.path(), "gnu");
    let mut cmd = Command::new(mmtarfilter);
    cmd.args(hull_rules());
    let theirs = pipe(cmd, &input);
    let mut ours = Vec::new();
    filter(
        &input[..],
        &mut ours,
        &PathFilter::from_args(&hull_rules()).unwrap(),
    )
    .unwrap();
    let ours = listing(&ours);
    let theirs = listing(&theirs);
    let files = |l: &[(String, String, bool)]| {
        let mut v: Vec<String> = l
            .iter()
            .filter(|(_, _, dir_or_link)| !dir_or_link)
            .map(|(line, _, _)| line.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(files(&ours), files(&theirs));
    // What only ours keeps: directories and symlinks an include rule is below.
    let rules = PathFilter::from_args(&hull_rules()).unwrap();
    for (line, name, dir_or_link) in ours.iter().filter(|e| !theirs.contains(e)) {
        let path = name.strip_prefix('.').unwrap();
        assert!(*dir_or_link, "{line}");
        assert!(
            rules.skips(path, false) && !rules.skips(path, true),
            "{line}"
        );
    }
    assert!(theirs.iter().all(|e| ours.contains(e)));
}

/// Truncated or foreign input fails with an error saying where.
#[test]
fn broken_streams_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), vec![1u8; 2000]).unwrap();
    let input = tar_of(dir.path(), "gnu");
    let rules = PathFilter::default();
    let e = filter(&input[..1024 + 700], Vec::new(), &rules).unwrap_err();
    assert!(format!("{e:#}").contains("ends inside"), "{e:#}");
    // The second member (after ./) is ./f: renamed xyf, then its checksum fixed.
    let mut bad = input.clone();
    bad[512] = b'x';
    bad[513] = b'y';
    let e = filter(&bad[..], Vec::new(), &rules).unwrap_err();
    assert!(format!("{e:#}").contains("bad header checksum"), "{e:#}");
    let sum = header_sum(&bad[512..1024]);
    bad[512 + 148..512 + 156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let e = filter(&bad[..], Vec::new(), &rules).unwrap_err();
    assert!(format!("{e:#}").contains("not a ./path"), "{e:#}");
    // An empty stream is an empty archive.
    assert_eq!(
        filter(&b""[..], Vec::new(), &rules).unwrap(),
        Counts::default()
    );
    // Without rules, every member passes byte for byte, then the end marker
    // (the input's padding to GNU tar's 10 KiB record is dropped).
    let mut out = Vec::new();
    filter(&input[..], &mut out, &rules).unwrap();
    assert_eq!(input.len() % 10240, 0);
    assert_eq!(out.len(), (1 + 1 + 4 + 2) * 512);
    assert_eq!(out[..], input[..out.len()]);
}
