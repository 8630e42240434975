use super::*;
use crate::build::archive::{PackageIndex, PackagePlan};
use crate::manifest::Manifest;
use std::fs;

const PACKAGES: &str = "Package: libc6
Source: glibc
Version: 2.41-12+deb13u5
Architecture: amd64
Filename: pool/main/g/glibc/libc6_2.41-12+deb13u5_amd64.deb
Size: 2853000
SHA256: aaaa

Package: bsdutils
Source: util-linux (2.41.5-0+deb13u1)
Version: 1:2.41.5-0+deb13u1
Architecture: amd64
Filename: pool/main/u/util-linux/bsdutils_2.41.5-0+deb13u1_amd64.deb
Size: 106000
SHA256: bbbb

Package: adduser
Version: 3.152
Architecture: all
Filename: pool/main/a/adduser/adduser_3.152_all.deb
Size: 190000
SHA256: cccc

Package: linux-image-cloud-amd64
Version: 6.12.57-1
Architecture: amd64
Filename: pool/main/l/linux-signed-amd64/linux-image-cloud-amd64_6.12.57-1_amd64.deb
Size: 1500
SHA256: dddd

Package: crun
Version: 1.21-1
Architecture: amd64
Provides: oci-runtime
Filename: pool/main/c/crun/crun_1.21-1_amd64.deb
Size: 300000
SHA256: eeee
";

const INSTALLED: &str = "adduser\t3.152\tall\nbsdutils\t1:2.41.5-0+deb13u1\tamd64\n\
libc6\t2.41-12+deb13u5\tamd64\nlinux-image-cloud-amd64\t6.12.57-1\tamd64\ncrun\t1.21-1\tamd64\n";

fn index() -> PackageIndex {
    PackageIndex::parse(PACKAGES.as_bytes()).unwrap()
}

fn plan() -> PackagePlan {
    PackagePlan {
        mirror: "http://deb.debian.org/debian".into(),
        suite: "trixie".into(),
        arch: Arch::X86_64,
        include: vec!["linux-image-cloud-amd64".into(), "oci-runtime".into()],
        exclude: vec![],
        release_date: "Sat, 08 Nov 2026 09:33:10 UTC".into(),
        release_sha256: "ff".repeat(32),
        versions: [
            (
                "linux-image-cloud-amd64".to_string(),
                "6.12.57-1".to_string(),
            ),
            ("oci-runtime".to_string(), "virtual".to_string()),
        ]
        .into(),
        sources: vec![],
        locked: BTreeMap::new(),
        local_debs: vec![],
    }
}

fn manifest(dir: &Path) -> Manifest {
    let path = dir.join("m.toml");
    fs::write(&path, "name = \"m\"\nversion = \"1\"\n").unwrap();
    Manifest::load(&path).unwrap()
}

#[test]
fn lock_of_an_install() {
    let a = arch_lock(&plan(), &index(), INSTALLED).unwrap();
    assert_eq!(a.name, "x86_64");
    assert_eq!(
        a.source,
        [SourceLock {
            url: "http://deb.debian.org/debian".into(),
            suite: "trixie".into(),
            inrelease_sha256: "ff".repeat(32),
            date: "Sat, 08 Nov 2026 09:33:10 UTC".into(),
        }]
    );
    let names: Vec<_> = a.package.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "adduser",
            "bsdutils",
            "crun",
            "libc6",
            "linux-image-cloud-amd64"
        ]
    );
    assert_eq!(
        a.package[1],
        LockedPackage {
            name: "bsdutils".into(),
            version: "1:2.41.5-0+deb13u1".into(),
            arch: "amd64".into(),
            sha256: "bbbb".into(),
            size: 106000,
            path: "pool/main/u/util-linux/bsdutils_2.41.5-0+deb13u1_amd64.deb".into(),
        }
    );
    let e = arch_lock(&plan(), &index(), "podman\t5.4.2+ds1-2\tamd64\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "installed packages not in the signed indexes of http://deb.debian.org/debian trixie: \
         podman 5.4.2+ds1-2 amd64"
    );
}

#[test]
fn file_round_trips_and_bad_files_are_named() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("m.lock");
    assert_eq!(read(&path).unwrap(), None);
    let lock = LockFile {
        format: FORMAT,
        arches: vec![arch_lock(&plan(), &index(), INSTALLED).unwrap()],
    };
    write(&path, &lock).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("# Written by `hull lock`"), "{text}");
    assert!(text.contains("[[arch.package]]"), "{text}");
    assert!(text.contains("inrelease-sha256 = "), "{text}");
    assert_eq!(read(&path).unwrap(), Some(lock));

    fs::write(
        &path,
        text.replace("size = 106000", "size = 106000\nsizes = 1"),
    )
    .unwrap();
    let e = format!("{:#}", read(&path).unwrap_err());
    assert!(
        e.starts_with(&format!("{}: arch[0].package[1]", path.display())),
        "{e}"
    );
    assert!(e.contains("sizes"), "{e}");
    fs::write(&path, "format = 2\n").unwrap();
    let e = format!("{:#}", read(&path).unwrap_err());
    assert!(e.contains("format 2 is not the one this hull reads"), "{e}");
    assert_eq!(
        lock_path(Path::new("manifests/minimal.toml")),
        PathBuf::from("manifests/minimal.lock")
    );
}

#[test]
fn apply_pins_the_plan_or_names_what_does_not_hold() {
    let t = tempfile::tempdir().unwrap();
    let m = manifest(t.path());
    let lf = t.path().join("m.lock");
    let debs = t.path().join("debs");
    let lock = arch_lock(&plan(), &index(), INSTALLED).unwrap();

    let mut p = plan();
    apply(&lock, &mut p, &mut index(), &lf, &m, &debs).unwrap();
    assert_eq!(p.locked.len(), 5);
    assert_eq!(p.locked["bsdutils"], "1:2.41.5-0+deb13u1");

    // A package added to the manifest but not locked.
    let mut p = plan();
    p.include.push("podman".into());
    let e = apply(&lock, &mut p, &mut index(), &lf, &m, &debs)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "{}: podman in {m} but not locked: run `hull lock --update {m}`",
            lf.display(),
            m = m.path.display()
        )
    );
    assert!(p.locked.is_empty(), "nothing pinned");

    // A locked version the mirror no longer has (a newer one replaced it),
    // and one whose hash changed.
    let newer = PACKAGES
        .replace("2.41-12+deb13u5", "2.41-12+deb13u6")
        .replace("SHA256: cccc", "SHA256: cccd");
    let mut idx = PackageIndex::parse(newer.as_bytes()).unwrap();
    let e = apply(&lock, &mut plan(), &mut idx, &lf, &m, &debs)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "{}: locked versions gone from http://deb.debian.org/debian trixie and not in {}: \
             adduser 3.152, libc6 2.41-12+deb13u5 (Debian's mirror keeps only current versions): \
             refresh the lock with `hull lock --update {}`",
            lf.display(),
            debs.display(),
            m.path.display()
        )
    );

    // The same two in the .deb cache at the locked sha256 (the lock's
    // hashes are made-up, so the lock is rewritten with the files' own):
    // served from there, the rest from the mirror, every one pinned.
    fs::create_dir_all(&debs).unwrap();
    let mut lock = lock;
    for p in lock.package.iter_mut() {
        if p.name == "adduser" || p.name == "libc6" {
            let file = debs.join(format!("{}_{}_{}.deb", p.name, p.version, p.arch));
            fs::write(&file, format!("{} bytes", p.name)).unwrap();
            p.sha256 = crate::build::archive::sha256_file(&file).unwrap();
        }
    }
    let mut p = plan();
    apply(&lock, &mut p, &mut idx, &lf, &m, &debs).unwrap();
    assert_eq!(
        p.local_debs,
        [
            debs.join("adduser_3.152_all.deb"),
            debs.join("libc6_2.41-12+deb13u5_amd64.deb")
        ]
    );
    assert_eq!(p.locked.len(), 5);
    // Listed for the SBOM at the lock's sha256, with no pool path.
    let d = idx.deb("adduser", "3.152", "all").unwrap();
    assert_eq!((d.filename.as_str(), d.size), ("", 190000));
    assert_eq!(d.sha256, lock.package[0].sha256);
    let mut idx = PackageIndex::parse(newer.as_bytes()).unwrap();
    // A cached file whose bytes changed is not the locked .deb.
    fs::write(debs.join("adduser_3.152_all.deb"), "other bytes").unwrap();
    let e = apply(&lock, &mut plan(), &mut idx, &lf, &m, &debs)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("locked version gone from http://deb.debian.org/debian trixie and not in "),
        "{e}"
    );
    assert!(e.contains(": adduser 3.152 (Debian's"), "{e}");
}

#[test]
fn installed_set_must_be_the_locked_one() {
    let lock = arch_lock(&plan(), &index(), INSTALLED).unwrap();
    let lf = Path::new("m.lock");
    let installed: Vec<String> = INSTALLED.lines().map(|l| l.replace('\t', " ")).collect();
    verify_installed(&lock, &installed, lf).unwrap();
    let mut moved = installed.clone();
    moved[2] = "libc6 2.41-12+deb13u6 amd64".into();
    moved.push("podman 5.4.2+ds1-2 amd64".into());
    let e = verify_installed(&lock, &moved, lf).unwrap_err().to_string();
    assert_eq!(
        e,
        "m.lock: apt installed other packages than the lock names (libc6: 2.41-12+deb13u5 → \
         2.41-12+deb13u6, podman: added 5.4.2+ds1-2): run `hull lock --update`"
    );
}

#[test]
fn update_says_what_moved() {
    let old = arch_lock(&plan(), &index(), INSTALLED).unwrap();
    let mut new = old.clone();
    new.package[3].version = "2.41-12+deb13u6".into();
    new.package.remove(0);
    new.package.push(LockedPackage {
        name: "zstd".into(),
        version: "1.5.7+dfsg-1".into(),
        arch: "amd64".into(),
        sha256: "x".into(),
        size: 1,
        path: "p".into(),
    });
    assert_eq!(
        diff(&old, &new),
        [
            "adduser: 3.152 → removed",
            "libc6: 2.41-12+deb13u5 → 2.41-12+deb13u6",
            "zstd: added 1.5.7+dfsg-1",
        ]
    );
    assert!(diff(&old, &old).is_empty());
}
