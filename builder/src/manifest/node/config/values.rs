//! Checks of the node config's single values (host name, user names, SSH
//! keys, MAC addresses, CIDR addresses, file paths, modes, owners, units) and
//! of its network, file and update tables, each into its typed value.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};

use super::{Addressing, File, Match, Network, RawFile, RawNetwork, RawUpdate, UpdateSettings};
use crate::manifest::strategy::{check_group, StrategyKind};
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

pub(super) fn validate_network(n: RawNetwork) -> Result<Network> {
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

pub(super) fn validate_file(f: RawFile) -> Result<File> {
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

pub(super) fn validate_update(u: RawUpdate) -> Result<UpdateSettings> {
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
