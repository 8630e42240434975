//! The `#cloud-config` subset hull understands, translated into a node
//! config ([`RawNodeConfig`], then validated like a TOML one).
//!
//! Supported (docs/provisioning.md): `hostname`, `fqdn`, `users` (`name`,
//! `ssh_authorized_keys`, `groups`, `sudo`), top-level `ssh_authorized_keys`
//! (for the account `core`, hull's default user as on Flatcar and Fedora
//! CoreOS), `write_files` (`path`, `content`, `permissions`, `owner`,
//! `encoding` text or b64); meta-data's `instance-id` and `local-hostname`.
//! Every other key is kept in [`Translated::unsupported`] by its name
//! (`packages`, `users[0].shell`), for `hull provision` to report: never
//! dropped unseen.

use anyhow::{bail, Context, Result};
use yaml_rust2::{Yaml, YamlLoader};

use crate::manifest::node::config::{NodeConfig, RawFile, RawNodeConfig, RawUser};

/// The account top-level `ssh_authorized_keys` go to.
pub const DEFAULT_USER: &str = "core";

/// A NoCloud seed's user-data and meta-data, as a node config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub config: NodeConfig,
    /// meta-data's `instance-id`: a new one means a new instance.
    pub instance_id: Option<String>,
    /// Keys present but not supported, by name, in the order found.
    pub unsupported: Vec<String>,
}

/// Translates `user_data` (`#cloud-config` YAML, or empty) and `meta_data`
/// (YAML, or empty). Errors name the file and key.
pub fn translate(user_data: &str, meta_data: &str) -> Result<Translated> {
    let mut unsupported = Vec::new();
    let meta = parse_map(meta_data, "meta-data")?;
    let mut instance_id = None;
    let mut local_hostname = None;
    for (k, v) in &meta {
        match k.as_str() {
            "instance-id" => instance_id = Some(scalar(v).context("meta-data: instance-id")?),
            "local-hostname" => {
                local_hostname = Some(scalar(v).context("meta-data: local-hostname")?)
            }
            other => unsupported.push(format!("meta-data {other}")),
        }
    }
    let body = user_data.trim_start();
    if !body.is_empty() && !body.starts_with("#cloud-config") {
        let first: String = body.lines().next().unwrap_or("").chars().take(40).collect();
        bail!("user-data: only #cloud-config is supported, this starts with {first:?}");
    }
    let mut raw = RawNodeConfig::default();
    let mut hostname = None;
    let mut fqdn = None;
    let mut top_keys = Vec::new();
    for (k, v) in parse_map(body, "user-data")? {
        let at = |what: &str| format!("user-data: {what}");
        match k.as_str() {
            "hostname" => hostname = Some(scalar(&v).with_context(|| at("hostname"))?),
            "fqdn" => fqdn = Some(scalar(&v).with_context(|| at("fqdn"))?),
            "users" => {
                let list = v.as_vec().with_context(|| at("users: expected a list"))?;
                for (i, u) in list.iter().enumerate() {
                    if u.as_str() == Some("default") {
                        unsupported.push(format!("users[{i}] \"default\" (hull images have no distribution default user; see {DEFAULT_USER})"));
                        continue;
                    }
                    let user = translate_user(u, i, &mut unsupported, &mut raw.files)
                        .with_context(|| at(&format!("users[{i}]")))?;
                    raw.users.push(user);
                }
            }
            "ssh_authorized_keys" => {
                top_keys = strings(&v).with_context(|| at("ssh_authorized_keys"))?;
            }
            "write_files" => {
                let list = v
                    .as_vec()
                    .with_context(|| at("write_files: expected a list"))?;
                for (i, f) in list.iter().enumerate() {
                    let file = translate_file(f, i, &mut unsupported)
                        .with_context(|| at(&format!("write_files[{i}]")))?;
                    raw.files.push(file);
                }
            }
            other => unsupported.push(other.to_string()),
        }
    }
    if !top_keys.is_empty() {
        match raw.users.iter_mut().find(|u| u.name == DEFAULT_USER) {
            Some(u) => u.ssh_authorized_keys.extend(top_keys),
            None => raw.users.push(RawUser {
                name: DEFAULT_USER.into(),
                ssh_authorized_keys: top_keys,
                groups: Vec::new(),
            }),
        }
    }
    // cloud-init's order: fqdn, then hostname, then the datasource's name.
    raw.hostname = fqdn.or(hostname).or(local_hostname);
    let config = raw.validate().context("user-data")?;
    Ok(Translated {
        config,
        instance_id,
        unsupported,
    })
}

/// The top-level mapping of a YAML document, keys as strings; empty text
/// (or a document that is only comments) is an empty mapping.
fn parse_map(text: &str, origin: &str) -> Result<Vec<(String, Yaml)>> {
    let docs =
        YamlLoader::load_from_str(text).map_err(|e| anyhow::anyhow!("{origin}: not YAML: {e}"))?;
    let Some(doc) = docs.into_iter().next() else {
        return Ok(Vec::new());
    };
    match doc {
        Yaml::Null => Ok(Vec::new()),
        Yaml::Hash(h) => h
            .into_iter()
            .map(|(k, v)| match k {
                Yaml::String(s) => Ok((s, v)),
                other => bail!("{origin}: key {other:?} is not a string"),
            })
            .collect(),
        _ => bail!("{origin}: expected a mapping of keys to values"),
    }
}

/// A string, or a number or boolean written bare (YAML reads `hostname: 42` as a number).
fn scalar(v: &Yaml) -> Result<String> {
    match v {
        Yaml::String(s) | Yaml::Real(s) => Ok(s.clone()),
        Yaml::Integer(i) => Ok(i.to_string()),
        Yaml::Boolean(b) => Ok(b.to_string()),
        _ => bail!("expected a single value"),
    }
}

/// A list of strings, or one string.
fn strings(v: &Yaml) -> Result<Vec<String>> {
    match v {
        Yaml::Array(a) => a.iter().map(scalar).collect(),
        Yaml::String(s) => Ok(vec![s.clone()]),
        _ => bail!("expected a list of strings"),
    }
}

fn translate_user(
    u: &Yaml,
    i: usize,
    unsupported: &mut Vec<String>,
    files: &mut Vec<RawFile>,
) -> Result<RawUser> {
    let h = u.as_hash().context("expected a mapping with name")?;
    let mut name = None;
    let mut keys = Vec::new();
    let mut groups = Vec::new();
    let mut sudo = Vec::new();
    for (k, v) in h {
        let k = k.as_str().unwrap_or("?");
        match k {
            "name" => name = Some(scalar(v).context("name")?),
            "ssh_authorized_keys" => keys = strings(v).context("ssh_authorized_keys")?,
            // A list, or cloud-init's comma-separated string.
            "groups" => {
                groups = strings(v)
                    .context("groups")?
                    .iter()
                    .flat_map(|g| g.split(','))
                    .map(|g| g.trim().to_string())
                    .filter(|g| !g.is_empty())
                    .collect()
            }
            "sudo" => match v {
                // `sudo: false` or null: no rule, as cloud-init reads it.
                Yaml::Boolean(false) | Yaml::Null => {}
                _ => sudo = strings(v).context("sudo")?,
            },
            other => unsupported.push(format!("users[{i}].{other}")),
        }
    }
    let name = name.context("name is missing")?;
    if !sudo.is_empty() {
        for rule in &sudo {
            if rule.contains('\n') {
                bail!("sudo: one rule per line");
            }
        }
        // A sudoers.d drop-in, as cloud-init writes (sudo reads 0440 files).
        let content: String = sudo.iter().map(|r| format!("{name} {r}\n")).collect();
        files.push(RawFile {
            path: format!("/etc/sudoers.d/90-hull-{name}"),
            content: Some(content),
            mode: Some("0440".into()),
            ..RawFile::default()
        });
    }
    Ok(RawUser {
        name,
        ssh_authorized_keys: keys,
        groups,
    })
}

fn translate_file(f: &Yaml, i: usize, unsupported: &mut Vec<String>) -> Result<RawFile> {
    let h = f.as_hash().context("expected a mapping with path")?;
    let mut out = RawFile::default();
    let mut content = None;
    let mut encoding = None;
    for (k, v) in h {
        let k = k.as_str().unwrap_or("?");
        match k {
            "path" => out.path = scalar(v).context("path")?,
            "content" => content = Some(scalar(v).context("content")?),
            "owner" => out.owner = Some(scalar(v).context("owner")?),
            // YAML 1.2 reads 0644 as the decimal 644: its digits are the octal mode.
            "permissions" => out.mode = Some(scalar(v).context("permissions")?),
            "encoding" => encoding = Some(scalar(v).context("encoding")?),
            other => unsupported.push(format!("write_files[{i}].{other}")),
        }
    }
    if out.path.is_empty() {
        bail!("path is missing");
    }
    match encoding.as_deref() {
        None | Some("text/plain") => out.content = content,
        Some("b64" | "base64") => out.content_base64 = content,
        Some(e) => bail!("encoding: {e:?} is not supported (text/plain or b64)"),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::node::config::Addressing;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHMQKLB9dI/YLBHgf/suU/uOPSDBFCtPm4pC9fnTYKXj a";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAm6vyJ4McbDWIztPn8/Wgvv3RvuLkwu3RB6W+KQTYkc b";

    #[test]
    fn the_supported_subset() {
        let user_data = format!(
            "#cloud-config\nhostname: node-b\nusers:\n  - default\n  - name: bob\n    ssh_authorized_keys: [\"{KEY_B}\"]\n    groups: sudo, adm\n    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n    shell: /bin/zsh\nssh_authorized_keys:\n  - {KEY_A}\nwrite_files:\n  - path: /etc/hello\n    content: hi\n    permissions: 0600\n    owner: bob:bob\n  - path: /var/lib/b\n    encoding: b64\n    content: AAEC\n    defer: true\npackages: [nginx]\nruncmd:\n  - [ls]\n"
        );
        let t = translate(&user_data, "instance-id: i-42\nlocal-hostname: ignored\n").unwrap();
        let c = &t.config;
        assert_eq!(t.instance_id.as_deref(), Some("i-42"));
        assert_eq!(c.hostname.as_deref(), Some("node-b"));
        assert_eq!(c.users.len(), 2);
        assert_eq!(
            (c.users[0].name.as_str(), &c.users[0].groups[..]),
            ("bob", &["sudo".to_string(), "adm".into()][..])
        );
        assert_eq!(c.users[0].ssh_authorized_keys, [KEY_B]);
        assert_eq!(
            (
                c.users[1].name.as_str(),
                &c.users[1].ssh_authorized_keys[..]
            ),
            ("core", &[KEY_A.to_string()][..])
        );
        let paths: Vec<&str> = c.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/etc/sudoers.d/90-hull-bob", "/etc/hello", "/var/lib/b"]
        );
        assert_eq!(c.files[0].content, b"bob ALL=(ALL) NOPASSWD:ALL\n");
        assert_eq!(c.files[0].mode, 0o440);
        assert_eq!((c.files[1].mode, c.files[1].owner.as_str()), (0o600, "bob"));
        assert_eq!(c.files[2].content, [0, 1, 2]);
        assert_eq!(
            t.unsupported,
            [
                "users[0] \"default\" (hull images have no distribution default user; see core)",
                "users[1].shell",
                "write_files[1].defer",
                "packages",
                "runcmd"
            ]
        );
        assert!(c.network.is_empty() && c.enable.is_empty());
    }

    #[test]
    fn hostname_precedence() {
        for (ud, md, want) in [
            (
                "#cloud-config\nfqdn: a.example.org\nhostname: a\n",
                "",
                Some("a.example.org"),
            ),
            (
                "#cloud-config\nhostname: a\n",
                "local-hostname: m\n",
                Some("a"),
            ),
            ("", "local-hostname: m\n", Some("m")),
            ("#cloud-config\n", "", None),
            ("", "", None),
        ] {
            let t = translate(ud, md).unwrap();
            assert_eq!(t.config.hostname.as_deref(), want, "{ud:?} {md:?}");
        }
        let t = translate("", "instance-id: x\npublic-keys: []\n").unwrap();
        assert_eq!(t.unsupported, ["meta-data public-keys"]);
        assert!(matches!(Addressing::Dhcp, Addressing::Dhcp));
    }

    #[test]
    fn errors_name_the_file_and_key() {
        for (ud, md, want) in [
            (
                "#!/bin/sh\necho hi\n",
                "",
                "user-data: only #cloud-config is supported, this starts with \"#!/bin/sh\"",
            ),
            (
                "#cloud-config\nusers: bob\n",
                "",
                "user-data: users: expected a list",
            ),
            (
                "#cloud-config\nusers:\n  - groups: [x]\n",
                "",
                "user-data: users[0]: name is missing",
            ),
            (
                "#cloud-config\nhostname: [a]\n",
                "",
                "user-data: hostname: expected a single value",
            ),
            (
                "#cloud-config\nhostname: bad_name\n",
                "",
                "user-data: hostname: \"bad_name\" is not a host name",
            ),
            (
                "#cloud-config\nwrite_files:\n  - path: /usr/x\n",
                "",
                "user-data: files[0]: path: \"/usr/x\" is not under /etc or /var",
            ),
            (
                "#cloud-config\nwrite_files:\n  - path: /etc/x\n    encoding: gzip\n",
                "",
                "user-data: write_files[0]: encoding: \"gzip\"",
            ),
            (
                "#cloud-config\nssh_authorized_keys: [nope]\n",
                "",
                "user-data: users[0].ssh-authorized-keys[0]",
            ),
            ("#cloud-config\n: : :\n  - [\n", "", "user-data: not YAML"),
            ("", "[1, 2]", "meta-data: expected a mapping"),
        ] {
            let e = format!("{:#}", translate(ud, md).unwrap_err());
            assert!(e.contains(want), "{ud:?}: {e}");
        }
    }
}
