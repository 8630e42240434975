//! The command line, parsed from an iterator so tests can drive it.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
            let report = run_build(&BuildOptions {
                manifest: a.manifest,
                out: a.out,
                arch: a.arch,
                refresh: a.refresh,
            })?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
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
