//! `hull run`'s options and how they become a [`RunSpec`].

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::command::arch_from_file_name;
use super::firmware::Firmware;
use super::launch::run;
use super::spec::{validate_credential_name, Accel, RunSpec};
use crate::manifest::Arch;

/// `hull run`: boot an image in QEMU.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The disk image to boot (e.g. out/minimal-x86_64.raw).
    pub image: PathBuf,
    /// Guest architecture, x86_64 or aarch64 [default: from the file name
    /// (…-x86_64.raw, …-aarch64.raw), else x86_64].
    #[arg(long, value_parser = parse_arch)]
    pub arch: Option<Arch>,
    /// Forward 127.0.0.1:PORT on this machine to the guest's SSH port (22).
    /// Without it the guest has no network at all; with it, it can reach
    /// nothing but that forward.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub ssh_port: Option<u16>,
    /// Let the guest reach an update server listening on 127.0.0.1:PORT on
    /// this machine as http://10.0.2.100/ (needs socat); nothing else.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub update_port: Option<u16>,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 2048)]
    pub memory: u32,
    /// Number of virtual CPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Accelerator: tcg (software, works everywhere) or kvm (only where KVM
    /// works and the guest's architecture is the host's).
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    pub accel: Accel,
    /// Write to the image instead of a throw-away overlay.
    #[arg(long)]
    pub persist: bool,
    /// Pass the file PATH to the guest as the systemd credential NAME (SMBIOS
    /// type 11); repeatable.
    #[arg(long = "credential", value_name = "NAME=PATH", value_parser = parse_credential_arg)]
    pub credentials: Vec<CredentialArg>,
    /// Boot as the node a node config describes (docs/provisioning.md),
    /// passed as the credential hull.node.
    #[arg(long, value_name = "NODE.TOML")]
    pub config: Option<PathBuf>,
    /// Boot with a NoCloud seed holding this #cloud-config user-data (a
    /// vfat disk labelled CIDATA).
    #[arg(long, value_name = "USER-DATA")]
    pub cloud_init: Option<PathBuf>,
    /// Boot on a disk of this size, e.g. 20G: a temporary overlay over the
    /// image, which stays unchanged.
    #[arg(long, value_name = "SIZE", value_parser = parse_disk_size, conflicts_with = "persist")]
    pub disk_size: Option<u64>,
}

fn parse_disk_size(s: &str) -> Result<u64, String> {
    crate::manifest::validate::parse_size(s)
}

/// `--credential NAME=PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialArg {
    pub name: String,
    pub path: PathBuf,
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    s.parse()
}

fn parse_credential_arg(s: &str) -> Result<CredentialArg, String> {
    let Some((name, path)) = s.split_once('=') else {
        return Err(format!("{s:?}: expected NAME=PATH"));
    };
    validate_credential_name(name).map_err(|e| e.to_string())?;
    if path.is_empty() {
        return Err(format!("{s:?}: expected NAME=PATH, the path is empty"));
    }
    Ok(CredentialArg {
        name: name.to_string(),
        path: PathBuf::from(path),
    })
}

impl RunArgs {
    /// The spec these arguments describe, credentials read from their files.
    pub fn to_spec(&self) -> Result<RunSpec> {
        let arch = self
            .arch
            .or_else(|| arch_from_file_name(&self.image))
            .unwrap_or(Arch::X86_64);
        let mut spec = RunSpec::new(self.image.clone(), arch, Firmware::find(arch)?);
        spec.memory_mib = self.memory;
        spec.cpus = self.cpus;
        spec.accel = self.accel;
        spec.snapshot = !self.persist;
        spec.ssh_port = self.ssh_port;
        spec.update_port = self.update_port;
        for c in &self.credentials {
            let value = fs::read(&c.path).with_context(|| {
                format!("--credential {}: reading {}", c.name, c.path.display())
            })?;
            spec.credentials.push((c.name.clone(), value));
        }
        Ok(spec)
    }
}

/// `hull run`.
pub fn run_cli(args: &RunArgs) -> Result<()> {
    let mut spec = args.to_spec()?;
    let node = crate::qemu::node_run::NodeOptions {
        config: args.config.clone(),
        cloud_init: args.cloud_init.clone(),
        disk_size: args.disk_size,
    };
    let _files = crate::qemu::node_run::prepare(&mut spec, &node)?;
    run(&spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct TestCli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        use clap::Parser;
        TestCli::try_parse_from(std::iter::once("hull-run").chain(args.iter().copied()))
            .map(|c| c.run)
    }

    #[test]
    fn run_args() {
        let a = parse(&["out/minimal-aarch64.raw"]).unwrap();
        assert_eq!(a.arch, None);
        assert_eq!(
            (a.memory, a.cpus, a.accel, a.persist, a.ssh_port),
            (2048, 2, Accel::Tcg, false, None)
        );
        assert!(a.credentials.is_empty());

        let a = parse(&[
            "i.raw",
            "--arch",
            "aarch64",
            "--ssh-port",
            "2222",
            "--memory",
            "4096",
            "--cpus",
            "4",
            "--accel",
            "kvm",
            "--persist",
            "--credential",
            "hull.check.sh=guest/check.sh",
            "--credential",
            "x=a=b",
        ])
        .unwrap();
        assert_eq!(a.arch, Some(Arch::Aarch64));
        assert_eq!(
            (a.memory, a.cpus, a.accel, a.persist, a.ssh_port),
            (4096, 4, Accel::Kvm, true, Some(2222))
        );
        assert_eq!(
            a.credentials,
            [
                CredentialArg {
                    name: "hull.check.sh".into(),
                    path: "guest/check.sh".into()
                },
                CredentialArg {
                    name: "x".into(),
                    path: "a=b".into()
                },
            ]
        );

        for bad in [
            &["i.raw", "--ssh-port", "0"][..],
            &["i.raw", "--accel", "hvf"],
            &["i.raw", "--arch", "mips"],
            &["i.raw", "--credential", "nopath"],
            &["i.raw", "--credential", "a/b=p"],
            &[],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn spec_from_args() {
        let dir = tempfile::tempdir().unwrap();
        let cred = dir.path().join("c");
        fs::write(&cred, b"secret").unwrap();
        let mut a = parse(&["out/minimal-x86_64.raw", "--persist"]).unwrap();
        a.credentials.push(CredentialArg {
            name: "c".into(),
            path: cred,
        });
        let Ok(spec) = a.to_spec() else {
            // No OVMF on this machine: nothing else to check here.
            return;
        };
        assert_eq!(spec.arch, Arch::X86_64);
        assert!(!spec.snapshot);
        assert_eq!(spec.credentials, [("c".to_string(), b"secret".to_vec())]);
        a.credentials[0].path = dir.path().join("missing");
        let err = format!("{:#}", a.to_spec().unwrap_err());
        assert!(
            err.contains("--credential c") && err.contains("missing"),
            "{err}"
        );
    }

    #[test]
    fn node_options() {
        let a = parse(&[
            "i.raw",
            "--config",
            "n.toml",
            "--cloud-init",
            "ud",
            "--disk-size",
            "10G",
        ])
        .unwrap();
        assert_eq!(a.config, Some(PathBuf::from("n.toml")));
        assert_eq!(a.cloud_init, Some(PathBuf::from("ud")));
        assert_eq!(a.disk_size, Some(10 << 30));
        assert!(parse(&["i.raw", "--disk-size", "big"]).is_err());
        assert!(parse(&["i.raw", "--disk-size", "10G", "--persist"]).is_err());
    }
}
