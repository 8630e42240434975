//! The hull node config: one TOML file (docs/provisioning.md) that makes a
//! machine booted from a shared image into one particular node.
//!
//! [`RawNodeConfig`] is the file as written (unknown keys refused, kebab-case);
//! [`RawNodeConfig::validate`] turns it into [`NodeConfig`], whose values are
//! checked: a config that validates can be applied without surprises. The
//! cloud-config translation ([`super::cloud`]) produces the same typed value.

mod values;

pub use values::{
    check_file_path, check_hostname, check_mac, check_ssh_key, check_unit, check_user_name,
    parse_mode, parse_owner,
};

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::extensions::Extension;
use values::{validate_file, validate_network, validate_update};

/// The file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNodeConfig {
    pub hostname: Option<String>,
    #[serde(default)]
    pub users: Vec<RawUser>,
    #[serde(default)]
    pub network: Vec<RawNetwork>,
    #[serde(default)]
    pub files: Vec<RawFile>,
    #[serde(default)]
    pub units: RawUnits,
    pub update: Option<RawUpdate>,
    /// System extension files beside the config, `NAME.raw` ([`super::extensions`]).
    #[serde(default)]
    pub extensions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawUser {
    pub name: String,
    #[serde(default)]
    pub ssh_authorized_keys: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNetwork {
    pub match_name: Option<String>,
    pub match_mac: Option<String>,
    pub dhcp: Option<bool>,
    pub address: Option<String>,
    pub gateway: Option<String>,
    #[serde(default)]
    pub dns: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawFile {
    pub path: String,
    pub content: Option<String>,
    pub content_base64: Option<String>,
    pub mode: Option<String>,
    pub owner: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawUnits {
    #[serde(default)]
    pub enable: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawUpdate {
    pub group: Option<String>,
    pub strategy: Option<String>,
}

/// A validated node config: what `hull provision` applies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeConfig {
    /// The static host name (a DNS name: labels of 1 to 63 of `a-z0-9-`).
    pub hostname: Option<String>,
    pub users: Vec<User>,
    pub network: Vec<Network>,
    pub files: Vec<File>,
    /// Units to enable and start.
    pub enable: Vec<String>,
    pub update: Option<UpdateSettings>,
    /// System extensions placed into /var/lib/extensions.
    pub extensions: Vec<Extension>,
}

/// An account and the keys that may log in as it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    /// OpenSSH public keys, one line each.
    pub ssh_authorized_keys: Vec<String>,
    /// Supplementary groups, which must exist in the image.
    pub groups: Vec<String>,
}

/// Which interface a [`Network`] is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Match {
    /// An interface name or a glob of them (`en*`), systemd-networkd's `Name=`.
    Name(String),
    /// A MAC address, lower case `aa:bb:cc:dd:ee:ff`.
    Mac(String),
}

/// How an interface gets its address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Addressing {
    Dhcp,
    Static {
        /// Address with its prefix length, e.g. `10.0.2.15/24`.
        address: String,
        gateway: Option<IpAddr>,
        dns: Vec<IpAddr>,
    },
}

/// One systemd-networkd `.network` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    pub matches: Match,
    pub addressing: Addressing,
}

/// A file to write under /etc or /var.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct File {
    /// Absolute, normalized, under /etc/ or /var/.
    pub path: String,
    pub content: Vec<u8>,
    /// Permission bits, at most 0o7777.
    pub mode: u32,
    /// Owner and group names (`root` when not given).
    pub owner: String,
    pub group: String,
}

/// Where the update agent and the fleet settings read this node's update
/// settings: /etc/hull/update.toml (docs/provisioning.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct UpdateSettings {
    /// The FleetLock group this node reboots in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A [`StrategyKind`](crate::manifest::strategy::StrategyKind)'s name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
}

impl RawNodeConfig {
    /// Parses a node config's text; errors name `origin` and the key.
    pub fn parse(text: &str, origin: &str) -> Result<RawNodeConfig> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.message().trim().replace('\n', " ");
            if path.is_empty() || path == "." {
                anyhow::anyhow!("{origin}: {msg}")
            } else {
                anyhow::anyhow!("{origin}: {path}: {msg}")
            }
        })
    }

    /// Checks every value; errors name the key (`users[0].name`) and value.
    pub fn validate(self) -> Result<NodeConfig> {
        let extensions = super::extensions::validate(&self.extensions)?;
        let hostname = match self.hostname {
            Some(h) => Some(check_hostname(&h).context("hostname")?),
            None => None,
        };
        let mut users = Vec::new();
        for (i, u) in self.users.into_iter().enumerate() {
            let at = format!("users[{i}]");
            check_user_name(&u.name).with_context(|| format!("{at}.name"))?;
            if users.iter().any(|x: &User| x.name == u.name) {
                bail!("{at}.name: {:?} is listed twice", u.name);
            }
            for (k, key) in u.ssh_authorized_keys.iter().enumerate() {
                check_ssh_key(key).with_context(|| format!("{at}.ssh-authorized-keys[{k}]"))?;
            }
            for (g, group) in u.groups.iter().enumerate() {
                check_user_name(group).with_context(|| format!("{at}.groups[{g}]"))?;
            }
            users.push(User {
                name: u.name,
                ssh_authorized_keys: u
                    .ssh_authorized_keys
                    .iter()
                    .map(|k| k.trim().into())
                    .collect(),
                groups: u.groups,
            });
        }
        let network = self
            .network
            .into_iter()
            .enumerate()
            .map(|(i, n)| validate_network(n).with_context(|| format!("network[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        let mut files: Vec<File> = Vec::new();
        for (i, f) in self.files.into_iter().enumerate() {
            let file = validate_file(f).with_context(|| format!("files[{i}]"))?;
            if files.iter().any(|x| x.path == file.path) {
                bail!("files[{i}].path: {} is listed twice", file.path);
            }
            files.push(file);
        }
        for (i, unit) in self.units.enable.iter().enumerate() {
            check_unit(unit).with_context(|| format!("units.enable[{i}]"))?;
        }
        let update = match self.update {
            None => None,
            Some(u) => Some(validate_update(u).context("update")?),
        };
        Ok(NodeConfig {
            hostname,
            users,
            network,
            files,
            enable: self.units.enable,
            update,
            extensions,
        })
    }
}

/// Parses and validates a node config in one step.
pub fn load(text: &str, origin: &str) -> Result<NodeConfig> {
    RawNodeConfig::parse(text, origin)?
        .validate()
        .with_context(|| origin.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHMQKLB9dI/YLBHgf/suU/uOPSDBFCtPm4pC9fnTYKXj alice@laptop";

    fn err(text: &str) -> String {
        match load(text, "node.toml") {
            Ok(c) => panic!("accepted {text:?}: {c:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn a_full_config() {
        let text = format!(
            r#"
hostname = "Node-A.example.org"
[[users]]
name = "alice"
ssh-authorized-keys = ["{KEY}"]
groups = ["sudo"]
[[network]]
match-mac = "52:54:00:12:34:56"
address = "10.0.2.15/24"
gateway = "10.0.2.2"
dns = ["10.0.2.3"]
[[network]]
match-name = "en*"
dhcp = true
[[files]]
path = "/etc/motd"
content = "hello\n"
mode = "0640"
owner = "alice:sudo"
[[files]]
path = "/var/lib/x/blob"
content-base64 = "AAEC"
[units]
enable = ["podman-auto-update.timer"]
[update]
group = "workers"
strategy = "fleet-lock"
"#
        );
        let c = load(&text, "node.toml").unwrap();
        assert_eq!(c.hostname.as_deref(), Some("node-a.example.org"));
        assert_eq!(c.users[0].ssh_authorized_keys, [KEY]);
        assert_eq!(c.network[0].matches, Match::Mac("52:54:00:12:34:56".into()));
        assert_eq!(
            c.network[0].addressing,
            Addressing::Static {
                address: "10.0.2.15/24".into(),
                gateway: Some("10.0.2.2".parse().unwrap()),
                dns: vec!["10.0.2.3".parse().unwrap()],
            }
        );
        assert_eq!(c.network[1].addressing, Addressing::Dhcp);
        assert_eq!(
            (
                c.files[0].mode,
                c.files[0].owner.as_str(),
                c.files[0].group.as_str()
            ),
            (0o640, "alice", "sudo")
        );
        assert_eq!(c.files[1].content, [0, 1, 2]);
        assert_eq!(
            (c.files[1].mode, c.files[1].owner.as_str()),
            (0o644, "root")
        );
        assert_eq!(c.enable, ["podman-auto-update.timer"]);
        assert_eq!(
            c.update,
            Some(UpdateSettings {
                group: Some("workers".into()),
                strategy: Some("fleet-lock".into())
            })
        );
        assert_eq!(load("", "empty.toml").unwrap(), NodeConfig::default());
    }

    #[test]
    fn bad_configs_name_the_key() {
        let user = |extra: &str| format!("[[users]]\nname = \"bob\"\n{extra}\n");
        let net = |body: &str| format!("[[network]]\n{body}\n");
        for (text, want) in [
            ("hostnme = \"x\"".to_string(), "unknown field `hostnme`"),
            (
                "hostname = \"-bad\"".into(),
                "hostname: \"-bad\" is not a host name",
            ),
            ("hostname = \"a_b\"".into(), "not a host name"),
            (
                "[[users]]\nname = \"Bob\"".into(),
                "users[0].name: \"Bob\" is not an account name",
            ),
            (
                "[[users]]\nname = \"root\"".into(),
                "users[0].name: \"root\" cannot",
            ),
            (
                user("shell = \"/bin/zsh\""),
                "users[0].shell: unknown field `shell`",
            ),
            (
                user("ssh-authorized-keys = [\"hello\"]"),
                "users[0].ssh-authorized-keys[0]: \"hello\" does not start with a key type",
            ),
            (
                user("ssh-authorized-keys = [\"ssh-ed25519 !!!\"]"),
                "not base64",
            ),
            (
                format!("{}{}", user(""), user("")),
                "users[1].name: \"bob\" is listed twice",
            ),
            (
                net("dhcp = true"),
                "network[0]: match-name or match-mac is needed",
            ),
            (
                net("match-mac = \"52:54:00:12:34\"\ndhcp = true"),
                "network[0]: match-mac: \"52:54:00:12:34\" is not a MAC",
            ),
            (
                net("match-name = \"eth0\"\nmatch-mac = \"52:54:00:12:34:56\"\ndhcp = true"),
                "not both",
            ),
            (
                net("match-name = \"eth0\""),
                "network[0]: give dhcp = true or a static address",
            ),
            (
                net("match-name = \"eth0\"\naddress = \"10.0.2.15\""),
                "network[0]: address: \"10.0.2.15\" needs a prefix length",
            ),
            (
                net("match-name = \"eth0\"\naddress = \"10.0.2.15/33\""),
                "prefix length must be 0 to 32",
            ),
            (
                net("match-name = \"eth0\"\naddress = \"10.0.2.15/24\"\ngateway = \"x\""),
                "network[0]: gateway: \"x\" is not an IP",
            ),
            (
                net("match-name = \"eth0\"\ndhcp = true\ndns = [\"1.1.1.1\"]"),
                "gateway and dns go with a static address",
            ),
            (
                net("match-name = \"eth 0\"\ndhcp = true"),
                "match-name: \"eth 0\" is not an interface",
            ),
            (
                "[[files]]\npath = \"/usr/bin/x\"".into(),
                "files[0]: path: \"/usr/bin/x\" is not under /etc or /var",
            ),
            ("[[files]]\npath = \"/etc/../usr/x\"".into(), "'..' parts"),
            ("[[files]]\npath = \"etc/x\"".into(), "is not absolute"),
            (
                "[[files]]\npath = \"/etc\"".into(),
                "is not under /etc or /var",
            ),
            (
                "[[files]]\npath = \"/etc/x\"\nmode = \"0999\"".into(),
                "files[0]: mode: \"0999\" is not an octal mode",
            ),
            (
                "[[files]]\npath = \"/etc/x\"\nmode = \"17777\"".into(),
                "is not an octal mode",
            ),
            (
                "[[files]]\npath = \"/etc/x\"\nowner = \"Alice\"".into(),
                "files[0]: owner: \"Alice\"",
            ),
            (
                "[[files]]\npath = \"/etc/x\"\ncontent = \"a\"\ncontent-base64 = \"YQ==\"".into(),
                "give one of them",
            ),
            (
                "[[files]]\npath = \"/etc/x\"\ncontent-base64 = \"%%\"".into(),
                "content-base64: not base64",
            ),
            (
                "[[files]]\npath = \"/etc/x\"\n[[files]]\npath = \"/etc/x\"".into(),
                "files[1].path: /etc/x is listed twice",
            ),
            (
                "[units]\nenable = [\"nginx\"]".into(),
                "units.enable[0]: \"nginx\" is not a unit name",
            ),
            (
                "[units]\ndisable = [\"x.service\"]".into(),
                "units.disable: unknown field `disable`",
            ),
            (
                "[update]\nstrategy = \"yolo\"".into(),
                "update: strategy: unknown strategy \"yolo\" (immediate, window, fleet-lock or kured)",
            ),
            ("[update]\ngroup = \"a b\"".into(), "update: group: \"a b\""),
            (
                "extensions = [\"../kubelet.raw\"]".into(),
                "extensions[0]: \"../kubelet.raw\" is not a plain file name",
            ),
            ("extensions = \"a.raw\"".into(), "extensions: invalid type"),
            ("hostname = 3".into(), "hostname: invalid type"),
        ] {
            let e = err(&text);
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.starts_with("node.toml"), "{e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }
}
