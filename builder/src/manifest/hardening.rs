//! `[hardening]`: which items of the hardening profile ([`crate::manifest::profile`])
//! an image gets.
//!
//! The table absent means no hardening; present, every item defaults to on
//! and single items are switched off or adjusted. `enable = false` switches
//! off the whole profile, so that a manifest including one that hardens can
//! undo it (lists can only grow, scalars can be replaced).

use std::collections::BTreeMap;

use serde::Serialize;

use super::raw::RawHardening;
use super::{Arch, Packages, User};
use crate::manifest::profile::{self, Item, Port};

/// The default name of the rootless podman account.
pub const DEFAULT_ROOTLESS_USER: &str = "rootless";

/// The validated `[hardening]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hardening {
    /// The profile as a whole; when false every item below is false.
    pub enable: bool,
    /// KSPP kernel command line (boot/cmdline-hardening), less `cmdline_exclude`.
    pub kernel_cmdline: bool,
    /// Names (before `=`) of profile arguments left out.
    pub cmdline_exclude: Vec<String>,
    /// KSPP/CIS sysctls.
    pub sysctl: bool,
    /// sysctl name to value, applied after the profile's.
    pub sysctl_overrides: BTreeMap<String, String>,
    /// nftables: inbound dropped except `open_ports`.
    pub firewall: bool,
    pub open_ports: Vec<Port>,
    /// auditd with the profile's rules.
    pub audit: bool,
    /// /var/tmp mounted nosuid,nodev.
    pub tmp: bool,
    /// sshd key-only, no root, no forwarding; off unless a user has keys.
    pub ssh: bool,
    /// containers.conf defaults for every podman container.
    pub containers: bool,
    /// A dedicated account for rootless podman: sub-ids, lingering, delegation.
    pub rootless: bool,
    pub rootless_user: String,
    /// Debian's units a container host does not use, disabled.
    pub prune_units: bool,
    /// Sandboxing drop-ins for the services the profile enables.
    pub sandbox: bool,
}

impl Hardening {
    /// No hardening at all (no `[hardening]` table, or `enable = false`).
    pub fn off() -> Hardening {
        Hardening {
            enable: false,
            kernel_cmdline: false,
            cmdline_exclude: Vec::new(),
            sysctl: false,
            sysctl_overrides: BTreeMap::new(),
            firewall: false,
            open_ports: Vec::new(),
            audit: false,
            tmp: false,
            ssh: false,
            containers: false,
            rootless: false,
            rootless_user: DEFAULT_ROOTLESS_USER.to_string(),
            prune_units: false,
            sandbox: false,
        }
    }

    /// Whether `item` is on.
    pub fn has(&self, item: Item) -> bool {
        match item {
            Item::KernelCmdline => self.kernel_cmdline,
            Item::Sysctl => self.sysctl,
            Item::Firewall => self.firewall,
            Item::Audit => self.audit,
            Item::Tmp => self.tmp,
            Item::Ssh => self.ssh,
            Item::Containers => self.containers,
            Item::Rootless => self.rootless,
            Item::PruneUnits => self.prune_units,
            Item::Sandbox => self.sandbox,
        }
    }

    /// The kernel arguments the profile adds on `arch`, before the manifest's own.
    pub fn kernel_args(&self, arch: Arch) -> Vec<String> {
        let mut args = Vec::new();
        if self.kernel_cmdline {
            args.extend(
                profile::cmdline(arch)
                    .into_iter()
                    .filter(|a| {
                        !self
                            .cmdline_exclude
                            .iter()
                            .any(|x| x == profile::karg_name(a))
                    })
                    .map(String::from),
            );
        }
        if self.audit {
            args.extend(profile::AUDIT_CMDLINE.iter().map(|a| a.to_string()));
        }
        args
    }
}

/// Merges a later file's table over an earlier one: scalars replaced, lists
/// accumulated, sysctl overrides merged by name (the later value wins).
pub fn merge(acc: &mut RawHardening, next: RawHardening) {
    use super::compose::{accumulate, replace};
    let RawHardening {
        enable,
        kernel_cmdline,
        cmdline_exclude,
        sysctl,
        sysctl_overrides,
        firewall,
        open_ports,
        audit,
        tmp,
        ssh,
        containers,
        rootless,
        rootless_user,
        prune_units,
        sandbox,
    } = next;
    replace(&mut acc.enable, enable);
    replace(&mut acc.kernel_cmdline, kernel_cmdline);
    accumulate(&mut acc.cmdline_exclude, cmdline_exclude);
    replace(&mut acc.sysctl, sysctl);
    if let Some(o) = sysctl_overrides {
        acc.sysctl_overrides
            .get_or_insert_with(BTreeMap::new)
            .extend(o);
    }
    replace(&mut acc.firewall, firewall);
    accumulate(&mut acc.open_ports, open_ports);
    replace(&mut acc.audit, audit);
    replace(&mut acc.tmp, tmp);
    replace(&mut acc.ssh, ssh);
    replace(&mut acc.containers, containers);
    replace(&mut acc.rootless, rootless);
    replace(&mut acc.rootless_user, rootless_user);
    replace(&mut acc.prune_units, prune_units);
    replace(&mut acc.sandbox, sandbox);
}

/// Checks the composed table. Errors are `(key under hardening., message)`.
pub fn hardening_of(
    raw: Option<RawHardening>,
    packages: &Packages,
    users: &[User],
) -> Result<Hardening, (String, String)> {
    let Some(raw) = raw else {
        return Ok(Hardening::off());
    };
    let RawHardening {
        enable,
        kernel_cmdline,
        cmdline_exclude,
        sysctl,
        sysctl_overrides,
        firewall,
        open_ports,
        audit,
        tmp,
        ssh,
        containers,
        rootless,
        rootless_user,
        prune_units,
        sandbox,
    } = raw;
    let enable = enable.unwrap_or(true);
    let on = |v: Option<bool>| enable && v.unwrap_or(true);

    let profile = profile::cmdline_all();
    let cmdline_exclude = cmdline_exclude.unwrap_or_default();
    for (i, name) in cmdline_exclude.iter().enumerate() {
        if !profile.iter().any(|a| profile::karg_name(a) == name) {
            let names: Vec<&str> = profile.iter().map(|a| profile::karg_name(a)).collect();
            return Err((
                format!("cmdline-exclude[{i}]"),
                format!(
                    "{name:?} is not an argument of the profile (one of: {})",
                    names.join(" ")
                ),
            ));
        }
    }

    let sysctl_overrides = sysctl_overrides.unwrap_or_default();
    for (name, value) in &sysctl_overrides {
        let key = format!("sysctl-overrides.{name:?}");
        check_sysctl_name(name).map_err(|m| (key.clone(), m))?;
        if value.trim().is_empty() || value.chars().any(|c| c.is_control()) {
            return Err((
                key,
                format!("{value:?} is not a value (not empty, one line)"),
            ));
        }
    }

    let mut ports = Vec::new();
    for (i, text) in open_ports.unwrap_or_default().iter().enumerate() {
        let port = profile::parse_port(text).map_err(|m| (format!("open-ports[{i}]"), m))?;
        if !ports.contains(&port) {
            ports.push(port);
        }
    }

    let rootless_user = rootless_user.unwrap_or_else(|| DEFAULT_ROOTLESS_USER.to_string());
    super::validate::check_account(&rootless_user).map_err(|m| ("rootless-user".to_string(), m))?;
    if rootless_user == "root" || rootless_user == "containers" {
        // `containers` names the id range podman's rootful --userns=auto takes.
        return Err((
            "rootless-user".into(),
            format!("{rootless_user:?} is reserved; choose another name"),
        ));
    }
    // Made with `useradd --user-group`, like a [[users]] entry.
    let base = super::validate::BASE_PASSWD_USERS
        .iter()
        .chain(super::validate::BASE_PASSWD_GROUPS);
    if base.into_iter().any(|n| *n == rootless_user) {
        return Err((
            "rootless-user".into(),
            format!(
                "{rootless_user:?} is one of Debian's system accounts or groups (base-passwd): \
                 useradd --user-group would refuse it"
            ),
        ));
    }
    let h = Hardening {
        enable,
        kernel_cmdline: on(kernel_cmdline),
        cmdline_exclude,
        sysctl: on(sysctl),
        sysctl_overrides,
        firewall: on(firewall),
        open_ports: ports,
        audit: on(audit),
        tmp: on(tmp),
        ssh: on(ssh),
        containers: on(containers),
        rootless: on(rootless),
        rootless_user,
        prune_units: on(prune_units),
        sandbox: on(sandbox),
    };
    if h.rootless && users.iter().any(|u| u.name == h.rootless_user) {
        return Err((
            "rootless-user".into(),
            format!(
                "{:?} is also a [[users]] entry; the rootless account is hull's own (choose another name)",
                h.rootless_user
            ),
        ));
    }
    for item in [Item::Firewall, Item::Audit, Item::Rootless] {
        if let Some(pkg) = item.package() {
            if h.has(item) && !packages.include.iter().any(|p| p == pkg) {
                return Err((
                    item.key().into(),
                    format!(
                        "needs {pkg} in packages.include, or set {} = false",
                        item.key()
                    ),
                ));
            }
        }
    }
    Ok(h)
}

/// sysctl names: segments of `A-Z a-z 0-9 _ - *` joined by `.` or `/`.
fn check_sysctl_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.split(['.', '/']).all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-*".contains(c))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a sysctl name (e.g. \"net.ipv4.conf.all.rp_filter\")"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::raw::parse_str;
    use std::path::Path;

    const PKGS: &[&str] = &["nftables", "auditd", "uidmap"];

    fn packages(list: &[&str]) -> Packages {
        Packages {
            include: list.iter().map(|s| s.to_string()).collect(),
            exclude: Vec::new(),
        }
    }

    fn raw(text: &str) -> Option<RawHardening> {
        parse_str(Path::new("m.toml"), text).unwrap().hardening
    }

    fn load(text: &str) -> Result<Hardening, (String, String)> {
        hardening_of(raw(text), &packages(PKGS), &[])
    }

    fn fails(text: &str, key: &str) -> String {
        let (k, m) = load(text).expect_err(text);
        assert_eq!(k, key, "{m}");
        m
    }

    #[test]
    fn absent_table_is_off_and_empty_table_is_all_on() {
        let off = load("").unwrap();
        assert_eq!(off, Hardening::off());
        assert!(off.kernel_args(Arch::X86_64).is_empty());
        let on = load("[hardening]\n").unwrap();
        assert!(on.enable);
        for item in [
            Item::KernelCmdline,
            Item::Sysctl,
            Item::Firewall,
            Item::Audit,
            Item::Tmp,
            Item::Ssh,
            Item::Containers,
            Item::Rootless,
            Item::PruneUnits,
            Item::Sandbox,
        ] {
            assert!(on.has(item), "{item:?}");
        }
        assert_eq!(on.rootless_user, "rootless");
        let args = on.kernel_args(Arch::X86_64);
        assert!(args.contains(&"slab_nomerge".to_string()));
        assert!(args.contains(&"audit=1".to_string()));
    }

    #[test]
    fn enable_false_turns_every_item_off() {
        let h = load("[hardening]\nenable = false\nsysctl = true\n").unwrap();
        assert!(!h.enable);
        assert!(!h.sysctl && !h.firewall && !h.rootless);
        assert!(h.kernel_args(Arch::X86_64).is_empty());
        // Without the items on, their packages are not needed.
        hardening_of(raw("[hardening]\nenable = false\n"), &packages(&[]), &[]).unwrap();
    }

    #[test]
    fn each_item_switches_off_alone() {
        for item in [
            Item::KernelCmdline,
            Item::Sysctl,
            Item::Firewall,
            Item::Audit,
            Item::Tmp,
            Item::Ssh,
            Item::Containers,
            Item::Rootless,
        ] {
            let h = load(&format!("[hardening]\n{} = false\n", item.key())).unwrap();
            assert!(!h.has(item), "{item:?}");
            assert!(h.sysctl || item == Item::Sysctl);
            assert!(h.firewall || item == Item::Firewall);
        }
        let h = load("[hardening]\nkernel-cmdline = false\n").unwrap();
        assert_eq!(
            h.kernel_args(Arch::X86_64),
            ["audit=1", "audit_backlog_limit=8192"]
        );
        let h = load("[hardening]\naudit = false\n").unwrap();
        assert!(!h
            .kernel_args(Arch::X86_64)
            .iter()
            .any(|a| a.starts_with("audit")));
    }

    #[test]
    fn cmdline_exclude_drops_by_name() {
        let h = load("[hardening]\ncmdline-exclude = [\"ia32_emulation\", \"oops\"]\n").unwrap();
        let args = h.kernel_args(Arch::X86_64);
        assert!(!args.iter().any(|a| a.starts_with("ia32_emulation")));
        assert!(!args.iter().any(|a| a.starts_with("oops=")));
        assert!(args.contains(&"slab_nomerge".to_string()));
        let m = fails(
            "[hardening]\ncmdline-exclude = [\"slab_nomerge\", \"quiet\"]\n",
            "cmdline-exclude[1]",
        );
        assert!(m.contains("\"quiet\"") && m.contains("slab_nomerge"), "{m}");
    }

    #[test]
    fn sysctl_overrides_rules() {
        let h = load(
            "[hardening]\nsysctl-overrides = { \"net.ipv4.conf.all.rp_filter\" = \"2\", \"net/ipv4/conf/*/rp_filter\" = \"2\" }\n",
        )
        .unwrap();
        assert_eq!(h.sysctl_overrides["net.ipv4.conf.all.rp_filter"], "2");
        fails(
            "[hardening]\nsysctl-overrides = { \"net..x\" = \"1\" }\n",
            "sysctl-overrides.\"net..x\"",
        );
        fails(
            "[hardening]\nsysctl-overrides = { \"a b\" = \"1\" }\n",
            "sysctl-overrides.\"a b\"",
        );
        fails(
            "[hardening]\nsysctl-overrides = { \"kernel.sysrq\" = \"\" }\n",
            "sysctl-overrides.\"kernel.sysrq\"",
        );
        fails(
            "[hardening]\nsysctl-overrides = { \"kernel.sysrq\" = \"1\\n2\" }\n",
            "sysctl-overrides.\"kernel.sysrq\"",
        );
        // Values are strings: an integer is a parse error naming the key.
        let e = parse_str(
            Path::new("m.toml"),
            "[hardening]\nsysctl-overrides = { \"kernel.sysrq\" = 1 }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("hardening.sysctl-overrides"), "{e}");
    }

    #[test]
    fn open_ports_rules() {
        let h = load("[hardening]\nopen-ports = [\"22/tcp\", \"53/udp\", \"22/tcp\"]\n").unwrap();
        let ports: Vec<String> = h.open_ports.iter().map(|p| p.to_string()).collect();
        assert_eq!(ports, ["22/tcp", "53/udp"]);
        fails(
            "[hardening]\nopen-ports = [\"22/tcp\", \"ssh\"]\n",
            "open-ports[1]",
        );
        fails("[hardening]\nopen-ports = [\"0/tcp\"]\n", "open-ports[0]");
    }

    #[test]
    fn rootless_user_rules() {
        let h = load("[hardening]\nrootless-user = \"pods\"\n").unwrap();
        assert_eq!(h.rootless_user, "pods");
        fails("[hardening]\nrootless-user = \"Pods\"\n", "rootless-user");
        fails("[hardening]\nrootless-user = \"root\"\n", "rootless-user");
        for taken in ["nobody", "users", "www-data"] {
            let e = fails(
                &format!("[hardening]\nrootless-user = {taken:?}\n"),
                "rootless-user",
            );
            assert!(e.contains("base-passwd"), "{e}");
        }
        fails(
            "[hardening]\nrootless-user = \"containers\"\n",
            "rootless-user",
        );
        let core = User {
            name: "core".into(),
            groups: vec![],
            ssh_authorized_keys: vec![],
        };
        let (k, _) = hardening_of(
            raw("[hardening]\nrootless-user = \"core\"\n"),
            &packages(PKGS),
            std::slice::from_ref(&core),
        )
        .unwrap_err();
        assert_eq!(k, "rootless-user");
        // With the item off, the name is not taken.
        hardening_of(
            raw("[hardening]\nrootless = false\nrootless-user = \"core\"\n"),
            &packages(PKGS),
            &[core],
        )
        .unwrap();
    }

    #[test]
    fn items_need_their_packages() {
        for (item, pkg) in [
            ("firewall", "nftables"),
            ("audit", "auditd"),
            ("rootless", "uidmap"),
        ] {
            let others: Vec<&str> = PKGS.iter().copied().filter(|p| *p != pkg).collect();
            let (k, m) = hardening_of(raw("[hardening]\n"), &packages(&others), &[]).unwrap_err();
            assert_eq!(k, item);
            assert!(m.contains(pkg), "{m}");
            hardening_of(
                raw(&format!("[hardening]\n{item} = false\n")),
                &packages(&others),
                &[],
            )
            .unwrap();
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse_str(Path::new("m.toml"), "[hardening]\nfirewal = true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hardening.firewal: unknown field"), "{e}");
        let e = parse_str(Path::new("m.toml"), "[hardening]\nopen_ports = []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hardening.open_ports"), "{e}");
    }

    #[test]
    fn merge_replaces_scalars_accumulates_lists_and_merges_overrides() {
        let mut acc = raw(
            "[hardening]\nfirewall = false\nopen-ports = [\"22/tcp\"]\nsysctl-overrides = { \"a.b\" = \"1\", \"c.d\" = \"1\" }\n",
        )
        .unwrap();
        merge(
            &mut acc,
            raw("[hardening]\nenable = false\nopen-ports = [\"80/tcp\"]\nsysctl-overrides = { \"a.b\" = \"2\" }\n")
                .unwrap(),
        );
        assert_eq!(acc.enable, Some(false));
        assert_eq!(acc.firewall, Some(false));
        assert_eq!(
            acc.open_ports.as_deref(),
            Some(&["22/tcp".to_string(), "80/tcp".to_string()][..])
        );
        let o = acc.sysctl_overrides.unwrap();
        assert_eq!(o["a.b"], "2");
        assert_eq!(o["c.d"], "1");
    }
}
