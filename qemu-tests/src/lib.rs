//! Boot tests: build an image once, boot it in QEMU, and read what a check
//! script inside the guest printed on the serial console.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use hull_qemu_tests::{build, guest, Boot};
//! let report = build("manifests/minimal.toml")?;
//! let outcome = Boot::new("minimal", &report.image, hull_qemu_tests::report_arch(&report)?)?
//!     .check_script(guest::BOOT_CHECK)
//!     .expect_boots(2)
//!     .run()?;
//! outcome.require(&["deployment", "var-persists"])?;
//! # Ok(()) }
//! ```
//!
//! The check script travels as systemd credentials ([`guest`]), so the image
//! is not modified, and QEMU runs on a snapshot of it. The serial console goes
//! to `$HULL_TEST_LOGS/<test>-<n>.log` (default `target/qemu-logs/`), which
//! is kept for CI to show. [`Boot::run`] follows that log ([`console`]) and
//! returns when the guest powers off; it fails, with the last lines of the
//! console, on a kernel panic, emergency mode, a timeout, or QEMU exiting
//! before the last `HULL-CHECK-DONE` marker. Failed checks do not fail the
//! run: the test asserts on the [`Outcome`].
//!
//! Environment: `HULL_QEMU_TESTS=1` enables the boot tests ([`enabled`]);
//! `HULL_TEST_OUT` is the build's output directory (default `out/test`);
//! `HULL_TEST_LOGS` the log directory; `HULL_TEST_TIMEOUT` the limit per boot
//! in seconds (default 600 under TCG, 180 under KVM); `HULL_TEST_ACCEL=kvm`
//! opts into KVM (it hangs stock kernels on some hosts).

pub mod console;
pub mod esp_tear;
pub mod fleet;
pub mod guest;
pub mod nginx;
pub mod registry;
pub mod updates;

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hull::build::pipeline::{run_build, BuildOptions, BuildReport};
use hull::manifest::Arch;
use hull::qemu::{Accel, Firmware, RunSpec, Serial};

pub use console::{Check, Console, Event};

/// The limit per boot under TCG: from QEMU's start to the first
/// `HULL-CHECK-DONE`, and from each to the next one or to the poweroff.
pub const DEFAULT_TIMEOUT_TCG: Duration = Duration::from_secs(600);
/// The same under KVM.
pub const DEFAULT_TIMEOUT_KVM: Duration = Duration::from_secs(180);
/// How long the console is still read after a fatal line (for the panic's trace).
const FATAL_GRACE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(250);
const HEARTBEAT: Duration = Duration::from_secs(60);

/// The workspace root (the parent of qemu-tests/).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("qemu-tests lives in the workspace")
        .to_path_buf()
}

/// Whether a boot test may run. Every boot test is `#[ignore]`d with the
/// reason, so a plain `cargo test` lists it as ignored, never as passed;
/// run on purpose (`--ignored`, as qemu-tests/run-tests.sh does) it needs
/// `HULL_QEMU_TESTS=1` too, and fails rather than pass without it.
///
/// Panics: when `HULL_QEMU_TESTS` is not `1`.
pub fn enabled(test: &str) -> bool {
    if std::env::var("HULL_QEMU_TESTS").as_deref() == Ok("1") {
        return true;
    }
    panic!(
        "{test} was asked to run, but HULL_QEMU_TESTS is not 1: it builds an image as root from the \
         Debian mirror and boots it in QEMU (qemu-tests/run-tests.sh sets it)"
    );
}

/// Where the tests build: `$HULL_TEST_OUT`, else `<workspace>/out/test`.
pub fn test_out() -> PathBuf {
    match std::env::var_os("HULL_TEST_OUT") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join("out/test"),
    }
}

/// Where serial logs go: `$HULL_TEST_LOGS`, else `<target>/qemu-logs`.
pub fn log_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HULL_TEST_LOGS").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|p| !p.is_empty()) {
        Some(t) => workspace_root().join(t),
        None => workspace_root().join("target"),
    };
    target.join("qemu-logs")
}

/// The hull binaries the test images carry as /usr/bin/hull, one per
/// architecture (the build picks by ELF header): `$HULL_AGENT`, else the
/// release build in the target directory (`cargo build --release -p hull`),
/// required; and `$HULL_AGENT_AARCH64`, else the aarch64 cross build
/// (`cargo build --release -p hull --target aarch64-unknown-linux-gnu`),
/// when present. qemu-tests/run-tests.sh builds both.
pub fn agents() -> Result<Vec<PathBuf>> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    };
    let native = var("HULL_AGENT").unwrap_or_else(|| target.join("release/hull"));
    if !native.is_file() {
        bail!(
            "{} is missing: build the on-host agent first (cargo build --release -p hull) or set HULL_AGENT",
            native.display()
        );
    }
    let mut agents = vec![native];
    let cross = var("HULL_AGENT_AARCH64")
        .unwrap_or_else(|| target.join("aarch64-unknown-linux-gnu/release/hull"));
    if cross.is_file() {
        agents.push(cross);
    }
    Ok(agents)
}

/// `hull build`'s options as the tests use them: `manifest` into `out`, for
/// this machine's architecture, with the agents [`agents`] finds, unsigned,
/// no refresh, no rollout. Errors: no agent found.
pub fn build_options(manifest: &Path, out: &Path) -> Result<BuildOptions> {
    Ok(BuildOptions {
        manifest: manifest.to_path_buf(),
        out: out.to_path_buf(),
        arch: None,
        refresh: false,
        agents: agents()?,
        sign_key: None,
        summary_lifetime: hull::repo::summary::DEFAULT_LIFETIME_SECS,
        rollout: None,
    })
}

/// Builds `manifest` (relative to the workspace) into [`test_out`] and
/// returns the report. A no-op when the image is up to date, so every test
/// shares one build; calls within a process are serialized.
pub fn build(manifest: &str) -> Result<BuildReport> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let opts = build_options(&workspace_root().join(manifest), &test_out())?;
    let start = Instant::now();
    eprintln!(
        "building {} into {}",
        opts.manifest.display(),
        opts.out.display()
    );
    let report =
        run_build(&opts).with_context(|| format!("building {manifest} for the boot tests"))?;
    eprintln!(
        "built {} (commit {}, {}) in {:.0} s",
        report.image.display(),
        report.commit,
        if report.up_to_date {
            "up to date"
        } else {
            "rebuilt"
        },
        start.elapsed().as_secs_f64()
    );
    Ok(report)
}

/// A system extension of Debian's `hello` (a package manifests/minimal.toml
/// lacks) for `arch`, made by `hull sysext` into [`test_out`]: the extension
/// provision's node A gets through its config.
pub fn hello_sysext(arch: Arch) -> Result<hull::build::sysext::SysextReport> {
    hull::build::sysext::build(&hull::build::sysext::SysextSpec {
        manifest: workspace_root().join("manifests/minimal.toml"),
        name: "hello".into(),
        packages: vec!["hello".into()],
        dir: None,
        out: test_out(),
        arch: Some(arch),
    })
    .context("building the hello system extension")
}

/// The architecture a build report names.
pub fn report_arch(report: &BuildReport) -> Result<Arch> {
    match report.arch.as_str() {
        "x86_64" => Ok(Arch::X86_64),
        "aarch64" => Ok(Arch::Aarch64),
        other => bail!("build report names an unknown architecture {other:?}"),
    }
}

/// `<dir>/<test>-<n>.log`, `n` counting the boots of `test` in this process.
fn next_log_path(dir: &Path, test: &str) -> PathBuf {
    static COUNTS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);
    let safe: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let n = counts
        .get_or_insert_with(HashMap::new)
        .entry(safe.clone())
        .or_insert(0);
    *n += 1;
    dir.join(format!("{safe}-{n}.log"))
}

/// One QEMU run of an image with a check script, built up then [`Boot::run`].
#[derive(Debug, Clone)]
pub struct Boot {
    name: String,
    spec: RunSpec,
    timeout: Duration,
    final_boot: u32,
    fatal_patterns: Vec<String>,
    cut: Option<(String, Duration)>,
}

impl Boot {
    /// A boot of `image` named `name` (the log's name), with `hull run`'s
    /// defaults: snapshot, no network, TCG unless `HULL_TEST_ACCEL=kvm`.
    pub fn new(name: &str, image: impl Into<PathBuf>, arch: Arch) -> Result<Boot> {
        let mut spec = RunSpec::new(image, arch, Firmware::find(arch)?);
        spec.accel = match std::env::var("HULL_TEST_ACCEL").as_deref() {
            Err(_) | Ok("") | Ok("tcg") => Accel::Tcg,
            Ok("kvm") => Accel::Kvm,
            Ok(other) => bail!("HULL_TEST_ACCEL={other}: expected tcg or kvm"),
        };
        let timeout = match std::env::var("HULL_TEST_TIMEOUT") {
            Ok(s) if !s.is_empty() => Duration::from_secs(
                s.parse()
                    .with_context(|| format!("HULL_TEST_TIMEOUT={s}: expected seconds"))?,
            ),
            _ if spec.accel == Accel::Kvm => DEFAULT_TIMEOUT_KVM,
            _ => DEFAULT_TIMEOUT_TCG,
        };
        Ok(Boot {
            name: name.to_string(),
            spec,
            timeout,
            final_boot: 1,
            fatal_patterns: console::FATAL_PATTERNS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            cut: None,
        })
    }

    /// Runs `script` in the guest after multi-user.target ([`guest`]).
    pub fn check_script(mut self, script: &str) -> Boot {
        self.spec
            .credentials
            .extend(guest::check_credentials(script));
        self
    }

    /// Passes one more systemd credential to the guest.
    pub fn credential(mut self, name: &str, value: impl Into<Vec<u8>>) -> Boot {
        self.spec.credentials.push((name.to_string(), value.into()));
        self
    }

    /// The run succeeds once the guest printed `HULL-CHECK-DONE boot=<n>` and
    /// powered off (default 1).
    pub fn expect_boots(mut self, n: u32) -> Boot {
        self.final_boot = n;
        self
    }

    /// The limit per boot: from QEMU's start to the first `HULL-CHECK-DONE`,
    /// and from each to the next one or to the poweroff.
    pub fn timeout(mut self, limit: Duration) -> Boot {
        self.timeout = limit;
        self
    }

    /// The limit per boot in force (default, or from `HULL_TEST_TIMEOUT`).
    pub fn current_timeout(&self) -> Duration {
        self.timeout
    }

    /// One more console substring that fails the boot (case-insensitive).
    pub fn fatal_pattern(mut self, pattern: &str) -> Boot {
        self.fatal_patterns.push(pattern.to_string());
        self
    }

    /// Pulls the plug: `delay` after the console first shows `pattern`,
    /// QEMU is killed (SIGKILL, no shutdown, nothing flushed by the guest).
    /// The run then succeeds if the cut happened, whatever the markers say.
    pub fn cut_on(mut self, pattern: &str, delay: Duration) -> Boot {
        self.cut = Some((pattern.to_string(), delay));
        self
    }

    /// The QEMU settings, for what the builder has no method for (memory,
    /// CPUs, an SSH port, `snapshot = false` on a scratch copy, ...).
    pub fn spec_mut(&mut self) -> &mut RunSpec {
        &mut self.spec
    }

    /// Boots, follows the console until QEMU exits, and returns what the
    /// guest reported. Errors carry the last lines of the console.
    ///
    /// A boot on a snapshot that died (QEMU exited, or a fatal console line
    /// such as a kernel panic) before the guest printed any `HULL-CHECK`
    /// line is run once more, on the same unchanged image: under TCG such a
    /// death has been seen once in the aarch64 test's first seconds, and a
    /// second death fails the test. Every retry is said on stderr, with the
    /// first try's error, and recorded in `<log dir>/boot-retries.tsv`,
    /// which qemu-tests/run-tests.sh prints at the end of a run.
    pub fn run(self) -> Result<Outcome> {
        let failure = match self.run_once()? {
            Ok(outcome) => return Ok(outcome),
            Err(failure) => failure,
        };
        let retry = failure.early && self.spec.snapshot && self.cut.is_none();
        if !retry {
            bail!(failure.message);
        }
        let first_line = failure
            .message
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        eprintln!(
            "[{}] RETRY: the first try died before any check; booting again. It said:\n{}",
            self.name, failure.message
        );
        record_retry(&self.name, self.spec.arch, &first_line);
        match self.run_once()? {
            Ok(outcome) => Ok(outcome),
            Err(second) => bail!("{}\n(a second try, after: {first_line})", second.message),
        }
    }

    /// One boot: `Err` inside when the guest's run failed, with whether it
    /// failed before any `HULL-CHECK` line; the outer error is the
    /// harness's own (a log it cannot write, QEMU that does not start).
    fn run_once(&self) -> Result<std::result::Result<Outcome, RunFailure>> {
        let log = next_log_path(&log_dir(), &self.name);
        let mut spec = self.spec.clone();
        spec.serial = Serial::File(log.clone());
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut reader = File::open(&log).with_context(|| format!("opening {}", log.display()))?;

        let tag = format!("[{}]", self.name);
        eprintln!(
            "{tag} booting {} ({}, {}), serial log {}",
            spec.image.display(),
            spec.arch,
            spec.accel.as_str(),
            log.display()
        );
        let (child, _vars) = hull::qemu::spawn(&spec, Stdio::null(), Stdio::piped())?;
        let mut qemu = Qemu::new(child);
        let start = Instant::now();
        let mut console = Console::with_fatal_patterns(&self.fatal_patterns);
        let mut buf = Vec::new();
        let mut fatal_at: Option<Instant> = None;
        // The timeout runs from the start, then from each HULL-CHECK-DONE.
        let mut progress = start;
        let mut next_heartbeat = HEARTBEAT;
        // The console text not yet searched for the cut pattern (kept short).
        let mut recent = String::new();
        let mut cut_seen: Option<Instant> = None;

        let end = loop {
            buf.clear();
            reader
                .read_to_end(&mut buf)
                .with_context(|| format!("reading {}", log.display()))?;
            for event in console.feed(&buf) {
                report_event(&tag, start.elapsed(), &event);
                record_boot_time(&self.name, spec.arch, &event);
                if let Event::Done(_) = event {
                    progress = Instant::now();
                }
            }
            if let Some((pattern, delay)) = &self.cut {
                if cut_seen.is_none() {
                    recent.push_str(&String::from_utf8_lossy(&buf));
                    if recent.contains(pattern.as_str()) {
                        cut_seen = Some(Instant::now());
                        eprintln!(
                            "{tag} saw {pattern:?}: cutting power in {} ms",
                            delay.as_millis()
                        );
                    } else if recent.len() > 8192 {
                        // Keep the last 4 KiB, cut at a character boundary:
                        // the console carries multi-byte characters ("…").
                        let mut cut = recent.len() - 4096;
                        while !recent.is_char_boundary(cut) {
                            cut += 1;
                        }
                        recent.drain(..cut);
                    }
                }
                if cut_seen.is_some_and(|t| t.elapsed() >= *delay) {
                    qemu.kill();
                    break End::Cut;
                }
            }
            if console.fatal.is_some() && fatal_at.is_none() {
                fatal_at = Some(Instant::now());
            }
            if let Some(status) = qemu.try_wait()? {
                break End::Exited(status);
            }
            if fatal_at.is_some_and(|t| t.elapsed() >= FATAL_GRACE) {
                break End::Fatal;
            }
            if progress.elapsed() >= self.timeout {
                break End::Timeout(self.timeout);
            }
            if start.elapsed() >= next_heartbeat {
                next_heartbeat += HEARTBEAT;
                let last: String = console
                    .last_line()
                    .unwrap_or_default()
                    .chars()
                    .take(160)
                    .collect();
                eprintln!(
                    "{tag} {:>4} s, still running; console: {last}",
                    start.elapsed().as_secs()
                );
            }
            std::thread::sleep(POLL);
        };
        qemu.stop();
        buf.clear();
        reader.read_to_end(&mut buf).ok();
        for event in console.feed(&buf).into_iter().chain(console.finish()) {
            report_event(&tag, start.elapsed(), &event);
            record_boot_time(&self.name, spec.arch, &event);
        }
        let stderr = qemu.stderr();
        let elapsed = start.elapsed();

        if let Err(why) = judge(&console, self.final_boot, &end) {
            let mut msg = format!(
                "boot {}: {why} (after {} s)\nserial log: {}",
                self.name,
                elapsed.as_secs(),
                log.display()
            );
            if !stderr.trim().is_empty() {
                msg.push_str(&format!("\nQEMU stderr: {}", stderr.trim()));
            }
            msg.push_str(&format!(
                "\n--- last {} lines of the console ---\n{}",
                console::TAIL_LINES,
                console.tail().join("\n")
            ));
            let early = console.checks.is_empty()
                && console.done_boots.is_empty()
                && matches!(end, End::Exited(_) | End::Fatal);
            return Ok(Err(RunFailure {
                message: msg,
                early,
            }));
        }
        eprintln!("{tag} guest powered off after {} s", elapsed.as_secs());
        if matches!(end, End::Cut) {
            eprintln!("{tag} power cut after {} s", elapsed.as_secs());
        }
        Ok(Ok(Outcome {
            cut: matches!(end, End::Cut),
            checks: console.checks,
            done_boots: console.done_boots,
            warnings: console.warnings,
            log,
            elapsed,
        }))
    }
}

/// A boot the harness judged failed ([`Boot::run`]).
struct RunFailure {
    /// The error, with the console's last lines.
    message: String,
    /// QEMU exited or a fatal line came before the guest printed any
    /// `HULL-CHECK` line.
    early: bool,
}

/// Appends `boot name, architecture, the first try's error` to
/// `<log dir>/boot-retries.tsv`.
fn record_retry(name: &str, arch: Arch, why: &str) {
    append_row("boot-retries.tsv", &[name, arch.as_str(), why]);
}

/// Appends one tab-separated row to `<log dir>/<file>`; a failure to write
/// is a warning (the tables are a report, not a check).
fn append_row(file: &str, fields: &[&str]) {
    let path = log_dir().join(file);
    let line = format!("{}\n", fields.join("\t"));
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    if let Err(e) = written {
        eprintln!("warning: writing {}: {e}", path.display());
    }
}

fn report_event(tag: &str, at: Duration, event: &Event) {
    let secs = at.as_secs();
    match event {
        Event::Check(c) => eprintln!(
            "{tag} {secs:>4} s  {} {}  {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.name,
            c.detail
        ),
        Event::Done(n) => eprintln!("{tag} {secs:>4} s  boot {n} done"),
        Event::Warning(w) => eprintln!("{tag} {secs:>4} s  warning: {w}"),
        Event::Fatal(f) => eprintln!("{tag} {secs:>4} s  FATAL: {f}"),
    }
}

/// Appends a `boot-time` check (systemd-analyze's time to multi-user.target,
/// printed by every check script through check-lib.sh) to
/// `<log dir>/boot-times.tsv` as `boot name, architecture, what systemd-analyze
/// said`; qemu-tests/run-tests.sh prints the table when the run ends.
fn record_boot_time(name: &str, arch: Arch, event: &Event) {
    let Event::Check(c) = event else { return };
    if c.name != "boot-time" {
        return;
    }
    append_row("boot-times.tsv", &[name, arch.as_str(), &c.detail]);
}

/// How a run ended.
#[derive(Debug)]
enum End {
    Exited(ExitStatus),
    Fatal,
    Timeout(Duration),
    /// Killed on purpose by [`Boot::cut_on`].
    Cut,
}

/// Whether a run that ended so, with this console, succeeded.
fn judge(console: &Console, final_boot: u32, end: &End) -> Result<(), String> {
    if let Some(line) = &console.fatal {
        return Err(format!("the boot failed: {line}"));
    }
    let done = console.done_boots.contains(&final_boot);
    let seen = || {
        if console.done_boots.is_empty() && console.checks.is_empty() {
            "no HULL-CHECK line at all: the check unit never ran (credentials not imported? \
             boot stuck before multi-user.target?)"
                .to_string()
        } else {
            format!(
                "{} checks, HULL-CHECK-DONE for boots {:?}",
                console.checks.len(),
                console.done_boots
            )
        }
    };
    match end {
        End::Cut => Ok(()),
        End::Fatal => Err("the boot failed".into()),
        End::Timeout(limit) if done => Err(format!(
            "the guest printed HULL-CHECK-DONE boot={final_boot} but did not power off within {} s",
            limit.as_secs()
        )),
        End::Timeout(limit) => Err(format!(
            "timed out: {} s without the next HULL-CHECK-DONE (expecting up to boot={final_boot}); so far: {}",
            limit.as_secs(),
            seen()
        )),
        End::Exited(status) if !status.success() => Err(format!("QEMU failed ({status})")),
        End::Exited(_) if !done => Err(format!(
            "QEMU exited (the guest powered off) before HULL-CHECK-DONE boot={final_boot}; so far: {}",
            seen()
        )),
        End::Exited(_) => Ok(()),
    }
}

/// The QEMU process, killed (by its pid) if still running when dropped.
struct Qemu {
    child: Child,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Qemu {
    fn new(mut child: Child) -> Qemu {
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = pipe.read_to_string(&mut s);
                s
            })
        });
        Qemu { child, stderr }
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.child.try_wait().context("waiting for QEMU")
    }

    /// SIGKILL: the power cut. QEMU gets no chance to flush anything the
    /// guest has not flushed itself.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// What QEMU wrote to stderr (after [`Qemu::stop`]).
    fn stderr(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the guest reported over a successful run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// True when the run ended by a power cut ([`Boot::cut_on`]).
    pub cut: bool,
    /// Every `HULL-CHECK` line, in order.
    pub checks: Vec<Check>,
    /// The `n` of every `HULL-CHECK-DONE boot=<n>`, in order.
    pub done_boots: Vec<u32>,
    /// `Failed to start` lines and malformed markers.
    pub warnings: Vec<String>,
    /// The serial log.
    pub log: PathBuf,
    pub elapsed: Duration,
}

impl Outcome {
    /// The last check of that name.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().rev().find(|c| c.name == name)
    }

    /// The detail of the last check of that name.
    pub fn detail(&self, name: &str) -> Option<&str> {
        self.check(name).map(|c| c.detail.as_str())
    }

    pub fn failed(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.ok).collect()
    }

    /// Ok when every check passed and each of `expected` was reported;
    /// otherwise an error listing what failed and what is missing.
    pub fn require(&self, expected: &[&str]) -> Result<()> {
        let missing: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|n| self.check(n).is_none())
            .collect();
        let failed = self.failed();
        if missing.is_empty() && failed.is_empty() {
            return Ok(());
        }
        let mut msg = String::from("guest checks did not pass:");
        for c in failed {
            msg.push_str(&format!("\n  FAIL {}: {}", c.name, c.detail));
        }
        for n in missing {
            msg.push_str(&format!("\n  MISSING {n}: the guest never reported it"));
        }
        for w in &self.warnings {
            msg.push_str(&format!("\n  warning: {w}"));
        }
        msg.push_str(&format!("\nserial log: {}", self.log.display()));
        bail!(msg)
    }

    /// One line per check, for the test's output.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} checks over boots {:?} in {} s (log {})",
            self.checks.len(),
            self.done_boots,
            self.elapsed.as_secs(),
            self.log.display()
        );
        for c in &self.checks {
            s.push_str(&format!(
                "\n  {} {}: {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn exited(code: i32) -> End {
        End::Exited(ExitStatus::from_raw(code << 8))
    }

    #[test]
    fn judge_success_needs_the_final_marker_and_poweroff() {
        let c =
            Console::parse("HULL-CHECK a ok x\nHULL-CHECK-DONE boot=1\nHULL-CHECK-DONE boot=2\n");
        assert_eq!(judge(&c, 2, &exited(0)), Ok(()));
        let err = judge(&c, 3, &exited(0)).unwrap_err();
        assert!(err.contains("before HULL-CHECK-DONE boot=3"), "{err}");
        assert!(err.contains("boots [1, 2]"), "{err}");
    }

    #[test]
    fn judge_failures() {
        let nothing = Console::parse("BdsDxe: loading\n");
        let err = judge(&nothing, 1, &exited(0)).unwrap_err();
        assert!(err.contains("never ran"), "{err}");
        let err = judge(&nothing, 1, &End::Timeout(Duration::from_secs(600))).unwrap_err();
        assert!(err.contains("timed out: 600 s"), "{err}");
        let err = judge(&nothing, 1, &exited(1)).unwrap_err();
        assert!(err.contains("QEMU failed"), "{err}");

        let done = Console::parse("HULL-CHECK-DONE boot=1\n");
        let err = judge(&done, 1, &End::Timeout(Duration::from_secs(9))).unwrap_err();
        assert!(err.contains("did not power off"), "{err}");

        let panic = Console::parse("HULL-CHECK-DONE boot=1\nKernel panic - not syncing: oops\n");
        for end in [exited(0), End::Fatal] {
            let err = judge(&panic, 1, &end).unwrap_err();
            assert!(err.contains("Kernel panic - not syncing: oops"), "{err}");
        }
    }

    #[test]
    fn outcome_require() {
        let c = Console::parse(
            "HULL-CHECK a ok 1\nHULL-CHECK b fail broken\nFailed to start x.service\n",
        );
        let o = Outcome {
            cut: false,
            checks: c.checks,
            done_boots: c.done_boots,
            warnings: c.warnings,
            log: "/l/t-1.log".into(),
            elapsed: Duration::from_secs(1),
        };
        assert_eq!(o.detail("a"), Some("1"));
        let err = o.require(&["a", "b", "c"]).unwrap_err().to_string();
        assert!(err.contains("FAIL b: broken"), "{err}");
        assert!(err.contains("MISSING c"), "{err}");
        assert!(err.contains("Failed to start x.service"), "{err}");
        assert!(err.contains("/l/t-1.log"), "{err}");
        assert!(o.summary().contains("FAIL b: broken"));
    }

    #[test]
    fn log_paths_count_per_test() {
        let dir = Path::new("/logs");
        assert_eq!(
            next_log_path(dir, "paths a"),
            Path::new("/logs/paths-a-1.log")
        );
        assert_eq!(
            next_log_path(dir, "paths a"),
            Path::new("/logs/paths-a-2.log")
        );
        assert_eq!(
            next_log_path(dir, "paths_b"),
            Path::new("/logs/paths_b-1.log")
        );
    }

    /// A boot test run on purpose without HULL_QEMU_TESTS fails loudly
    /// instead of passing without doing anything.
    #[test]
    fn refuses_to_pass_without_the_variable() {
        if std::env::var("HULL_QEMU_TESTS").is_err() {
            let r = std::panic::catch_unwind(|| enabled("a-test"));
            let msg = r.unwrap_err();
            let msg = msg.downcast_ref::<String>().unwrap();
            assert!(msg.contains("a-test was asked to run"), "{msg}");
        }
    }
}
