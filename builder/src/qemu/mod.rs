//! Booting images in QEMU: `hull run` for people, [`spawn`] for the boot tests.
//!
//! The machine is always UEFI (OVMF on x86_64, AAVMF on aarch64) with the disk
//! on virtio and `-cpu max`. TCG is the default accelerator: KVM is an explicit
//! opt-in, because on some hosts it hangs stock kernels. The guest reaches
//! nothing outside this machine: no NIC at all by default, and with an SSH port
//! a `restrict=on` user-mode network whose only opening is a forward from
//! 127.0.0.1. The image stays clean unless asked otherwise (`-snapshot`: writes
//! go to a temporary overlay that lives as long as the QEMU process, so a guest
//! reboot keeps them).
//!
//! Checks and settings reach the guest without touching the image, as systemd
//! credentials in SMBIOS type 11 OEM strings ([`RunSpec::credentials`]).
//!
//! [`command`] only builds the argument vector (unit tested); [`run`] and
//! [`spawn`] check the prerequisites, copy the firmware's variable store to a
//! temporary directory, and start QEMU.

pub mod credentials;
pub mod node_run;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use tempfile::TempDir;

use crate::manifest::Arch;
use crate::util::cmd::{require_program, Cmd};

/// Linux refuses a single argument longer than this (MAX_ARG_STRLEN).
const MAX_ARG_LEN: usize = 128 * 1024;
/// The longest SMBIOS type 11 string: OVMF refuses a structure over 64 KiB
/// (its 5-byte header and two NULs included) and then drops every table
/// QEMU gave, every credential with it ([`credentials`]).
const MAX_SMBIOS_STRING: usize = 65535 - 7;

/// QEMU's accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// Software emulation: slow, works everywhere.
    Tcg,
    /// Hardware virtualization (/dev/kvm, guest architecture = host architecture).
    Kvm,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// Where the guest's serial console goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serial {
    /// This terminal, multiplexed with the QEMU monitor (Ctrl-a x quits, Ctrl-a c
    /// switches to the monitor).
    Stdio,
    /// A file (created or truncated), for tests that follow the console; no
    /// display and no monitor.
    File(PathBuf),
}

/// UEFI firmware: the read-only code and the template of the variable store
/// (copied for every run, since the firmware writes to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    pub code: PathBuf,
    pub vars_template: PathBuf,
}

/// Where Debian installs the firmware, best first: (code, vars) relative to /.
fn firmware_candidates(arch: Arch) -> &'static [(&'static str, &'static str)] {
    match arch {
        Arch::X86_64 => &[
            (
                "usr/share/OVMF/OVMF_CODE_4M.fd",
                "usr/share/OVMF/OVMF_VARS_4M.fd",
            ),
            ("usr/share/OVMF/OVMF_CODE.fd", "usr/share/OVMF/OVMF_VARS.fd"),
        ],
        Arch::Aarch64 => &[(
            "usr/share/AAVMF/AAVMF_CODE.fd",
            "usr/share/AAVMF/AAVMF_VARS.fd",
        )],
    }
}

/// The Debian package holding the UEFI firmware for `arch`.
fn firmware_package(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "ovmf",
        Arch::Aarch64 => "qemu-efi-aarch64",
    }
}

impl Firmware {
    /// The firmware Debian installs for `arch`.
    pub fn find(arch: Arch) -> Result<Firmware> {
        Firmware::find_in(arch, Path::new("/"))
    }

    /// Like [`Firmware::find`], with the Debian paths taken relative to `root`.
    pub fn find_in(arch: Arch, root: &Path) -> Result<Firmware> {
        let candidates = firmware_candidates(arch);
        for (code, vars) in candidates {
            let fw = Firmware {
                code: root.join(code),
                vars_template: root.join(vars),
            };
            if fw.code.is_file() && fw.vars_template.is_file() {
                return Ok(fw);
            }
        }
        let (code, vars) = candidates[0];
        let missing = if root.join(code).is_file() {
            vars
        } else {
            code
        };
        bail!(
            "UEFI firmware for {arch} not found: {} is missing; install the Debian package {}",
            root.join(missing).display(),
            firmware_package(arch)
        )
    }
}

/// Everything about one QEMU run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// The disk image (raw; `.qcow2` files are passed as qcow2).
    pub image: PathBuf,
    pub arch: Arch,
    pub memory_mib: u32,
    pub cpus: u32,
    pub accel: Accel,
    /// Write to a temporary overlay instead of the image.
    pub snapshot: bool,
    /// Forward 127.0.0.1:PORT to the guest's port 22.
    pub ssh_port: Option<u16>,
    /// Let the guest reach 127.0.0.1:PORT on the host as
    /// http://10.0.2.100/ (an update server), and nothing else. Without it
    /// and `ssh_port` the guest has no NIC.
    pub update_port: Option<u16>,
    /// Let the guest reach 127.0.0.1:PORT as http://10.0.2.101/ (a
    /// FleetLock server), like `update_port`.
    pub lock_port: Option<u16>,
    pub serial: Serial,
    /// systemd credentials (name, contents), passed as SMBIOS type 11 strings.
    pub credentials: Vec<(String, Vec<u8>)>,
    /// Credentials too large for SMBIOS, each passed from a file through
    /// fw_cfg ([`credentials`]).
    pub credential_files: Vec<credentials::CredentialFile>,
    /// More raw disks after the image, read-only (a NoCloud seed).
    pub extra_drives: Vec<PathBuf>,
    pub firmware: Firmware,
}

impl RunSpec {
    /// A spec with the defaults of `hull run`: 2 GiB, 2 CPUs, TCG, on a
    /// snapshot, no network, console on this terminal, no credentials.
    pub fn new(image: impl Into<PathBuf>, arch: Arch, firmware: Firmware) -> RunSpec {
        RunSpec {
            image: image.into(),
            arch,
            memory_mib: 2048,
            cpus: 2,
            accel: Accel::Tcg,
            snapshot: true,
            ssh_port: None,
            update_port: None,
            lock_port: None,
            serial: Serial::Stdio,
            credentials: Vec::new(),
            credential_files: Vec::new(),
            extra_drives: Vec::new(),
            firmware,
        }
    }

    /// Checks what [`command`] cannot express: credential names, sizes, counts.
    pub fn validate(&self) -> Result<()> {
        if self.memory_mib < 256 {
            bail!(
                "memory: {} MiB is too little to boot (at least 256)",
                self.memory_mib
            );
        }
        if self.cpus == 0 {
            bail!("cpus: at least 1");
        }
        if self.ssh_port == Some(0) {
            bail!("ssh port: 0 is not a port");
        }
        if self.update_port == Some(0) {
            bail!("update port: 0 is not a port");
        }
        for (name, value) in &self.credentials {
            validate_credential_name(name)?;
            if smbios_credential(name, value).len() > MAX_ARG_LEN {
                bail!(
                    "credential {name}: {} bytes is too large to pass on the QEMU command line",
                    value.len()
                );
            }
            let b64 = value.len().div_ceil(3) * 4;
            if "io.systemd.credential.binary:=".len() + name.len() + b64 > MAX_SMBIOS_STRING {
                bail!(
                    "credential {name}: {} bytes is too large for an SMBIOS type 11 string (about 48 KiB: OVMF drops SMBIOS structures over 64 KiB)",
                    value.len()
                );
            }
        }
        let inline = self
            .credentials
            .iter()
            .map(|(n, v)| (n.as_str(), v.len() as u64));
        let files = self
            .credential_files
            .iter()
            .map(|f| (f.name.as_str(), f.size));
        credentials::check_total(inline.chain(files))?;
        Ok(())
    }
}

/// systemd's rules for a credential name, plus no `=` (the SMBIOS string is
/// `NAME=VALUE`, split at the first `=`).
pub fn validate_credential_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > 255
        || name
            .chars()
            .any(|c| c == '/' || c == '=' || c.is_control() || c.is_whitespace());
    if bad {
        bail!(
            "credential name {name:?} is not valid: 1 to 255 characters, no '/', '=', spaces or control characters, not . or .."
        );
    }
    Ok(())
}

/// The QEMU binary for `arch` and the Debian package that has it.
pub fn qemu_program(arch: Arch) -> (&'static str, &'static str) {
    match arch {
        Arch::X86_64 => ("qemu-system-x86_64", "qemu-system-x86"),
        Arch::Aarch64 => ("qemu-system-aarch64", "qemu-system-arm"),
    }
}

/// The architecture named by an image's file name (`…-x86_64.raw`,
/// `…-aarch64.qcow2`), if any.
pub fn arch_from_file_name(image: &Path) -> Option<Arch> {
    let stem = image.file_stem()?.to_str()?;
    if stem.ends_with("-aarch64") {
        Some(Arch::Aarch64)
    } else if stem.ends_with("-x86_64") {
        Some(Arch::X86_64)
    } else {
        None
    }
}

fn image_format(image: &Path) -> &'static str {
    match image.extension().and_then(OsStr::to_str) {
        Some("qcow2") => "qcow2",
        _ => "raw",
    }
}

/// A path inside a QEMU option list, where `,` must be doubled.
fn opt_path(key: &str, path: &Path) -> OsString {
    let mut out = format!("{key}=").into_bytes();
    for &b in path.as_os_str().as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

/// The `-smbios` argument carrying one credential.
fn smbios_credential(name: &str, value: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(value);
    let string = format!("io.systemd.credential.binary:{name}={b64}");
    format!("type=11,value={}", string.replace(',', ",,"))
}

/// The QEMU command line for `spec`, with `vars_copy` as the firmware's
/// writable variable store. Builds the argument vector only.
pub fn command(spec: &RunSpec, vars_copy: &Path) -> Cmd {
    let (program, _) = qemu_program(spec.arch);
    let machine = match spec.arch {
        Arch::X86_64 => "q35",
        Arch::Aarch64 => "virt",
    };
    let code = opt_path(
        "if=pflash,format=raw,unit=0,readonly=on,file",
        &spec.firmware.code,
    );
    let mut disk = opt_path("file", &spec.image);
    disk.push(format!(",format={},if=virtio", image_format(&spec.image)));

    let mut cmd = Cmd::new(program)
        .arg("-machine")
        .arg(format!("{machine},accel={}", spec.accel.as_str()))
        .arg("-cpu")
        .arg(cpu(spec.arch, spec.accel))
        .arg("-m")
        .arg(spec.memory_mib.to_string())
        .arg("-smp")
        .arg(spec.cpus.to_string())
        .arg("-drive")
        .arg(code)
        .arg("-drive")
        .arg(opt_path("if=pflash,format=raw,unit=1,file", vars_copy))
        .arg("-drive")
        .arg(disk);
    for d in &spec.extra_drives {
        let mut drive = opt_path("file", d);
        drive.push(",format=raw,if=virtio,readonly=on");
        cmd = cmd.arg("-drive").arg(drive);
    }
    if spec.snapshot {
        cmd = cmd.arg("-snapshot");
    }
    cmd = match netdev(spec) {
        None => cmd.args(["-nic", "none"]),
        Some(netdev) => cmd
            .arg("-netdev")
            .arg(netdev)
            .args(["-device", "virtio-net-pci,netdev=n0"]),
    };
    cmd = match &spec.serial {
        Serial::Stdio => cmd.args(["-nographic", "-serial", "mon:stdio"]),
        Serial::File(path) => {
            let mut serial = OsString::from("file:");
            serial.push(path);
            cmd.args(["-display", "none", "-monitor", "none", "-serial"])
                .arg(serial)
        }
    };
    for (name, value) in &spec.credentials {
        cmd = cmd.arg("-smbios").arg(smbios_credential(name, value));
    }
    for f in &spec.credential_files {
        let mut opt = OsString::from(format!("name={},", f.fw_cfg_name()));
        opt.push(opt_path("file", &f.path));
        cmd = cmd.arg("-fw_cfg").arg(opt);
    }
    cmd
}

/// The `-cpu` model: the most the accelerator offers. On aarch64 under TCG,
/// QEMU's own pointer-authentication algorithm (`pauth-impdef`) instead of
/// the architected QARMA, which costs a large share of emulated run time.
fn cpu(arch: Arch, accel: Accel) -> &'static str {
    match (arch, accel) {
        (Arch::Aarch64, Accel::Tcg) => "max,pauth-impdef=on",
        _ => "max",
    }
}

/// The address a guest reaches the update server at.
pub const UPDATE_ADDR: &str = "10.0.2.100";
/// The address a guest reaches a FleetLock server at (`lock_port`).
pub const LOCK_ADDR: &str = "10.0.2.101";

/// A user-mode network with `restrict=on` (the guest reaches nothing
/// outside), opened only by the forwards asked for: 127.0.0.1:PORT to the
/// guest's sshd, and the guest's 10.0.2.100:80 to 127.0.0.1:PORT, through
/// socat started by QEMU for each connection.
fn netdev(spec: &RunSpec) -> Option<String> {
    if spec.ssh_port.is_none() && spec.update_port.is_none() && spec.lock_port.is_none() {
        return None;
    }
    let mut n = "user,id=n0,restrict=on".to_string();
    if let Some(port) = spec.ssh_port {
        n.push_str(&format!(",hostfwd=tcp:127.0.0.1:{port}-:22"));
    }
    if let Some(port) = spec.update_port {
        n.push_str(&format!(
            ",guestfwd=tcp:{UPDATE_ADDR}:80-cmd:socat STDIO TCP:127.0.0.1:{port}"
        ));
    }
    if let Some(port) = spec.lock_port {
        n.push_str(&format!(
            ",guestfwd=tcp:{LOCK_ADDR}:80-cmd:socat STDIO TCP:127.0.0.1:{port}"
        ));
    }
    Some(n)
}

/// Checks that QEMU can start `spec`, copies the variable store and returns
/// the command with the temporary directory holding the copy.
fn prepare(spec: &RunSpec) -> Result<(Cmd, TempDir)> {
    spec.validate()?;
    let (program, package) = qemu_program(spec.arch);
    require_program(program, package)?;
    if !spec.image.is_file() {
        bail!(
            "image {} not found: build it with `hull build MANIFEST`",
            spec.image.display()
        );
    }
    if !spec.snapshot {
        let meta = fs::metadata(&spec.image)
            .with_context(|| format!("reading {}", spec.image.display()))?;
        if meta.permissions().readonly() {
            bail!(
                "image {} is read-only: drop --persist to boot it on a snapshot",
                spec.image.display()
            );
        }
    }
    for f in [&spec.firmware.code, &spec.firmware.vars_template] {
        if !f.is_file() {
            bail!(
                "UEFI firmware {} not found: install the Debian package {}",
                f.display(),
                firmware_package(spec.arch)
            );
        }
    }
    if spec.accel == Accel::Kvm {
        if std::env::consts::ARCH != spec.arch.as_str() {
            bail!(
                "--accel kvm cannot run an {} guest on this {} host: use --accel tcg",
                spec.arch,
                std::env::consts::ARCH
            );
        }
        if !Path::new("/dev/kvm").exists() {
            bail!("--accel kvm: /dev/kvm does not exist (no KVM on this host): use --accel tcg");
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("hull-qemu-")
        .tempdir()
        .context("creating a temporary directory for the UEFI variable store")?;
    let vars = dir.path().join("efivars.fd");
    fs::copy(&spec.firmware.vars_template, &vars).with_context(|| {
        format!(
            "copying {} to {}",
            spec.firmware.vars_template.display(),
            vars.display()
        )
    })?;
    fs::set_permissions(&vars, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} writable", vars.display()))?;
    if let Serial::File(log) = &spec.serial {
        if let Some(parent) = log.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    Ok((command(spec, &vars), dir))
}

/// Boots `spec` with this terminal attached; returns when QEMU exits.
pub fn run(spec: &RunSpec) -> Result<()> {
    let (cmd, _vars) = prepare(spec)?;
    if spec.snapshot {
        log::info!(
            "booting {} on a snapshot: the image is not changed",
            spec.image.display()
        );
    } else {
        log::warn!(
            "booting {} with --persist: the guest writes to the image",
            spec.image.display()
        );
    }
    if spec.serial == Serial::Stdio {
        eprintln!("hull run: serial console follows; quit QEMU with Ctrl-a x");
    }
    cmd.run_interactive()
}

/// Starts QEMU for `spec` in the background (stdin is /dev/null). Keep the
/// returned directory alive until QEMU exits: it holds the variable store.
pub fn spawn(spec: &RunSpec, stdout: Stdio, stderr: Stdio) -> Result<(Child, TempDir)> {
    let (cmd, dir) = prepare(spec)?;
    let child = cmd.spawn(stdout, stderr)?;
    Ok((child, dir))
}

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

    fn fw(arch: Arch) -> Firmware {
        match arch {
            Arch::X86_64 => Firmware {
                code: "/fw/OVMF_CODE_4M.fd".into(),
                vars_template: "/fw/OVMF_VARS_4M.fd".into(),
            },
            Arch::Aarch64 => Firmware {
                code: "/fw/AAVMF_CODE.fd".into(),
                vars_template: "/fw/AAVMF_VARS.fd".into(),
            },
        }
    }

    fn argv(spec: &RunSpec) -> Vec<String> {
        let line = command(spec, Path::new("/tmp/v/efivars.fd")).display();
        // display() quotes nothing in these tests: every argument is plain.
        line.split(' ').map(String::from).collect()
    }

    fn has_pair(argv: &[String], flag: &str, value: &str) -> bool {
        argv.windows(2).any(|w| w[0] == flag && w[1] == value)
    }

    #[test]
    fn x86_64_argv() {
        let spec = RunSpec::new("/out/minimal-x86_64.raw", Arch::X86_64, fw(Arch::X86_64));
        assert_eq!(
            argv(&spec),
            [
                "qemu-system-x86_64",
                "-machine",
                "q35,accel=tcg",
                "-cpu",
                "max",
                "-m",
                "2048",
                "-smp",
                "2",
                "-drive",
                "if=pflash,format=raw,unit=0,readonly=on,file=/fw/OVMF_CODE_4M.fd",
                "-drive",
                "if=pflash,format=raw,unit=1,file=/tmp/v/efivars.fd",
                "-drive",
                "file=/out/minimal-x86_64.raw,format=raw,if=virtio",
                "-snapshot",
                "-nic",
                "none",
                "-nographic",
                "-serial",
                "mon:stdio",
            ]
        );
    }

    #[test]
    fn aarch64_argv() {
        let mut spec = RunSpec::new("/out/minimal-aarch64.raw", Arch::Aarch64, fw(Arch::Aarch64));
        spec.memory_mib = 4096;
        spec.cpus = 4;
        spec.serial = Serial::File("/logs/boot-1.log".into());
        assert_eq!(
            argv(&spec),
            [
                "qemu-system-aarch64",
                "-machine",
                "virt,accel=tcg",
                "-cpu",
                "max,pauth-impdef=on",
                "-m",
                "4096",
                "-smp",
                "4",
                "-drive",
                "if=pflash,format=raw,unit=0,readonly=on,file=/fw/AAVMF_CODE.fd",
                "-drive",
                "if=pflash,format=raw,unit=1,file=/tmp/v/efivars.fd",
                "-drive",
                "file=/out/minimal-aarch64.raw,format=raw,if=virtio",
                "-snapshot",
                "-nic",
                "none",
                "-display",
                "none",
                "-monitor",
                "none",
                "-serial",
                "file:/logs/boot-1.log",
            ]
        );
    }

    #[test]
    fn ssh_forward_is_loopback_only_and_restricted() {
        let mut spec = RunSpec::new("/i.raw", Arch::X86_64, fw(Arch::X86_64));
        spec.ssh_port = Some(2222);
        let a = argv(&spec);
        assert!(
            has_pair(
                &a,
                "-netdev",
                "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22"
            ),
            "{a:?}"
        );
        assert!(has_pair(&a, "-device", "virtio-net-pci,netdev=n0"), "{a:?}");
        assert!(!a.iter().any(|x| x == "-nic"), "{a:?}");
        // No other network option, and no forward to anything but loopback.
        assert_eq!(a.iter().filter(|x| x.contains("hostfwd")).count(), 1);
        assert!(!a
            .iter()
            .any(|x| x.contains("guestfwd") || x.contains("0.0.0.0")));
    }

    #[test]
    fn update_forward_reaches_only_loopback() {
        let mut spec = RunSpec::new("/i.raw", Arch::X86_64, fw(Arch::X86_64));
        spec.update_port = Some(8080);
        let n = netdev(&spec).unwrap();
        assert_eq!(
            n,
            "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:socat STDIO TCP:127.0.0.1:8080"
        );
        let a = argv(&spec).join(" ");
        assert!(
            a.contains("-netdev 'user,id=n0,restrict=on,guestfwd="),
            "{a}"
        );
        spec.ssh_port = Some(2222);
        let n = netdev(&spec).unwrap();
        assert!(
            n.contains("restrict=on,hostfwd=tcp:127.0.0.1:2222-:22,guestfwd="),
            "{n}"
        );
        spec.update_port = Some(0);
        assert!(spec.validate().is_err());
        // The FleetLock server: a second forward, to loopback only.
        spec.update_port = None;
        spec.ssh_port = None;
        spec.lock_port = Some(3333);
        assert_eq!(
            netdev(&spec).unwrap(),
            "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.101:80-cmd:socat STDIO TCP:127.0.0.1:3333"
        );
    }

    #[test]
    fn extra_drives_are_read_only_raw_disks() {
        let mut spec = RunSpec::new("/i.raw", Arch::X86_64, fw(Arch::X86_64));
        spec.extra_drives = vec!["/t/seed.img".into()];
        let a = argv(&spec);
        let drives: Vec<&String> = a
            .windows(2)
            .filter(|w| w[0] == "-drive")
            .map(|w| &w[1])
            .collect();
        assert_eq!(
            drives[2..],
            [
                "file=/i.raw,format=raw,if=virtio",
                "file=/t/seed.img,format=raw,if=virtio,readonly=on"
            ]
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

    #[test]
    fn no_network_by_default() {
        let spec = RunSpec::new("/i.raw", Arch::Aarch64, fw(Arch::Aarch64));
        let a = argv(&spec);
        assert!(has_pair(&a, "-nic", "none"));
        assert!(!a.iter().any(|x| x == "-netdev" || x.contains("virtio-net")));
    }

    #[test]
    fn snapshot_and_persist() {
        let mut spec = RunSpec::new("/i.raw", Arch::X86_64, fw(Arch::X86_64));
        assert!(argv(&spec).contains(&"-snapshot".to_string()));
        spec.snapshot = false;
        assert!(!argv(&spec).contains(&"-snapshot".to_string()));
    }

    #[test]
    fn kvm_and_qcow2() {
        let mut spec = RunSpec::new("/o/disk.qcow2", Arch::X86_64, fw(Arch::X86_64));
        spec.accel = Accel::Kvm;
        let a = argv(&spec);
        assert!(has_pair(&a, "-machine", "q35,accel=kvm"));
        assert!(has_pair(&a, "-cpu", "max"));
        assert!(has_pair(
            &a,
            "-drive",
            "file=/o/disk.qcow2,format=qcow2,if=virtio"
        ));
    }

    #[test]
    fn commas_in_paths_are_doubled() {
        let mut spec = RunSpec::new("/o/a,b.raw", Arch::X86_64, fw(Arch::X86_64));
        spec.firmware.code = "/fw,x/CODE.fd".into();
        let cmd = command(&spec, Path::new("/t/v,1.fd"));
        let line = cmd.display();
        assert!(
            line.contains("file=/o/a,,b.raw,format=raw,if=virtio"),
            "{line}"
        );
        assert!(line.contains("readonly=on,file=/fw,,x/CODE.fd"), "{line}");
        assert!(line.contains("unit=1,file=/t/v,,1.fd"), "{line}");
    }

    #[test]
    fn credentials_are_base64_in_smbios_type_11() {
        let mut spec = RunSpec::new("/i.raw", Arch::X86_64, fw(Arch::X86_64));
        spec.credentials = vec![
            (
                "hull.check.sh".into(),
                b"#!/bin/sh\necho hi, there\n".to_vec(),
            ),
            (
                "systemd.unit-dropin.multi-user.target".into(),
                b"[Unit]\nWants=x.service\n".to_vec(),
            ),
        ];
        spec.validate().unwrap();
        let a = argv(&spec);
        let smbios: Vec<&String> = a
            .windows(2)
            .filter(|w| w[0] == "-smbios")
            .map(|w| &w[1])
            .collect();
        assert_eq!(
            smbios,
            [
                "type=11,value=io.systemd.credential.binary:hull.check.sh=IyEvYmluL3NoCmVjaG8gaGksIHRoZXJlCg==",
                "type=11,value=io.systemd.credential.binary:systemd.unit-dropin.multi-user.target=W1VuaXRdCldhbnRzPXguc2VydmljZQo=",
            ]
        );
        // Commas in the value (only possible in the name) are doubled for QEMU.
        assert_eq!(
            smbios_credential("a,b", b"\xff"),
            "type=11,value=io.systemd.credential.binary:a,,b=/w=="
        );
    }

    #[test]
    fn credential_names_are_checked() {
        for good in [
            "hull.check.sh",
            "systemd.extra-unit.hull-check.service",
            "a,b",
        ] {
            validate_credential_name(good).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a=b", "a b", "a\nb", &"x".repeat(256)] {
            assert!(validate_credential_name(bad).is_err(), "{bad:?}");
        }
        let mut spec = RunSpec::new("/i.raw", Arch::X86_64, fw(Arch::X86_64));
        spec.credentials = vec![("big".into(), vec![0; MAX_ARG_LEN])];
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.contains("big") && err.contains("too large"), "{err}");
        // Under the command line's limit, over what OVMF keeps.
        spec.credentials = vec![("big".into(), vec![0; 49 << 10])];
        let err = spec.validate().unwrap_err().to_string();
        assert!(
            err.contains("too large for an SMBIOS type 11 string"),
            "{err}"
        );
        spec.credentials = vec![("ok".into(), vec![0; 47 << 10])];
        spec.validate().unwrap();
    }

    #[test]
    fn firmware_lookup() {
        let root = tempfile::tempdir().unwrap();
        let err = Firmware::find_in(Arch::X86_64, root.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("OVMF_CODE_4M.fd") && err.contains("package ovmf"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1);
        let err = Firmware::find_in(Arch::Aarch64, root.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("AAVMF_CODE.fd") && err.contains("qemu-efi-aarch64"),
            "{err}"
        );

        let ovmf = root.path().join("usr/share/OVMF");
        fs::create_dir_all(&ovmf).unwrap();
        fs::write(ovmf.join("OVMF_CODE_4M.fd"), b"").unwrap();
        let err = Firmware::find_in(Arch::X86_64, root.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("OVMF_VARS_4M.fd is missing"), "{err}");
        fs::write(ovmf.join("OVMF_VARS_4M.fd"), b"").unwrap();
        let found = Firmware::find_in(Arch::X86_64, root.path()).unwrap();
        assert_eq!(found.code, ovmf.join("OVMF_CODE_4M.fd"));
        assert_eq!(found.vars_template, ovmf.join("OVMF_VARS_4M.fd"));
    }

    #[test]
    fn arch_from_names() {
        assert_eq!(
            arch_from_file_name(Path::new("out/minimal-x86_64.raw")),
            Some(Arch::X86_64)
        );
        assert_eq!(
            arch_from_file_name(Path::new("out/minimal-aarch64.raw")),
            Some(Arch::Aarch64)
        );
        assert_eq!(arch_from_file_name(Path::new("disk.qcow2")), None);
    }

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
    fn missing_image_is_named() {
        let mut spec = RunSpec::new("/nonexistent/x-x86_64.raw", Arch::X86_64, fw(Arch::X86_64));
        spec.serial = Serial::File("/nonexistent/log".into());
        let err = spawn(&spec, Stdio::null(), Stdio::null())
            .unwrap_err()
            .to_string();
        // Either QEMU is missing (named with its package) or the image is.
        assert!(
            err.contains("/nonexistent/x-x86_64.raw") || err.contains("qemu-system-x86"),
            "{err}"
        );
    }
}
