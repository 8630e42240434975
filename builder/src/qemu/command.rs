//! The QEMU command line for a [`RunSpec`]: machine, firmware, disks,
//! network, console and credentials. Builds the argument vector only.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use base64::Engine as _;

use super::spec::{Accel, RunSpec, Serial};
use crate::manifest::Arch;
use crate::util::cmd::Cmd;

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
pub(super) fn smbios_credential(name: &str, value: &[u8]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::qemu::firmware::test_firmware as fw;

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
}
