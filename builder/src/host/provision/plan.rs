//! What a node config does to a host, as plain data: the accounts to make,
//! the files to write (with their text, mode and owner), the host name and
//! the units to enable. [`super::apply`] carries it out.

use serde::Serialize;

use crate::manifest::node::config::{Addressing, Match, NodeConfig};

/// Where provisioned networkd files go, and the prefix that marks them as
/// hull provision's (so that a new config removes the old ones). The `10-`
/// sorts them before the image's own `80-hull-ethernet.network`: networkd
/// uses the first file that matches an interface.
pub const NETWORK_DIR: &str = "etc/systemd/network";
pub const NETWORK_PREFIX: &str = "10-hull-provision-";
/// sshd's drop-in when keys are given: keys only (sshd keeps the first value
/// it reads, so the image's stricter 40-hull-hardening.conf still wins).
pub const SSHD_DROPIN: &str = "etc/ssh/sshd_config.d/45-hull-provision.conf";
/// The unit that serves SSH on Debian.
pub const SSH_UNIT: &str = "ssh.service";
/// hull's firewall (hardening.firewall) reads rules from here; this one
/// opens sshd's port when keys switch sshd on.
pub const FIREWALL_RULES: &str = "etc/nftables.d/45-hull-provision-ssh.nft";
/// The file that marks an image with hull's firewall (its open-ports chain).
pub const HULL_FIREWALL: &str = "etc/nftables.d/50-hull-open-ports.nft";
/// The node's update settings, read by the update agent (docs/provisioning.md).
pub const UPDATE_SETTINGS: &str = "etc/hull/update.toml";
/// Provisioned accounts take uids and gids from here up, away from the ids
/// images give their own accounts (1000 up, planned from the parent commit),
/// so that an image update never hands a provisioned node's id to another.
pub const FIRST_PROVISIONED_ID: u32 = 5000;

/// One file to write, relative to the root (no leading `/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Write {
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
    pub owner: String,
    pub group: String,
}

/// One account to make (when missing) and the keys it logs in with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserStep {
    pub name: String,
    pub groups: Vec<String>,
    /// The whole authorized_keys file, `None` when no key is given (an
    /// existing file is then left alone).
    pub authorized_keys: Option<String>,
}

/// Everything `hull provision` does, in order: users, host name, files,
/// units.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub users: Vec<UserStep>,
    pub hostname: Option<String>,
    pub writes: Vec<Write>,
    /// Enabled and started (without waiting).
    pub enable: Vec<String>,
}

impl Plan {
    /// One line per action, for the journal and the record `hull status` shows.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        for u in &self.users {
            let keys = u
                .authorized_keys
                .as_deref()
                .map_or(0, |k| k.lines().count());
            out.push(format!("user {} ({keys} ssh keys)", u.name));
        }
        if let Some(h) = &self.hostname {
            out.push(format!("hostname {h}"));
        }
        for w in &self.writes {
            out.push(format!(
                "file /{} ({:04o} {}:{})",
                w.path, w.mode, w.owner, w.group
            ));
        }
        for u in &self.enable {
            out.push(format!("enable {u}"));
        }
        out
    }

    /// The networkd files this plan writes (their names in [`NETWORK_DIR`]).
    pub fn network_files(&self) -> Vec<&str> {
        self.writes
            .iter()
            .filter_map(|w| w.path.strip_prefix(NETWORK_DIR)?.strip_prefix('/'))
            .filter(|n| n.starts_with(NETWORK_PREFIX))
            .collect()
    }
}

fn root_file(path: &str, content: impl Into<Vec<u8>>, mode: u32) -> Write {
    Write {
        path: path.to_string(),
        content: content.into(),
        mode,
        owner: "root".into(),
        group: "root".into(),
    }
}

/// The plan for `config`, read from `source` (named in the files' headers),
/// for an image with hull's firewall (`hull_firewall`, whose input chain
/// drops what no rule opens) or without.
pub fn plan(config: &NodeConfig, source: &str, hull_firewall: bool) -> Plan {
    let header = format!("# written by hull provision from {source}\n");
    let mut p = Plan {
        hostname: config.hostname.clone(),
        ..Plan::default()
    };
    if let Some(h) = &config.hostname {
        p.writes
            .push(root_file("etc/hostname", format!("{h}\n"), 0o644));
    }
    for u in &config.users {
        let keys = (!u.ssh_authorized_keys.is_empty()).then(|| {
            u.ssh_authorized_keys
                .iter()
                .map(|k| format!("{k}\n"))
                .collect::<String>()
        });
        p.users.push(UserStep {
            name: u.name.clone(),
            groups: u.groups.clone(),
            authorized_keys: keys,
        });
    }
    for (i, n) in config.network.iter().enumerate() {
        p.writes.push(root_file(
            &format!("{NETWORK_DIR}/{NETWORK_PREFIX}{i}.network"),
            format!("{header}{}", network_file(&n.matches, &n.addressing)),
            0o644,
        ));
    }
    if config
        .users
        .iter()
        .any(|u| !u.ssh_authorized_keys.is_empty())
    {
        p.writes.push(root_file(
            SSHD_DROPIN,
            format!(
                "{header}# keys only: the node was given SSH keys\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin no\nAuthenticationMethods publickey\n"
            ),
            0o644,
        ));
        p.enable.push(SSH_UNIT.into());
        if hull_firewall {
            p.writes.push(root_file(
                FIREWALL_RULES,
                format!("{header}add rule inet hull open-ports tcp dport 22 accept\n"),
                0o644,
            ));
        }
    }
    if let Some(u) = &config.update {
        let text = toml::to_string(u).expect("update settings serialize");
        p.writes
            .push(root_file(UPDATE_SETTINGS, format!("{header}{text}"), 0o644));
    }
    for f in &config.files {
        p.writes.push(Write {
            path: f.path.trim_start_matches('/').to_string(),
            content: f.content.clone(),
            mode: f.mode,
            owner: f.owner.clone(),
            group: f.group.clone(),
        });
    }
    for u in &config.enable {
        if !p.enable.contains(u) {
            p.enable.push(u.clone());
        }
    }
    p
}

/// A systemd-networkd `.network` file's `[Match]` and `[Network]` sections.
pub fn network_file(m: &Match, a: &Addressing) -> String {
    let mut s = String::from("[Match]\n");
    match m {
        Match::Name(n) => s.push_str(&format!("Name={n}\n")),
        Match::Mac(mac) => s.push_str(&format!("MACAddress={mac}\n")),
    }
    s.push_str("\n[Network]\n");
    match a {
        Addressing::Dhcp => s.push_str("DHCP=yes\n"),
        Addressing::Static {
            address,
            gateway,
            dns,
        } => {
            s.push_str(&format!("Address={address}\n"));
            if let Some(g) = gateway {
                s.push_str(&format!("Gateway={g}\n"));
            }
            for d in dns {
                s.push_str(&format!("DNS={d}\n"));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::node::config::load;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHMQKLB9dI/YLBHgf/suU/uOPSDBFCtPm4pC9fnTYKXj a";

    #[test]
    fn the_plan_of_a_config() {
        let text = format!(
            "hostname = \"node-a\"\n[[users]]\nname = \"alice\"\nssh-authorized-keys = [\"{KEY}\", \"{KEY} 2\"]\ngroups = [\"sudo\"]\n\
             [[users]]\nname = \"bob\"\n\
             [[network]]\nmatch-mac = \"52:54:00:12:34:56\"\naddress = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\ndns = [\"10.0.2.3\"]\n\
             [[files]]\npath = \"/etc/motd\"\ncontent = \"hi\"\nmode = \"0600\"\nowner = \"alice\"\n\
             [units]\nenable = [\"ssh.service\", \"x.timer\"]\n[update]\ngroup = \"g1\"\n"
        );
        let config = load(&text, "t").unwrap();
        let p = plan(&config, "credential hull.node", true);
        assert_eq!(
            p.describe(),
            [
                "user alice (2 ssh keys)",
                "user bob (0 ssh keys)",
                "hostname node-a",
                "file /etc/hostname (0644 root:root)",
                "file /etc/systemd/network/10-hull-provision-0.network (0644 root:root)",
                "file /etc/ssh/sshd_config.d/45-hull-provision.conf (0644 root:root)",
                "file /etc/nftables.d/45-hull-provision-ssh.nft (0644 root:root)",
                "file /etc/hull/update.toml (0644 root:root)",
                "file /etc/motd (0600 alice:alice)",
                "enable ssh.service",
                "enable x.timer",
            ]
        );
        assert_eq!(
            p.users[0].authorized_keys.as_deref(),
            Some(format!("{KEY}\n{KEY} 2\n").as_str())
        );
        assert_eq!(p.users[1].authorized_keys, None);
        let text = |path: &str| {
            String::from_utf8(
                p.writes
                    .iter()
                    .find(|w| w.path == path)
                    .unwrap()
                    .content
                    .clone(),
            )
            .unwrap()
        };
        assert_eq!(text("etc/hostname"), "node-a\n");
        assert_eq!(
            text("etc/systemd/network/10-hull-provision-0.network"),
            "# written by hull provision from credential hull.node\n[Match]\nMACAddress=52:54:00:12:34:56\n\n\
             [Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nDNS=10.0.2.3\n"
        );
        assert!(text(SSHD_DROPIN).contains("PasswordAuthentication no\n"));
        assert!(
            text(UPDATE_SETTINGS).ends_with("group = \"g1\"\n"),
            "{}",
            text(UPDATE_SETTINGS)
        );
        assert!(
            text(FIREWALL_RULES).ends_with("\nadd rule inet hull open-ports tcp dport 22 accept\n")
        );
        assert_eq!(p.network_files(), ["10-hull-provision-0.network"]);
        // Without hull's firewall, no rule: nftables would fail on a table it lacks.
        let p = plan(&config, "s", false);
        assert!(!p.writes.iter().any(|w| w.path == FIREWALL_RULES));
    }

    #[test]
    fn no_keys_no_sshd() {
        let p = plan(
            &load(
                "[[users]]\nname = \"bob\"\n[[network]]\nmatch-name = \"en*\"\ndhcp = true\n",
                "t",
            )
            .unwrap(),
            "s",
            true,
        );
        assert!(p.enable.is_empty());
        assert!(!p.writes.iter().any(|w| w.path == SSHD_DROPIN));
        assert_eq!(
            network_file(&Match::Name("en*".into()), &Addressing::Dhcp),
            "[Match]\nName=en*\n\n[Network]\nDHCP=yes\n"
        );
        assert_eq!(plan(&NodeConfig::default(), "s", true), Plan::default());
    }
}
