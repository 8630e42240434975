//! A real container registry (Debian's `docker-registry`) on 127.0.0.1 with
//! four tags of a small busybox image, signed and not, for the image trust
//! test (tests/signed_images.rs, docs/containers.md "Tests").
//!
//! The signer is the real one: Debian 12 has no sigstore signer (bookworm's
//! skopeo has sigstore disabled, cosign is trixie-only), so [`signing_tools`]
//! makes a small trixie root with mmdebstrap (skopeo, cosign,
//! busybox-static), once per test output directory, and the pushes run
//! `chroot TOOLS skopeo copy ...` against the registry on 127.0.0.1 (a chroot
//! shares the network namespace).
//!
//! The guest reaches the registry only through QEMU's restricted guestfwd,
//! at [`GUEST_REPO`]'s host; the signatures name that identity
//! (`--sign-identity`), since `matchRepository` compares the image's name as
//! the guest pulls it.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use hull::util::cmd::{require_program, Cmd};

/// The repository as the guest pulls it: 10.0.2.100:80 is QEMU's guestfwd
/// to the registry (`RunSpec::update_port`), the scope `10.0.2.100:80/hull`
/// of fixtures/signed.toml covers it.
pub const GUEST_REPO: &str = "10.0.2.100:80/hull/busybox";
/// The repository on the build machine.
const HOST_REPO: &str = "hull/busybox";
/// A repository outside the trusted scope, holding the unsigned image.
const ELSEWHERE_REPO: &str = "elsewhere/busybox";
/// The tags [`publish`] pushes, one image (one digest) each.
pub const TAGS: &[&str] = &["signed", "unsigned", "other-key", "tampered"];
/// The packages of the signing tool root (trixie).
const TOOL_PACKAGES: &str = "skopeo,cosign,busybox-static,ca-certificates";

/// The test-only key pair the test image trusts (fixtures/signing/README.md).
pub fn fixture_key_dir() -> PathBuf {
    crate::workspace_root().join("qemu-tests/fixtures/signing")
}

/// `<out>/signing-tools`: a trixie root with skopeo, cosign and
/// busybox-static, made by mmdebstrap into a temporary name and renamed,
/// so an interrupted run leaves nothing a later one would take for done;
/// reused when present. Needs root and the Debian mirror over HTTP.
pub fn signing_tools(out: &Path) -> Result<PathBuf> {
    let root = out.join("signing-tools");
    if root.join("usr/bin/skopeo").is_file() && root.join("bin/busybox").is_file() {
        eprintln!("signing tools: reusing {}", root.display());
        return Ok(root);
    }
    require_program("mmdebstrap", "mmdebstrap")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let tmp = out.join("signing-tools.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    let start = Instant::now();
    Cmd::new("mmdebstrap")
        .args(["--variant=apt", "--include", TOOL_PACKAGES, "trixie"])
        .arg(&tmp)
        .arg("http://deb.debian.org/debian")
        .run()
        .context("making the trixie signing tool root")?;
    // skopeo writes sigstore signatures as registry attachments only when
    // registries.d says so (as it reads them, on the guest).
    let regd = tmp.join("etc/containers/registries.d");
    std::fs::create_dir_all(&regd).with_context(|| format!("creating {}", regd.display()))?;
    std::fs::write(
        regd.join("hull-test.yaml"),
        "default-docker:\n  use-sigstore-attachments: true\n",
    )
    .with_context(|| format!("writing {}", regd.display()))?;
    std::fs::rename(&tmp, &root)
        .with_context(|| format!("renaming {} to {}", tmp.display(), root.display()))?;
    eprintln!(
        "signing tools: made {} in {:.0} s",
        root.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(root)
}

/// docker-registry serving on 127.0.0.1:`port`, its storage in a temp dir;
/// stopped when dropped.
pub struct Registry {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts the registry with its own configuration (listening on
    /// 127.0.0.1 only) and waits until it answers.
    pub fn serve() -> Result<Registry> {
        require_program("docker-registry", "docker-registry")?;
        let dir = tempfile::Builder::new().prefix("hull-registry").tempdir()?;
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .context("finding a free port")?
            .port();
        let conf = dir.path().join("config.yml");
        std::fs::write(
            &conf,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry")?;
        let mut r = Registry { port, child, dir };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = r.child.try_wait()? {
                bail!(
                    "docker-registry exited ({status}) before listening on 127.0.0.1:{port}: {}",
                    r.log()
                );
            }
            ensure!(
                start.elapsed() < Duration::from_secs(20),
                "docker-registry did not listen on 127.0.0.1:{port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("docker-registry on 127.0.0.1:{port}");
        Ok(r)
    }

    /// The registry's log so far (what the guest asked for).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What [`publish`] pushed: the manifest digest of each tag.
#[derive(Debug, Clone)]
pub struct Published {
    /// `(tag, sha256:...)`, in [`TAGS`]' order.
    pub digests: Vec<(String, String)>,
}

impl Published {
    pub fn digest(&self, tag: &str) -> Option<&str> {
        self.digests
            .iter()
            .find(|(t, _)| t == tag)
            .map(|(_, d)| d.as_str())
    }
}

/// Pushes the four tags of [`TAGS`] to the registry on 127.0.0.1:`port`,
/// each a one-layer image of busybox with a file naming the tag (so each has
/// its own digest, and signatures, stored per digest, do not mix):
///
/// - `signed`: signed with the fixture key ([`fixture_key_dir`]);
/// - `unsigned`: no signature;
/// - `other-key`: signed with a key made here (`skopeo generate-sigstore-key`);
/// - `tampered`: a changed layer, given the `signed` image's signature
///   (its `sha256-<digest>.sig` attachment copied onto the new digest): a
///   signature exists, but it names another manifest;
///
/// and the unsigned image again as `elsewhere/busybox:unsigned`, outside
/// the trusted scope.
pub fn publish(tools: &Path, port: u16) -> Result<Published> {
    let work_name = format!("hull-publish-{}", std::process::id());
    let work = tools.join(&work_name);
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = publish_in(tools, &work, &work_name, port);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn publish_in(tools: &Path, work: &Path, inside: &str, port: u16) -> Result<Published> {
    let chroot = |args: &[&str]| -> Result<String> {
        Cmd::new("chroot")
            .arg(tools)
            .args(args)
            .output_string()
            .map(|s| s.trim().to_string())
    };
    let w = |name: &str| format!("/{inside}/{name}");
    let keys = fixture_key_dir();
    for f in ["test-only.private", "test-only.passphrase"] {
        std::fs::copy(keys.join(f), work.join(f))
            .with_context(|| format!("copying {} into the tool root", keys.join(f).display()))?;
    }
    std::fs::write(
        work.join("other.passphrase"),
        "another-test-only-passphrase",
    )?;
    chroot(&[
        "skopeo",
        "generate-sigstore-key",
        "--output-prefix",
        &w("other"),
        "--passphrase-file",
        &w("other.passphrase"),
    ])?;

    let host = format!("127.0.0.1:{port}");
    let mut digests = Vec::new();
    for tag in TAGS {
        // The layer: /bin/busybox (static) and /hull-tag.
        let layer = work.join(format!("layer-{tag}"));
        std::fs::create_dir_all(layer.join("bin"))?;
        std::fs::copy(tools.join("bin/busybox"), layer.join("bin/busybox"))
            .context("copying busybox into the test image")?;
        std::fs::write(layer.join("hull-tag"), format!("{tag}\n"))?;
        chroot(&[
            "tar",
            "-C",
            &w(&format!("layer-{tag}")),
            "-cf",
            &w(&format!("layer-{tag}.tar")),
            ".",
        ])?;
        let mut copy: Vec<String> = vec!["skopeo".into(), "copy".into(), "--quiet".into()];
        copy.push("--dest-tls-verify=false".into());
        let key = match *tag {
            "signed" => Some(("test-only.private", "test-only.passphrase")),
            "other-key" => Some(("other.private", "other.passphrase")),
            _ => None,
        };
        if let Some((k, p)) = key {
            copy.extend([
                "--sign-by-sigstore-private-key".into(),
                w(k),
                "--sign-passphrase-file".into(),
                w(p),
                "--sign-identity".into(),
                format!("{GUEST_REPO}:{tag}"),
            ]);
        }
        copy.push(format!("tarball:{}", w(&format!("layer-{tag}.tar"))));
        copy.push(format!("docker://{host}/{HOST_REPO}:{tag}"));
        let copy: Vec<&str> = copy.iter().map(String::as_str).collect();
        chroot(&copy).with_context(|| format!("pushing the {tag} test image"))?;
        let digest = chroot(&[
            "skopeo",
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            &format!("docker://{host}/{HOST_REPO}:{tag}"),
        ])?;
        ensure!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "skopeo inspect gave {digest:?} for the {tag} test image, not a sha256 digest"
        );
        digests.push((tag.to_string(), digest));
    }
    let published = Published { digests };
    let sig_tag = |tag: &str| -> Result<String> {
        let d = published
            .digest(tag)
            .with_context(|| format!("no digest for {tag}"))?;
        Ok(format!("sha256-{}.sig", d.trim_start_matches("sha256:")))
    };
    // A copy from one place in the registry to another (`extra` before the
    // source and destination references).
    let within = |extra: &[&str], from: String, to: String| {
        let mut args = vec![
            "skopeo",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ];
        args.extend_from_slice(extra);
        let (from, to) = (
            format!("docker://{host}/{from}"),
            format!("docker://{host}/{to}"),
        );
        args.extend([from.as_str(), to.as_str()]);
        chroot(&args)
    };
    // Tampered: the good signature attached to the changed image's digest.
    within(
        &["--preserve-digests"],
        format!("{HOST_REPO}:{}", sig_tag("signed")?),
        format!("{HOST_REPO}:{}", sig_tag("tampered")?),
    )
    .context("attaching the signed image's signature to the tampered one")?;
    // Outside the trusted scope (`10.0.2.100:80/hull`): the default decides.
    within(
        &[],
        format!("{HOST_REPO}:unsigned"),
        format!("{ELSEWHERE_REPO}:unsigned"),
    )
    .context("pushing the test image outside the trusted scope")?;
    eprintln!("registry 127.0.0.1:{port}: pushed {:?}", published.digests);
    Ok(published)
}
