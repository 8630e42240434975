//! The command line, parsed from an iterator so tests can drive it.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::host::{self, Host, HostPaths};

use crate::build::{run_build, BuildOptions};
use crate::manifest::{Arch, Manifest};

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
    /// Build for this architecture instead of the manifest's.
    #[arg(long, value_parser = parse_arch)]
    pub arch: Option<Arch>,
    /// Rebuild even when a commit from the same inputs exists, resolving packages anew.
    #[arg(long)]
    pub refresh: bool,
    /// Secret key (from `hull keygen`) to sign the commit with; required
    /// when the manifest has [update]. Never copied into the image or repo.
    #[arg(long)]
    pub sign_key: Option<PathBuf>,
    /// The hull binary to install as /usr/bin/hull (default: this one).
    #[arg(long)]
    pub agent: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The manifest to check.
    pub manifest: PathBuf,
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    match s {
        "x86_64" => Ok(Arch::X86_64),
        "aarch64" => Ok(Arch::Aarch64),
        other => Err(format!("unknown architecture {other} (x86_64 or aarch64)")),
    }
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
            let agent = match a.agent {
                Some(p) => p,
                None => std::env::current_exe().context("finding the hull binary")?,
            };
            let report = run_build(&BuildOptions {
                manifest: a.manifest,
                out: a.out,
                arch: a.arch,
                refresh: a.refresh,
                agent,
                sign_key: a.sign_key,
            })?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Keygen(a) => {
            let (secret, public) = crate::sign::write_keypair(&a.file)?;
            println!(
                "secret key: {} (keep it off images and repositories)\npublic key: {} (list it in [update] keys)",
                secret.display(),
                public.display()
            );
            Ok(())
        }
        Command::Status(a) => {
            let host = Host::load(HostPaths::default())?;
            let s = host::status::status(&host)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", host::status::render(&s));
            }
            Ok(())
        }
        Command::Update(a) => {
            let mut host = Host::load(HostPaths::default())?;
            let r = host::update::run(
                &mut host,
                &host::update::UpdateOptions {
                    check: a.check,
                    download_only: a.download_only,
                    allow_downgrade: a.allow_downgrade,
                },
            )?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                let v = r.version.as_deref().unwrap_or("?");
                let c = r.available.as_deref().unwrap_or("?");
                match r.result.as_str() {
                    "up-to-date" => println!("up to date: {v} ({c}) from {}", r.url),
                    "available" => println!("update available: {v} ({c}), signed by a trusted key"),
                    "downloaded" => println!("downloaded and verified {v} ({c}); `hull update` deploys it"),
                    _ => println!(
                        "deployed {v} ({c}) as the default for the next boot, with {} boot tries; reboot to use it",
                        r.boot_tries.unwrap_or(0)
                    ),
                }
            }
            Ok(())
        }
        Command::Rollback(a) => {
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
            let m = Manifest::load(&a.manifest)?;
            println!("{}", serde_json::to_string_pretty(&m)?);
            Ok(())
        }
        Command::Run(a) => crate::qemu::run_cli(&a),
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
        assert!(Cli::try_parse_from(["hull", "build"]).is_err());
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
