use std::fs;
use std::path::PathBuf;

use cap_std::ambient_authority;

use super::*;
use crate::manifest::containers::TrustScope;

const P256: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE63l8XlEJgTiQVu2O9Ug59bB35Ugi
L4fSf4/yfT/B8uKcFW7acRcXy0Ex7s6ggzHUmWV9DgqcG6SdWP7ovwWK6A==
-----END PUBLIC KEY-----\n";
const ED25519: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAYQDJE5tDJ5t1iC99wzOc7pClOSAj8SeVnVssMuAWyVw=
-----END PUBLIC KEY-----\n";
/// The k8s-node overlay's containerd configuration, as shipped.
const K8S_CONTAINERD: &str =
    include_str!("../../../../../rootfs-overlays/k8s-node/etc/containerd/config.toml");

fn key(path: &str, pem: &str) -> ImageKey {
    ImageKey {
        path: PathBuf::from(path),
        pem: pem.to_string(),
        algorithm: "ECDSA P-256",
    }
}

fn policy(default: DefaultPolicy) -> Policy {
    Policy {
        default,
        trust: vec![
            TrustScope {
                scope: "10.0.2.100:5000/hull".into(),
                keys: vec![key("/m/keys/hull test.pub", P256)],
            },
            TrustScope {
                scope: "registry.example".into(),
                keys: vec![key("/m/a.pub", P256), key("/m/b.pub", ED25519)],
            },
        ],
    }
}

fn name(pem: &str) -> String {
    key_file_name(&key("/x/k.pub", pem))
}

#[test]
fn key_names_are_readable_and_per_key() {
    let n = key_file_name(&key("/m/keys/hull test.pub", P256));
    assert!(n.starts_with("hull-test-") && n.ends_with(".pub"), "{n}");
    assert_eq!(n.len(), "hull-test-".len() + 12 + 4);
    assert_ne!(name(P256), name(ED25519));
    assert_eq!(
        key_file_name(&key("/m/.pub", P256)),
        format!("key.pub-{}", &name(P256)[2..])
    );
}

#[test]
fn policy_requires_a_signature_per_scope_and_rejects_the_rest() {
    let p: serde_json::Value =
        serde_json::from_str(&policy_json(&policy(DefaultPolicy::Reject))).unwrap();
    let one = format!(
        "/etc/containers/keys/{}",
        key_file_name(&key("/m/keys/hull test.pub", P256))
    );
    let a = format!(
        "/etc/containers/keys/{}",
        key_file_name(&key("/m/a.pub", P256))
    );
    let b = format!(
        "/etc/containers/keys/{}",
        key_file_name(&key("/m/b.pub", ED25519))
    );
    let expected = serde_json::json!({
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {
                "10.0.2.100:5000/hull": [{
                    "type": "sigstoreSigned",
                    "keyPath": one,
                    "signedIdentity": {"type": "matchRepository"},
                }],
                "registry.example": [{
                    "type": "sigstoreSigned",
                    "keyPaths": [a, b],
                    "signedIdentity": {"type": "matchRepository"},
                }],
            },
            "containers-storage": {"": [{"type": "insecureAcceptAnything"}]},
        },
    });
    assert_eq!(p, expected);
}

#[test]
fn insecure_default_accepts_the_rest() {
    let mut pol = policy(DefaultPolicy::InsecureAcceptAnything);
    pol.trust.clear();
    let p: serde_json::Value = serde_json::from_str(&policy_json(&pol)).unwrap();
    assert_eq!(
        p,
        serde_json::json!({"default": [{"type": "insecureAcceptAnything"}], "transports": {}})
    );
}

#[test]
fn registries_d_names_every_scope() {
    assert_eq!(
        registries_d_yaml(&policy(DefaultPolicy::Reject)),
        "# written by hull from the manifest's [containers] trust: signatures of these\n\
         # scopes are sigstore attachments in the registry, next to the image.\n\
         docker:\n  \"10.0.2.100:5000/hull\":\n    use-sigstore-attachments: true\n\
         \x20 \"registry.example\":\n    use-sigstore-attachments: true\n"
    );
}

#[test]
fn plans() {
    let paths = |c: &Containers, podman: bool| -> Vec<String> {
        plan(c, podman).into_iter().map(|(p, _, _)| p).collect()
    };
    assert!(paths(&Containers::default(), true).is_empty());
    let mut c = Containers {
        policy: Some(policy(DefaultPolicy::Reject)),
        sandbox: Sandbox::None,
    };
    // P256 is trusted for two scopes: one file.
    let keys = [
        key_file_name(&key("/m/keys/hull test.pub", P256)),
        key_file_name(&key("/m/a.pub", P256)),
        key_file_name(&key("/m/b.pub", ED25519)),
    ];
    assert_eq!(
        paths(&c, true),
        [
            format!("{KEYS_DIR}/{}", keys[0]),
            format!("{KEYS_DIR}/{}", keys[1]),
            format!("{KEYS_DIR}/{}", keys[2]),
            POLICY.to_string(),
            REGISTRIES_D.to_string(),
        ]
    );
    c.policy.as_mut().unwrap().trust.clear();
    assert_eq!(paths(&c, true), [POLICY]);
    c.policy = None;
    c.sandbox = Sandbox::Gvisor;
    assert_eq!(paths(&c, true), [PODMAN_RUNSC]);
    // No podman, no podman runtime entry (containerd gets its handler in apply).
    assert!(paths(&c, false).is_empty());
    assert!(plan(&c, true)[0].1.contains("runsc = [\"/usr/bin/runsc\"]"));
}

fn handler(text: &str) -> toml::Value {
    let doc: toml::Table = toml::from_str(text).unwrap();
    runsc_handler(&doc).unwrap().clone()
}

#[test]
fn containerd_gets_the_runsc_handler_and_keeps_the_rest() {
    let text = containerd_config(Some(K8S_CONTAINERD)).unwrap();
    assert!(text.starts_with(K8S_CONTAINERD), "appended, comments kept");
    let h = handler(&text);
    assert_eq!(h["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
    assert_eq!(h["options"]["BinaryName"].as_str(), Some("/usr/bin/runsc"));
    assert_eq!(h["options"]["SystemdCgroup"].as_bool(), Some(true));
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let cri = &doc["plugins"]["io.containerd.grpc.v1.cri"];
    assert_eq!(
        cri["containerd"]["default_runtime_name"].as_str(),
        Some("runc")
    );
    assert_eq!(
        cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"].as_bool(),
        Some(true)
    );
    assert_eq!(cri["cni"]["bin_dir"].as_str(), Some("/opt/cni/bin"));

    // No file: containerd's defaults plus the handler.
    let text = containerd_config(None).unwrap();
    assert_eq!(
        handler(&text)["runtime_type"].as_str(),
        Some("io.containerd.runc.v2")
    );
}

#[test]
fn containerd_configs_hull_cannot_extend() {
    let table = [
        ("version = 3\n", "version 3: hull adds"),
        ("[plugins]\n", "version unset"),
        ("version = 2\n[x\n", "not TOML"),
        (&*format!("version = 2\n{CONTAINERD_RUNSC_TEXT}"), "already has a runtime named runsc"),
        (
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\nruntimes = { runc = { runtime_type = \"io.containerd.runc.v2\" } }\n",
            "cannot be appended",
        ),
    ];
    for (text, why) in table {
        let e = containerd_config(Some(text)).unwrap_err();
        assert!(e.contains(why), "{text:?}: {e}");
    }
}

/// A tree with the given files, and a manifest with podman and `containers`.
fn setup(files: &[&str], containers: &str) -> (tempfile::TempDir, Dir, Manifest) {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    for f in files {
        let p = tree.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(
            p,
            if f.ends_with("config.toml") {
                K8S_CONTAINERD
            } else {
                ""
            },
        )
        .unwrap();
    }
    fs::create_dir_all(&tree).unwrap();
    fs::write(t.path().join("pub.pem"), P256).unwrap();
    let path = t.path().join("m.toml");
    fs::write(
        &path,
        format!("name = \"m\"\nversion = \"1\"\n[packages]\ninclude = [\"podman\", \"containerd\"]\n{containers}"),
    )
    .unwrap();
    let m = Manifest::load(&path).unwrap();
    let root = Dir::open_ambient_dir(&tree, ambient_authority()).unwrap();
    (t, root, m)
}

#[test]
fn apply_writes_policy_keys_and_runtimes() {
    let (_t, root, m) = setup(
        &["usr/bin/podman", "usr/bin/containerd", "usr/bin/runsc", "etc/containerd/config.toml"],
        "[containers]\nsandbox = \"gvisor\"\n[containers.trust]\n\"10.0.2.100:5000/hull\" = [\"pub.pem\"]\n",
    );
    apply(&root, &m).unwrap();
    let policy: serde_json::Value =
        serde_json::from_str(&root.read_to_string(POLICY).unwrap()).unwrap();
    let key_path = policy["transports"]["docker"]["10.0.2.100:5000/hull"][0]["keyPath"]
        .as_str()
        .unwrap();
    assert_eq!(
        root.read_to_string(key_path.trim_start_matches('/'))
            .unwrap(),
        P256
    );
    assert!(root
        .read_to_string(REGISTRIES_D)
        .unwrap()
        .contains("\"10.0.2.100:5000/hull\":"));
    assert!(root
        .read_to_string(PODMAN_RUNSC)
        .unwrap()
        .contains("[engine.runtimes]"));
    let containerd = root.read_to_string(CONTAINERD_CONFIG).unwrap();
    assert_eq!(
        handler(&containerd)["options"]["BinaryName"].as_str(),
        Some(RUNSC)
    );
}

#[test]
fn apply_refuses_what_would_not_work() {
    // runsc missing from the tree.
    let (_t, root, m) = setup(&["usr/bin/podman"], "[containers]\nsandbox = \"gvisor\"\n");
    let e = apply(&root, &m).unwrap_err().to_string();
    assert!(e.contains("/usr/bin/runsc is missing"), "{e}");
    // A containerd configuration hull cannot extend names the file and key.
    let (_t, root, m) = setup(
        &["usr/bin/containerd", "usr/bin/runsc"],
        "[containers]\nsandbox = \"gvisor\"\n",
    );
    write_file(&root, CONTAINERD_CONFIG, b"version = 3\n", 0o644).unwrap();
    let e = apply(&root, &m).unwrap_err().to_string();
    assert!(
        e.contains("m.toml: containers.sandbox: /etc/containerd/config.toml: version 3"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn digest_follows_the_keys() {
    let digest_of = |pem: &str| {
        let mut c = Containers {
            policy: Some(policy(DefaultPolicy::Reject)),
            sandbox: Sandbox::None,
        };
        c.policy.as_mut().unwrap().trust[0].keys[0].pem = pem.to_string();
        let mut h = Sha256::new();
        digest(&c, &mut h);
        hex::encode(h.finalize())
    };
    assert_ne!(digest_of(P256), digest_of(ED25519));
}
