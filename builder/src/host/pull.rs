//! The pull of an update's objects, bounded in what it may write.
//!
//! libostree bounds metadata objects and checks every object's checksum
//! once it has it, but a content object has no size bound while it streams
//! in, and libostree counts transferred bytes only as requests complete: a
//! server that sends one object without end would fill the disk (TUF's
//! "endless data"), and cancelling the pull's `GCancellable` does not stop a
//! transfer in progress. So the pull runs in a child process (`hull
//! pull-commit`, hidden from the help) that the agent watches: once the
//! child has written more than the signed `ostree.sizes` allow (its own
//! `wchar` in /proc/PID/io, so other writers on the same disk do not count),
//! it is killed and the update refused. A killed pull leaves only libostree's
//! staging directory, which its next transaction cleans up.

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

use crate::util::cmd::Cmd;

/// How often the watchdog looks at what the child wrote.
const TICK: Duration = Duration::from_millis(100);

/// What to pull.
#[derive(Debug, Clone, Copy)]
pub struct PullSpec<'a> {
    pub remote: &'a str,
    pub ostree_ref: &'a str,
    pub checksum: &'a str,
}

/// The most bytes a pull of objects of `archived` bytes as transferred and
/// `unpacked` bytes as stored may write: each object is written once as it
/// arrives (compressed) and once into the repository (unpacked), plus 10 %
/// and 16 MiB for what `ostree.sizes` does not list (the commit object,
/// detached metadata, libostree's own bookkeeping).
pub fn budget(archived: u64, unpacked: u64) -> u64 {
    let both = archived.saturating_add(unpacked);
    both.saturating_add(both / 10).saturating_add(16 << 20)
}

/// What a pull fetched, from libostree's progress at its end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PullStats {
    /// Objects fetched one by one (none when a delta carried them all).
    pub fetched: u64,
    /// Static delta parts fetched (0: the server had no delta from a
    /// commit this host holds, so objects came one by one).
    pub delta_parts: u64,
    /// Objects a delta left to be fetched on their own.
    pub delta_fallbacks: u64,
    /// Bytes transferred over HTTP, compressed as sent.
    pub bytes: u64,
}

impl PullStats {
    /// `fetched 3 objects, 2 delta parts, 1234 bytes`: for log lines.
    pub fn describe(&self) -> String {
        format!(
            "fetched {} object(s), {} delta part(s), {} bytes",
            self.fetched, self.delta_parts, self.bytes
        )
    }

    /// The stats `hull pull-commit` printed as the last line of its
    /// standard output, if any.
    pub fn from_output(stdout: &str) -> Option<PullStats> {
        stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l.trim()).ok())
    }
}

/// Pulls exactly `spec.checksum` into `repo`, in this process (what `hull
/// pull-commit` runs), through a static delta when the server's summary
/// lists one from a commit `repo` holds whole, else object by object.
pub fn pull_exact(repo: &ostree::Repo, spec: &PullSpec) -> Result<PullStats> {
    let opts = glib::VariantDict::new(None);
    opts.insert_value("refs", &vec![spec.ostree_ref.to_string()].to_variant());
    opts.insert_value(
        "override-commit-ids",
        &vec![spec.checksum.to_string()].to_variant(),
    );
    // Verified before the pull, in Rust: Debian's libostree has no ed25519 engine.
    opts.insert("disable-sign-verify", true);
    opts.insert("disable-sign-verify-summary", true);
    // Slow retrieval: libostree's curl fetcher gives up on a transfer below
    // 1000 bytes/s for 30 s (its defaults, made explicit), retrying twice.
    opts.insert("low-speed-limit-bytes", 1000u32);
    opts.insert("low-speed-time-seconds", 30u32);
    opts.insert("n-network-retries", 2u32);
    // The delta, when the server has one from a commit held here, is
    // applied first by hull (see `delta_apply` for why libostree's own
    // delta path is off); the pull then fetches what is still missing:
    // nothing but detached metadata after a delta, every object without.
    let applied = match super::delta_apply::apply(repo, spec.remote, spec.checksum) {
        Ok(a) => a,
        Err(e) => {
            log::warn!("{e:#}: fetching the objects one by one instead");
            None
        }
    };
    opts.insert("disable-static-deltas", true);
    let progress = ostree::AsyncProgress::new();
    repo.pull_with_options(
        spec.remote,
        &opts.end(),
        Some(&progress),
        gio::Cancellable::NONE,
    )
    .with_context(|| format!("pulling {} from remote {}", spec.checksum, spec.remote))?;
    // Runs its pending updates now, not in a later main loop on a freed object.
    progress.finish();
    let (parts, delta_bytes) = applied.map(|a| (a.parts, a.bytes)).unwrap_or((0, 0));
    Ok(PullStats {
        fetched: progress.uint("fetched").into(),
        delta_parts: parts + u64::from(progress.uint("fetched-delta-parts")),
        delta_fallbacks: progress.uint("fetched-delta-fallbacks").into(),
        bytes: delta_bytes + progress.uint64("bytes-transferred"),
    })
}

/// Pulls `spec` into the repository at `repo_dir` by running `agent
/// pull-commit` (a hull binary), killed once it has written more than
/// `budget` bytes.
///
/// Returns what it fetched (zeros if the child printed nothing).
///
/// Errors: the pull failed (its error), or took too much (refused).
pub fn pull_bounded(
    agent: &Path,
    repo_dir: &Path,
    spec: &PullSpec,
    budget: u64,
) -> Result<PullStats> {
    let cmd = Cmd::new(agent)
        .arg("pull-commit")
        .arg("--repo")
        .arg(repo_dir)
        .args([spec.remote, spec.ostree_ref, spec.checksum]);
    let bar = crate::util::progress::spinner(&format!(
        "pulling {}:{} ({})",
        spec.remote, spec.ostree_ref, spec.checksum
    ));
    let result = run_bounded(&cmd, budget);
    bar.finish_and_clear();
    match result {
        Ok(stdout) => Ok(PullStats::from_output(&stdout).unwrap_or_default()),
        Err(Bounded::Over(used)) => bail!(
            "pulling {}: the server sent more than the {budget} bytes its signed sizes allow \
             ({used} bytes written when it was stopped): refusing it; nothing was deployed",
            spec.checksum
        ),
        Err(Bounded::Failed(e)) => Err(e),
    }
}

/// Why a bounded command did not succeed.
#[derive(Debug)]
pub enum Bounded {
    /// It wrote more than its budget (bytes written when it was killed).
    Over(u64),
    /// It failed by itself.
    Failed(anyhow::Error),
}

/// Bytes process `pid` has written (`wchar` of /proc/PID/io: every write
/// and pwrite of all its threads, to files, pipes and sockets alike).
fn written(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Runs `cmd`, killing it once it has written more than `budget` bytes;
/// returns its standard output.
pub fn run_bounded(cmd: &Cmd, budget: u64) -> Result<String, Bounded> {
    let mut child = cmd
        .spawn(Stdio::piped(), Stdio::piped())
        .map_err(Bounded::Failed)?;
    let pid = child.id();
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut stdout = child.stdout.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let status = loop {
        // Read before reaping, while /proc/PID still exists.
        let used = written(pid).unwrap_or(0);
        if used > budget {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Bounded::Over(used));
        }
        if let Some(status) = child.try_wait().map_err(|e| Bounded::Failed(e.into()))? {
            break status;
        }
        std::thread::sleep(TICK);
    };
    let text = reader.join().unwrap_or_default();
    let out = out_reader.join().unwrap_or_default();
    if status.success() {
        return Ok(out);
    }
    // The child's own one-line error, without its "error: " prefix.
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim_start_matches("error: ");
    Err(Bounded::Failed(anyhow::anyhow!(
        "{last} (`{}` {status})",
        cmd.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_writes_more_than_its_budget_is_stopped() {
        let t = tempfile::tempdir().unwrap();
        let fill = t.path().join("fill");
        // Without end, a MiB at a time: only the watchdog ends it.
        let cmd = Cmd::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", fill.display()))
            .arg("bs=1M");
        let start = std::time::Instant::now();
        match run_bounded(&cmd, 32 << 20) {
            Err(Bounded::Over(used)) => assert!(used > 32 << 20, "{used}"),
            other => panic!("{other:?}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_command_within_its_budget_runs_to_its_end() {
        let t = tempfile::tempdir().unwrap();
        let cmd = Cmd::new("sh").arg("-c").arg(format!(
            "head -c 1000 /dev/zero > {}/small",
            t.path().display()
        ));
        run_bounded(&cmd, 32 << 20).unwrap();
        let cmd = Cmd::new("sh").arg("-c").arg(
            "echo starting; echo '{\"fetched\":3,\"delta-parts\":2,\"delta-fallbacks\":0,\"bytes\":99}'",
        );
        let out = run_bounded(&cmd, 32 << 20).unwrap();
        let stats = PullStats::from_output(&out).unwrap();
        assert_eq!((stats.fetched, stats.delta_parts, stats.bytes), (3, 2, 99));
        assert_eq!(
            stats.describe(),
            "fetched 3 object(s), 2 delta part(s), 99 bytes"
        );
        assert_eq!(PullStats::from_output("no stats"), None);
        let cmd = Cmd::new("sh")
            .arg("-c")
            .arg("echo 'error: no such remote' >&2; exit 3");
        match run_bounded(&cmd, 32 << 20) {
            Err(Bounded::Failed(e)) => {
                let e = e.to_string();
                assert!(
                    e.starts_with("no such remote") && e.contains("exit status: 3"),
                    "{e}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn budgets() {
        assert_eq!(budget(0, 0), 16 << 20);
        assert_eq!(budget(1000, 3000), 4400 + (16 << 20));
    }
}
