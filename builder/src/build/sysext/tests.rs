use super::*;

const DEBIAN_13: &str = "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"13\"\nVERSION=\"13 (trixie)\"\nVERSION_CODENAME=trixie\nID=debian\n";

#[test]
fn extension_release_follows_the_image() {
    // (os-release, arch, extension-release)
    let table = [
        (
            DEBIAN_13,
            Arch::X86_64,
            "ID=debian\nVERSION_ID=13\nARCHITECTURE=x86-64\n",
        ),
        (
            DEBIAN_13,
            Arch::Aarch64,
            "ID=debian\nVERSION_ID=13\nARCHITECTURE=arm64\n",
        ),
        (
            "ID='hull'\nVERSION_ID=1\nSYSEXT_LEVEL=2.1\n",
            Arch::X86_64,
            "ID=hull\nSYSEXT_LEVEL=2.1\nARCHITECTURE=x86-64\n",
        ),
    ];
    for (os, arch, want) in table {
        assert_eq!(extension_release(os, arch).unwrap(), want);
    }
    // ID_LIKE= is not ID=
    let e = extension_release("ID_LIKE=debian\nVERSION_ID=1\n", Arch::X86_64).unwrap_err();
    assert!(e.to_string().contains("no ID="), "{e}");
    let e = extension_release("ID=debian\n", Arch::X86_64).unwrap_err();
    assert!(e.to_string().contains("VERSION_ID="), "{e}");
}

#[test]
fn names() {
    for ok in ["jq", "kubernetes-1.31", "k8s_node.v2"] {
        check_name(ok).unwrap();
    }
    for bad in ["", ".hidden", "a/b", "a b", "ü", &"x".repeat(65)] {
        let e = check_name(bad).unwrap_err().to_string();
        assert!(e.starts_with("--name "), "{e}");
    }
}

fn tree_of(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in walk(root) {
        let rel = e.strip_prefix(root).unwrap().display().to_string();
        let m = fs::symlink_metadata(&e).unwrap();
        let kind = if m.is_symlink() {
            format!("-> {}", fs::read_link(&e).unwrap().display())
        } else if m.is_dir() {
            "/".into()
        } else {
            fs::read_to_string(&e).unwrap()
        };
        out.push(format!("{rel} {kind}"));
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

/// What packages unpack outside /usr: /bin and /lib merged into /usr,
/// /etc and a stray file left out.
#[test]
fn unpacked_trees_are_confined_to_usr_and_opt() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    for d in [
        "usr/bin",
        "usr/lib/x",
        "bin",
        "lib/x",
        "lib/y",
        "etc/default",
        "opt/tool",
    ] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    fs::write(r.join("usr/bin/jq"), "jq").unwrap();
    fs::write(r.join("bin/hello"), "hello").unwrap();
    fs::write(r.join("lib/x/a.so"), "a").unwrap();
    fs::write(r.join("usr/lib/x/b.so"), "b").unwrap();
    std::os::unix::fs::symlink("a.so", r.join("lib/y/a.so.1")).unwrap();
    fs::write(r.join("etc/default/jq"), "conf").unwrap();
    fs::write(r.join("opt/tool/run"), "run").unwrap();
    fs::write(r.join("stray"), "?").unwrap();
    confine_to_hierarchies(r).unwrap();
    assert_eq!(
        tree_of(r),
        [
            "opt /",
            "opt/tool /",
            "opt/tool/run run",
            "usr /",
            "usr/bin /",
            "usr/bin/hello hello",
            "usr/bin/jq jq",
            "usr/lib /",
            "usr/lib/x /",
            "usr/lib/x/a.so a",
            "usr/lib/x/b.so b",
            "usr/lib/y /",
            "usr/lib/y/a.so.1 -> a.so",
        ]
    );
    // the same file in /bin and /usr/bin: refused, not overwritten
    fs::create_dir_all(r.join("bin")).unwrap();
    fs::write(r.join("bin/jq"), "other").unwrap();
    let e = format!("{:#}", confine_to_hierarchies(r).unwrap_err());
    assert!(e.contains("/usr/bin/jq and /bin/jq both exist"), "{e}");
}

/// A directory of binaries (kubelet's case) into a real EROFS image, read
/// back with fsck.erofs; a directory with /etc is refused by name.
#[test]
fn a_directory_becomes_an_erofs_image() {
    use std::os::unix::fs::PermissionsExt as _;
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("usr/bin")).unwrap();
    fs::write(src.join("usr/bin/kubelet"), "#!/bin/sh\necho kubelet\n").unwrap();
    fs::set_permissions(
        src.join("usr/bin/kubelet"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("kubelet", src.join("usr/bin/kl")).unwrap();
    let tree = t.path().join("tree");
    fs::create_dir(&tree).unwrap();
    copy_dir(&src, &tree).unwrap();
    let image = t.path().join("out/k8s.raw");
    fs::create_dir_all(image.parent().unwrap()).unwrap();
    write_erofs(&tree, &image, "seed k8s").unwrap();
    let names: Vec<_> = fs::read_dir(image.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["k8s.raw"], "no temp file left");
    let mode = fs::metadata(&image).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    let back = t.path().join("back");
    Cmd::new("fsck.erofs")
        .arg(format!("--extract={}", back.display()))
        .arg(&image)
        .run()
        .unwrap();
    assert_eq!(
        tree_of(&back),
        [
            "usr /",
            "usr/bin /",
            "usr/bin/kl -> kubelet",
            "usr/bin/kubelet #!/bin/sh\necho kubelet\n",
        ]
    );
    let mode = fs::metadata(back.join("usr/bin/kubelet"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    // the same inputs, the same bytes
    let again = t.path().join("out/again.raw");
    write_erofs(&tree, &again, "seed k8s").unwrap();
    assert_eq!(fs::read(&image).unwrap(), fs::read(&again).unwrap());

    fs::create_dir_all(src.join("etc")).unwrap();
    let e = copy_dir(&src, &t.path().join("tree"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("etc: a system extension holds only usr/ and opt/"),
        "{e}"
    );
}

#[test]
fn nothing_to_put_in_is_an_error() {
    let e = build(&SysextSpec {
        manifest: "m.toml".into(),
        name: "x".into(),
        packages: vec![],
        dir: None,
        out: "out".into(),
        arch: None,
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("--package") && e.contains("--dir"), "{e}");
}
