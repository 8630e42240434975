use super::*;
use crate::build::archive::SignedSource;
use crate::util::cmd::Cmd;

/// (URI, the lists name apt gives it), apt 2.6's `--print-uris update`
/// output for these sources; [`apt_names_agree`] asks apt again.
const NAMES: &[(&str, &str)] = &[
    (
        "http://deb.debian.org/debian/dists/trixie/InRelease",
        "deb.debian.org_debian_dists_trixie_InRelease",
    ),
    (
        "http://deb.debian.org/debian/dists/trixie/main/binary-amd64/Packages",
        "deb.debian.org_debian_dists_trixie_main_binary-amd64_Packages",
    ),
    (
        "http://deb.debian.org/debian/dists/trixie/main/binary-arm64/Packages",
        "deb.debian.org_debian_dists_trixie_main_binary-arm64_Packages",
    ),
    (
        "http://deb.debian.org/debian-security/dists/trixie-security/InRelease",
        "deb.debian.org_debian-security_dists_trixie-security_InRelease",
    ),
    (
        "http://mirror.example:8080/deb%ian/dists/trixie-updates/InRelease",
        "mirror.example:8080_deb%25ian_dists_trixie-updates_InRelease",
    ),
    (
        "http://user@m.example/a~b/c+d/dists/trixie/main/binary-amd64/Packages",
        "m.example_a%7eb_c+d_dists_trixie_main_binary-amd64_Packages",
    ),
    (
        "copy:///o/.work/x86_64/local-debs/./Packages",
        "_o_.work_x86%5f64_local-debs_._Packages",
    ),
];

#[test]
fn uri_names_table() {
    for (uri, want) in NAMES {
        assert_eq!(uri_to_file_name(uri), *want, "{uri}");
    }
    assert_eq!(uri_to_file_name("http://h/a b=c"), "h_a%20b%3dc");
    assert_eq!(
        source_names("http://deb.debian.org/debian/", "trixie", Arch::Aarch64),
        (
            "deb.debian.org_debian_dists_trixie_InRelease".to_string(),
            "deb.debian.org_debian_dists_trixie_main_binary-arm64_Packages".to_string()
        )
    );
    assert_eq!(
        local_repo_name(Path::new("/o/.work/x86_64/local-debs")),
        "_o_.work_x86%5f64_local-debs_._Packages"
    );
    let amd64 = archive::Archive {
        mirror: "http://m".into(),
        suite: "s".into(),
        arch: Arch::X86_64,
    };
    assert_eq!(amd64.plain_packages_path(), "main/binary-amd64/Packages");
}

/// A scratch apt root (`APT_CONFIG` of its own, so the host's apt settings
/// play no part) with `sources` as its sources.list; returns its config.
fn apt_root(root: &Path, sources: &str, arch: &str) -> PathBuf {
    for d in [
        "etc/apt/apt.conf.d",
        "etc/apt/preferences.d",
        "etc/apt/sources.list.d",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "var/lib/dpkg",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    fs::write(root.join("etc/apt/sources.list"), sources).unwrap();
    let conf = root.join("apt.conf");
    fs::write(
        &conf,
        format!(
            "Dir \"{r}\";\nDir::State::status \"{r}/var/lib/dpkg/status\";\n\
             APT::Architecture \"{arch}\";\nAPT::Architectures \"{arch}\";\n\
             Acquire::Languages \"none\";\n",
            r = root.display()
        ),
    )
    .unwrap();
    conf
}

/// apt itself names the files as [`uri_to_file_name`] does, for each
/// architecture hull builds.
#[test]
fn apt_names_agree() {
    let t = tempfile::tempdir().unwrap();
    let local = Path::new("/o/.work/x86_64/local-debs");
    for arch in [Arch::X86_64, Arch::Aarch64] {
        let root = t.path().join(arch.debian());
        let mirrors = [
            ("http://deb.debian.org/debian", "trixie"),
            ("http://deb.debian.org/debian-security", "trixie-security"),
            ("http://mirror.example:8080/deb%ian/", "trixie-updates"),
            ("http://user@m.example/a~b/c+d", "trixie"),
        ];
        let mut sources: String = mirrors
            .iter()
            .map(|(m, s)| format!("deb [signed-by=/k.gpg] {m} {s} main\n"))
            .collect();
        sources.push_str(&format!(
            "{}\n",
            super::super::local_repo::source_line(local)
        ));
        let conf = apt_root(&root, &sources, arch.debian());
        let out = Cmd::new("apt-get")
            .env("APT_CONFIG", &conf)
            .args(["--print-uris", "update"])
            .output_string()
            .unwrap();
        // `'URI' NAME SIZE ` lines; apt names the .xz it fetches by the
        // uncompressed file it keeps.
        let printed: Vec<(String, String)> = out
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let uri = it.next()?.trim_matches('\'');
                Some((
                    uri.trim_end_matches(".xz").to_string(),
                    it.next()?.to_string(),
                ))
            })
            .collect();
        let mut want = vec![local_repo_name(local)];
        for (m, s) in mirrors {
            let (r, p) = source_names(m, s, arch);
            want.extend([r, p]);
        }
        for name in &want {
            assert!(
                printed.iter().any(|(_, n)| n == name),
                "apt does not name {name}: {out}"
            );
        }
        for (uri, name) in &printed {
            assert_eq!(&uri_to_file_name(uri), name, "{uri}");
        }
    }
}

/// A real `.deb` of package `name` (1.0, all) in `dir`, made in `t`.
fn build_deb(t: &Path, name: &str, dir: &Path) -> PathBuf {
    let pkg = t.join(format!("pkg-{name}"));
    fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    fs::write(
        pkg.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: 1.0\nArchitecture: all\n\
             Maintainer: hull <hull@example.org>\nDescription: test\n"
        ),
    )
    .unwrap();
    let deb = dir.join(format!("{name}_1.0_all.deb"));
    Cmd::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&pkg)
        .arg(&deb)
        .output()
        .unwrap();
    deb
}

/// A signed repository made in the test: key, one `.deb`, `Packages`,
/// and an `InRelease` whose signed text lists it (with `extra` lines).
struct Repo {
    dir: PathBuf,
    keyring: PathBuf,
    packages: Vec<u8>,
}

fn signed_repo(t: &Path, extra: &str) -> Repo {
    let signer = archive::TestSigner::new(t);

    let dir = t.join("repo");
    fs::create_dir_all(dir.join("pool")).unwrap();
    let deb = build_deb(t, "hull-test-lists", &dir.join("pool"));
    let control = Cmd::new("dpkg-deb")
        .arg("-f")
        .arg(&deb)
        .output_string()
        .unwrap();
    let packages = super::super::local_repo::stanza(
        &control,
        "x",
        fs::metadata(&deb).unwrap().len(),
        &archive::sha256_file(&deb).unwrap(),
    )
    .unwrap()
    .replace(
        "Filename: ./x",
        "Filename: pool/hull-test-lists_1.0_all.deb",
    )
    .into_bytes();
    let release = t.join("Release");
    fs::write(
        &release,
        format!(
            "Suite: x\nCodename: x\nDate: Tue, 01 Dec 2026 00:00:00 UTC\n{extra}\
             Architectures: amd64\nComponents: main\nSHA256:\n {} {} main/binary-amd64/Packages\n",
            archive::sha256_hex(&packages),
            packages.len()
        ),
    )
    .unwrap();
    fs::create_dir_all(dir.join("dists/x")).unwrap();
    let inrelease = dir.join("dists/x/InRelease");
    signer.clearsign(&release, &inrelease);
    Repo {
        dir,
        keyring: signer.keyring,
        packages,
    }
}

/// The plan of a build from `repo`, with its InRelease and unpacked index
/// in `cache` as the packages stage leaves them.
fn plan_of(repo: &Repo, cache: &Path) -> PackagePlan {
    let inrelease = fs::read(repo.dir.join("dists/x/InRelease")).unwrap();
    let release = archive::release_path(cache, "x");
    fs::create_dir_all(release.parent().unwrap()).unwrap();
    fs::write(&release, &inrelease).unwrap();
    let unpacked = archive::unpacked_path(cache, &archive::sha256_hex(&repo.packages));
    fs::create_dir_all(unpacked.parent().unwrap()).unwrap();
    fs::write(&unpacked, &repo.packages).unwrap();
    let mut plan = super::super::mmdebstrap::tests::plan();
    plan.sources = vec![SignedSource {
        url: format!("copy://{}", repo.dir.display()),
        suite: "x".into(),
        date: "d".into(),
        sha256: archive::sha256_hex(&inrelease),
    }];
    plan
}

/// The files given to a real apt (a signed source and a locked build's
/// flat repository): it finds each package under those names, treats the
/// signed source as signed (a download with `-y` and no
/// `--allow-unauthenticated` goes through), and refuses it as
/// unauthenticated once the InRelease is taken away.
#[test]
fn given_lists_are_read_by_apt_as_signed() {
    let t = tempfile::tempdir().unwrap();
    let repo = signed_repo(t.path(), "");
    let cache = t.path().join("cache");
    let plan = plan_of(&repo, &cache);
    // The flat repository a locked build adds, seeded too.
    let debs = t.path().join("debs");
    fs::create_dir_all(&debs).unwrap();
    let local_deb = build_deb(t.path(), "hull-test-local", &debs);
    let local = t.path().join("local-debs");
    super::super::local_repo::write(&local, &[local_deb]).unwrap();
    let files = plan_files(&plan, &cache, Some(&local), &repo.keyring, 0).unwrap();
    assert_eq!(files.len(), 3);
    let staged = t.path().join("staged");
    stage(&files, &staged).unwrap();

    let root = t.path().join("root");
    let conf = apt_root(
        &root,
        &format!(
            "deb [signed-by={}] copy://{} x main\n{}\n",
            repo.keyring.display(),
            repo.dir.display(),
            super::super::local_repo::source_line(&local)
        ),
        "amd64",
    );
    let lists = root.join("var/lib/apt/lists");
    for f in &files {
        fs::rename(staged.join(&f.name), lists.join(&f.name)).unwrap();
    }
    let get = || {
        Cmd::new("apt-get")
            .env("APT_CONFIG", &conf)
            .args(["-y", "--download-only", "install"])
            .args(["hull-test-lists", "hull-test-local"])
            .output_string()
    };
    get().unwrap();
    for deb in ["hull-test-lists_1.0_all.deb", "hull-test-local_1.0_all.deb"] {
        assert!(
            root.join("var/cache/apt/archives").join(deb).is_file(),
            "{deb}"
        );
    }

    fs::remove_file(lists.join(&files[0].name)).unwrap();
    fs::remove_dir_all(root.join("var/cache/apt/archives")).unwrap();
    fs::create_dir_all(root.join("var/cache/apt/archives/partial")).unwrap();
    for bin in ["pkgcache.bin", "srcpkgcache.bin"] {
        let _ = fs::remove_file(root.join("var/cache/apt").join(bin));
    }
    let err = format!("{:#}", get().unwrap_err());
    assert!(err.contains("unauthenticated"), "{err}");
}

/// What is not placed: an index that differs from its signed hash, an
/// InRelease changed since the plan's check or past its Valid-Until, one
/// that lists no uncompressed index, a bad signature; the local
/// repository's index is placed as hull wrote it.
#[test]
fn unchecked_files_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let repo = signed_repo(
        &t.path().join("a"),
        "Valid-Until: Sun, 06 Dec 2026 00:53:14 UTC\n",
    );
    let cache = t.path().join("cache");
    let plan = plan_of(&repo, &cache);
    let before =
        crate::build::reproducible::parse_release_date("Sat, 05 Dec 2026 00:00:00 UTC").unwrap();
    let files = plan_files(&plan, &cache, None, &repo.keyring, before).unwrap();

    let err = plan_files(&plan, &cache, None, &repo.keyring, before + 2 * 86400)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("past its Valid-Until (Sun, 06 Dec 2026"),
        "{err}"
    );

    // The cached index changed after the check: stage refuses it, naming it.
    let mut changed = repo.packages.clone();
    changed[0] = b'X';
    fs::write(&files[1].from, &changed).unwrap();
    let err = stage(&files, &t.path().join("staged"))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&files[1].from.display().to_string()) && err.contains("not the signed"));

    let mut other = plan.clone();
    other.sources[0].sha256 = "0".repeat(64);
    let err = plan_files(&other, &cache, None, &repo.keyring, before).unwrap_err();
    assert!(
        err.to_string()
            .contains("changed since the build checked it"),
        "{err}"
    );

    let mut arm = plan.clone();
    arm.arch = Arch::Aarch64;
    let err = plan_files(&arm, &cache, None, &repo.keyring, before).unwrap_err();
    assert!(err
        .to_string()
        .contains("lists no uncompressed main/binary-arm64/Packages"));

    let stranger = signed_repo(&t.path().join("b"), "");
    let err = plan_files(&plan, &cache, None, &stranger.keyring, before).unwrap_err();
    assert!(
        format!("{err:#}").contains("signature check of copy://"),
        "{err:#}"
    );

    fs::write(&files[1].from, &repo.packages).unwrap();
    let local = t.path().join("local-debs");
    fs::create_dir_all(&local).unwrap();
    fs::write(local.join("Packages"), "Package: p\n").unwrap();
    let files = plan_files(&plan, &cache, Some(&local), &repo.keyring, before).unwrap();
    let staged = t.path().join("staged");
    stage(&files, &staged).unwrap();
    assert_eq!(
        fs::read_to_string(staged.join(local_repo_name(&local))).unwrap(),
        "Package: p\n"
    );
    assert_eq!(fs::read_dir(&staged).unwrap().count(), 3);
}
