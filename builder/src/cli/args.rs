//! The clap options: [`Cli`], its verbs ([`Command`]) and one options struct
//! per verb.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    /// On a host: clear the directory slots a power cut left half-written on
    /// the ESP, which must not be mounted (run early in boot by
    /// hull-esp-repair.service, before the ESP's fsck).
    EspRepair(EspRepairArgs),
    /// On a host: pull one commit's objects (run by `hull update`, which
    /// bounds the disk it takes).
    #[command(hide = true)]
    PullCommit(PullCommitArgs),
    /// During a build: mmdebstrap's `mmtarfilter` (dpkg path filters on a
    /// tar stream, stdin to stdout), run in its place.
    #[command(hide = true)]
    TarFilter(TarFilterArgs),
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
pub struct EspRepairArgs {
    /// The ESP's block device (or a FAT image file).
    #[arg(default_value = "/dev/disk/by-label/HULL-ESP")]
    pub device: std::path::PathBuf,
    /// Print what would be cleared and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct TarFilterArgs {
    /// `--path-exclude=GLOB` and `--path-include=GLOB`, in order.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rules: Vec<String>,
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

    /// mmdebstrap's rules reach `tar-filter` in order, as given.
    #[test]
    fn parses_tar_filter() {
        let rules = [
            "--path-exclude=/usr/share/doc/*",
            "--path-include=/usr/share/doc/*/copyright",
        ];
        let cli = Cli::try_parse_from(["hull", "tar-filter"].into_iter().chain(rules)).unwrap();
        let Command::TarFilter(t) = cli.command else {
            panic!()
        };
        assert_eq!(t.rules, rules);
    }

    /// The boot unit names no device (`esp-repair` defaults to the ESP's
    /// label); `--dry-run` writes nothing.
    #[test]
    fn parses_esp_repair() {
        let cli = Cli::try_parse_from(["hull", "esp-repair"]).unwrap();
        let Command::EspRepair(a) = cli.command else {
            panic!()
        };
        assert_eq!(
            a.device,
            std::path::Path::new("/dev/disk/by-label/HULL-ESP")
        );
        assert!(!a.dry_run);
        let cli = Cli::try_parse_from(["hull", "esp-repair", "--dry-run", "esp.img"]).unwrap();
        let Command::EspRepair(a) = cli.command else {
            panic!()
        };
        assert_eq!((a.device.to_str(), a.dry_run), (Some("esp.img"), true));
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
