use super::*;
use cap_std::ambient_authority;
use cap_std::fs::Dir;

/// A dpkg status file in the shape of the minimal image's (real names and
/// versions), with one package that is no longer installed.
pub(crate) const STATUS: &str = "Package: bash
Status: install ok installed
Maintainer: Matthias Klose <doko@debian.org>
Architecture: amd64
Source: bash (5.2.37-2)
Version: 5.2.37-2+b10
Description: GNU Bourne Again SHell
 Bash is an sh-compatible command language interpreter.

Package: bsdutils
Status: install ok installed
Maintainer: util-linux packagers <util-linux@packages.debian.org>
Architecture: amd64
Source: util-linux (2.41.5-0+deb13u1)
Version: 1:2.41.5-0+deb13u1

Package: libc6
Status: install ok installed
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Source: glibc
Version: 2.41-12+deb13u5

Package: libzstd1
Status: install ok installed
Maintainer: Debian Med Packaging Team <debian-med-packaging@lists.alioth.debian.org>
Architecture: amd64
Source: libzstd
Version: 1.5.7+dfsg-1

Package: nano
Status: deinstall ok config-files
Architecture: amd64
Version: 8.4-1

Package: adduser
Status: install ok installed
Maintainer: Debian Adduser Developers <adduser@packages.debian.org>
Architecture: all
Version: 3.152
";

const ZSTD_COPYRIGHT: &str =
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: Zstd

Files: *
Copyright: Yann Collet
License: BSD-3-clause or GPL-2

Files: zlibWrapper/gz*.c
Copyright: 2004 Mark Adler
License: zlib

Files: contrib/pzstd/*
Copyright: x
License: public-domain

License: public-domain
 Given to the public domain.
";

const PACKAGES: &str = "Package: libzstd1
Source: libzstd
Version: 1.5.7+dfsg-1
Architecture: amd64
Filename: pool/main/libz/libzstd/libzstd1_1.5.7+dfsg-1_amd64.deb
Size: 304344
SHA256: 6ef0bc5c3b5e0b1b2a4ddb6b3ab6fca6a1f2f7a0e7c1c8b3f0a7c3a2c4c9b5d1

Package: adduser
Version: 3.152
Architecture: all
Filename: pool/main/a/adduser/adduser_3.152_all.deb
Size: 190000
SHA256: 1111111111111111111111111111111111111111111111111111111111111111
";

#[test]
fn status_lists_installed_packages_and_their_sources() {
    let list = parse_status(STATUS);
    let got: Vec<_> = list
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.version.as_str(),
                p.arch.as_str(),
                p.source.as_str(),
                p.source_version.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("adduser", "3.152", "all", "adduser", "3.152"),
            ("bash", "5.2.37-2+b10", "amd64", "bash", "5.2.37-2"),
            (
                "bsdutils",
                "1:2.41.5-0+deb13u1",
                "amd64",
                "util-linux",
                "2.41.5-0+deb13u1"
            ),
            (
                "libc6",
                "2.41-12+deb13u5",
                "amd64",
                "glibc",
                "2.41-12+deb13u5"
            ),
            (
                "libzstd1",
                "1.5.7+dfsg-1",
                "amd64",
                "libzstd",
                "1.5.7+dfsg-1"
            ),
        ]
    );
}

#[test]
fn purls() {
    let p = purl("bsdutils", "1:2.41.5-0+deb13u1", "amd64", "debian-13");
    assert_eq!(
        p,
        "pkg:deb/debian/bsdutils@1%3A2.41.5-0%2Bdeb13u1?arch=amd64&distro=debian-13"
    );
    assert_eq!(
        parse_purl(&p),
        Some((
            "bsdutils".into(),
            "1:2.41.5-0+deb13u1".into(),
            "amd64".into(),
            Some("debian-13".into())
        ))
    );
    assert_eq!(
        purl("libstdc++6", "14.2.0-19", "amd64", "debian-13"),
        "pkg:deb/debian/libstdc%2B%2B6@14.2.0-19?arch=amd64&distro=debian-13"
    );
    assert_eq!(parse_purl("pkg:npm/left-pad@1"), None);
    // (suite, distro qualifier)
    for (suite, want) in [
        ("trixie", "debian-13"),
        ("bookworm-backports", "debian-12"),
        ("sid", "debian-sid"),
    ] {
        assert_eq!(distro(suite), want);
    }
    assert_eq!(codename_of_distro("debian-13").as_deref(), Some("trixie"));
    assert_eq!(codename_of_distro("debian-sid").as_deref(), Some("sid"));
    assert_eq!(codename_of_distro("ubuntu-24.04"), None);
}

#[test]
fn suppliers() {
    // (Maintainer field, SPDX supplier)
    let cases = [
        (
            "GNU Libc Maintainers <debian-glibc@lists.debian.org>",
            "Organization: GNU Libc Maintainers (debian-glibc@lists.debian.org)",
        ),
        (
            "Matthias Klose <doko@debian.org>",
            "Person: Matthias Klose (doko@debian.org)",
        ),
        ("Someone", "Person: Someone"),
    ];
    for (m, want) in cases {
        assert_eq!(supplier(m), want);
    }
}

/// A tree with a dpkg database and copyright files, as the rootfs stage
/// sees it before the layout stage.
fn tree() -> (tempfile::TempDir, Dir) {
    let t = tempfile::tempdir().unwrap();
    let d = Dir::open_ambient_dir(t.path(), ambient_authority()).unwrap();
    d.create_dir_all("var/lib/dpkg").unwrap();
    d.write("var/lib/dpkg/status", STATUS).unwrap();
    d.create_dir_all("usr/share/doc/libzstd1").unwrap();
    d.write("usr/share/doc/libzstd1/copyright", ZSTD_COPYRIGHT)
        .unwrap();
    d.create_dir_all("usr/share/doc/bash").unwrap();
    d.write("usr/share/doc/bash/copyright", "Bash is free software.\n")
        .unwrap();
    (t, d)
}

pub(crate) fn fixture_document() -> Document {
    let (_t, d) = tree();
    let installed = read_installed(&d).unwrap();
    let index = PackageIndex::parse(PACKAGES.as_bytes()).unwrap();
    document(&SbomInput {
        name: "minimal",
        version: "1.0.0",
        arch: Arch::X86_64,
        suite: "trixie",
        mirror: "http://deb.debian.org/debian/",
        ostree_ref: "hull/minimal/x86_64/stable",
        input_sha256: &"ab".repeat(32),
        agent_sha256: &"cd".repeat(32),
        installed: &installed,
        index: Some(&index),
        created: 1_788_000_000,
    })
    .unwrap()
}

#[test]
fn document_shape() {
    let doc = fixture_document();
    assert_eq!(doc.spdx_version, "SPDX-2.3");
    assert_eq!(doc.data_license, "CC0-1.0");
    assert_eq!(doc.creation_info.created, "2026-08-29T10:40:00Z");
    assert_eq!(doc.creation_info.creators, ["Tool: hull-0.1.0"]);
    // The OS, hull, then the five installed packages.
    let names: Vec<_> = doc.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["minimal", "hull", "adduser", "bash", "bsdutils", "libc6", "libzstd1"]
    );
    let zstd = doc.packages.iter().find(|p| p.name == "libzstd1").unwrap();
    assert_eq!(zstd.version_info.as_deref(), Some("1.5.7+dfsg-1"));
    assert_eq!(
        zstd.supplier.as_deref(),
        Some("Organization: Debian Med Packaging Team (debian-med-packaging@lists.alioth.debian.org)")
    );
    assert_eq!(
        zstd.external_refs[0].reference_locator,
        "pkg:deb/debian/libzstd1@1.5.7%2Bdfsg-1?arch=amd64&distro=debian-13"
    );
    assert_eq!(
        zstd.checksums,
        [Checksum {
            algorithm: "SHA256".into(),
            checksum_value: "6ef0bc5c3b5e0b1b2a4ddb6b3ab6fca6a1f2f7a0e7c1c8b3f0a7c3a2c4c9b5d1"
                .into()
        }]
    );
    assert_eq!(
        zstd.download_location,
        "http://deb.debian.org/debian/pool/main/libz/libzstd/libzstd1_1.5.7+dfsg-1_amd64.deb"
    );
    assert_eq!(
        zstd.license_declared.as_deref(),
        Some("(BSD-3-Clause OR GPL-2.0-only) AND Zlib AND LicenseRef-public-domain")
    );
    assert_eq!(
        zstd.source_info.as_deref(),
        Some("Debian source package: libzstd 1.5.7+dfsg-1")
    );
    // Not machine-readable, or no copyright file: NOASSERTION. Not in the
    // index (bash's binNMU): no checksum, no download location.
    let bash = doc.packages.iter().find(|p| p.name == "bash").unwrap();
    assert_eq!(bash.license_declared.as_deref(), Some("NOASSERTION"));
    assert!(bash.checksums.is_empty());
    assert_eq!(bash.download_location, "NOASSERTION");
    let libc = doc.packages.iter().find(|p| p.name == "libc6").unwrap();
    assert_eq!(libc.license_declared.as_deref(), Some("NOASSERTION"));
    let adduser = doc.packages.iter().find(|p| p.name == "adduser").unwrap();
    assert!(adduser.external_refs[0]
        .reference_locator
        .contains("arch=all"));
    assert_eq!(adduser.checksums.len(), 1, "arch all found in the index");
    assert_eq!(
        doc.has_extracted_licensing_infos,
        [ExtractedLicense {
            license_id: "LicenseRef-public-domain".into(),
            extracted_text: "Given to the public domain.".into()
        }]
    );
    // The document describes the OS, which contains every other package.
    assert_eq!(doc.relationships[0].relationship_type, "DESCRIBES");
    assert_eq!(doc.relationships.len(), 1 + 6);
    assert!(doc.relationships[1..]
        .iter()
        .all(|r| r.spdx_element_id == OS_ID && r.relationship_type == "CONTAINS"));
    let hull = &doc.packages[1];
    assert_eq!(hull.checksums[0].checksum_value, "cd".repeat(32));
    // SPDX ids are unique.
    let mut ids: Vec<_> = doc.packages.iter().map(|p| &p.spdx_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), doc.packages.len());
}

#[test]
fn out_copy_adds_the_commit_and_round_trips() {
    let doc = fixture_document();
    let out = with_commit(doc.clone(), &"ef".repeat(32));
    let os = &out.packages[0];
    assert_eq!(os.checksums[0].checksum_value, "ef".repeat(32));
    assert!(os.comment.as_deref().unwrap().ends_with(&"ef".repeat(32)));
    assert_eq!(out.packages[1..], doc.packages[1..]);
    let text = to_json(&out).unwrap();
    assert_eq!(from_json(&text, "x").unwrap(), out);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["SPDXID"], "SPDXRef-DOCUMENT");
    assert_eq!(v["packages"][6]["filesAnalyzed"], false);
    assert!(v["packages"][6]["externalRefs"][0]["referenceType"] == "purl");
    let e = format!("{:#}", from_json("{}", "sbom.json").unwrap_err());
    assert!(
        e.starts_with("sbom.json: not an SPDX 2.3 JSON document"),
        "{e}"
    );
}

#[test]
fn a_tree_without_a_dpkg_database_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = Dir::open_ambient_dir(t.path(), ambient_authority()).unwrap();
    let e = format!("{:#}", read_installed(&d).unwrap_err());
    assert!(e.contains("/var/lib/dpkg/status"), "{e}");
}

/// The document shipped in a real commit is the one read back from it.
#[test]
fn commit_carries_the_document() {
    let doc = fixture_document();
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let root = Dir::open_ambient_dir(&tree, ambient_authority()).unwrap();
    write_into_tree(&root, &doc).unwrap();
    let repo = crate::repo::commit::open_or_create(&t.path().join("repo")).unwrap();
    let c =
        crate::repo::commit::commit_tree(&repo, &tree, "r", &crate::repo::commit::test_meta("1"))
            .unwrap()
            .checksum;
    assert_eq!(read_commit(&repo, &c).unwrap(), Some(doc));
    let (_t2, repo2, bare) = crate::repo::commit::test_repo_with_commit(b"x");
    assert_eq!(read_commit(&repo2, &bare).unwrap(), None);
}

/// The outside validator (pyspdxtools, from the spdx-tools package on
/// PyPI) accepts the document. Ignored by default, so that a machine
/// without it reports the test as not run rather than passed; the CI runs
/// it with `--ignored` after installing spdx-tools.
#[test]
#[ignore = "needs pyspdxtools (pip install spdx-tools); run with --ignored"]
fn outside_validator_accepts_the_document() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("minimal-x86_64.spdx.json");
    write_file(&path, &with_commit(fixture_document(), &"ef".repeat(32))).unwrap();
    let out = crate::util::cmd::Cmd::new("pyspdxtools")
        .arg("-i")
        .arg(&path)
        .output()
        .expect("pyspdxtools runs and accepts the document");
    // It exits 1 on any issue; on a valid document it prints nothing.
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));

    // And it refuses a broken one: the check can fail.
    let mut bad = fixture_document();
    bad.packages[3].license_declared = Some("GPL-2+ with (".into());
    write_file(&path, &bad).unwrap();
    let e = crate::util::cmd::Cmd::new("pyspdxtools")
        .arg("-i")
        .arg(&path)
        .output()
        .expect_err("pyspdxtools exits non-zero on a broken licence expression");
    assert!(format!("{e:#}").contains("LicenseExpression"), "{e:#}");
}
