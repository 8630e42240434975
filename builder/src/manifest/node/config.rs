//! The hull node config: one TOML file (docs/provisioning.md) that makes a
//! machine booted from a shared image into one particular node.
//!
//! [`RawNodeConfig`] is the file as written (unknown keys refused, kebab-case);
//! [`RawNodeConfig::validate`] turns it into [`NodeConfig`], whose values are
//! checked: a config that validates can be applied without surprises. The
//! cloud-config translation ([`super::cloud`]) produces the same typed value.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::extensions::Extension;
use crate::manifest::strategy::{check_group, StrategyKind};

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
    /// A [`StrategyKind`]'s name.
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

/// A host name: an FQDN's labels are kept in /etc/hostname as given.
pub fn check_hostname(h: &str) -> Result<String> {
    let lower = h.trim_end_matches('.').to_ascii_lowercase();
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if lower.is_empty() || lower.len() > 253 || !lower.split('.').all(ok_label) {
        bail!("{h:?} is not a host name: dot-separated labels of 1 to 63 letters, digits and '-', not starting or ending with '-'");
    }
    Ok(lower)
}

/// An account or group name as Debian's useradd takes it by default.
pub fn check_user_name(n: &str) -> Result<()> {
    let ok = !n.is_empty()
        && n.len() <= 32
        && n.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok {
        bail!("{n:?} is not an account name: 1 to 32 of a-z, 0-9, '_' and '-', starting with a letter or '_'");
    }
    if n == "root" {
        bail!("\"root\" cannot be provisioned: sshd refuses root logins; give the key to a user in the sudo group");
    }
    Ok(())
}

/// An OpenSSH public key line: `[options] type base64 [comment]`, where the
/// options are refused (they would be easy to get wrong unseen).
pub fn check_ssh_key(key: &str) -> Result<()> {
    let key = key.trim();
    if key.contains('\n') || key.contains('\r') {
        bail!("one key per entry: this one spans lines");
    }
    let mut words = key.split_whitespace();
    let kind = words.next().unwrap_or("");
    let known = kind.starts_with("ssh-")
        || kind.starts_with("ecdsa-sha2-")
        || kind.starts_with("sk-ssh-")
        || kind.starts_with("sk-ecdsa-");
    if !known {
        bail!(
            "{:?} does not start with a key type (ssh-ed25519, ssh-rsa, ecdsa-sha2-…)",
            short(key)
        );
    }
    let blob = words.next().unwrap_or("");
    use base64::Engine as _;
    if base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_or(true, |b| b.len() < 16)
    {
        bail!("{:?}: the key after {kind} is not base64", short(key));
    }
    Ok(())
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

fn validate_network(n: RawNetwork) -> Result<Network> {
    let matches = match (n.match_name, n.match_mac) {
        (Some(name), None) => {
            let ok = !name.is_empty()
                && name.len() <= 15
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "*?[]-_.".contains(c));
            if !ok {
                bail!("match-name: {name:?} is not an interface name or glob (e.g. eth0, en*)");
            }
            Match::Name(name)
        }
        (None, Some(mac)) => Match::Mac(check_mac(&mac).context("match-mac")?),
        (Some(_), Some(_)) => bail!("give match-name or match-mac, not both"),
        (None, None) => bail!("match-name or match-mac is needed: which interface is this for?"),
    };
    let addressing = match (n.dhcp, n.address) {
        (Some(true), None) => {
            if n.gateway.is_some() || !n.dns.is_empty() {
                bail!("gateway and dns go with a static address, not with dhcp = true");
            }
            Addressing::Dhcp
        }
        (Some(true), Some(_)) => bail!("dhcp = true and address: give one of them"),
        (_, Some(address)) => {
            check_cidr(&address).context("address")?;
            let gateway = match n.gateway {
                Some(g) => Some(
                    g.parse()
                        .map_err(|_| anyhow::anyhow!("gateway: {g:?} is not an IP address"))?,
                ),
                None => None,
            };
            let dns = n
                .dns
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    d.parse()
                        .map_err(|_| anyhow::anyhow!("dns[{i}]: {d:?} is not an IP address"))
                })
                .collect::<Result<Vec<IpAddr>>>()?;
            Addressing::Static {
                address,
                gateway,
                dns,
            }
        }
        (Some(false), None) | (None, None) => {
            bail!("give dhcp = true or a static address")
        }
    };
    Ok(Network {
        matches,
        addressing,
    })
}

/// `aa:bb:cc:dd:ee:ff` (either case, `-` allowed), lower-cased with `:`.
pub fn check_mac(mac: &str) -> Result<String> {
    let parts: Vec<&str> = mac.split([':', '-']).collect();
    if parts.len() != 6
        || !parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        bail!("{mac:?} is not a MAC address (aa:bb:cc:dd:ee:ff)");
    }
    Ok(parts.join(":").to_ascii_lowercase())
}

fn check_cidr(a: &str) -> Result<()> {
    let Some((ip, len)) = a.split_once('/') else {
        bail!("{a:?} needs a prefix length, e.g. 10.0.2.15/24");
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| anyhow::anyhow!("{a:?}: {ip:?} is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match len.parse::<u8>() {
        Ok(l) if l <= max => Ok(()),
        _ => bail!("{a:?}: the prefix length must be 0 to {max}"),
    }
}

fn validate_file(f: RawFile) -> Result<File> {
    let path = check_file_path(&f.path).context("path")?;
    let content = match (f.content, f.content_base64) {
        (Some(c), None) => c.into_bytes(),
        (None, Some(b)) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|e| anyhow::anyhow!("content-base64: not base64 ({e})"))?
        }
        (Some(_), Some(_)) => bail!("content and content-base64: give one of them"),
        (None, None) => Vec::new(),
    };
    let mode = match f.mode {
        Some(m) => parse_mode(&m).context("mode")?,
        None => 0o644,
    };
    let (owner, group) = match f.owner {
        Some(o) => parse_owner(&o).context("owner")?,
        None => ("root".into(), "root".into()),
    };
    Ok(File {
        path,
        content,
        mode,
        owner,
        group,
    })
}

/// An absolute path under /etc/ or /var/, without `.`, `..` or empty parts.
pub fn check_file_path(p: &str) -> Result<String> {
    let Some(rest) = p.strip_prefix('/') else {
        bail!("{p:?} is not absolute");
    };
    let parts: Vec<&str> = rest.split('/').collect();
    if parts
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        bail!("{p:?}: no empty, '.' or '..' parts, no trailing '/'");
    }
    if parts.len() < 2 || !["etc", "var"].contains(&parts[0]) {
        bail!("{p:?} is not under /etc or /var (/usr is the image's, read-only)");
    }
    Ok(p.to_string())
}

/// An octal mode as a string (`"0640"`, `"640"`), at most 0o7777.
pub fn parse_mode(m: &str) -> Result<u32> {
    let digits = m.strip_prefix("0o").unwrap_or(m);
    match u32::from_str_radix(digits, 8) {
        Ok(v) if v <= 0o7777 && !digits.is_empty() => Ok(v),
        _ => bail!("{m:?} is not an octal mode such as \"0644\""),
    }
}

/// `user` or `user:group` (the group defaults to the user's name).
pub fn parse_owner(o: &str) -> Result<(String, String)> {
    let (u, g) = o.split_once(':').unwrap_or((o, o));
    for n in [u, g] {
        if n != "root" {
            check_user_name(n)?;
        }
    }
    Ok((u.to_string(), g.to_string()))
}

/// A unit name systemctl can enable: `name.service` and the like.
pub fn check_unit(u: &str) -> Result<()> {
    const SUFFIXES: &[&str] = &[
        ".service", ".socket", ".timer", ".path", ".target", ".mount", ".swap",
    ];
    let ok = SUFFIXES.iter().any(|s| u.len() > s.len() && u.ends_with(s))
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.@\\".contains(c));
    if !ok {
        bail!("{u:?} is not a unit name (e.g. nginx.service, podman-auto-update.timer)");
    }
    Ok(())
}

fn validate_update(u: RawUpdate) -> Result<UpdateSettings> {
    if let Some(g) = &u.group {
        check_group(g).map_err(|m| anyhow::anyhow!("group: {m}"))?;
    }
    if let Some(s) = &u.strategy {
        StrategyKind::parse(s).map_err(|m| anyhow::anyhow!("strategy: {m}"))?;
    }
    Ok(UpdateSettings {
        group: u.group,
        strategy: u.strategy,
    })
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

    #[test]
    fn modes_owners_and_macs() {
        assert_eq!(parse_mode("0755").unwrap(), 0o755);
        assert_eq!(parse_mode("600").unwrap(), 0o600);
        assert_eq!(parse_mode("0o4755").unwrap(), 0o4755);
        assert!(parse_mode("").is_err() && parse_mode("rwx").is_err());
        assert_eq!(
            parse_owner("alice").unwrap(),
            ("alice".into(), "alice".into())
        );
        assert_eq!(
            parse_owner("root:adm").unwrap(),
            ("root".into(), "adm".into())
        );
        assert_eq!(check_mac("52-54-00-AB-CD-EF").unwrap(), "52:54:00:ab:cd:ef");
        check_ssh_key(KEY).unwrap();
        check_ssh_key("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY=")
            .unwrap();
    }
}
