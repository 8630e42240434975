use std::fs;
use std::path::Path;

use super::*;
use crate::manifest::Manifest;

/// Real keys made with openssl, in cosign.pub's format.
const P256: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE63l8XlEJgTiQVu2O9Ug59bB35Ugi
L4fSf4/yfT/B8uKcFW7acRcXy0Ex7s6ggzHUmWV9DgqcG6SdWP7ovwWK6A==
-----END PUBLIC KEY-----\n";
const ED25519: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAYQDJE5tDJ5t1iC99wzOc7pClOSAj8SeVnVssMuAWyVw=
-----END PUBLIC KEY-----\n";
/// secp256k1: an EC curve containers/image does not verify.
const SECP256K1: &str = "-----BEGIN PUBLIC KEY-----
MFYwEAYHKoZIzj0CAQYFK4EEAAoDQgAEkdI7yoXN1dt9C6vZulK2TcORihLEGALA
znIsCrXMfvc3KfF8m1FwL2bg64ELSKr8PpmxXlme17seb/YIRK2oag==
-----END PUBLIC KEY-----\n";
/// Ed448: a key type containers/image does not verify.
const ED448: &str = "-----BEGIN PUBLIC KEY-----
MEMwBQYDK2VxAzoAVX3tMHgssbREEVVz74ygB6X+s7nMTlWT92+QWrQGssrbWGSe
VExJeTgIyZKzTDp+OsccNIZLZfKA
-----END PUBLIC KEY-----\n";
/// The private half of P256 (PKCS#8): what must never be shipped.
const PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFmbHrVCpo6LCreIw
pxmqlUwA58HJNfy7pyQeNRNF3mihRANCAATreXxeUQmBOJBW7Y71SDn1sHflSCIv
h9J/j/J9P8Hy4pwVbtpxFxfLQTHuzqCDMdSZZX0OCpwbpJ1Y/ui/BYro
-----END PRIVATE KEY-----\n";

/// A manifest with podman, loaded from `<tmp>/m/demo.toml`, with `files`
/// written next to it first.
fn load(extra: &str, files: &[(&str, &str)]) -> anyhow::Result<Manifest> {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("m");
    fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        let p = dir.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    let path = dir.join("demo.toml");
    fs::write(
        &path,
        format!("name = \"demo\"\nversion = \"1\"\n[packages]\ninclude = [\"podman\"]\n{extra}"),
    )
    .unwrap();
    Manifest::load(&path)
}

/// The one-line error of `extra`, asserted to name the file and `key`.
fn fails(extra: &str, files: &[(&str, &str)], key: &str) -> String {
    let e = load(extra, files)
        .expect_err(&format!("no error for {extra:?}"))
        .to_string();
    assert!(!e.contains('\n'), "error spans lines: {e:?}");
    assert!(
        e.contains("demo.toml: "),
        "error does not name the file: {e}"
    );
    assert!(
        e.contains(&format!(": {key}: ")),
        "error does not name {key}: {e}"
    );
    e
}

#[test]
fn scopes() {
    let good = [
        "registry.example",
        "registry.example:5000",
        "registry.example:5000/ns",
        "registry.example:5000/ns/repo",
        "localhost/app",
        "localhost:5000",
        "127.0.0.1:5000/hull/busybox",
        "docker.io/library/busybox",
        "quay.io/my-org/app.web__x",
        "*.example.com",
    ];
    for s in good {
        assert_eq!(check_scope(s), Ok(()), "{s}");
    }
    let bad = [
        ("", "empty"),
        ("busybox", "Docker Hub namespace"),
        ("library/busybox", "write docker.io/library/busybox"),
        ("https://registry.example", "no scheme"),
        ("registry.example/ns/repo:1.0", "a tag"),
        ("registry.example/repo@sha256:00", "a digest"),
        ("registry.example:0", "port"),
        ("registry.example:http", "port"),
        ("registry.example/NS", "path component \"NS\""),
        ("registry.example/ns/", "path component \"\""),
        ("registry.example//ns", "path component \"\""),
        ("registry.example/a..b", "path component"),
        ("registry.example/a___b", "path component"),
        ("registry.example/-a", "path component"),
        ("reg_istry.example", "host name"),
        ("-registry.example", "host name"),
        ("*.com:5000", "wildcard"),
        ("*.localhost", "wildcard"),
        ("*.example.com/ns", "wildcard"),
    ];
    for (s, why) in bad {
        let e = check_scope(s).unwrap_err();
        assert!(e.contains(why), "{s}: {e}");
        assert!(e.contains("is not a registry or repository scope"), "{e}");
    }
}

#[test]
fn public_keys() {
    assert_eq!(parse_public_key(P256.as_bytes()).unwrap().1, "ECDSA P-256");
    // Re-encoded the same as openssl wrote it.
    assert_eq!(parse_public_key(P256.as_bytes()).unwrap().0, P256);
    assert_eq!(parse_public_key(ED25519.as_bytes()).unwrap().1, "Ed25519");
    let table: &[(&[u8], &str)] = &[
        (SECP256K1.as_bytes(), "not P-256, P-384 or P-521"),
        (ED448.as_bytes(), "not ECDSA, Ed25519 or RSA"),
        (PRIVATE.as_bytes(), "a private key (PRIVATE KEY)"),
        (b"ssh-ed25519 AAAAC3Nza hull@example\n", "not a PEM public key"),
        (b"", "not a PEM public key"),
        (b"\xff\xfe", "not a PEM text file"),
        (
            b"-----BEGIN CERTIFICATE-----\nMCowBQYDK2VwAyEAYQDJE5tDJ5t1iC99wzOc7pClOSAj8SeVnVssMuAWyVw=\n-----END CERTIFICATE-----\n",
            "not a PUBLIC KEY",
        ),
        (
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "not a public key (SubjectPublicKeyInfo)",
        ),
    ];
    for (bytes, why) in table {
        let e = parse_public_key(bytes).unwrap_err();
        assert!(e.contains(why), "{why}: {e}");
    }
}

#[test]
fn absent_table_changes_nothing() {
    let m = load("", &[]).unwrap();
    assert_eq!(m.containers, Containers::default());
    assert!(!m
        .target(Arch::X86_64)
        .packages
        .include
        .iter()
        .any(|p| p == "runsc"));
}

#[test]
fn trust_reads_keys_relative_to_the_file_and_defaults_to_reject() {
    let m = load(
        "[containers.trust]\n\"registry.example:5000/ns\" = [\"keys/a.pub\", \"keys/same.pub\"]\n\
         \"*.example.org\" = [\"keys/b.pub\"]\n",
        &[
            ("keys/a.pub", P256),
            ("keys/same.pub", P256),
            ("keys/b.pub", ED25519),
        ],
    )
    .unwrap();
    let p = m.containers.policy.unwrap();
    assert_eq!(p.default, DefaultPolicy::Reject);
    let scopes: Vec<_> = p.trust.iter().map(|t| t.scope.as_str()).collect();
    assert_eq!(scopes, ["*.example.org", "registry.example:5000/ns"]);
    // The same key twice is one key.
    assert_eq!(p.trust[1].keys.len(), 1);
    assert!(p.trust[1].keys[0].path.ends_with("m/keys/a.pub"));
    assert_eq!(p.trust[0].keys[0].algorithm, "Ed25519");
}

#[test]
fn default_alone_writes_a_policy() {
    let m = load("[containers]\ndefault = \"reject\"\n", &[]).unwrap();
    let p = m.containers.policy.unwrap();
    assert_eq!((p.default, p.trust.len()), (DefaultPolicy::Reject, 0));
    let m = load(
        "[containers]\ndefault = \"insecure-accept-anything\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        m.containers.policy.unwrap().default,
        DefaultPolicy::InsecureAcceptAnything
    );
    // sandbox alone leaves the shipped policy alone.
    let m = load("[containers]\nsandbox = \"gvisor\"\n", &[]).unwrap();
    assert_eq!(m.containers.policy, None);
}

#[test]
fn bad_input_names_the_key() {
    let e = fails(
        "[containers]\ndefault = \"accept\"\n",
        &[],
        "containers.default",
    );
    assert!(e.contains("\"accept\" is not"), "{e}");
    let e = fails(
        "[containers]\nsandbox = \"kata\"\n",
        &[],
        "containers.sandbox",
    );
    assert!(e.contains("\"kata\" is not"), "{e}");
    let e = fails(
        "[containers.trust]\n\"library/nginx\" = [\"k.pub\"]\n",
        &[("k.pub", P256)],
        "containers.trust.\"library/nginx\"",
    );
    assert!(e.contains("write docker.io/library/nginx"), "{e}");
    let e = fails(
        "[containers.trust]\n\"registry.example\" = []\n",
        &[],
        "containers.trust.\"registry.example\"",
    );
    assert!(e.contains("no key files"), "{e}");
    let e = fails(
        "[containers.trust]\n\"registry.example\" = [\"missing.pub\"]\n",
        &[],
        "containers.trust.\"registry.example\"[0]",
    );
    assert!(
        e.contains("cannot read") && e.contains("m/missing.pub"),
        "{e}"
    );
    let e = fails(
        "[containers.trust]\n\"registry.example\" = [\"k.pub\", \"cosign.key\"]\n",
        &[("k.pub", P256), ("cosign.key", PRIVATE)],
        "containers.trust.\"registry.example\"[1]",
    );
    assert!(e.contains("cosign.key: a private key"), "{e}");
    let e = load("[containers]\ntrusted = []\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("demo.toml:6:1: containers.trusted: unknown field"),
        "{e}"
    );
}

#[test]
fn policy_needs_an_engine_that_enforces_it() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("demo.toml");
    fs::write(
        &path,
        "name = \"demo\"\nversion = \"1\"\n[packages]\ninclude = [\"containerd\"]\n\
         [containers]\ndefault = \"reject\"\n",
    )
    .unwrap();
    let e = Manifest::load(&path).unwrap_err().to_string();
    assert!(
        e.contains(": containers.default: no package that enforces /etc/containers/policy.json"),
        "{e}"
    );
    assert!(e.contains("containerd does not read it"), "{e}");
}

#[test]
fn gvisor_installs_runsc_and_needs_an_engine() {
    let m = load("[containers]\nsandbox = \"gvisor\"\n", &[]).unwrap();
    assert_eq!(m.containers.sandbox, Sandbox::Gvisor);
    for arch in Arch::ALL {
        let include = &m.target(arch).packages.include;
        assert_eq!(
            include.iter().filter(|p| *p == "runsc").count(),
            1,
            "{arch}"
        );
    }
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("demo.toml");
    fs::write(
        &path,
        "name = \"demo\"\nversion = \"1\"\n[containers]\nsandbox = \"gvisor\"\n",
    )
    .unwrap();
    let e = Manifest::load(&path).unwrap_err().to_string();
    assert!(
        e.contains(": containers.sandbox: gvisor needs a container engine"),
        "{e}"
    );
    fs::write(
        &path,
        "name = \"demo\"\nversion = \"1\"\n[packages]\ninclude = [\"podman\"]\n\
         exclude = [\"runsc\"]\n[containers]\nsandbox = \"gvisor\"\n",
    )
    .unwrap();
    let e = Manifest::load(&path).unwrap_err().to_string();
    assert!(
        e.contains(": containers.sandbox: gvisor installs runsc"),
        "{e}"
    );
    assert!(e.contains("packages.exclude keeps out"), "{e}");
}

#[test]
fn includes_merge_scopes_and_accumulate_keys() {
    let t = tempfile::tempdir().unwrap();
    let base = t.path().join("base");
    fs::create_dir_all(base.join("keys")).unwrap();
    fs::write(base.join("keys/a.pub"), P256).unwrap();
    fs::write(
        base.join("base.toml"),
        "[packages]\ninclude = [\"podman\"]\n[containers]\ndefault = \"insecure-accept-anything\"\n\
         sandbox = \"gvisor\"\n[containers.trust]\n\"registry.example\" = [\"keys/a.pub\"]\n",
    )
    .unwrap();
    fs::write(t.path().join("b.pub"), ED25519).unwrap();
    let path = t.path().join("demo.toml");
    fs::write(
        &path,
        "include = [\"base/base.toml\"]\nname = \"demo\"\nversion = \"1\"\n[containers]\n\
         default = \"reject\"\n[containers.trust]\n\"registry.example\" = [\"b.pub\"]\n",
    )
    .unwrap();
    let m = Manifest::load(&path).unwrap();
    let p = m.containers.policy.clone().unwrap();
    assert_eq!(p.default, DefaultPolicy::Reject);
    assert_eq!(m.containers.sandbox, Sandbox::Gvisor);
    let keys: Vec<&Path> = p.trust[0].keys.iter().map(|k| k.path.as_path()).collect();
    assert_eq!(
        keys,
        [
            base.join("keys/a.pub").as_path(),
            t.path().join("b.pub").as_path()
        ]
    );
}
