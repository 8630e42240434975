//! The hardening profile as data: which files each item lays into the tree,
//! which kernel arguments it adds, which package it needs and which units it
//! enables. The manifest's `[hardening]` table ([`crate::manifest::Hardening`])
//! picks the items; [`crate::build::rootfs::hardening`] applies them.
//!
//! The files are those of `rootfs-overlays/hardening/` (usable on its own as
//! an overlay: all items at once), compiled in so that each item can be
//! switched on or off by itself; a unit test keeps this table and that
//! directory in step. Reasons for every setting: `docs/hardening.md`.

use std::collections::BTreeMap;

use crate::manifest::Arch;

/// One switchable part of the profile (a key of `[hardening]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Item {
    KernelCmdline,
    Sysctl,
    Firewall,
    Audit,
    Tmp,
    Ssh,
    Containers,
    Rootless,
    PruneUnits,
    Sandbox,
}

impl Item {
    /// The item's key in `[hardening]`.
    pub fn key(self) -> &'static str {
        match self {
            Item::KernelCmdline => "kernel-cmdline",
            Item::Sysctl => "sysctl",
            Item::Firewall => "firewall",
            Item::Audit => "audit",
            Item::Tmp => "tmp",
            Item::Ssh => "ssh",
            Item::Containers => "containers",
            Item::Rootless => "rootless",
            Item::PruneUnits => "prune-units",
            Item::Sandbox => "sandbox",
        }
    }

    /// The Debian package the item configures, which the manifest must install.
    pub fn package(self) -> Option<&'static str> {
        match self {
            Item::Firewall => Some("nftables"),
            Item::Audit => Some("auditd"),
            // newuidmap/newgidmap: rootless podman cannot map its id ranges without them.
            Item::Rootless => Some("uidmap"),
            _ => None,
        }
    }

    /// Units the item enables.
    pub fn units(self) -> &'static [&'static str] {
        match self {
            Item::Firewall => &["nftables.service"],
            Item::Audit => &["auditd.service"],
            _ => &[],
        }
    }

    /// Units the item disables where they are installed.
    pub fn disables(self) -> &'static [&'static str] {
        match self {
            Item::PruneUnits => PRUNED_UNITS,
            _ => &[],
        }
    }
}

/// Units Debian enables that a container host does not use (reasons in
/// docs/hardening.md). A manifest's `[units] enable` turns one back on.
pub const PRUNED_UNITS: &[&str] = &[
    // Online ext4 scrubbing works on LVM snapshots only; hull's root is plain ext4.
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    // DHCP for macvlan container networks, on demand from podman.
    "netavark-dhcp-proxy.socket",
    "netavark-dhcp-proxy.service",
    // Re-adds podman's rules after a firewalld reload; hull has no firewalld.
    "netavark-firewalld-reload.service",
];

/// What a profile path holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    File(&'static str),
    Symlink(&'static str),
}

/// A path of `rootfs-overlays/hardening/`, relative to `/`, and its item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileFile {
    pub item: Item,
    pub path: &'static str,
    pub content: Content,
    /// Permission bits of a file (symlinks: unused).
    pub mode: u32,
}

macro_rules! overlay_file {
    ($item:expr, $path:literal) => {
        overlay_file!($item, $path, 0o644)
    };
    ($item:expr, $path:literal, $mode:literal) => {
        ProfileFile {
            item: $item,
            path: $path,
            content: Content::File(include_str!(concat!(
                "../../../rootfs-overlays/hardening/",
                $path
            ))),
            mode: $mode,
        }
    };
}

/// Every path of `rootfs-overlays/hardening/`, by item.
pub const FILES: &[ProfileFile] = &[
    overlay_file!(Item::Sysctl, "usr/lib/sysctl.d/60-hull-hardening.conf"),
    overlay_file!(Item::Firewall, "etc/nftables.conf"),
    overlay_file!(Item::Audit, "etc/audit/rules.d/50-hull.rules"),
    overlay_file!(Item::Tmp, "usr/lib/systemd/system/var-tmp.mount"),
    ProfileFile {
        item: Item::Tmp,
        path: "usr/lib/systemd/system/local-fs.target.wants/var-tmp.mount",
        content: Content::Symlink("../var-tmp.mount"),
        mode: 0o777,
    },
    overlay_file!(Item::Ssh, "etc/ssh/sshd_config.d/40-hull-hardening.conf"),
    overlay_file!(
        Item::Containers,
        "etc/containers/containers.conf.d/50-hull-hardening.conf"
    ),
    overlay_file!(
        Item::Containers,
        "usr/share/containers/oci/hooks.d/50-hull-no-new-privileges.json"
    ),
    overlay_file!(
        Item::Containers,
        "usr/libexec/hull/oci-no-new-privileges",
        0o755
    ),
    overlay_file!(
        Item::Rootless,
        "usr/lib/systemd/system/user@.service.d/50-hull-delegate.conf"
    ),
    overlay_file!(
        Item::Sandbox,
        "usr/lib/systemd/system/apparmor.service.d/50-hull-sandbox.conf"
    ),
    overlay_file!(
        Item::Sandbox,
        "usr/lib/systemd/system/audit-rules.service.d/50-hull-sandbox.conf"
    ),
    overlay_file!(
        Item::Sandbox,
        "usr/lib/systemd/system/auditd.service.d/50-hull-sandbox.conf"
    ),
    overlay_file!(
        Item::Sandbox,
        "usr/lib/systemd/system/nftables.service.d/50-hull-sandbox.conf"
    ),
    overlay_file!(
        Item::Sandbox,
        "usr/lib/systemd/system/systemd-networkd-wait-online.service.d/50-hull-sandbox.conf"
    ),
];

/// Where `hardening.sysctl-overrides` go: read after the profile's file.
pub const SYSCTL_OVERRIDES: &str = "usr/lib/sysctl.d/61-hull-overrides.conf";
/// Where `hardening.open-ports` go: included by the profile's nftables.conf.
pub const OPEN_PORTS: &str = "etc/nftables.d/50-hull-open-ports.nft";

const CMDLINE: &str = include_str!("../../../boot/cmdline-hardening");

/// The profile's kernel arguments (boot/cmdline-hardening) for `arch`, in
/// order: the common ones and those marked `[arch]`.
pub fn cmdline(arch: Arch) -> Vec<&'static str> {
    cmdline_lines()
        .filter(|(only, _)| only.map_or(true, |a| a == arch.as_str()))
        .map(|(_, arg)| arg)
        .collect()
}

/// Every argument of the profile, for any architecture.
pub fn cmdline_all() -> Vec<&'static str> {
    cmdline_lines().map(|(_, arg)| arg).collect()
}

/// (the architecture a line is limited to, the argument)
fn cmdline_lines() -> impl Iterator<Item = (Option<&'static str>, &'static str)> {
    CMDLINE
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(
            |l| match l.strip_prefix('[').and_then(|r| r.split_once(']')) {
                Some((arch, arg)) => (Some(arch), arg.trim()),
                None => (None, l),
            },
        )
}

/// The name of a kernel argument: what comes before `=`.
pub fn karg_name(arg: &str) -> &str {
    arg.split_once('=').map_or(arg, |(name, _)| name)
}

/// Arguments of the audit item: audit records from the first process on, with
/// room for those made before auditd starts.
pub const AUDIT_CMDLINE: &[&str] = &["audit=1", "audit_backlog_limit=8192"];

/// The sysctls the profile sets, name to value, from its sysctl.d file.
pub fn sysctls() -> BTreeMap<&'static str, &'static str> {
    let text = FILES
        .iter()
        .find(|f| f.item == Item::Sysctl)
        .map(|f| match f.content {
            Content::File(t) => t,
            Content::Symlink(_) => "",
        })
        .unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

/// A port the firewall lets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Port {
    pub number: u16,
    pub proto: Proto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.number, self.proto.as_str())
    }
}

/// Parses `"22/tcp"` or `"53/udp"`.
pub fn parse_port(text: &str) -> Result<Port, String> {
    let bad = || format!("{text:?} is not a port: write \"22/tcp\" or \"53/udp\"");
    let (number, proto) = text.split_once('/').ok_or_else(bad)?;
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => return Err(bad()),
    };
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    match number.parse::<u16>() {
        Ok(n) if n > 0 => Ok(Port { number: n, proto }),
        _ => Err(format!("{text:?}: the port must be 1 to 65535")),
    }
}

/// The nftables rules opening `ports`, added to the profile's open-ports chain.
pub fn open_ports_rules(ports: &[Port]) -> String {
    let mut out = String::from(
        "# written by hull from hardening.open-ports; the input chain drops everything else\n",
    );
    for p in ports {
        out.push_str(&format!(
            "add rule inet hull open-ports {} dport {} accept\n",
            p.proto.as_str(),
            p.number
        ));
    }
    out
}

/// The sysctl.d lines of `hardening.sysctl-overrides`.
pub fn sysctl_overrides_text(overrides: &BTreeMap<String, String>) -> String {
    let mut out = String::from("# written by hull from hardening.sysctl-overrides\n");
    for (k, v) in overrides {
        out.push_str(&format!("{k} = {v}\n"));
    }
    out
}

/// Feeds everything compiled into the profile to a build's input digest.
pub fn digest(h: &mut impl sha2::Digest) {
    h.update(CMDLINE.as_bytes());
    for f in FILES {
        h.update(f.path.as_bytes());
        match f.content {
            Content::File(t) => h.update(format!("{:o}\n{t}", f.mode).as_bytes()),
            Content::Symlink(t) => h.update(format!("-> {t}").as_bytes()),
        }
        h.update(b"\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn overlay_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../rootfs-overlays/hardening")
    }

    fn walk(dir: &Path, rel: &Path, out: &mut Vec<(String, Content, u32)>) {
        use std::os::unix::fs::PermissionsExt;
        for entry in std::fs::read_dir(dir.join(rel)).unwrap() {
            let entry = entry.unwrap();
            let path = rel.join(entry.file_name());
            let ft = entry.file_type().unwrap();
            let name = path.display().to_string();
            if ft.is_dir() {
                walk(dir, &path, out);
            } else if ft.is_symlink() {
                let target = std::fs::read_link(dir.join(&path)).unwrap();
                let target: &'static str = target.display().to_string().leak();
                out.push((name, Content::Symlink(target), 0o777));
            } else {
                let text: &'static str = std::fs::read_to_string(dir.join(&path)).unwrap().leak();
                let mode = entry.metadata().unwrap().permissions().mode() & 0o7777;
                out.push((name, Content::File(text), mode));
            }
        }
    }

    /// The compiled-in table is the overlay directory, path for path.
    #[test]
    fn files_match_the_overlay_directory() {
        let mut on_disk = Vec::new();
        walk(&overlay_dir(), Path::new(""), &mut on_disk);
        on_disk.sort_by(|a, b| a.0.cmp(&b.0));
        let mut table: Vec<(String, Content, u32)> = FILES
            .iter()
            .map(|f| (f.path.to_string(), f.content, f.mode))
            .collect();
        table.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(table, on_disk);
    }

    #[test]
    fn cmdline_has_the_kspp_arguments() {
        let args = cmdline(Arch::X86_64);
        for a in [
            "slab_nomerge",
            "init_on_alloc=1",
            "init_on_free=1",
            "lockdown=integrity",
            "module.sig_enforce=1",
            "vsyscall=none",
            "mitigations=auto,nosmt",
        ] {
            assert!(args.contains(&a), "{a} missing from {args:?}");
        }
        assert!(args.iter().all(|a| !a.contains(char::is_whitespace)));
        assert_eq!(karg_name("lockdown=integrity"), "lockdown");
        assert_eq!(karg_name("slab_nomerge"), "slab_nomerge");
    }

    /// x86-only options stay off the arm64 command line, which gets its own
    /// page-table isolation switch instead.
    #[test]
    fn cmdline_is_per_architecture() {
        let x86 = cmdline(Arch::X86_64);
        let arm = cmdline(Arch::Aarch64);
        for a in [
            "vsyscall=none",
            "pti=on",
            "iommu=force",
            "intel_iommu=on",
            "ia32_emulation=0",
        ] {
            assert!(x86.contains(&a), "{a} missing on x86_64");
            assert!(!arm.contains(&a), "{a} on aarch64");
        }
        assert!(arm.contains(&"kpti=1") && !x86.contains(&"kpti=1"));
        for a in ["slab_nomerge", "lockdown=integrity", "iommu.strict=1"] {
            assert!(x86.contains(&a) && arm.contains(&a), "{a} not common");
        }
        let all = cmdline_all();
        assert_eq!(all.len(), x86.len() + 1);
        assert!(all.iter().all(|a| !a.starts_with('[')));
    }

    /// The collisions of docs/hardening.md: what would break containers is not set.
    #[test]
    fn sysctls_leave_containers_working() {
        let s = sysctls();
        assert_eq!(s.get("kernel.kptr_restrict"), Some(&"2"));
        assert_eq!(s.get("net.ipv4.conf.all.rp_filter"), Some(&"1"));
        for off_limits in [
            "user.max_user_namespaces",
            "kernel.unprivileged_userns_clone",
            "net.ipv4.ip_forward",
            "kernel.modules_disabled",
        ] {
            assert!(!s.contains_key(off_limits), "{off_limits} is set");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(
            parse_port("22/tcp"),
            Ok(Port {
                number: 22,
                proto: Proto::Tcp
            })
        );
        assert_eq!(parse_port("53/udp").unwrap().to_string(), "53/udp");
        for bad in [
            "22",
            "22/sctp",
            "0/tcp",
            "65536/tcp",
            "/tcp",
            "+1/tcp",
            "x/udp",
            "",
        ] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        let rules =
            open_ports_rules(&[parse_port("22/tcp").unwrap(), parse_port("53/udp").unwrap()]);
        assert!(rules.contains("add rule inet hull open-ports tcp dport 22 accept\n"));
        assert!(rules.contains("add rule inet hull open-ports udp dport 53 accept\n"));
    }

    #[test]
    fn every_item_with_a_package_has_its_files_or_units() {
        for item in [Item::Firewall, Item::Audit, Item::Rootless] {
            assert!(item.package().is_some());
            assert!(
                !item.units().is_empty() || FILES.iter().any(|f| f.item == item),
                "{item:?}"
            );
        }
    }
}
