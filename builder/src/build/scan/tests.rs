use super::*;
use crate::build::sbom;
use crate::build::sbom::tests::fixture_document;
use std::path::Path;

/// A file in the tracker's exact shape: the real source packages and
/// versions of the minimal image (as in the SBOM fixture), made-up CVE ids.
const DB: &str = r#"{
  "glibc": {
    "CVE-2099-1001": {
      "description": "made up: fixed by a later trixie update",
      "scope": "local",
      "releases": {
        "trixie": {"status": "resolved", "repositories": {"trixie": "2.41-12+deb13u5"},
                   "fixed_version": "2.41-12+deb13u6", "urgency": "high"},
        "bookworm": {"status": "resolved", "repositories": {"bookworm": "2.36-9+deb12u13"},
                     "fixed_version": "2.36-9+deb12u14", "urgency": "high"}
      }
    },
    "CVE-2099-1002": {
      "description": "made up: fixed in the installed version",
      "scope": "local",
      "releases": {"trixie": {"status": "resolved", "repositories": {"trixie": "2.41-12+deb13u5"},
                              "fixed_version": "2.41-12+deb13u5", "urgency": "medium"}}
    },
    "CVE-2099-1003": {
      "scope": "local",
      "releases": {"trixie": {"status": "resolved", "repositories": {"trixie": "2.41-12+deb13u5"},
                              "fixed_version": "2.41-12~", "urgency": "medium"}}
    }
  },
  "libzstd": {
    "CVE-2099-2001": {
      "description": "made up: no fix yet",
      "scope": "remote",
      "releases": {"trixie": {"status": "open", "repositories": {"trixie": "1.5.7+dfsg-1"},
                              "urgency": "low**"}}
    },
    "CVE-2099-2002": {
      "scope": "remote",
      "releases": {"trixie": {"status": "resolved", "repositories": {"trixie": "1.5.7+dfsg-1"},
                              "fixed_version": "0", "urgency": "unimportant"}}
    }
  },
  "util-linux": {
    "CVE-2099-3001": {
      "scope": "local",
      "releases": {"trixie": {"status": "resolved", "repositories": {"trixie": "2.41.5-0+deb13u1"},
                              "fixed_version": "2.41.6-1", "urgency": "not yet assigned"}}
    },
    "CVE-2099-3002": {
      "scope": "local",
      "releases": {"bookworm": {"status": "open", "repositories": {"bookworm": "2.38.1-5+deb12u3"},
                                "urgency": "high"}}
    }
  },
  "bash": {
    "CVE-2099-4001": {
      "scope": "local",
      "releases": {"trixie": {"status": "undetermined", "repositories": {"trixie": "5.2.37-2"},
                              "urgency": "unimportant"}}
    }
  },
  "openssl": {
    "CVE-2099-5001": {
      "scope": "remote",
      "releases": {"trixie": {"status": "open", "repositories": {"trixie": "3.5.1-1"},
                              "urgency": "high"}}
    }
  }
}"#;

fn db() -> Db {
    serde_json::from_str(DB).unwrap()
}

fn loaded() -> Vec<Loaded> {
    vec![Loaded {
        label: "minimal-x86_64.spdx.json".into(),
        doc: fixture_document(),
    }]
}

#[test]
fn packages_come_with_their_source() {
    let p = deb_packages(&fixture_document());
    let bsd = p.iter().find(|p| p.name == "bsdutils").unwrap();
    assert_eq!(
        (
            bsd.version.as_str(),
            bsd.source.as_str(),
            bsd.source_version.as_str(),
            bsd.release.as_deref()
        ),
        (
            "1:2.41.5-0+deb13u1",
            "util-linux",
            "2.41.5-0+deb13u1",
            Some("trixie")
        )
    );
    assert_eq!(p.len(), 5, "the OS and hull are no Debian packages");

    // The signed kernel is the tracker's `linux`, at the binary's version.
    let mut doc = fixture_document();
    let k = &mut doc.packages[2];
    k.name = "linux-image-6.12.117+deb13-cloud-amd64".into();
    k.version_info = Some("6.12.117-1".into());
    k.source_info = Some("Debian source package: linux-signed-amd64 6.12.117+1".into());
    k.external_refs[0].reference_locator = sbom::purl(
        "linux-image-6.12.117+deb13-cloud-amd64",
        "6.12.117-1",
        "amd64",
        "debian-13",
    );
    let p = deb_packages(&doc);
    assert_eq!(
        (p[0].source.as_str(), p[0].source_version.as_str()),
        ("linux", "6.12.117-1")
    );
}

#[test]
fn open_or_not_in_dpkg_order() {
    let e = |status: &str, fixed: Option<&str>| ReleaseEntry {
        status: status.into(),
        fixed_version: fixed.map(str::to_owned),
        urgency: None,
    };
    /// (status, fixed_version, installed source version, open with fix)
    type Case<'a> = (&'a str, Option<&'a str>, &'a str, Option<Option<&'a str>>);
    let cases: &[Case] = &[
        ("open", None, "1.0-1", Some(None)),
        ("undetermined", None, "1.0-1", Some(None)),
        ("resolved", Some("1.0-2"), "1.0-1", Some(Some("1.0-2"))),
        ("resolved", Some("1.0-1"), "1.0-1", None),
        (
            "resolved",
            Some("1.0-1+deb13u1"),
            "1.0-1",
            Some(Some("1.0-1+deb13u1")),
        ),
        ("resolved", Some("1.0~rc1-1"), "1.0-1", None),
        ("resolved", Some("1:0.9-1"), "1.0-1", Some(Some("1:0.9-1"))),
        ("resolved", Some("1.10-1"), "1.9-1", Some(Some("1.10-1"))),
        ("resolved", Some("0"), "1.0-1", None),
        ("resolved", None, "1.0-1", None),
        ("not-affected", None, "1.0-1", None),
    ];
    for (status, fixed, installed, want) in cases {
        let got = open_in(&e(status, *fixed), installed).unwrap();
        let want = want.map(|f| f.map(str::to_owned));
        assert_eq!(got, want, "{status} {fixed:?} {installed}");
    }
    let err = open_in(&e("resolved", Some("1.0 -1")), "1.0-1").unwrap_err();
    assert!(err.to_string().contains("fixed_version 1.0 -1"), "{err}");
}

#[test]
fn scan_lists_the_open_cves() {
    let reports = run(&loaded(), &db(), None).unwrap();
    let r = &reports[0];
    assert_eq!(r.release, "trixie");
    let got: Vec<_> = r
        .findings
        .iter()
        .map(|f| {
            (
                f.package.as_str(),
                f.cve.as_str(),
                f.fixed_version.as_deref(),
                f.urgency.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("bash", "CVE-2099-4001", None, "unimportant"),
            // The binary's epoch does not hide the fix: source versions compare.
            (
                "bsdutils",
                "CVE-2099-3001",
                Some("2.41.6-1"),
                "not yet assigned"
            ),
            ("libc6", "CVE-2099-1001", Some("2.41-12+deb13u6"), "high"),
            ("libzstd1", "CVE-2099-2001", None, "low**"),
        ]
    );
    let text = render(&reports);
    assert!(
        text.starts_with("minimal-x86_64.spdx.json (trixie): 4 open CVEs in 4 of 5 packages\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "libc6 2.41-12+deb13u5 amd64 (source glibc 2.41-12+deb13u5)\n  \
             CVE-2099-1001    high             fixed in 2.41-12+deb13u6\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("CVE-2099-2001    low**            no fix yet (open)"),
        "{text}"
    );

    // Another release: only what the tracker says of it.
    let other = run(&loaded(), &db(), Some("bookworm")).unwrap();
    let cves: Vec<_> = other[0].findings.iter().map(|f| f.cve.as_str()).collect();
    assert_eq!(cves, ["CVE-2099-3002"], "bookworm's entries only");
}

#[test]
fn gate_fails_at_the_threshold() {
    let reports = run(&loaded(), &db(), None).unwrap();
    // (--fail-on, passes)
    for (level, passes) in [(Urgency::High, false), (Urgency::Medium, false)] {
        assert_eq!(gate(&reports, level).is_ok(), passes, "{level:?}");
    }
    let e = gate(&reports, Urgency::High).unwrap_err().to_string();
    assert_eq!(
        e,
        "2 open CVEs at urgency high or above (--fail-on high): CVE-2099-3001 (bsdutils not yet \
         assigned), CVE-2099-1001 (libc6 high)"
    );
    let mut fixed = reports.clone();
    fixed[0].findings.retain(|f| f.rank < Urgency::High);
    gate(&fixed, Urgency::High).unwrap();
    assert!(gate(&fixed, Urgency::Low).is_err());
    assert_eq!(urgency_rank("end-of-life"), Urgency::High);
    assert_eq!(urgency_rank("medium**"), Urgency::Medium);
}

#[test]
fn json_report() {
    let reports = run(&loaded(), &db(), None).unwrap();
    let v = serde_json::to_value(&reports).unwrap();
    let f = &v[0]["findings"][2];
    assert_eq!(f["package"], "libc6");
    assert_eq!(f["version"], "2.41-12+deb13u5");
    assert_eq!(f["fixed_version"], "2.41-12+deb13u6");
    assert_eq!(f["urgency"], "high");
    assert_eq!(f["rank"], "high");
    assert_eq!(
        v[0]["findings"][0]["fixed_version"],
        serde_json::Value::Null
    );
}

#[test]
fn bad_db_and_targets_are_named() {
    let t = tempfile::tempdir().unwrap();
    let bad = t.path().join("db.json");
    std::fs::write(
        &bad,
        r#"{"glibc": {"CVE-1": {"releases": {"trixie": {}}}}}"#,
    )
    .unwrap();
    let e = format!("{:#}", read_db(&bad).unwrap_err());
    assert!(
        e.contains("db.json: not the Debian Security Tracker's JSON"),
        "{e}"
    );
    assert!(e.contains("glibc.CVE-1.releases.trixie"), "{e}");
    let e = format!("{:#}", read_db(&t.path().join("none.json")).unwrap_err());
    assert!(e.contains("none.json"), "{e}");

    let e = format!("{:#}", load(&Target::OutDir(t.path().into())).unwrap_err());
    assert!(e.contains("no build-<arch>.json"), "{e}");
    let e = format!(
        "{:#}",
        load(&Target::File(t.path().join("x.spdx.json"))).unwrap_err()
    );
    assert!(e.contains("x.spdx.json"), "{e}");
}

#[test]
fn targets_from_the_command_line() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_str().unwrap();
    assert_eq!(Target::from_args(dir, None), Target::OutDir(dir.into()));
    assert_eq!(
        Target::from_args("a.spdx.json", None),
        Target::File("a.spdx.json".into())
    );
    assert_eq!(
        Target::from_args("hull/m/x86_64/stable", Some(Path::new("out/repo"))),
        Target::Commit {
            repo: "out/repo".into(),
            rev: "hull/m/x86_64/stable".into()
        }
    );
}

/// A build's output directory and a real commit give the same findings.
#[test]
fn scans_an_out_dir_and_a_commit() {
    let t = tempfile::tempdir().unwrap();
    let doc = fixture_document();
    // The commit, as the build makes it.
    let tree = t.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let root = cap_std::fs::Dir::open_ambient_dir(&tree, cap_std::ambient_authority()).unwrap();
    sbom::write_into_tree(&root, &doc).unwrap();
    let repo_path = t.path().join("repo");
    let repo = crate::repo::commit::open_or_create(&repo_path).unwrap();
    let r = "hull/minimal/x86_64/stable";
    let c = crate::repo::commit::commit_tree(&repo, &tree, r, &crate::repo::commit::test_meta("1"))
        .unwrap()
        .checksum;
    crate::repo::commit::move_ref(&repo, r, &c).unwrap();
    // The out dir, as the build leaves it.
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let report = crate::build::pipeline::BuildReport {
        name: "minimal".into(),
        version: "1.0.0".into(),
        arch: "x86_64".into(),
        ostree_ref: r.into(),
        commit: c.clone(),
        image: out.join("minimal-x86_64.raw"),
        image_size: 1,
        rootfs_size: 1,
        package_count: 5,
        stage_seconds: vec![],
        up_to_date: false,
        sources: vec![],
        outputs: vec![],
    };
    std::fs::write(
        out.join("build-x86_64.json"),
        serde_json::to_string(&report).unwrap(),
    )
    .unwrap();
    let e = format!("{:#}", load(&Target::OutDir(out.clone())).unwrap_err());
    assert!(e.contains("minimal-x86_64.spdx.json"), "{e}");
    sbom::write_file(
        &sbom::out_path(&out, "minimal", "x86_64"),
        &sbom::with_commit(doc, &c),
    )
    .unwrap();

    let from_dir = load(&Target::OutDir(out)).unwrap();
    let from_ref = load(&Target::Commit {
        repo: repo_path.clone(),
        rev: r.into(),
    })
    .unwrap();
    assert_eq!(from_dir[0].doc, from_ref[0].doc, "the same document");
    assert!(from_ref[0].label.ends_with(&format!("commit {c}")));
    let a = run(&from_dir, &db(), None).unwrap();
    let b = run(&from_ref, &db(), None).unwrap();
    assert_eq!(a[0].findings, b[0].findings);
    assert_eq!(a[0].findings.len(), 4);

    let e = format!(
        "{:#}",
        load(&Target::Commit {
            repo: repo_path,
            rev: "hull/other".into()
        })
        .unwrap_err()
    );
    assert!(e.contains("no commit or ref hull/other"), "{e}");
}
