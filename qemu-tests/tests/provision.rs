//! One image, two nodes: manifests/minimal.toml (the build the background
//! lane already has for `reproducible`) booted twice, each boot a different node.
//!
//! - Node A through the credential `hull.node` (a node config), on a 10 GiB
//!   disk (`hull run --disk-size`'s overlay), which the root partition and its
//!   ext4 grow to at boot (systemd-repart, growfs-root; the ESP keeps its size, the
//!   backup GPT header moves to the disk's end): its host name, a user with a
//!   key, a static address on the restricted user network (matched by MAC),
//!   a file with mode and owner, update settings, and a system extension
//!   made by `hull sysext` from a real Debian package the image lacks
//!   (`hello`), named in A's `extensions` and passed by `hull run` as the
//!   credential `hull.sysext.hello`: placed into /var/lib/extensions,
//!   merged, and its binary runs. The harness then logs in
//!   over SSH through the forwarded port with A's key (the real `ssh`
//!   client, BatchMode), and a wrong key is refused.
//! - Node B through a NoCloud seed (`hull run --cloud-init`'s vfat CIDATA
//!   disk): another host name and key, a file from write_files, and a key
//!   hull does not support (`packages`), which the boot names on the
//!   console and in the journal. The harness logs in with B's key.
//!
//! Before the boots, the qcow2 that `[image] formats` writes is compared
//! with the raw image (`qemu-img compare`): the same disk.
//!
//! Inside the guest, qemu-tests/guest/provision-check.sh checks each and
//! waits for the harness's login. Needs HULL_QEMU_TESTS=1, root, QEMU with
//! OVMF and an ssh client; `cargo test` lists it as ignored.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use hull::build::image::formats;
use hull::manifest::image_formats::ImageFormat;
use hull::qemu::node_run::{self, NodeOptions};
use hull::util::cmd::Cmd;
use hull_qemu_tests::{build, enabled, guest, report_arch, Boot, Outcome};

/// The MAC QEMU gives the first NIC, which node A's network matches.
const QEMU_MAC: &str = "52:54:00:12:34:56";
const GIB: u64 = 1 << 30;
/// Node A's disk.
const DISK: u64 = 10 * GIB;

#[test]
#[ignore = "boot test: needs root, QEMU and the Debian mirror; qemu-tests/run-tests.sh runs it"]
fn provision_two_nodes() -> Result<()> {
    if !enabled("provision_two_nodes") {
        return Ok(());
    }
    let report = build("manifests/minimal.toml")?;
    let arch = report_arch(&report)?;
    qcow2_is_the_same_disk(&report.image)?;
    let keys = tempfile::tempdir()?;
    let key_a = keygen(keys.path(), "a")?;
    let key_b = keygen(keys.path(), "b")?;
    let wrong = keygen(keys.path(), "wrong")?;
    // A's system extension: `hello`, which the minimal image lacks, beside
    // A's config as its `extensions` entry names it.
    let ext = hull_qemu_tests::hello_sysext(arch)?;
    eprintln!("sysext {} ({} bytes)", ext.path.display(), ext.size);
    std::fs::copy(&ext.path, keys.path().join("hello.raw"))
        .with_context(|| format!("copying {}", ext.path.display()))?;

    // Node A: a node config as the credential hull.node.
    let config = format!(
        r#"hostname = "node-a"
extensions = ["hello.raw"]
[[users]]
name = "alice"
ssh-authorized-keys = ["{}"]
[[network]]
match-mac = "{QEMU_MAC}"
address = "10.0.2.15/24"
gateway = "10.0.2.2"
dns = ["10.0.2.3"]
[[files]]
path = "/etc/node-a.txt"
content = "node A"
mode = "0640"
owner = "alice"
[update]
group = "workers"
strategy = "immediate"
"#,
        key_a.public
    );
    let config_path = keys.path().join("node-a.toml");
    std::fs::write(&config_path, &config)?;
    let script = guest::provision_script(&[
        ("NODE_HOST", "node-a"),
        ("NODE_USER", "alice"),
        ("NODE_KEY_FP", &key_a.fingerprint),
        ("NODE_FILE", "/etc/node-a.txt"),
        ("NODE_FILE_TEXT", "node A"),
        ("NODE_FILE_STAT", "640 alice"),
        ("NODE_SOURCE", "credential hull.node"),
        ("NODE_STATIC", "10.0.2.15/24"),
        ("NODE_UPDATE", "group = \"workers\""),
        ("NODE_SYSEXT", "hello"),
        ("NODE_DISK", "1"),
    ]);
    let a = boot_node(
        "provision-a",
        &report.image,
        arch,
        &script,
        &NodeOptions {
            config: Some(config_path),
            disk_size: Some(DISK),
            ..NodeOptions::default()
        },
        "alice",
        &key_a,
        Some(&wrong),
    )?;
    a.outcome.require(&[
        "provision-unit",
        "hostname",
        "user-key",
        "file",
        "static-address",
        "update-settings",
        "sysext-placed",
        "sysext-binary-runs",
        "status-provision",
        "sshd",
        "ssh-login",
        "disk-size",
        "root-fs-size",
        "root-part-size",
        "esp-size",
        "unit-systemd-repart.service",
        "unit-systemd-growfs-root.service",
        "gpt-backup-at-end",
        "usr-still-readonly",
    ])?;
    grew_to_the_disk(&a.outcome, &report.image)?;
    ensure!(
        a.remote_hostname == "node-a",
        "ssh to A answered {:?}",
        a.remote_hostname
    );
    ensure!(
        a.wrong_key_refused.contains("Permission denied"),
        "the wrong key was not refused: {}",
        a.wrong_key_refused
    );

    // Node B: a NoCloud seed, with one key hull does not support.
    let user_data = format!(
        "#cloud-config\nhostname: node-b\nusers:\n  - name: bob\n    ssh_authorized_keys:\n      - {}\n\
         write_files:\n  - path: /var/lib/node-b.txt\n    content: node B\n    permissions: '0600'\n    owner: bob:bob\n\
         packages:\n  - nginx\n",
        key_b.public
    );
    let user_data_path = keys.path().join("user-data");
    std::fs::write(&user_data_path, &user_data)?;
    let script = guest::provision_script(&[
        ("NODE_HOST", "node-b"),
        ("NODE_USER", "bob"),
        ("NODE_KEY_FP", &key_b.fingerprint),
        ("NODE_FILE", "/var/lib/node-b.txt"),
        ("NODE_FILE_TEXT", "node B"),
        ("NODE_FILE_STAT", "600 bob"),
        ("NODE_SOURCE", "NoCloud seed"),
        ("NODE_UNKNOWN", "packages"),
    ]);
    let b = boot_node(
        "provision-b",
        &report.image,
        arch,
        &script,
        &NodeOptions {
            cloud_init: Some(user_data_path),
            ..NodeOptions::default()
        },
        "bob",
        &key_b,
        None,
    )?;
    b.outcome.require(&[
        "provision-unit",
        "hostname",
        "user-key",
        "file",
        "unknown-key",
        "status-provision",
        "sshd",
        "ssh-login",
    ])?;
    ensure!(
        b.remote_hostname == "node-b",
        "ssh to B answered {:?}",
        b.remote_hostname
    );
    // The console names the unsupported key too, not only the journal.
    // (Read as bytes: a serial console carries escape sequences and, now
    // and then, bytes that are not UTF-8.)
    let console = std::fs::read(&b.outcome.log)
        .with_context(|| format!("reading {}", b.outcome.log.display()))?;
    let console = String::from_utf8_lossy(&console);
    ensure!(
        console.contains("packages is not supported: not applied"),
        "the console of B does not name the unsupported key (log {})",
        b.outcome.log.display()
    );
    Ok(())
}

/// The qcow2 `[image] formats` writes (formats::convert, as `hull build`
/// calls it) holds the same disk as the raw image.
fn qcow2_is_the_same_disk(image: &Path) -> Result<()> {
    let dir = tempfile::tempdir_in(image.parent().context("the image has no folder")?)?;
    let raw = dir.path().join("node.raw");
    std::fs::hard_link(image, &raw).with_context(|| format!("linking {}", image.display()))?;
    let started = Instant::now();
    let qcow2 = formats::convert(&raw, ImageFormat::Qcow2)?;
    Cmd::new("qemu-img")
        .args(["compare", "-q", "-f", "raw", "-F", "qcow2"])
        .arg(&raw)
        .arg(&qcow2.path)
        .run()
        .context("the qcow2 differs from the raw image")?;
    eprintln!(
        "{} ({} MiB): the same disk as the raw image, converted and compared in {:.0} s",
        qcow2.path.display(),
        qcow2.size >> 20,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Node A's root grew to its 10 GiB disk at boot, and its ESP kept the
/// size it has in `image`.
fn grew_to_the_disk(o: &Outcome, image: &Path) -> Result<()> {
    let num = |name: &str| -> Result<u64> {
        let d = o.detail(name).unwrap_or_default();
        d.trim()
            .parse()
            .with_context(|| format!("{name}: {d:?} is not a number"))
    };
    let (disk, root_fs, root_part, esp) = (
        num("disk-size")?,
        num("root-fs-size")?,
        num("root-part-size")?,
        num("esp-size")?,
    );
    ensure!(disk == DISK, "A sees a disk of {disk} bytes, not {DISK}");
    ensure!(
        root_fs > 9 * GIB && root_part > 9 * GIB,
        "A's root did not grow to the 10 GiB disk: partition {root_part} bytes, file system {root_fs} bytes"
    );
    let esp_before = esp_bytes(image)?;
    ensure!(
        esp == esp_before,
        "the ESP changed size: {esp_before} bytes in the image, {esp} in A"
    );
    Ok(())
}

/// Bytes of the ESP (GPT entry 1, as hull writes it) of `disk`.
fn esp_bytes(disk: &Path) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(disk).with_context(|| format!("opening {}", disk.display()))?;
    let mut header = [0u8; 92];
    f.read_exact_at(&mut header, 512)?;
    ensure!(
        &header[..8] == b"EFI PART",
        "{}: no GPT header at LBA 1",
        disk.display()
    );
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let entries = u64_at(&header, 72);
    let entry_size = u32::from_le_bytes(header[84..88].try_into().unwrap()) as u64;
    let mut esp = vec![0u8; entry_size as usize];
    f.read_exact_at(&mut esp, entries * 512)?;
    Ok((u64_at(&esp, 40) - u64_at(&esp, 32) + 1) * 512)
}

/// An ed25519 key pair made for the test.
struct Key {
    private: PathBuf,
    public: String,
    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    fingerprint: String,
}

fn keygen(dir: &Path, name: &str) -> Result<Key> {
    let private = dir.join(name);
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("hull-test-{name}"))
        .arg("-f")
        .arg(&private))?;
    let public = std::fs::read_to_string(private.with_extension("pub"))?
        .trim()
        .to_string();
    let fp = run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(private.with_extension("pub")))?;
    let fingerprint = fp
        .split_whitespace()
        .nth(1)
        .context("ssh-keygen -l printed no fingerprint")?
        .to_string();
    Ok(Key {
        private,
        public,
        fingerprint,
    })
}

/// Runs `cmd`; its stdout, or an error with its stderr.
fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ssh` as the harness runs it: batch mode, only this key, no known hosts.
fn ssh(port: u16, user: &str, key: &Path, remote: &str) -> Command {
    let mut c = Command::new("ssh");
    c.args(["-F", "/dev/null", "-p", &port.to_string(), "-i"])
        .arg(key)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "PreferredAuthentications=publickey",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg(format!("{user}@127.0.0.1"))
        .arg(remote);
    c
}

struct Node {
    outcome: Outcome,
    remote_hostname: String,
    /// What ssh said with the wrong key.
    wrong_key_refused: String,
}

/// Boots one node with `script` and the node options, and meanwhile logs
/// in as `user` with `key` (first, when given, failing with `wrong`).
#[allow(clippy::too_many_arguments)]
fn boot_node(
    name: &str,
    image: &Path,
    arch: hull::manifest::Arch,
    script: &str,
    opts: &NodeOptions,
    user: &str,
    key: &Key,
    wrong: Option<&Key>,
) -> Result<Node> {
    let port = free_port()?;
    let mut boot = Boot::new(name, image, arch)?.check_script(script);
    let _files = node_run::prepare(boot.spec_mut(), opts)?;
    boot.spec_mut().ssh_port = Some(port);
    let limit = boot.current_timeout();
    let done = Arc::new(Mutex::new(false));
    let done_in_thread = done.clone();
    let qemu = std::thread::spawn(move || {
        let r = boot.run();
        *done_in_thread.lock().unwrap() = true;
        r
    });

    let start = Instant::now();
    let mut remote_hostname = String::new();
    let mut wrong_key_refused = String::new();
    let mut last = String::new();
    // Until the right key gets in: sshd comes up late in a TCG boot.
    while start.elapsed() < limit && !*done.lock().unwrap() {
        let out = ssh(port, user, &key.private, "hostname").output()?;
        if out.status.success() {
            remote_hostname = String::from_utf8_lossy(&out.stdout).trim().to_string();
            break;
        }
        last = String::from_utf8_lossy(&out.stderr).trim().to_string();
        std::thread::sleep(Duration::from_secs(5));
    }
    if remote_hostname.is_empty() {
        eprintln!("[{name}] no SSH login as {user}; ssh said: {last}");
    } else {
        eprintln!(
            "[{name}] logged in as {user} over SSH after {} s",
            start.elapsed().as_secs()
        );
        if let Some(w) = wrong {
            let out = ssh(port, user, &w.private, "true").output()?;
            wrong_key_refused = if out.status.success() {
                "the wrong key logged in".into()
            } else {
                String::from_utf8_lossy(&out.stderr).trim().to_string()
            };
            eprintln!("[{name}] the wrong key: {wrong_key_refused}");
        }
        // Tells the guest's check that the harness got in: it powers off.
        let out = ssh(port, user, &key.private, "id -un > ~/.harness-ssh-ok").output()?;
        ensure!(
            out.status.success(),
            "ssh {user}@node: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let outcome = qemu
        .join()
        .map_err(|_| anyhow::anyhow!("the QEMU thread panicked"))??;
    eprintln!("{}", outcome.summary());
    Ok(Node {
        outcome,
        remote_hostname,
        wrong_key_refused,
    })
}

/// A TCP port free on 127.0.0.1 right now.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
