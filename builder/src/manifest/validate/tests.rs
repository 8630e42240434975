use super::*;
use std::fs;

const MINIMAL: &str = "name = \"demo\"\nversion = \"1.0\"\n";

/// Writes `text` as `<tmp>/m/demo.toml` and loads it.
fn load_in(t: &Path, text: &str) -> Result<Manifest> {
    let dir = t.join("m");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("demo.toml");
    fs::write(&path, text).unwrap();
    Manifest::load(&path)
}

fn load(text: &str) -> Result<Manifest> {
    let t = tempfile::tempdir().unwrap();
    load_in(t.path(), text)
}

/// Asserts that `text` (after the minimal keys) fails, naming the file and `key`.
fn fails(text: &str, key: &str) -> String {
    let e = load(text)
        .expect_err(&format!("no error for {text:?}"))
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

fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

fn write_key(path: &Path) -> String {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let key = crate::repo::sign::generate().unwrap();
    let text = crate::repo::sign::public_text(&key.verifying_key());
    fs::write(path, &text).unwrap();
    text.trim().to_string()
}

#[test]
fn update_and_health_rules() {
    let t = tempfile::tempdir().unwrap();
    let public = write_key(&t.path().join("m/k.pub"));
    let base = "name = \"n\"\nversion = \"1\"\n";
    let ok = load_in(
        t.path(),
        &format!("{base}[update]\nurl = \"https://u.example/r\"\nkeys = [\"k.pub\", \"k.pub\"]\n"),
    )
    .unwrap();
    let u = ok.update.clone().unwrap();
    assert_eq!(u.boot_tries, DEFAULT_BOOT_TRIES);
    assert_eq!(u.ostree_ref, None);
    assert_eq!(u.keys.len(), 1, "the same key twice is one key");
    assert_eq!(u.keys[0].public, public);
    assert_eq!(ok.update_ref(Arch::X86_64), "hull/n/x86_64/stable");
    assert_eq!(load_in(t.path(), base).unwrap().update, None);
    assert!(load_in(t.path(), base)
        .unwrap()
        .health
        .required_units
        .is_empty());

    fs::write(
        t.path().join("m/secret"),
        crate::repo::sign::secret_text(&crate::repo::sign::generate().unwrap()),
    )
    .unwrap();
    fs::write(t.path().join("m/empty.pub"), "# none yet\n").unwrap();
    let cases = [
        ("keys = [\"k.pub\"]", "update.url: required"),
        (
            "url = \"ftp://x/r\"\nkeys = [\"k.pub\"]",
            "update.url: \"ftp://x/r\" is not an http",
        ),
        (
            "url = \"http://\"\nkeys = [\"k.pub\"]",
            "update.url: \"http://\" has no host",
        ),
        (
            "url = \"http://x/r#a\"\nkeys = [\"k.pub\"]",
            "update.url: \"http://x/r#a\" holds",
        ),
        (
            "url = \"http://x/r\"",
            "update.keys: at least one public key file is required",
        ),
        (
            "url = \"http://x/r\"\nkeys = []",
            "update.keys: at least one",
        ),
        (
            "url = \"http://x/r\"\nkeys = [\"missing.pub\"]",
            "update.keys[0]: cannot read",
        ),
        (
            "url = \"http://x/r\"\nkeys = [\"secret\"]",
            "is it the secret key?",
        ),
        (
            "url = \"http://x/r\"\nkeys = [\"empty.pub\"]",
            "holds no key",
        ),
        (
            "url = \"http://x/r\"\nkeys = [\"k.pub\"]\nboot-tries = 0",
            "update.boot-tries: 0 is not between 1 and 9",
        ),
        (
            "url = \"http://x/r\"\nkeys = [\"k.pub\"]\nboot-tries = 10",
            "update.boot-tries: 10",
        ),
        (
            "url = \"http://x/r\"\nkeys = [\"k.pub\"]\nref = \"a/../b\"",
            "update.ref:",
        ),
        (
            "url = \"http://x/r\"\nkeys = [\"k.pub\"]\nref = \"a b\"",
            "update.ref:",
        ),
        (
            "url = \"http://x/r\"\nkeys = [\"k.pub\"]\nsecret = 1",
            "unknown field `secret`",
        ),
    ];
    for (table, want) in cases {
        let err = load_in(t.path(), &format!("{base}[update]\n{table}\n"))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{table}: {err}");
    }
    let err = load_in(
        t.path(),
        &format!("{base}[health]\nrequired-units = [\"nope\"]\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("health.required-units[0]"), "{err}");
    let err = load_in(t.path(), &format!("{base}[health]\ntimeout = 3\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `timeout`"), "{err}");
}

#[test]
fn update_agent_rules() {
    use crate::manifest::strategy::{Strategy, Weekday, Window};
    let t = tempfile::tempdir().unwrap();
    write_key(&t.path().join("m/k.pub"));
    let head =
        "name = \"n\"\nversion = \"1\"\n[update]\nurl = \"http://x/r\"\nkeys = [\"k.pub\"]\n";
    let agent = |extra: &str| {
        load_in(t.path(), &format!("{head}{extra}\n"))
            .map(|m| m.update.unwrap().agent)
            .map_err(|e| e.to_string())
    };
    let fl = |url: &str, group: &str| Strategy::FleetLock {
        url: url.into(),
        group: group.into(),
    };
    let ok = [
        ("", None),
        ("auto = false", None),
        ("auto = true", Some((3600, Strategy::Immediate))),
        ("auto = true\ninterval = \"15m\"\nstrategy = \"kured\"", Some((900, Strategy::Kured))),
        (
            "auto = true\nstrategy = \"fleet-lock\"\nfleet-lock-url = \"http://lock:3333\"",
            Some((3600, fl("http://lock:3333", "default"))),
        ),
        (
            "auto = true\nstrategy = \"fleet-lock\"\nfleet-lock-url = \"https://lock/\"\ngroup = \"web-eu.1\"",
            Some((3600, fl("https://lock/", "web-eu.1"))),
        ),
        (
            "auto = true\nstrategy = \"window\"\n[update.window]\ndays = [\"sun\", \"sat\"]\nstart = \"23:30\"\nlength = \"1h 30m\"",
            Some((
                3600,
                Strategy::Window(Window {
                    days: vec![Weekday::Sat, Weekday::Sun],
                    start_minute: 23 * 60 + 30,
                    length: 5400,
                }),
            )),
        ),
    ];
    for (extra, want) in ok {
        let got = agent(extra).unwrap_or_else(|e| panic!("{extra}: {e}"));
        assert_eq!(got.map(|a| (a.interval, a.strategy)), want, "{extra}");
    }
    let window = "auto = true\nstrategy = \"window\"\n[update.window]\n";
    let bad = [
        ("interval = \"1h\"", "update.interval: only with auto = true"),
        ("auto = false\nstrategy = \"kured\"", "update.strategy: only with auto = true"),
        ("group = \"g\"", "update.group: only with auto = true"),
        ("fleet-lock-url = \"http://l\"", "update.fleet-lock-url: only with auto = true"),
        ("[update.window]\nstart = \"01:00\"", "update.window: only with auto = true"),
        ("auto = true\ninterval = \"30s\"", "update.interval: \"30s\" is not between 1m and 7days"),
        ("auto = true\ninterval = \"8d\"", "update.interval: \"8d\" is not between"),
        ("auto = true\ninterval = \"soon\"", "update.interval: \"soon\" is not a duration"),
        ("auto = true\nstrategy = \"later\"", "update.strategy: unknown strategy \"later\" (immediate, window, fleet-lock or kured)"),
        ("auto = true\nstrategy = \"window\"", "update.window: required with strategy = \"window\""),
        ("auto = true\nstrategy = \"fleet-lock\"", "update.fleet-lock-url: required with strategy = \"fleet-lock\""),
        ("auto = true\nstrategy = \"fleet-lock\"\nfleet-lock-url = \"lock:3333\"", "update.fleet-lock-url: \"lock:3333\" is not an http"),
        ("auto = true\nstrategy = \"fleet-lock\"\nfleet-lock-url = \"http://l\"\ngroup = \"a b\"", "update.group: \"a b\" is not 1 to 64"),
        ("auto = true\nstrategy = \"fleet-lock\"\nfleet-lock-url = \"http://l\"\ngroup = \"\"", "update.group: \"\" is not 1 to 64"),
        ("auto = true\ngroup = \"g\"", "update.group: only with strategy = \"fleet-lock\" (this one is \"immediate\")"),
        ("auto = true\nstrategy = \"kured\"\nfleet-lock-url = \"http://l\"", "update.fleet-lock-url: only with strategy = \"fleet-lock\" (this one is \"kured\")"),
        ("auto = true\n[update.window]\ndays = [\"sat\"]", "update.window: only with strategy = \"window\""),
        (&format!("{window}start = \"01:00\"\nlength = \"1h\""), "update.window.days: required"),
        (&format!("{window}days = []\nstart = \"01:00\"\nlength = \"1h\""), "update.window.days: at least one day"),
        (&format!("{window}days = [\"sat\", \"Sun\"]\nstart = \"01:00\"\nlength = \"1h\""), "update.window.days[1]: \"Sun\" is not a day"),
        (&format!("{window}days = [\"sat\", \"sat\"]\nstart = \"01:00\"\nlength = \"1h\""), "update.window.days[1]: \"sat\" is listed twice"),
        (&format!("{window}days = [\"sat\"]\nlength = \"1h\""), "update.window.start: required"),
        (&format!("{window}days = [\"sat\"]\nstart = \"24:00\"\nlength = \"1h\""), "update.window.start: \"24:00\" is not a time HH:MM"),
        (&format!("{window}days = [\"sat\"]\nstart = \"1:00\"\nlength = \"1h\""), "update.window.start: \"1:00\" is not a time"),
        (&format!("{window}days = [\"sat\"]\nstart = \"01:00\""), "update.window.length: required"),
        (&format!("{window}days = [\"sat\"]\nstart = \"01:00\"\nlength = \"8d\""), "update.window.length: \"8d\" is not between"),
        (&format!("{window}days = [\"sat\"]\nstart = \"01:00\"\nlength = \"1h\"\ntimezone = \"CET\""), "unknown field `timezone`"),
    ];
    for (extra, want) in bad {
        let e = agent(extra)
            .err()
            .unwrap_or_else(|| panic!("{extra}: accepted"));
        assert!(e.contains(want), "{extra}:\n{e}\nwants {want}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}

/// Key paths are relative to the file naming them; keys accumulate and
/// scalars are replaced across includes.
#[test]
fn update_keys_resolve_next_to_the_file_naming_them() {
    let t = tempfile::tempdir().unwrap();
    write_key(&t.path().join("m/base/keys/one.pub"));
    write_key(&t.path().join("m/two.pub"));
    fs::write(
        t.path().join("m/base/base.toml"),
        "[update]\nurl = \"http://a/r\"\nkeys = [\"keys/one.pub\"]\nboot-tries = 2\n[health]\nrequired-units = [\"a.service\"]\n",
    )
    .unwrap();
    let m = load_in(
        t.path(),
        "include = [\"base/base.toml\"]\nname = \"n\"\nversion = \"1\"\n[update]\nurl = \"http://b/r\"\nkeys = [\"two.pub\"]\n[health]\nrequired-units = [\"b.service\"]\n",
    )
    .unwrap();
    let u = m.update.unwrap();
    assert_eq!(u.url, "http://b/r");
    assert_eq!(u.boot_tries, 2);
    let paths: Vec<_> = u.keys.iter().map(|k| k.path.clone()).collect();
    assert_eq!(
        paths,
        [
            t.path().join("m/base/keys/one.pub"),
            t.path().join("m/two.pub")
        ]
    );
    assert_eq!(m.health.required_units, ["a.service", "b.service"]);
}

/// The agent's keys are scalars across includes; the window is replaced
/// whole, not merged key by key.
#[test]
fn update_agent_keys_compose() {
    use crate::manifest::strategy::Strategy;
    let t = tempfile::tempdir().unwrap();
    write_key(&t.path().join("m/k.pub"));
    fs::write(
        t.path().join("m/base.toml"),
        "[update]\nurl = \"http://a/r\"\nkeys = [\"k.pub\"]\nauto = true\ninterval = \"5m\"\nstrategy = \"window\"\n[update.window]\ndays = [\"sat\"]\nstart = \"01:00\"\nlength = \"1h\"\n",
    )
    .unwrap();
    let top = "include = [\"base.toml\"]\nname = \"n\"\nversion = \"1\"\n";
    let m = load_in(t.path(), &format!("{top}[update]\ninterval = \"10m\"\n")).unwrap();
    let a = m.update.unwrap().agent.unwrap();
    assert_eq!(a.interval, 600);
    assert!(matches!(a.strategy, Strategy::Window(ref w) if w.start_minute == 60));
    let e = load_in(
        t.path(),
        &format!("{top}[update.window]\ndays = [\"sun\"]\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("update.window.start: required"), "{e}");
    let m = load_in(
        t.path(),
        &format!("{top}[update]\nstrategy = \"fleet-lock\"\nfleet-lock-url = \"http://l\"\ngroup = \"g\"\n"),
    );
    // the base's window stays and is refused under fleet-lock: said, not dropped
    let e = m.unwrap_err().to_string();
    assert!(
        e.contains("update.window: only with strategy = \"window\""),
        "{e}"
    );
}

#[test]
fn defaults() {
    let m = load(MINIMAL).unwrap();
    assert_eq!(m.name, "demo");
    assert_eq!(m.version, "1.0");
    assert_eq!(m.stream, "stable");
    assert_eq!(m.suite, "trixie");
    assert_eq!(m.mirror, "http://deb.debian.org/debian");
    assert_eq!(m.arches, [Arch::X86_64]);
    let x86 = m.target(Arch::X86_64);
    assert_eq!(x86.kernel.package, "linux-image-cloud-amd64");
    assert!(x86.kernel.cmdline.is_empty());
    assert_eq!(x86.packages, Packages::default());
    let arm = m.target(Arch::Aarch64);
    assert_eq!(arm.kernel.package, "linux-image-cloud-arm64");
    assert_eq!(arm.packages, Packages::default());
    assert_eq!(m.hostname, "demo");
    assert_eq!(
        m.image,
        ImageSize {
            size: 4 << 30,
            esp_size: 256 << 20
        }
    );
    assert_eq!(m.units, Units::default());
    assert!(m.users.is_empty());
    assert!(m.overlays.is_empty());
    assert_eq!(m.files.len(), 1);
    assert!(m.path.ends_with("m/demo.toml"));
    assert_eq!(m.ostree_ref(Arch::X86_64), "hull/demo/x86_64/stable");
}

#[test]
fn every_key_is_carried_over() {
    let t = tempfile::tempdir().unwrap();
    write_key(&t.path().join("m/keys/a.pub"));
    fs::create_dir_all(t.path().join("rootfs-overlays/base")).unwrap();
    fs::create_dir_all(t.path().join("rootfs-overlays/site/extra")).unwrap();
    let m = load_in(
        t.path(),
        r#"
name = "demo"
version = "1.2.3+git~1"
stream = "testing"
suite = "bookworm-backports"
mirror = "https://deb.example.org/debian/"
arch = ["aarch64", "x86_64", "aarch64"]
hostname = "demo-1.example.org"
overlays = ["base", "site/extra"]
[packages]
include = ["podman", "g++", "libstdc++6"]
exclude = ["nano"]
[kernel]
package = "linux-image-amd64"
cmdline = ["quiet", "console=ttyS0,115200"]
[units]
enable = ["podman.socket", "getty@tty1.service"]
disable = ["ssh.service"]
mask = ["systemd-networkd-wait-online.service", "dev-sda\\x2d1.swap"]
[[users]]
name = "core"
groups = ["adm", "systemd-journal"]
ssh-authorized-keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB+x core@example", "sk-ssh-ed25519@openssh.com AAAA= k"]
[image]
size = 8589934592
esp-size = "512MiB"
[update]
url = "http://updates.example.org/hull/repo"
ref = "hull/demo/{arch}/testing"
keys = ["keys/a.pub"]
boot-tries = 5
[health]
required-units = ["podman.socket", "efi.mount"]
"#,
    )
    .unwrap();
    let u = m.update.as_ref().unwrap();
    assert_eq!(u.url, "http://updates.example.org/hull/repo");
    assert_eq!(m.update_ref(Arch::Aarch64), "hull/demo/aarch64/testing");
    assert_eq!(u.keys.len(), 1);
    assert_eq!(u.keys[0].path, t.path().join("m/keys/a.pub"));
    assert_eq!(u.boot_tries, 5);
    assert_eq!(m.health.required_units, ["podman.socket", "efi.mount"]);
    assert_eq!(m.version, "1.2.3+git~1");
    assert_eq!(m.stream, "testing");
    assert_eq!(m.suite, "bookworm-backports");
    assert_eq!(m.mirror, "https://deb.example.org/debian/");
    assert_eq!(m.arches, [Arch::Aarch64, Arch::X86_64]);
    assert_eq!(m.hostname, "demo-1.example.org");
    for arch in Arch::ALL {
        let t = m.target(arch);
        assert_eq!(t.packages.include, ["podman", "g++", "libstdc++6"]);
        assert_eq!(t.packages.exclude, ["nano"]);
        assert_eq!(t.kernel.package, "linux-image-amd64");
        assert_eq!(t.kernel.cmdline, ["quiet", "console=ttyS0,115200"]);
    }
    assert_eq!(m.units.enable, ["podman.socket", "getty@tty1.service"]);
    assert_eq!(m.units.disable, ["ssh.service"]);
    assert_eq!(m.units.mask.len(), 2);
    assert_eq!(m.users.len(), 1);
    assert_eq!(m.users[0].name, "core");
    assert_eq!(m.users[0].groups, ["adm", "systemd-journal"]);
    assert_eq!(m.users[0].ssh_authorized_keys.len(), 2);
    assert_eq!(
        m.image,
        ImageSize {
            size: 8 << 30,
            esp_size: 512 << 20
        }
    );
    let root = fs::canonicalize(t.path().join("rootfs-overlays")).unwrap();
    assert_eq!(
        m.overlays,
        [
            Overlay {
                name: "base".into(),
                dir: root.join("base")
            },
            Overlay {
                name: "site/extra".into(),
                dir: root.join("site/extra")
            },
        ]
    );
}

#[test]
fn sha256_frames_each_file_with_its_length() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("m");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("a.toml"), "version = \"1\"\n").unwrap();
    fs::write(
        dir.join("demo.toml"),
        "include = [\"a.toml\"]\nname = \"demo\"\n",
    )
    .unwrap();
    let m = Manifest::load(&dir.join("demo.toml")).unwrap();
    let mut h = Sha256::new();
    for f in ["a.toml", "demo.toml"] {
        let bytes = fs::read(dir.join(f)).unwrap();
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
    }
    assert_eq!(m.sha256, hex::encode(h.finalize()));
    assert_eq!(m.files.len(), 2);
    assert_eq!(
        m.files[0].sha256,
        hex::encode(Sha256::digest(b"version = \"1\"\n"))
    );
}

#[test]
fn sizes() {
    let table: &[(&str, Option<u64>)] = &[
        ("0", Some(0)),
        ("4096", Some(4096)),
        ("512B", Some(512)),
        ("1K", Some(1024)),
        ("1k", Some(1024)),
        ("1KiB", Some(1024)),
        ("1KB", Some(1024)),
        ("512M", Some(512 << 20)),
        ("256MiB", Some(256 << 20)),
        ("4G", Some(4 << 30)),
        ("4 GiB", Some(4 << 30)),
        (" 2T ", Some(2 << 40)),
        ("1TB", Some(1 << 40)),
        ("", None),
        ("G", None),
        ("4X", None),
        ("4GiBs", None),
        ("4Gb", None),
        ("1.5G", None),
        ("-1G", None),
        ("4 G B", None),
        ("99999999999999999999", None),
        ("16777216T", None),
    ];
    for (text, want) in table {
        assert_eq!(parse_size(text).ok(), *want, "parse_size({text:?})");
    }
}

#[test]
fn name_and_version_are_required() {
    fails("version = \"1\"\n", "name");
    fails("name = \"demo\"\n", "version");
}

#[test]
fn name_rules() {
    for bad in ["", "Demo", "1demo", "de_mo", "de mo", &"a".repeat(65)] {
        fails(
            &format!("name = {bad:?}\nversion = \"1\"\nhostname = \"h\"\n"),
            "name",
        );
    }
    load(&format!(
        "name = {:?}\nversion = \"1\"\nhostname = \"h\"\n",
        "a".repeat(64)
    ))
    .unwrap();
}

#[test]
fn version_rules() {
    for bad in ["", "1 0", "1/0", "1:0"] {
        fails(&format!("name = \"demo\"\nversion = {bad:?}\n"), "version");
    }
}

#[test]
fn stream_suite_mirror_rules() {
    fails(&with("stream = \"Stable\"\n"), "stream");
    fails(&with("stream = \"\"\n"), "stream");
    fails(&with("stream = \"a/b\"\n"), "stream");
    fails(&with("suite = \"-trixie\"\n"), "suite");
    fails(
        &with("mirror = \"ftp://deb.debian.org/debian\"\n"),
        "mirror",
    );
    fails(&with("mirror = \"deb.debian.org/debian\"\n"), "mirror");
    fails(
        &with("mirror = \"http://deb.debian.org/ debian\"\n"),
        "mirror",
    );
    fails(&with("mirror = \"https://\"\n"), "mirror");
}

#[test]
fn sources_rules() {
    let m = load(MINIMAL).unwrap();
    assert!(m.updates);
    assert_eq!(
        m.security_mirror.as_deref(),
        Some("http://deb.debian.org/debian-security")
    );
    assert_eq!(
        m.sources(),
        [
            (
                "http://deb.debian.org/debian".to_string(),
                "trixie".to_string()
            ),
            (
                "http://deb.debian.org/debian".into(),
                "trixie-updates".into()
            ),
            (
                "http://deb.debian.org/debian-security".into(),
                "trixie-security".into()
            ),
        ]
    );
    let m = load(&with(
        "mirror = \"https://ftp.de.debian.org/debian/\"\nupdates = false\n",
    ))
    .unwrap();
    assert_eq!(
        m.sources(),
        [
            (
                "https://ftp.de.debian.org/debian/".to_string(),
                "trixie".to_string()
            ),
            (
                "https://ftp.de.debian.org/debian-security".into(),
                "trixie-security".into()
            ),
        ]
    );
    let m = load(&with("security = false\nupdates = false\n")).unwrap();
    assert_eq!(m.sources().len(), 1);
    let m = load(&with("security-mirror = \"http://security.example/ds\"\n")).unwrap();
    assert_eq!(m.sources()[2].0, "http://security.example/ds");
    fails(
        &with("security = false\nsecurity-mirror = \"http://s.example/ds\"\n"),
        "security-mirror",
    );
    fails(
        &with("security-mirror = \"s.example\"\n"),
        "security-mirror",
    );
    let e = fails(
        &with("mirror = \"http://mirror.example/archive\"\n"),
        "security-mirror",
    );
    assert!(e.contains("does not end in /debian"), "{e}");
    let e = load(&with("updates = \"yes\"\n")).unwrap_err().to_string();
    assert!(
        e.contains("demo.toml:") && e.contains(": updates: invalid type"),
        "{e}"
    );
}

#[test]
fn arch_rules() {
    fails(&with("arch = []\n"), "arch");
    let e = fails(&with("arch = [\"x86_64\", \"amd64\"]\n"), "arch[1]");
    assert!(e.contains("amd64"), "{e}");
}

#[test]
fn package_rules() {
    fails(
        &with("[packages]\ninclude = [\"ok\", \"Bad\"]\n"),
        "packages.include[1]",
    );
    fails(
        &with("[packages]\ninclude = [\"a\"]\n"),
        "packages.include[0]",
    );
    fails(
        &with("[packages]\nexclude = [\"-x\"]\n"),
        "packages.exclude[0]",
    );
    fails(
        &with("[packages]\ninclude = [\"foo:amd64\"]\n"),
        "packages.include[0]",
    );
    fails(
        &with("[kernel]\npackage = \"linux image\"\n"),
        "kernel.package",
    );
    let e = fails(
        &with("[packages]\ninclude = [\"nano\", \"vim\"]\nexclude = [\"vim\"]\n"),
        "packages.exclude[0]",
    );
    assert!(e.contains("vim"), "{e}");
    fails(
        &with("[packages]\nexclude = [\"linux-image-cloud-amd64\"]\n"),
        "kernel.package",
    );
}

#[test]
fn hardening_needs_its_packages_on_every_architecture() {
    let profile = r#"
arch = ["x86_64", "aarch64"]
[hardening]
audit = false
rootless = false
[per-arch.x86_64.packages]
include = ["nftables"]
"#;
    let e = fails(&with(profile), "hardening.firewall");
    assert!(e.contains("nftables") && e.contains("(for aarch64)"), "{e}");
    let both = format!("{profile}[per-arch.aarch64.packages]\ninclude = [\"nftables\"]\n");
    assert!(load(&with(&both)).unwrap().hardening.firewall);
}

#[test]
fn per_arch_tables_apply_to_their_architecture_only() {
    let m = load(&with(
        r#"
[packages]
include = ["podman"]
exclude = ["nano"]
[kernel]
cmdline = ["quiet"]
[per-arch.aarch64.packages]
include = ["u-boot-tools", "podman"]
exclude = ["vim"]
[per-arch.aarch64.kernel]
package = "linux-image-arm64"
cmdline = ["earlycon", "quiet"]
[per-arch.x86_64.kernel]
cmdline = ["mitigations=auto"]
"#,
    ))
    .unwrap();
    let arm = m.target(Arch::Aarch64);
    assert_eq!(arm.packages.include, ["podman", "u-boot-tools"]);
    assert_eq!(arm.packages.exclude, ["nano", "vim"]);
    assert_eq!(arm.kernel.package, "linux-image-arm64");
    assert_eq!(arm.kernel.cmdline, ["quiet", "earlycon"]);
    let x86 = m.target(Arch::X86_64);
    assert_eq!(x86.packages.include, ["podman"]);
    assert_eq!(x86.packages.exclude, ["nano"]);
    assert_eq!(x86.kernel.package, "linux-image-cloud-amd64");
    assert_eq!(x86.kernel.cmdline, ["quiet", "mitigations=auto"]);

    // A top-level kernel.package holds for every architecture without its own.
    let m = load(&with(
        "[kernel]\npackage = \"linux-image-amd64\"\n[per-arch.aarch64.kernel]\npackage = \"linux-image-cloud-arm64\"\n",
    ))
    .unwrap();
    assert_eq!(m.target(Arch::X86_64).kernel.package, "linux-image-amd64");
    assert_eq!(
        m.target(Arch::Aarch64).kernel.package,
        "linux-image-cloud-arm64"
    );
}

#[test]
fn per_arch_rules() {
    // (manifest fragment, key named in the error, text the error holds)
    let cases = [
        (
            "[per-arch.mips.kernel]\ncmdline = []\n",
            "per-arch.mips",
            "unknown architecture",
        ),
        (
            "[per-arch.aarch64.packages]\ninclude = [\"a\"]\n",
            "per-arch.aarch64.packages.include[0]",
            "\"a\"",
        ),
        (
            "[per-arch.aarch64.kernel]\npackage = \"bad name\"\n",
            "per-arch.aarch64.kernel.package",
            "bad name",
        ),
        (
            "[per-arch.x86_64.kernel]\ncmdline = [\"root=/dev/sda\"]\n",
            "per-arch.x86_64.kernel.cmdline[0]",
            "hull sets root=",
        ),
        (
            "[packages]\ninclude = [\"vim\"]\n[per-arch.aarch64.packages]\nexclude = [\"vim\"]\n",
            "per-arch.aarch64.packages.exclude[0]",
            "vim is also in packages.include",
        ),
        (
            "[packages]\nexclude = [\"vim\"]\n[per-arch.aarch64.packages]\ninclude = [\"vim\"]\n",
            "packages.exclude[0]",
            "vim is also in per-arch.aarch64.packages.include",
        ),
        (
            "[per-arch.aarch64.packages]\nexclude = [\"linux-image-cloud-arm64\"]\n",
            "kernel.package",
            "also in per-arch.aarch64.packages.exclude",
        ),
        (
            "[packages]\nexclude = [\"k\\u0031\"]\n[per-arch.aarch64.kernel]\npackage = \"k1\"\n",
            "per-arch.aarch64.kernel.package",
            "k1 is also in packages.exclude",
        ),
    ];
    for (fragment, key, text) in cases {
        let e = fails(&with(fragment), key);
        assert!(e.contains(text), "{fragment:?}: {e}");
    }
}

#[test]
fn unit_rules() {
    fails(&with("[units]\nenable = [\"ssh\"]\n"), "units.enable[0]");
    fails(
        &with("[units]\ndisable = [\"a b.service\"]\n"),
        "units.disable[0]",
    );
    fails(&with("[units]\nmask = [\".service\"]\n"), "units.mask[0]");
    fails(&with("[units]\nmask = [\"foo.conf\"]\n"), "units.mask[0]");
    // (unit, accepted): systemd's unit_name_is_valid()
    let long = format!("{}.service", "a".repeat(247));
    let too_long = format!("{}.service", "a".repeat(248));
    let table: &[(&str, bool)] = &[
        ("ssh.service", true),
        ("getty@tty1.service", true),
        ("getty@.service", true),
        ("dev-sda\\x2d1.swap", true),
        ("a:b_c.d-e.timer", true),
        (&long, true),
        (&too_long, false),
        ("@tty1.service", false),
        ("@.service", false),
        ("a@b@c.service", false),
        (".service", false),
        ("ssh", false),
        ("ssh.conf", false),
        ("a b.service", false),
        ("a/b.service", false),
        ("é.service", false),
    ];
    for (unit, ok) in table {
        let text = with(&format!("[units]\nmask = [{unit:?}]\n"));
        if *ok {
            assert_eq!(load(&text).unwrap().units.mask, [*unit]);
        } else {
            fails(&text, "units.mask[0]");
        }
    }
    // A template is never active, so it cannot be a required unit.
    let e = fails(
        &with("[health]\nrequired-units = [\"getty@.service\"]\n"),
        "health.required-units[0]",
    );
    assert!(e.contains("template"), "{e}");
    load(&with(
        "[health]\nrequired-units = [\"getty@tty1.service\"]\n",
    ))
    .unwrap();
    let e = fails(
        &with("[units]\nenable = [\"a.service\"]\nmask = [\"a.service\"]\n"),
        "units.mask[0]",
    );
    assert!(e.contains("a.service"), "{e}");
    fails(
        &with("[units]\nenable = [\"a.service\"]\ndisable = [\"a.service\"]\n"),
        "units.disable[0]",
    );
    // Disabled and masked is consistent.
    load(&with(
        "[units]\ndisable = [\"a.service\"]\nmask = [\"a.service\"]\n",
    ))
    .unwrap();
}

#[test]
fn user_rules() {
    fails(&with("[[users]]\ngroups = []\n"), "users[0].name");
    fails(&with("[[users]]\nname = \"Core\"\n"), "users[0].name");
    fails(
        &with(&format!("[[users]]\nname = {:?}\n", "a".repeat(33))),
        "users[0].name",
    );
    fails(
        &with("[[users]]\nname = \"ok\"\n[[users]]\nname = \"root\"\n"),
        "users[1].name",
    );
    fails(
        &with("[[users]]\nname = \"core\"\ngroups = [\"adm\", \"9x\"]\n"),
        "users[0].groups[1]",
    );
    let key = "users[0].ssh-authorized-keys[0]";
    fails(
        &with("[[users]]\nname = \"core\"\nssh-authorized-keys = [\"AAAA core@x\"]\n"),
        key,
    );
    fails(
        &with("[[users]]\nname = \"core\"\nssh-authorized-keys = [\"ssh-ed25519\"]\n"),
        key,
    );
    fails(
        &with("[[users]]\nname = \"core\"\nssh-authorized-keys = [\"ssh-rsa !!\"]\n"),
        key,
    );
    fails(
        &with(
            "[[users]]\nname = \"core\"\nssh-authorized-keys = [\"ssh-rsa AAAA\\nssh-rsa BBBB\"]\n",
        ),
        key,
    );
    load(&with(
        "[[users]]\nname = \"_svc\"\nssh-authorized-keys = [\"ecdsa-sha2-nistp256 AAAAE2Vj\"]\n",
    ))
    .unwrap();
    // (name, text of the error; None: accepted) for names useradd refuses
    let table: &[(&str, Option<&str>)] = &[
        ("core", None),
        ("ops-1", None),
        (&"a".repeat(32), None),
        ("nobody", Some("system accounts")),
        ("www-data", Some("system accounts")),
        ("_apt", Some("system accounts")),
        ("adm", Some("system groups")),
        ("sudo", Some("system groups")),
        ("users", Some("system groups")),
    ];
    for (name, want) in table {
        let text = with(&format!("[[users]]\nname = {name:?}\n"));
        match want {
            None => assert_eq!(load(&text).unwrap().users[0].name, *name),
            Some(w) => {
                let e = fails(&text, "users[0].name");
                assert!(e.contains(w), "{name}: {e}");
            }
        }
    }
    let e = fails(
        &with(
            "[[users]]\nname = \"core\"\n[[users]]\nname = \"ops\"\n[[users]]\nname = \"core\"\n",
        ),
        "users[2].name",
    );
    assert!(
        e.contains("core is also users[0].name in the same file"),
        "{e}"
    );
}

#[test]
fn hostname_rules() {
    // (host name, accepted): systemd's hostname_is_valid() and Linux's 64
    let long_label = "a".repeat(64);
    let at_limit = format!("{}.{}", "a".repeat(31), "b".repeat(32));
    let over_limit = format!("{}.{}", "a".repeat(32), "b".repeat(32));
    let table: &[(&str, bool)] = &[
        ("edge-01", true),
        ("Edge-01.example.org", true),
        ("0", true),
        (&at_limit, true),
        (&over_limit, false),
        (&"a".repeat(65), false),
        (&long_label, false),
        ("", false),
        ("-a", false),
        ("a-", false),
        ("a.-b", false),
        ("a-.b", false),
        ("a..b", false),
        (".a", false),
        ("a.", false),
        ("a_b", false),
        ("a b", false),
        ("é", false),
        (".host", false),
    ];
    for (h, ok) in table {
        let text = with(&format!("hostname = {h:?}\n"));
        if *ok {
            assert_eq!(load(&text).unwrap().hostname, *h);
        } else {
            fails(&text, "hostname");
        }
    }
    let e = fails(&with(&format!("hostname = {over_limit:?}\n")), "hostname");
    assert!(
        e.contains("65 characters") && e.contains("at most 64"),
        "{e}"
    );
    // The default comes from name, which may not be a valid host name.
    let e = fails("name = \"demo-\"\nversion = \"1\"\n", "hostname");
    assert!(e.contains("name"), "{e}");
}

#[test]
fn image_rules() {
    fails(&with("[image]\nsize = \"4X\"\n"), "image.size");
    fails(&with("[image]\nesp-size = \"lots\"\n"), "image.esp-size");
    fails(&with("[image]\nesp-size = \"63M\"\n"), "image.esp-size");
    load(&with("[image]\nesp-size = \"64M\"\nsize = \"1G\"\n")).unwrap();
    fails(
        &with("[image]\nesp-size = \"256M\"\nsize = \"768M\"\n"),
        "image.size",
    );
    load(&with("[image]\nesp-size = \"256M\"\nsize = 805306369\n")).unwrap();
    fails(
        &with("[image]\nsize = \"16777215T\"\nesp-size = \"16777215T\"\n"),
        "image.size",
    );
}

/// Each argument as the kernel's next_arg() splits the command line.
#[test]
fn kernel_argument_table() {
    // (argument, accepted)
    let table: &[(&str, bool)] = &[
        ("quiet", true),
        ("console=ttyS0,115200", true),
        ("x.note=\"two words\"", true),
        ("\"x.note=two words\"", true),
        ("x.empty=\"\"", true),
        ("dyndbg=\"file foo.c +p\"", true),
        ("a=b=c", true),
        ("x.note=\"unterminated", false),
        ("\"unterminated", false),
        ("x=\"a\"b", false),
        ("x=a\"b\"", false),
        ("\"a\"=\"b\"", false),
        ("x=\"a\" y=\"b\"", false),
        ("\"\"", false),
        ("two words", false),
        ("x=two words", false),
        ("key with=\"space\"", false),
        ("tab\there", false),
        ("new\nline", false),
        ("x=\u{a0}", false),
        ("x=café", false),
        ("x='a b'", false),
        ("--", false),
        ("", false),
        ("root=/dev/sda", false),
        ("\"root=/dev/sda\"", false),
        ("ostree=/x", false),
        ("rootflags=ro", true),
    ];
    for (arg, ok) in table {
        assert_eq!(
            check_karg(arg).is_ok(),
            *ok,
            "{arg:?}: {:?}",
            check_karg(arg)
        );
    }
    let e = fails(
        &with("[kernel]\ncmdline = [\"quiet\", \"x.note=\\\"unterminated\"]\n"),
        "kernel.cmdline[1]",
    );
    assert!(e.contains("unbalanced quote"), "{e}");
    fails(
        &with("[per-arch.aarch64.kernel]\ncmdline = [\"x='y\"]\n"),
        "per-arch.aarch64.kernel.cmdline[0]",
    );
}

#[test]
fn cmdline_rules() {
    fails(&with("[kernel]\ncmdline = [\"\"]\n"), "kernel.cmdline[0]");
    fails(
        &with("[kernel]\ncmdline = [\"quiet splash\"]\n"),
        "kernel.cmdline[0]",
    );
    fails(
        &with("[kernel]\ncmdline = [\"quiet\", \"a=b\\n\"]\n"),
        "kernel.cmdline[1]",
    );
    fails(
        &with("[kernel]\ncmdline = [\"root=/dev/sda2\"]\n"),
        "kernel.cmdline[0]",
    );
    fails(
        &with("[kernel]\ncmdline = [\"ostree=/ostree/boot.1\"]\n"),
        "kernel.cmdline[0]",
    );
    load(&with(
        "[kernel]\ncmdline = [\"rootflags=ro\", \"console=ttyS0\"]\n",
    ))
    .unwrap();
}

#[test]
fn overlay_rules() {
    let t = tempfile::tempdir().unwrap();
    // No rootfs-overlays anywhere above the temporary directory, one hopes;
    // skip the check if the machine has one.
    let above = fs::canonicalize(t.path()).unwrap();
    if !above.ancestors().any(|d| d.join(OVERLAY_ROOT).is_dir()) {
        let e = load_in(t.path(), &with("overlays = [\"base\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("demo.toml: overlays: no rootfs-overlays"), "{e}");
    }
    // Empty overlays need no overlay root.
    load_in(t.path(), &with("overlays = []\n")).unwrap();

    let root = t.path().join("rootfs-overlays");
    fs::create_dir_all(root.join("base")).unwrap();
    fs::write(root.join("file"), "").unwrap();
    fs::create_dir_all(t.path().join("outside")).unwrap();
    std::os::unix::fs::symlink("../outside", root.join("escape")).unwrap();
    std::os::unix::fs::symlink(".", root.join("self")).unwrap();
    std::os::unix::fs::symlink("base", root.join("alias")).unwrap();
    let check = |overlay: &str, key: &str| {
        let e = load_in(
            t.path(),
            &with(&format!("overlays = [\"base\", {overlay:?}]\n")),
        )
        .expect_err(overlay)
        .to_string();
        assert!(!e.contains('\n'), "{e:?}");
        assert!(e.contains(&format!("demo.toml: {key}: ")), "{overlay}: {e}");
    };
    check("../outside", "overlays[1]");
    check("/etc", "overlays[1]");
    check("./base", "overlays[1]");
    check("", "overlays[1]");
    check("missing", "overlays[1]");
    check("file", "overlays[1]");
    check("escape", "overlays[1]");
    check("self", "overlays[1]");
    // A symlink that stays inside is fine, resolved to its target.
    let m = load_in(t.path(), &with("overlays = [\"alias\"]\n")).unwrap();
    assert_eq!(m.overlays[0].name, "alias");
    assert_eq!(
        m.overlays[0].dir,
        fs::canonicalize(root.join("base")).unwrap()
    );
}

/// What libostree cannot commit is refused when the manifest is read,
/// naming the overlay and the path.
#[test]
fn overlay_contents_ostree_cannot_store() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("rootfs-overlays");
    let ok = root.join("ok/etc");
    fs::create_dir_all(&ok).unwrap();
    fs::write(ok.join("motd"), "hi").unwrap();
    fs::write(ok.join("naïve"), "").unwrap();
    std::os::unix::fs::symlink("/dev/null", ok.join("masked.service")).unwrap();
    load_in(t.path(), &with("overlays = [\"ok\"]\n")).unwrap();

    let bad_name = root.join("name/etc");
    fs::create_dir_all(&bad_name).unwrap();
    fs::write(bad_name.join(OsStr::from_bytes(b"caf\xe9")), "").unwrap();
    let bad_link = root.join("link/usr");
    fs::create_dir_all(&bad_link).unwrap();
    std::os::unix::fs::symlink(OsStr::from_bytes(b"\xff"), bad_link.join("l")).unwrap();
    let socket = root.join("socket/run");
    fs::create_dir_all(&socket).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(socket.join("sock")).unwrap();
    // (overlay, text the error holds)
    let cases = [
        ("name", "etc/caf\\xE9\": the name is not UTF-8"),
        (
            "link",
            "usr/l\": the symlink's target \"\\xFF\" is not UTF-8",
        ),
        ("socket", "run/sock\": not a file, directory or symlink"),
    ];
    for (overlay, text) in cases {
        let e = load_in(
            t.path(),
            &with(&format!("overlays = [\"ok\", {overlay:?}]\n")),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains('\n'), "{e:?}");
        assert!(e.contains("demo.toml: overlays[1]: "), "{e}");
        assert!(e.contains(&format!("rootfs-overlays/{overlay}/")), "{e}");
        assert!(e.contains(text), "{overlay}: {e}");
    }
}

#[test]
fn nearest_overlay_root_wins() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("rootfs-overlays/outer")).unwrap();
    fs::create_dir_all(t.path().join("m/rootfs-overlays/inner")).unwrap();
    load_in(t.path(), &with("overlays = [\"inner\"]\n")).unwrap();
    let e = load_in(t.path(), &with("overlays = [\"outer\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("overlays[0]"), "{e}");
}

#[test]
fn errors_from_includes_are_reported_against_the_top_level_file() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("m");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("base.toml"), "[packages]\ninclude = [\"Bad\"]\n").unwrap();
    let e = load_in(t.path(), &with("include = [\"base.toml\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("demo.toml: packages.include[0]: "), "{e}");
}

#[test]
fn validate_never_panics_on_odd_input() {
    for text in [
        "",
        "name = \"\"\nversion = \"\"\n",
        "name = \"é\"\nversion = \"1\"\n",
        "name = \"demo\"\nversion = \"1\"\n[[users]]\n",
        "name = \"demo\"\nversion = \"1\"\n[image]\nsize = 0\nesp-size = 0\n",
        "name = \"demo\"\nversion = \"1\"\n[image]\nsize = 9223372036854775807\n",
        "name = \"demo\"\nversion = \"1\"\n[[users]]\nname = \"a\"\nssh-authorized-keys = [\"ssh-é\"]\n",
    ] {
        let _ = load(text);
    }
}
