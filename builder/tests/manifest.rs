//! The manifests shipped in `manifests/` load and mean what they say.

use std::path::{Path, PathBuf};

use hull::manifest::{Arch, Manifest};

fn shipped(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests")
        .join(name)
}

#[test]
fn shipped_minimal_manifest_loads() {
    let m = Manifest::load(&shipped("minimal.toml")).unwrap();
    assert_eq!(m.name, "minimal");
    assert_eq!(m.version, "1.0.0");
    assert_eq!(m.stream, "stable");
    assert_eq!(m.suite, "trixie");
    assert_eq!(m.mirror, "http://deb.debian.org/debian");
    assert_eq!(m.arches, [Arch::X86_64]);
    assert_eq!(m.hostname, "hull-minimal");
    assert_eq!(
        m.target(Arch::X86_64).kernel.package,
        "linux-image-cloud-amd64"
    );
    assert!(m.target(Arch::X86_64).kernel.cmdline.is_empty());
    assert_eq!(
        m.target(Arch::Aarch64).kernel.package,
        "linux-image-cloud-arm64"
    );
    // base.toml's packages first, then minimal.toml's.
    assert_eq!(
        m.target(Arch::X86_64)
            .packages
            .include
            .first()
            .map(String::as_str),
        Some("systemd")
    );
    for p in [
        "ostree",
        "ostree-boot",
        "dracut",
        "systemd-boot-efi",
        "podman",
        "crun",
        "openssh-server",
    ] {
        assert!(
            m.target(Arch::X86_64)
                .packages
                .include
                .iter()
                .any(|i| i == p),
            "{p} missing"
        );
    }
    assert_eq!(
        m.target(Arch::X86_64)
            .packages
            .include
            .last()
            .map(String::as_str),
        Some("apparmor")
    );
    assert_eq!(
        m.units.disable,
        ["dpkg-db-backup.timer", "ssh.service", "ssh.socket"]
    );
    assert_eq!(
        m.target(Arch::X86_64).packages.exclude,
        ["containernetworking-plugins"]
    );
    assert_eq!(
        m.units.enable,
        ["systemd-networkd.service", "systemd-sysext.service"]
    );
    assert_eq!(
        m.health.required_units,
        ["systemd-journald.service", "efi.mount"]
    );
    // The shipped example is not updatable: that needs the user's own key.
    assert_eq!(m.update, None);
    assert_eq!(m.users.len(), 1);
    assert_eq!(m.users[0].name, "core");
    assert!(m.users[0].ssh_authorized_keys.is_empty());
    let overlays: Vec<_> = m.overlays.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(overlays, ["base"]);
    assert!(m.overlays[0].dir.ends_with("rootfs-overlays/base"));
    assert_eq!(m.image.size, 4 << 30);
    assert_eq!(m.image.esp_size, 256 << 20);
    let files: Vec<_> = m
        .files
        .iter()
        .map(|f| f.path.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(files, ["base.toml", "hardening.toml", "minimal.toml"]);
    // The hardening profile, every item on, and the packages its items need.
    assert!(m.hardening.enable);
    assert!(m.hardening.firewall && m.hardening.audit && m.hardening.rootless);
    assert!(m.hardening.open_ports.is_empty());
    assert_eq!(m.hardening.rootless_user, "rootless");
    for p in ["nftables", "auditd", "uidmap", "passt", "dbus-user-session"] {
        assert!(
            m.target(Arch::X86_64)
                .packages
                .include
                .iter()
                .any(|i| i == p),
            "{p} missing"
        );
    }
    assert_eq!(m.sha256.len(), 64);
    assert_eq!(m.ostree_ref(Arch::X86_64), "hull/minimal/x86_64/stable");
}

#[test]
fn shipped_base_manifest_is_a_fragment() {
    let e = Manifest::load(&shipped("base.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("base.toml: name: required"), "{e}");
}

/// A manifest kept outside this repository can include hull's base.toml: the
/// overlays base.toml names are found next to base.toml, not next to it.
#[test]
fn overlays_resolve_next_to_the_file_that_names_them() {
    let t = tempfile::tempdir().unwrap();
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/base.toml");
    let mine = t.path().join("mine.toml");
    std::fs::write(
        &mine,
        format!(
            "include = [{:?}]\nname = \"mine\"\nversion = \"1\"\n",
            base.display().to_string()
        ),
    )
    .unwrap();
    let m = Manifest::load(&mine).unwrap();
    assert_eq!(m.overlays.len(), 1);
    let want = std::fs::canonicalize(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../rootfs-overlays/base"),
    )
    .unwrap();
    assert_eq!(m.overlays[0].dir, want);
}

#[test]
fn shipped_k8s_node_manifest_loads() {
    let m = Manifest::load(&shipped("k8s-node.toml")).unwrap();
    assert_eq!(m.name, "k8s-node");
    assert!(m
        .target(Arch::X86_64)
        .packages
        .include
        .iter()
        .any(|p| p == "containerd"));
    assert!(!m
        .target(Arch::X86_64)
        .packages
        .include
        .iter()
        .any(|p| p == "podman"));
    assert_eq!(
        m.units.enable,
        [
            "systemd-networkd.service",
            "systemd-sysext.service",
            "containerd.service"
        ]
    );
    assert_eq!(
        m.health.required_units,
        [
            "systemd-journald.service",
            "efi.mount",
            "containerd.service"
        ]
    );
    assert!(m.units.mask.iter().any(|u| u == "swap.target"));
    let h = &m.hardening;
    assert!(h.enable && h.firewall && h.audit && h.sysctl && h.kernel_cmdline);
    assert!(!h.rootless && !h.containers);
    assert_eq!(h.sysctl_overrides["net.ipv4.conf.all.rp_filter"], "2");
    let ports: Vec<String> = h.open_ports.iter().map(|p| p.to_string()).collect();
    assert_eq!(ports, ["10250/tcp"]);
    let overlays: Vec<_> = m.overlays.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(overlays, ["base", "k8s-node"]);
}

/// `hull check` prints the manifest as hull understands it; a reader that
/// goes away first (`hull check … | head -0`) ends it quietly, with no
/// panic ("failed printing to stdout: Broken pipe") and no error.
#[test]
fn check_prints_and_a_closed_stdout_ends_it_quietly() {
    use std::process::{Command, Stdio};
    let run = |close: bool| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hull"))
            .arg("check")
            .arg(shipped("minimal.toml"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if close {
            drop(child.stdout.take());
        }
        child.wait_with_output().unwrap()
    };
    let open = run(false);
    assert!(open.status.success());
    let text = String::from_utf8(open.stdout).unwrap();
    assert!(text.contains("\"name\": \"minimal\""), "{text}");
    let closed = run(true);
    let stderr = String::from_utf8_lossy(&closed.stderr);
    assert!(closed.status.success(), "{:?}: {stderr}", closed.status);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("error"),
        "{stderr}"
    );
}
