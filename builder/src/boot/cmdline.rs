//! The kernel command line: the one place it is composed.
//!
//! A deployment's command line is, in this order: `root=LABEL=hull-root`,
//! hull's own arguments (`boot/cmdline-common`, then `boot/cmdline-<arch>`),
//! the hardening profile's (`boot/cmdline-hardening`, picked by the
//! manifest's `[hardening]` table), then the manifest's `kernel.cmdline`, so
//! that the manifest can override the profile. OSTree appends `ostree=` when
//! it deploys, and systemd-boot `initrd=` for kernels without the initrd
//! protocol: [`reserved`] counts both, and [`compose`] refuses a command line
//! the kernel would cut short. The build writes the result into the commit
//! (`hull.kargs`); on a host, [`for_update`] takes it from there.

use super::ROOT_LABEL;
use crate::util::arch::Arch;

const COMMON: &str = include_str!("../../../boot/cmdline-common");
const X86_64: &str = include_str!("../../../boot/cmdline-x86_64");
const AARCH64: &str = include_str!("../../../boot/cmdline-aarch64");

/// The kernel's command-line buffer on x86 and arm64 (`COMMAND_LINE_SIZE`),
/// the terminating NUL included: the longest command line is one byte less.
pub const COMMAND_LINE_SIZE: usize = 2048;

/// hull's own arguments for `arch`: the root label, then the common and the
/// per-architecture files.
pub fn base(arch: Arch) -> Vec<String> {
    let per_arch = match arch {
        Arch::X86_64 => X86_64,
        Arch::Aarch64 => AARCH64,
    };
    let mut args = vec![format!("root=LABEL={ROOT_LABEL}")];
    args.extend(
        COMMON
            .split_whitespace()
            .chain(per_arch.split_whitespace())
            .map(String::from),
    );
    args
}

/// Bytes the command line holds besides the arguments hull and the manifest
/// give: OSTree's ` ostree=/ostree/boot.N/<name>/<sha256>/N` and the
/// ` initrd=\ostree\<name>-<sha256>\initramfs-<kver>.img` systemd-boot adds
/// for kernels without the initrd protocol (64 bytes allowed for `<kver>`).
/// `name` is the manifest's name (OSTree's osname).
pub fn reserved(name: &str) -> usize {
    let ostree = " ostree=/ostree/boot.1//".len() + name.len() + 64 + "/0".len();
    let initrd = " initrd=\\ostree\\-\\initramfs-.img".len() + name.len() + 64 + 64;
    ostree + initrd
}

/// The command line of a deployment of OS `name` on `arch`, before OSTree
/// adds `ostree=`: [`base`], then `hardening` (the profile's arguments),
/// then `manifest` (the manifest's `kernel.cmdline` for `arch`).
///
/// Errors: the whole line, with what OSTree and the boot loader add
/// ([`reserved`]), would not fit the kernel's [`COMMAND_LINE_SIZE`] (the
/// kernel cuts a longer one short, `ostree=` last); the message gives the
/// size, the caller names the manifest key.
pub fn compose(
    name: &str,
    arch: Arch,
    hardening: &[String],
    manifest: &[String],
) -> Result<Vec<String>, String> {
    let mut args = base(arch);
    args.extend(hardening.iter().cloned());
    args.extend(manifest.iter().cloned());
    let len = args.iter().map(|a| a.len()).sum::<usize>() + args.len().saturating_sub(1);
    let total = len + reserved(name);
    if total >= COMMAND_LINE_SIZE {
        return Err(format!(
            "the {arch} kernel command line would be {total} bytes with hull's arguments, \
             the hardening profile's, ostree= and the boot loader's initrd=; the kernel keeps {}",
            COMMAND_LINE_SIZE - 1
        ));
    }
    Ok(args)
}

/// The command line of a deployment `hull update` stages: the one the
/// new commit carries (`commit`, composed by [`compose`] at build time),
/// else the booted deployment's `options` line without its `ostree=`
/// (commits from before hull wrote `hull.kargs`).
pub fn for_update(commit: Option<Vec<String>>, booted_options: Option<&str>) -> Vec<String> {
    match commit {
        Some(k) if !k.is_empty() => k,
        _ => booted_options
            .unwrap_or_default()
            .split_whitespace()
            .filter(|a| !a.starts_with("ostree="))
            .map(String::from)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_architecture() {
        let args = compose(
            "demo",
            Arch::X86_64,
            &["lockdown=x".into()],
            &["quiet".into()],
        )
        .unwrap();
        assert_eq!(args.first().unwrap(), "root=LABEL=hull-root");
        assert!(args.contains(&"console=ttyS0,115200n8".to_string()));
        assert!(args.contains(&"systemd.gpt_auto=0".to_string()));
        let profile = args.iter().position(|a| a == "lockdown=x").unwrap();
        let manifest = args.iter().position(|a| a == "quiet").unwrap();
        assert_eq!(manifest, args.len() - 1);
        assert!(
            profile < manifest,
            "the manifest's arguments override the profile's"
        );
        let arm = base(Arch::Aarch64);
        assert!(arm.contains(&"console=ttyAMA0,115200n8".to_string()));
        assert!(!arm.iter().any(|a| a.contains("ttyS0")));
    }

    /// The whole line, with what OSTree and systemd-boot add, stays within
    /// 2047 bytes: one byte more is refused.
    #[test]
    fn length_limit() {
        let used: usize = base(Arch::X86_64)
            .iter()
            .map(|a| a.len() + 1)
            .sum::<usize>()
            + reserved("demo");
        // `used` counts a space after each argument; the one after the last
        // stands for the space before the argument added here.
        let room = COMMAND_LINE_SIZE - 1 - used;
        let arg = |n: usize| vec![format!("x={}", "a".repeat(n - 2))];
        compose("demo", Arch::X86_64, &[], &arg(room)).unwrap();
        let e = compose("demo", Arch::X86_64, &[], &arg(room + 1)).unwrap_err();
        assert!(e.contains("2048 bytes") && e.contains("keeps 2047"), "{e}");
        // The profile's arguments count too.
        assert!(compose("demo", Arch::X86_64, &["a=b".into()], &arg(room)).is_err());
        // Reserved: " ostree=/ostree/boot.1/demo/<64>/0" and
        // " initrd=\ostree\demo-<64>\initramfs-<64>.img".
        assert_eq!(reserved("demo"), 94 + 164);
    }

    #[test]
    fn update_takes_the_commits_line() {
        let booted = Some("root=LABEL=hull-root quiet ostree=/ostree/boot.1/x/y/0");
        assert_eq!(for_update(Some(vec!["a".into()]), booted), ["a"]);
        assert_eq!(
            for_update(Some(vec![]), booted),
            ["root=LABEL=hull-root", "quiet"]
        );
        assert_eq!(for_update(None, booted), ["root=LABEL=hull-root", "quiet"]);
        assert!(for_update(None, None).is_empty());
    }
}
