//! The manifest's `[hardening]` items laid into the installed tree: the
//! profile's files ([`crate::manifest::profile::FILES`]), the generated overrides and
//! open ports, the rootless podman account, and unit states.
//!
//! What to do is computed first as plain data ([`plan`]), then carried out
//! ([`apply`]): files through cap-std, the account and units with the tree's
//! own `useradd`/`usermod`/`systemctl` under chroot. It runs before the
//! manifest's `[units]`, so that the manifest has the last word on units.

use std::path::Path;

use anyhow::{Context, Result};
use cap_std::fs::Dir;

use super::accounts::{self, Account};
use super::customize::chroot;
use super::ostree_layout::write_file;
use crate::manifest::profile::{self, Content, Item, FILES};
use crate::manifest::{Hardening, Manifest};

/// The sub-uid and sub-gid range of the rootless account: 65536 ids (a full
/// 16-bit range, what images with high uids need), far above the ranges
/// useradd hands to the manifest's users from 100000 on.
pub const ROOTLESS_SUBIDS: (u32, u32) = (524_288, 65_536);
/// The range rootful podman's `--userns=auto` takes its id blocks from: the
/// entries of the name `containers` in /etc/subuid and /etc/subgid (no such
/// account exists). 1048576 ids from 1048576 on, clear of every other range.
pub const AUTO_USERNS_SUBIDS: &str = "containers:1048576:1048576";
/// tmpfiles.d file for the rootless account's home and linger flag (/var is
/// not in the commit).
pub const ROOTLESS_TMPFILES: &str = "usr/lib/tmpfiles.d/hull-rootless.conf";

/// Everything the hardening items do to a tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Path relative to `/` and what goes there.
    pub files: Vec<(String, PlannedContent)>,
    pub enable: Vec<&'static str>,
    pub disable: Vec<&'static str>,
    /// The rootless account to create, if any.
    pub rootless_user: Option<String>,
    /// Lines added to both /etc/subuid and /etc/subgid.
    pub subid_lines: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedContent {
    /// Text and permission bits.
    File(String, u32),
    Symlink(String),
}

/// What `h` does to a tree in which `has_keys` says whether any user has SSH
/// keys and `has_unit` whether a unit file is installed.
pub fn plan(h: &Hardening, has_keys: bool, has_unit: impl Fn(&str) -> bool) -> Plan {
    let mut p = Plan::default();
    if !h.enable {
        return p;
    }
    for f in FILES.iter().filter(|f| h.has(f.item)) {
        let content = match f.content {
            Content::File(t) => PlannedContent::File(t.to_string(), f.mode),
            Content::Symlink(t) => PlannedContent::Symlink(t.to_string()),
        };
        p.files.push((f.path.to_string(), content));
    }
    if !h.sysctl_overrides.is_empty() {
        p.files.push((
            profile::SYSCTL_OVERRIDES.to_string(),
            PlannedContent::File(profile::sysctl_overrides_text(&h.sysctl_overrides), 0o644),
        ));
    }
    if h.firewall {
        p.files.push((
            profile::OPEN_PORTS.to_string(),
            PlannedContent::File(profile::open_ports_rules(&h.open_ports), 0o644),
        ));
    }
    if h.rootless {
        p.rootless_user = Some(h.rootless_user.clone());
        let u = &h.rootless_user;
        p.files.push((
            ROOTLESS_TMPFILES.to_string(),
            PlannedContent::File(
                format!(
                "# written by hull: the rootless podman account's home, and lingering so that\n\
                 # its user manager (and the containers it runs) start at boot\n\
                 d /var/home/{u} 0700 {u} {u} -\n\
                 d /var/lib/systemd/linger 0755 root root -\n\
                 f /var/lib/systemd/linger/{u} 0644 root root -\n"
            ),
                0o644,
            ),
        ));
    }
    if h.containers {
        p.subid_lines.push(AUTO_USERNS_SUBIDS);
    }
    for item in [Item::Firewall, Item::Audit] {
        if h.has(item) {
            p.enable.extend(item.units());
        }
    }
    // sshd runs only for someone who can log in with a key; its first-boot
    // key generator goes with it.
    if h.ssh && !has_keys {
        p.disable.extend(
            ["ssh.service", "ssh.socket", "sshd-keygen.service"]
                .into_iter()
                .filter(|u| has_unit(u)),
        );
    }
    if h.prune_units {
        p.disable
            .extend(Item::PruneUnits.disables().iter().filter(|u| has_unit(u)));
    }
    p
}

/// Applies the manifest's hardening items to the tree at `root_path`.
/// `accounts` holds the planned ids of the rootless account.
pub fn apply(
    root_path: &Path,
    root: &Dir,
    manifest: &Manifest,
    accounts: &[Account],
) -> Result<()> {
    let has_keys = manifest
        .users
        .iter()
        .any(|u| !u.ssh_authorized_keys.is_empty());
    let has_unit = |u: &str| {
        root.exists(format!("usr/lib/systemd/system/{u}"))
            || root.exists(format!("lib/systemd/system/{u}"))
    };
    let p = plan(&manifest.hardening, has_keys, has_unit);
    for (path, content) in &p.files {
        match content {
            PlannedContent::File(text, mode) => write_file(root, path, text.as_bytes(), *mode)?,
            PlannedContent::Symlink(target) => {
                if let Some(parent) = Path::new(path).parent() {
                    root.create_dir_all(parent)
                        .with_context(|| format!("creating /{}", parent.display()))?;
                }
                if root.symlink_metadata(path).is_ok() {
                    root.remove_file(path)
                        .with_context(|| format!("removing /{path}"))?;
                }
                root.symlink_contents(target, path)
                    .with_context(|| format!("linking /{path} to {target}"))?;
            }
        }
    }
    if let Some(user) = &p.rootless_user {
        add_rootless_user(root_path, accounts::find(accounts, user)?)?;
    }
    for file in ["etc/subuid", "etc/subgid"] {
        add_lines(root, file, &p.subid_lines)?;
    }
    for (verb, units) in [("enable", &p.enable), ("disable", &p.disable)] {
        if !units.is_empty() {
            chroot(root_path, &[&["systemctl", verb][..], units].concat())
                .with_context(|| format!("hardening: systemctl {verb} {}", units.join(" ")))?;
        }
    }
    Ok(())
}

/// The `groupadd`, `useradd` and `usermod` runs that make the rootless
/// account with its planned ids.
pub fn rootless_user_commands(account: &Account) -> Vec<Vec<String>> {
    let (start, count) = ROOTLESS_SUBIDS;
    let range = format!("{start}-{}", start + count - 1);
    let home = format!("/home/{}", account.name);
    let mut cmds = accounts::create_commands(
        account,
        &[
            // Its range is set below, not the next free one useradd would pick.
            "-K",
            "SUB_UID_COUNT=0",
            "-K",
            "SUB_GID_COUNT=0",
            "--no-create-home",
            "--home-dir",
            &home,
            "--shell",
            "/usr/sbin/nologin",
        ],
    );
    cmds.push(
        [
            "usermod",
            "--add-subuids",
            &range,
            "--add-subgids",
            &range,
            &account.name,
        ]
        .map(String::from)
        .to_vec(),
    );
    cmds
}

fn add_rootless_user(root_path: &Path, account: &Account) -> Result<()> {
    for args in rootless_user_commands(account) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        chroot(root_path, &args).with_context(|| {
            format!("hardening: creating the rootless account {}", account.name)
        })?;
    }
    Ok(())
}

/// Appends each of `lines` that `file` does not hold yet (creating it, 0644).
fn add_lines(root: &Dir, file: &str, lines: &[&str]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut text = match root.read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading /{file}")),
    };
    for line in lines {
        if !text.lines().any(|l| l == *line) {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(line);
            text.push('\n');
        }
    }
    write_file(root, file, text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::hardening::hardening_of;
    use crate::manifest::raw::parse_str;
    use crate::manifest::Packages;

    fn table(text: &str) -> Hardening {
        let raw = parse_str(Path::new("m.toml"), text).unwrap().hardening;
        let packages = Packages {
            include: ["nftables", "auditd", "uidmap"].map(String::from).to_vec(),
            exclude: vec![],
        };
        hardening_of(raw, &packages, &[]).unwrap()
    }

    fn paths(p: &Plan) -> Vec<&str> {
        p.files.iter().map(|(path, _)| path.as_str()).collect()
    }

    #[test]
    fn off_plans_nothing() {
        assert_eq!(plan(&Hardening::off(), false, |_| true), Plan::default());
        assert_eq!(
            plan(&table("[hardening]\nenable = false\n"), false, |_| true),
            Plan::default()
        );
    }

    #[test]
    fn full_profile() {
        let p = plan(
            &table("[hardening]\nopen-ports = [\"22/tcp\"]\n"),
            false,
            |u| ["ssh.service", "sshd-keygen.service", "e2scrub_all.timer"].contains(&u),
        );
        let paths = paths(&p);
        for f in FILES {
            assert!(paths.contains(&f.path), "{}", f.path);
        }
        assert!(paths.contains(&profile::OPEN_PORTS));
        assert!(paths.contains(&ROOTLESS_TMPFILES));
        assert!(!paths.contains(&profile::SYSCTL_OVERRIDES));
        // The OCI hook is run by podman: it must stay executable.
        let (_, hook) = p
            .files
            .iter()
            .find(|(f, _)| f.ends_with("oci-no-new-privileges"))
            .unwrap();
        assert!(matches!(hook, PlannedContent::File(_, 0o755)), "{hook:?}");
        assert_eq!(p.enable, ["nftables.service", "auditd.service"]);
        // Only units the tree has are disabled.
        assert_eq!(
            p.disable,
            ["ssh.service", "sshd-keygen.service", "e2scrub_all.timer"]
        );
        assert_eq!(p.rootless_user.as_deref(), Some("rootless"));
        let ports = &p
            .files
            .iter()
            .find(|(f, _)| f == profile::OPEN_PORTS)
            .unwrap()
            .1;
        let PlannedContent::File(ports, _) = ports else {
            panic!("{ports:?}")
        };
        assert!(ports.contains("tcp dport 22 accept"));
        let (_, tmpfiles) = p
            .files
            .iter()
            .find(|(f, _)| f == ROOTLESS_TMPFILES)
            .unwrap();
        assert_eq!(
            tmpfiles,
            &PlannedContent::File(
                "# written by hull: the rootless podman account's home, and lingering so that\n\
                 # its user manager (and the containers it runs) start at boot\n\
                 d /var/home/rootless 0700 rootless rootless -\n\
                 d /var/lib/systemd/linger 0755 root root -\n\
                 f /var/lib/systemd/linger/rootless 0644 root root -\n"
                    .into(),
                0o644
            )
        );
    }

    #[test]
    fn keys_keep_sshd_as_the_manifest_says() {
        let p = plan(&table("[hardening]\nprune-units = false\n"), true, |_| true);
        assert!(p.disable.is_empty());
        let p = plan(
            &table("[hardening]\nssh = false\nprune-units = false\n"),
            false,
            |_| true,
        );
        assert!(p.disable.is_empty());
        assert!(!paths(&p).iter().any(|f| f.contains("sshd_config.d")));
    }

    #[test]
    fn prune_units_and_sandbox_are_items() {
        let all = |_: &str| true;
        let p = plan(&table("[hardening]\n"), true, all);
        assert_eq!(p.disable, profile::PRUNED_UNITS);
        let drop_ins: Vec<&str> = paths(&p)
            .into_iter()
            .filter(|f| f.ends_with(".service.d/50-hull-sandbox.conf"))
            .collect();
        for unit in ["nftables", "auditd", "audit-rules", "apparmor"] {
            let want = format!("usr/lib/systemd/system/{unit}.service.d/50-hull-sandbox.conf");
            assert!(drop_ins.contains(&want.as_str()), "{want}");
        }
        let p = plan(
            &table("[hardening]\nprune-units = false\nsandbox = false\n"),
            true,
            all,
        );
        assert!(p.disable.is_empty());
        assert!(!paths(&p).iter().any(|f| f.contains("sandbox")));
    }

    /// Every sandboxing drop-in keeps what its service cannot work without.
    #[test]
    fn sandbox_drop_ins_keep_what_each_service_needs() {
        let text = |unit: &str| {
            let path = format!("usr/lib/systemd/system/{unit}.service.d/50-hull-sandbox.conf");
            match FILES.iter().find(|f| f.path == path).map(|f| f.content) {
                Some(Content::File(t)) => t,
                other => panic!("{path}: {other:?}"),
            }
        };
        let caps = |unit: &str| {
            text(unit)
                .lines()
                .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
                .unwrap_or_else(|| panic!("{unit}: no CapabilityBoundingSet"))
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert!(caps("nftables").contains(&"CAP_NET_ADMIN"));
        assert!(caps("auditd").contains(&"CAP_AUDIT_CONTROL"));
        assert!(caps("audit-rules").contains(&"CAP_AUDIT_CONTROL"));
        assert!(caps("apparmor").contains(&"CAP_MAC_ADMIN"));
        // The audit socket and firewall live in the host's network namespace;
        // apparmor loads through /sys.
        for unit in ["nftables", "auditd", "audit-rules"] {
            assert!(!text(unit).contains("PrivateNetwork=yes"), "{unit}");
        }
        assert!(!text("apparmor").contains("ProtectKernelTunables=yes"));
        // Units that run before local-fs.target get no private /tmp.
        for unit in ["nftables", "apparmor"] {
            assert!(!text(unit).contains("PrivateTmp=yes"), "{unit}");
        }
    }

    #[test]
    fn single_items_off() {
        let p = plan(
            &table("[hardening]\nfirewall = false\naudit = false\nrootless = false\ntmp = false\n"),
            false,
            |_| false,
        );
        let paths = paths(&p);
        assert!(p.enable.is_empty());
        assert!(p.rootless_user.is_none());
        assert!(!paths.contains(&"etc/nftables.conf"));
        assert!(!paths.contains(&profile::OPEN_PORTS));
        assert!(!paths.iter().any(|f| f.contains("var-tmp.mount")));
        assert!(paths.contains(&"usr/lib/sysctl.d/60-hull-hardening.conf"));
    }

    #[test]
    fn overrides_are_written_after_the_profile() {
        let p = plan(
            &table("[hardening]\nsysctl-overrides = { \"net.ipv4.conf.all.rp_filter\" = \"2\" }\n"),
            false,
            |_| false,
        );
        let (_, text) = p
            .files
            .iter()
            .find(|(f, _)| f == profile::SYSCTL_OVERRIDES)
            .unwrap();
        assert_eq!(
            text,
            &PlannedContent::File(
                "# written by hull from hardening.sysctl-overrides\nnet.ipv4.conf.all.rp_filter = 2\n"
                    .into(),
                0o644
            )
        );
        // sysctl.d applies files in name order: the overrides come last.
        assert!(profile::SYSCTL_OVERRIDES > "usr/lib/sysctl.d/60-hull-hardening.conf");
    }

    #[test]
    fn containers_item_gives_rootful_auto_userns_a_range() {
        let p = plan(&table("[hardening]\n"), false, |_| false);
        assert_eq!(p.subid_lines, [AUTO_USERNS_SUBIDS]);
        let p = plan(&table("[hardening]\ncontainers = false\n"), false, |_| {
            false
        });
        assert!(p.subid_lines.is_empty());

        let t = tempfile::tempdir().unwrap();
        let d = Dir::open_ambient_dir(t.path(), cap_std::ambient_authority()).unwrap();
        d.create_dir("etc").unwrap();
        d.write("etc/subuid", "rootless:524288:65536").unwrap();
        add_lines(&d, "etc/subuid", &[AUTO_USERNS_SUBIDS]).unwrap();
        add_lines(&d, "etc/subuid", &[AUTO_USERNS_SUBIDS]).unwrap();
        add_lines(&d, "etc/subgid", &[AUTO_USERNS_SUBIDS]).unwrap();
        assert_eq!(
            d.read_to_string("etc/subuid").unwrap(),
            "rootless:524288:65536\ncontainers:1048576:1048576\n"
        );
        assert_eq!(
            d.read_to_string("etc/subgid").unwrap(),
            "containers:1048576:1048576\n"
        );
    }

    #[test]
    fn rootless_account_gets_its_own_range() {
        let cmds = rootless_user_commands(&Account {
            name: "pods".into(),
            uid: 1001,
            gid: 1001,
        });
        assert_eq!(cmds[0], ["groupadd", "--gid", "1001", "pods"]);
        assert_eq!(cmds[1][..5], ["useradd", "--uid", "1001", "--gid", "1001"]);
        assert!(cmds[1].contains(&"SUB_UID_COUNT=0".to_string()));
        assert_eq!(cmds[1].last().map(String::as_str), Some("pods"));
        assert_eq!(
            cmds[2],
            [
                "usermod",
                "--add-subuids",
                "524288-589823",
                "--add-subgids",
                "524288-589823",
                "pods"
            ]
        );
    }
}
