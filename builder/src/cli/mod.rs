//! The command line, parsed from an iterator so tests can drive it.
//!
//! Doc comments here are the `--help` text, written for a terminal, not for
//! rustdoc: `<arch>` and `[update]` stay as they read.
#![allow(
    rustdoc::invalid_html_tags,
    rustdoc::broken_intra_doc_links,
    rustdoc::bare_urls
)]

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::host::{self, Host, HostPaths};

use crate::build::pipeline::{run_builds, BuildOptions};
use crate::manifest::Arch;

/// Build minimal, immutable container-host OS images from one TOML manifest.
#[derive(Debug, Parser)]
#[command(name = "hull", version, about)]
pub struct Cli {
    /// Log more (repeat for debug output of every command run).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a manifest into an OSTree commit and a bootable disk image.
    Build(BuildArgs),
    /// Check a manifest and print it as hull understands it, composed and validated.
    Check(CheckArgs),
    /// Boot an image in QEMU on a throw-away overlay, serial console on this terminal.
    Run(crate::qemu::RunArgs),
    /// Make an ed25519 key pair for signing commits (FILE and FILE.pub).
    Keygen(KeygenArgs),
    /// On a host: show the deployments, the next boot and any rollback.
    Status(StatusArgs),
    /// On a host: fetch, verify and deploy the newest signed commit.
    Update(UpdateArgs),
    /// On a host: make the previous deployment the default for the next boot.
    Rollback(RollbackArgs),
    /// On a host: check that this boot is good (run by hull-health.service).
    Health(HealthArgs),
    /// On a host: make a rollback the boot loader did permanent (run early in
    /// boot by hull-reconcile.service).
    Reconcile,
    /// On a host: apply this node's settings from the credential hull.node
    /// or a NoCloud seed (run early in boot by hull-provision.service).
    Provision,
    /// On a host: pull one commit's objects (run by `hull update`, which
    /// bounds the disk it takes).
    #[command(hide = true)]
    PullCommit(PullCommitArgs),
    /// Renew a repository's signed summary: the publisher's statement of every
    /// ref's head, which hosts refuse once it expires.
    Publish(PublishArgs),
    /// List the open CVEs of an image's packages, from its SBOM and the
    /// Debian Security Tracker's JSON (docs/supply-chain.md).
    Scan(ScanArgs),
    /// Write MANIFEST's lock (MANIFEST with the extension .lock): the exact
    /// packages, versions and hashes `hull build` then installs.
    Lock(LockArgs),
    /// FleetLock: reboot coordination for a fleet (docs/updates.md).
    FleetLock(FleetLockArgs),
    /// Make a system extension (NAME.raw, EROFS) for a built image from Debian
    /// packages it lacks and/or a directory (docs/provisioning-images.md).
    Sysext(SysextArgs),
}

#[derive(Debug, clap::Args)]
pub struct FleetLockArgs {
    #[command(subcommand)]
    pub command: FleetLockCommand,
}

#[derive(Debug, Subcommand)]
pub enum FleetLockCommand {
    /// Serve the FleetLock protocol (POST /v1/pre-reboot, /v1/steady-state)
    /// with every group's semaphore in etcd, in airlock's layout; stateless,
    /// so several can run side by side.
    Serve(FleetLockServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct FleetLockServeArgs {
    /// An etcd v3 endpoint, e.g. http://127.0.0.1:2379; repeat it for each
    /// member of the cluster.
    #[arg(long = "etcd", value_name = "URL", required = true)]
    pub etcd: Vec<String>,
    /// The address to listen on, e.g. 0.0.0.0:3333 (port 0: a free one, printed).
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// How many nodes of a group may reboot at once, for a group whose
    /// semaphore does not exist yet in etcd (an existing one keeps its count).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub slots: u64,
    /// Time limit of each etcd request, e.g. 5s.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub etcd_timeout: std::time::Duration,
}

#[derive(Debug, clap::Args)]
pub struct LockArgs {
    /// The manifest to lock (e.g. manifests/minimal.toml → manifests/minimal.lock).
    pub manifest: PathBuf,
    /// Output directory whose cache the lock shares with `hull build`.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// Resolve every package against the mirror again and print what moved
    /// (package: old → new).
    #[arg(long)]
    pub update: bool,
}

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// A build's output directory (every build-<arch>.json in it), an SBOM
    /// file (.spdx.json) or, with --repo, a ref or commit checksum.
    pub target: String,
    /// The OSTree repository TARGET is a ref or commit of (e.g. out/repo):
    /// the SBOM the commit ships is scanned.
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// The Debian Security Tracker's JSON file, as published at
    /// https://security-tracker.debian.org/tracker/data/json.
    #[arg(long)]
    pub db: PathBuf,
    /// The Debian release to look CVEs up for (default: the one the SBOM's
    /// purls name, e.g. trixie).
    #[arg(long)]
    pub release: Option<String>,
    /// Exit non-zero when an open CVE has this urgency or a higher one
    /// (an unassigned urgency counts as high).
    #[arg(long, value_enum)]
    pub fail_on: Option<crate::build::scan::Urgency>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct PullCommitArgs {
    /// The repository to pull into (default: the host's, /sysroot/ostree/repo).
    #[arg(long, default_value = "/sysroot/ostree/repo")]
    pub repo: PathBuf,
    /// The remote to pull from.
    pub remote: String,
    /// The ref the commit is pulled for.
    pub ostree_ref: String,
    /// The commit, already verified by the caller.
    pub checksum: String,
}

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The OSTree repository (e.g. out/repo).
    pub repo: PathBuf,
    /// Secret key (from `hull keygen`) to sign the summary with: one the
    /// hosts trust ([update] keys).
    #[arg(long)]
    pub sign_key: PathBuf,
    /// How long the statement holds, e.g. 7d, 36h, 90m. Hosts refuse updates
    /// and `hull status` fails once it has passed without a renewal.
    #[arg(long, default_value = "7d", value_parser = crate::repo::summary::parse_lifetime)]
    pub expires: u64,
}

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where the secret key goes (mode 0600); the public key goes to FILE.pub.
    pub file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// Only say whether an update is available (its signature is checked).
    #[arg(long, conflicts_with = "download_only")]
    pub check: bool,
    /// Download and verify the update, but do not deploy it.
    #[arg(long)]
    pub download_only: bool,
    /// Accept a commit older than the booted one.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Take the update now, before this host's turn in its rollout wave.
    #[arg(long)]
    pub now: bool,
    /// Run as the update agent (hull-update.service): check, stage, then
    /// reboot as the image's strategy allows (docs/updates.md).
    #[arg(long, conflicts_with_all = ["check", "download_only", "allow_downgrade", "json"])]
    pub auto: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// Reboot when a check fails and this boot is counting tries.
    #[arg(long)]
    pub reboot_on_failure: bool,
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The manifest to build (e.g. manifests/minimal.toml).
    pub manifest: PathBuf,
    /// Output directory: repo/ (OSTree, archive mode), <name>-<arch>.raw, build.json, cache/.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// Build only this architecture instead of every one the manifest lists.
    #[arg(long, value_parser = parse_arch)]
    pub arch: Option<Arch>,
    /// Rebuild even when a commit from the same inputs exists, resolving packages anew.
    #[arg(long)]
    pub refresh: bool,
    /// Secret key (from `hull keygen`) to sign the commit with; required
    /// when the manifest has [update]. Never copied into the image or repo.
    #[arg(long)]
    pub sign_key: Option<PathBuf>,
    /// A hull binary to install as /usr/bin/hull; repeat it with one per
    /// architecture: each image gets the one built for it. Default: this
    /// one, for its own architecture.
    #[arg(long)]
    pub agent: Vec<PathBuf>,
    /// With --sign-key: how long the repository's signed summary holds, e.g.
    /// 7d; renew it with `hull publish` before then.
    #[arg(long, default_value = "7d", value_parser = crate::repo::summary::parse_lifetime)]
    pub summary_expires: u64,
    /// Roll the commit out over this period, e.g. 24h: each host takes it
    /// at its own place in [commit time, commit time + PERIOD), signed with
    /// the commit (docs/updates.md, waves).
    #[arg(long, value_name = "PERIOD", value_parser = crate::host::wave::parse_period)]
    pub rollout: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The manifest to check.
    pub manifest: PathBuf,
}

pub(crate) fn parse_arch(s: &str) -> Result<Arch, String> {
    s.parse()
}

/// Parses `args` (program name first) and runs the command.
pub fn run<I, T>(args: I) -> Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| e.exit());
    init_logging(cli.verbose);
    match cli.command {
        Command::Build(a) => {
            let mut agents = a.agent;
            agents.extend(crate::build::pipeline::default_agents(
                &std::env::current_exe().context("finding the hull binary")?,
            ));
            let reports = run_builds(&BuildOptions {
                manifest: a.manifest,
                out: a.out,
                arch: a.arch,
                refresh: a.refresh,
                agents,
                sign_key: a.sign_key,
                summary_lifetime: a.summary_expires,
                rollout: a.rollout,
            })?;
            for report in reports {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            Ok(())
        }
        Command::Keygen(a) => {
            let (secret, public) = crate::repo::sign::write_keypair(&a.file)?;
            println!(
                "secret key: {} (keep it off images and repositories)\npublic key: {} (list it in [update] keys)",
                secret.display(),
                public.display()
            );
            Ok(())
        }
        Command::Status(a) => {
            host::require_root("status")?;
            let host = Host::load(HostPaths::default())?;
            let s = host::status::status(&host)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", host::status::render(&s));
            }
            match s.problem() {
                Some(p) => anyhow::bail!("{p}"),
                None => Ok(()),
            }
        }
        Command::Update(a) => {
            host::require_root("update")?;
            let mut host = Host::load(HostPaths::default())?;
            if a.auto {
                let line = host::agent::run(&mut host, &host::agent::AgentOptions { now: a.now })?;
                println!("{line}");
                return Ok(());
            }
            let r = host::update::run(
                &mut host,
                &host::update::UpdateOptions {
                    check: a.check,
                    download_only: a.download_only,
                    allow_downgrade: a.allow_downgrade,
                    now: a.now,
                    ..Default::default()
                },
            )?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("{}", update_line(&r));
            }
            Ok(())
        }
        Command::Reconcile => {
            host::require_root("reconcile")?;
            let mut host = Host::load(HostPaths::default())?;
            match host::rollback::reconcile(&mut host)? {
                Some(r) => println!(
                    "rolled back from {} ({}): {}",
                    r.failed_version.as_deref().unwrap_or("?"),
                    r.failed_checksum,
                    r.reason
                ),
                None => {
                    println!("the booted deployment is the boot loader's default: nothing to do")
                }
            }
            Ok(())
        }
        Command::Provision => {
            host::require_root("provision")?;
            host::provision::run_cli()
        }
        Command::PullCommit(a) => {
            let repo = ostree::Repo::new_for_path(&a.repo);
            repo.open(ostree::gio::Cancellable::NONE)
                .with_context(|| format!("opening OSTree repository {}", a.repo.display()))?;
            let stats = host::pull::pull_exact(
                &repo,
                &host::pull::PullSpec {
                    remote: &a.remote,
                    ostree_ref: &a.ostree_ref,
                    checksum: &a.checksum,
                },
            )?;
            // One JSON line: what the watching agent reads back.
            println!("{}", serde_json::to_string(&stats)?);
            Ok(())
        }
        Command::Publish(a) => {
            let key = crate::repo::sign::load_secret(&a.sign_key)?;
            let p = crate::repo::summary::publish_at(&a.repo, &key, a.expires)?;
            println!(
                "signed the summary of {} ({} refs) until {}",
                a.repo.display(),
                p.refs.len(),
                crate::repo::summary::utc(p.expires)
            );
            Ok(())
        }
        Command::Rollback(a) => {
            host::require_root("rollback")?;
            let mut host = Host::load(HostPaths::default())?;
            let r = host::rollback::rollback(&mut host)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "the next boot is {} ({}); reboot to use it",
                    r.default_version.as_deref().unwrap_or("?"),
                    r.default
                );
            }
            Ok(())
        }
        Command::Health(a) => {
            host::require_root("health")?;
            let mut host = Host::load(HostPaths::default())?;
            let r = host::health::run(
                &mut host,
                &host::health::HealthOptions {
                    reboot_on_failure: a.reboot_on_failure,
                },
            )?;
            if r.ok {
                println!(
                    "healthy: {} ({})",
                    r.version.as_deref().unwrap_or("?"),
                    r.checksum
                );
                Ok(())
            } else {
                anyhow::bail!("unhealthy: {}", r.failures.join("; "))
            }
        }
        Command::Check(a) => {
            let m = crate::build::pipeline::load(&a.manifest)?;
            println!("{}", serde_json::to_string_pretty(&m)?);
            Ok(())
        }
        Command::Run(a) => crate::qemu::run_cli(&a),
        Command::Sysext(a) => {
            let r = crate::build::sysext::build(&crate::build::sysext::SysextSpec {
                manifest: a.manifest,
                name: a.name,
                packages: a.packages,
                dir: a.dir,
                out: a.out,
                arch: a.arch,
            })?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            Ok(())
        }
        Command::Lock(a) => {
            let lines = crate::build::lock::run(&crate::build::lock::LockOptions {
                manifest: a.manifest,
                out: a.out,
                update: a.update,
            })?;
            for l in lines {
                println!("{l}");
            }
            Ok(())
        }
        Command::Scan(a) => {
            use crate::build::scan;
            let target = scan::Target::from_args(&a.target, a.repo.as_deref());
            let loaded = scan::load(&target)?;
            let db = scan::read_db(&a.db)?;
            let reports = scan::run(&loaded, &db, a.release.as_deref())?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                print!("{}", scan::render(&reports));
            }
            match a.fail_on {
                Some(level) => scan::gate(&reports, level),
                None => Ok(()),
            }
        }
        Command::FleetLock(a) => match a.command {
            FleetLockCommand::Serve(s) => {
                crate::fleetlock::server::serve(&crate::fleetlock::server::ServeOptions {
                    etcd: s.etcd,
                    listen: s.listen,
                    slots: s.slots,
                    etcd_timeout: s.etcd_timeout,
                })
            }
        },
    }
}

/// ` (fetched 3 object(s), 2 delta part(s), 1234 bytes)` when something was pulled.
fn pulled(r: &host::update::UpdateReport) -> String {
    r.pulled
        .map(|p| format!(" ({})", p.describe()))
        .unwrap_or_default()
}

/// The one line `hull update` prints.
fn update_line(r: &host::update::UpdateReport) -> String {
    use host::update::Outcome;
    let v = r.version.as_deref().unwrap_or("?");
    let c = r.available.as_deref().unwrap_or("?");
    match r.result {
        Outcome::UpToDate => format!("up to date: {v} ({c}) from {}", r.url),
        Outcome::Available => match r.not_before {
            Some(t) if t > crate::util::now() => format!(
                "update available: {v} ({c}), signed by a trusted key; this host's turn in its rollout wave comes at {} (`hull update --now` takes it before)",
                crate::repo::summary::utc(t)
            ),
            Some(t) => format!(
                "update available: {v} ({c}), signed by a trusted key; this host's turn in its rollout wave came at {}",
                crate::repo::summary::utc(t)
            ),
            None => format!("update available: {v} ({c}), signed by a trusted key"),
        },
        Outcome::NotYet => format!(
            "update {v} ({c}) available, but this host's turn in its rollout wave comes at {}: nothing staged (`hull update --now` takes it now)",
            crate::repo::summary::utc(r.not_before.unwrap_or(0))
        ),
        Outcome::Downloaded => format!(
            "downloaded and verified {v} ({c}){}; `hull update` deploys it",
            pulled(r)
        ),
        Outcome::Deployed => format!(
            "deployed {v} ({c}) as the default for the next boot, with {} boot tries{}; reboot to use it",
            r.boot_tries.unwrap_or(0),
            pulled(r)
        ),
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_secs()
        .format_target(false)
        .try_init();
}

/// `hull sysext`.
#[derive(Debug, clap::Args)]
pub struct SysextArgs {
    /// The image's manifest (its sources and architecture).
    pub manifest: PathBuf,
    /// The extension's name: the file is NAME.raw and carries
    /// usr/lib/extension-release.d/extension-release.NAME.
    #[arg(long)]
    pub name: String,
    /// A Debian package to add with the dependencies the image lacks (repeat).
    #[arg(long = "package", value_name = "PACKAGE")]
    pub packages: Vec<String>,
    /// A directory laid into the extension as it is (only usr/ and opt/),
    /// after the packages.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The build's output directory: its build-<arch>.json and repo say what
    /// the image has; its cache holds the indexes and the .debs.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// The architecture of the image (default: the manifest's first).
    #[arg(long, value_parser = parse_arch)]
    pub arch: Option<Arch>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_build() {
        let cli =
            Cli::try_parse_from(["hull", "build", "m.toml", "--out", "o", "--arch", "aarch64"])
                .unwrap();
        match cli.command {
            Command::Build(b) => {
                assert_eq!(b.manifest, PathBuf::from("m.toml"));
                assert_eq!(b.out, PathBuf::from("o"));
                assert_eq!(b.arch, Some(Arch::Aarch64));
                assert!(!b.refresh);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["hull", "build", "m.toml", "--arch", "mips"]).is_err());
        let cli = Cli::try_parse_from(["hull", "build", "m.toml", "--agent", "a", "--agent", "b"])
            .unwrap();
        let Command::Build(b) = cli.command else {
            panic!()
        };
        assert_eq!(b.agent, [PathBuf::from("a"), PathBuf::from("b")]);
        assert!(Cli::try_parse_from(["hull", "build"]).is_err());
    }

    #[test]
    fn parses_scan() {
        let cli = Cli::try_parse_from([
            "hull",
            "scan",
            "out",
            "--db",
            "db.json",
            "--fail-on",
            "high",
            "--json",
        ])
        .unwrap();
        let Command::Scan(s) = cli.command else {
            panic!()
        };
        assert_eq!(s.target, "out");
        assert_eq!(s.db, PathBuf::from("db.json"));
        assert_eq!(s.fail_on, Some(crate::build::scan::Urgency::High));
        assert!(s.json && s.repo.is_none() && s.release.is_none());
        assert!(
            Cli::try_parse_from(["hull", "scan", "out"]).is_err(),
            "--db is needed"
        );
        assert!(
            Cli::try_parse_from(["hull", "scan", "o", "--db", "d", "--fail-on", "urgent"]).is_err()
        );
        let cli = Cli::try_parse_from([
            "hull",
            "scan",
            "hull/m/x86_64/stable",
            "--repo",
            "out/repo",
            "--db",
            "d",
            "--release",
            "trixie",
        ])
        .unwrap();
        let Command::Scan(s) = cli.command else {
            panic!()
        };
        assert_eq!(s.repo, Some(PathBuf::from("out/repo")));
        assert_eq!(s.release.as_deref(), Some("trixie"));
    }

    #[test]
    fn parses_fleet_lock_serve() {
        let cli = Cli::try_parse_from([
            "hull",
            "fleet-lock",
            "serve",
            "--etcd",
            "http://a:2379",
            "--etcd",
            "http://b:2379",
            "--listen",
            "127.0.0.1:0",
            "--slots",
            "3",
        ])
        .unwrap();
        let Command::FleetLock(FleetLockArgs {
            command: FleetLockCommand::Serve(s),
        }) = cli.command
        else {
            panic!()
        };
        assert_eq!(s.etcd, ["http://a:2379", "http://b:2379"]);
        assert_eq!(s.listen, "127.0.0.1:0");
        assert_eq!(s.slots, 3);
        assert_eq!(s.etcd_timeout, std::time::Duration::from_secs(5));
        let base = ["hull", "fleet-lock", "serve", "--listen", "127.0.0.1:0"];
        // no etcd, zero slots, a timeout that is no duration: refused
        assert!(Cli::try_parse_from(base).is_err());
        for extra in [["--slots", "0"], ["--etcd-timeout", "soon"]] {
            let args = base
                .iter()
                .chain(&["--etcd", "http://a:2379"])
                .chain(&extra);
            assert!(Cli::try_parse_from(args).is_err(), "{extra:?}");
        }
    }

    #[test]
    fn build_defaults_out() {
        let cli = Cli::try_parse_from(["hull", "build", "m.toml"]).unwrap();
        let Command::Build(b) = cli.command else {
            panic!()
        };
        assert_eq!(b.out, PathBuf::from("out"));
    }
}
