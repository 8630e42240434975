//! Runs a parsed command line: each verb calls into its folder and prints
//! its result (JSON or one line).

use std::ffi::OsString;

use anyhow::{Context, Result};
use clap::Parser;

use super::args::{Cli, Command, FleetLockCommand};
use super::update_line::update_line;
use crate::build::pipeline::{run_builds, BuildOptions};
use crate::host::{self, Host, HostPaths};
/// Writes to standard output, a line (`outln!`) or as is (`out!`); an
/// error (a closed pipe among them) ends the command through `?`.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).context("writing to standard output")?
    }};
}
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*).context("writing to standard output")?
    }};
}

/// Parses `args` (program name first) and runs the command. Standard
/// output closed early (`hull scan --json | head`) ends it quietly, as a
/// SIGPIPE ends a C tool: the reader took what it wanted.
pub fn run<I, T>(args: I) -> Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match dispatch(args) {
        Err(e) if closed_pipe(&e) => Ok(()),
        r => r,
    }
}

/// Whether `e` is standard output's reader having gone away.
fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    }) && e.to_string() == "writing to standard output"
}

fn dispatch<I, T>(args: I) -> Result<()>
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
                outln!("{}", serde_json::to_string_pretty(&report)?);
            }
            Ok(())
        }
        Command::Keygen(a) => {
            let (secret, public) = crate::repo::sign::write_keypair(&a.file)?;
            outln!(
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
                outln!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                out!("{}", host::status::render(&s));
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
                outln!("{line}");
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
                outln!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                outln!("{}", update_line(&r));
            }
            Ok(())
        }
        Command::Reconcile => {
            host::require_root("reconcile")?;
            let mut host = Host::load(HostPaths::default())?;
            match host::rollback::reconcile(&mut host)? {
                Some(r) => outln!(
                    "rolled back from {} ({}): {}",
                    r.failed_version.as_deref().unwrap_or("?"),
                    r.failed_checksum,
                    r.reason
                ),
                None => {
                    outln!("the booted deployment is the boot loader's default: nothing to do")
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
            outln!("{}", serde_json::to_string(&stats)?);
            Ok(())
        }
        Command::EspRepair(a) => {
            let r = crate::boot::fat_repair::run_cli(&a.device, a.dry_run)?;
            let verb = match (r.fixed.is_empty(), a.dry_run) {
                (true, _) => "",
                (false, true) => "would repair ",
                (false, false) => "repaired ",
            };
            outln!("{}: {verb}{}", a.device.display(), r.summary());
            Ok(())
        }
        Command::TarFilter(a) => crate::build::rootfs::tar_filter::run_cli(&a.rules),
        Command::Publish(a) => {
            let key = crate::repo::sign::load_secret(&a.sign_key)?;
            let p = crate::repo::summary::publish_at(&a.repo, &key, a.expires)?;
            outln!(
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
                outln!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                outln!(
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
                outln!(
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
            outln!("{}", serde_json::to_string_pretty(&m)?);
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
            outln!("{}", serde_json::to_string_pretty(&r)?);
            Ok(())
        }
        Command::Lock(a) => {
            let lines = crate::build::lock::run(&crate::build::lock::LockOptions {
                manifest: a.manifest,
                out: a.out,
                update: a.update,
            })?;
            for l in lines {
                outln!("{l}");
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
                outln!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                out!("{}", scan::render(&reports));
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
