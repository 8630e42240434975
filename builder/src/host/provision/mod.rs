//! `hull provision`: makes a machine booted from a shared image into one
//! node, once, early in its first boot (hull-provision.service, before
//! systemd-networkd and sshd).
//!
//! The settings come from the systemd credential `hull.node` (a node config,
//! [`config`]; QEMU and libvirt pass it as SMBIOS type 11, `hull run
//! --config` does), else from a NoCloud seed ([`seed`]; `#cloud-config`
//! translated by [`cloud`]). They are [`plan`]ned as plain data, then
//! [`apply`]ed. The outcome goes to the console, the journal and
//! /var/lib/hull/provision.json, which `hull status` shows; a source is
//! applied again only when it changes (another config text, another
//! NoCloud `instance-id`), or when its last run failed.
//!
//! A config that cannot be read leaves the machine as the image made it,
//! booted and reachable on the console: the unit fails and says why.

pub mod apply;
pub mod extensions;
pub mod plan;
pub mod seed;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::manifest::node::cloud;
use crate::manifest::node::config::{self, NodeConfig};

pub use crate::manifest::node::CREDENTIAL;

/// What the last `hull provision` did, in /var/lib/hull/provision.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionRecord {
    /// `credential hull.node` or `NoCloud seed /dev/vdb`.
    pub source: String,
    /// What identifies the source's contents: `instance-id <id>` for a
    /// NoCloud seed that has one, else `sha256 <hex>` of the text.
    pub id: String,
    pub boot_id: String,
    /// Seconds since the epoch.
    pub at: u64,
    pub ok: bool,
    /// One line per action taken.
    pub applied: Vec<String>,
    /// Keys present but not supported, by name: reported, not applied.
    pub unsupported: Vec<String>,
    /// System extensions named but not delivered (`hello.raw (no
    /// credential hull.sysext.hello)`): the source is applied again next boot.
    #[serde(default)]
    pub missing: Vec<String>,
    /// Why nothing (or not everything) was applied.
    pub error: Option<String>,
}

impl ProvisionRecord {
    pub fn path(state: &Path) -> PathBuf {
        state.join("provision.json")
    }

    /// The lines `hull status` prints.
    pub fn render(&self) -> String {
        let when = crate::repo::summary::utc(self.at);
        let mut s = match &self.error {
            None => format!(
                "provisioned from {} ({}) at {when}: {} actions\n",
                self.source,
                self.id,
                self.applied.len()
            ),
            Some(e) => format!("provisioning from {} FAILED at {when}: {e}\n", self.source),
        };
        if !self.unsupported.is_empty() {
            s.push_str(&format!(
                "    not supported, not applied: {}\n",
                self.unsupported.join(", ")
            ));
        }
        if !self.missing.is_empty() {
            s.push_str(&format!(
                "    did not arrive, not placed: {}\n",
                self.missing.join(", ")
            ));
        }
        s
    }
}

/// Where provisioning reads and writes; tests point these elsewhere.
#[derive(Debug, Clone)]
pub struct ProvisionPaths {
    /// The root the settings are applied to.
    pub root: PathBuf,
    /// /var/lib/hull.
    pub state: PathBuf,
    /// `$CREDENTIALS_DIRECTORY`, as systemd sets it for the unit.
    pub credentials: Option<PathBuf>,
}

/// A source found, its text read but not yet understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Credential(String),
    NoCloud(seed::Seed),
}

impl Source {
    pub fn name(&self) -> String {
        match self {
            Source::Credential(_) => format!("credential {CREDENTIAL}"),
            Source::NoCloud(s) => format!("NoCloud seed {}", s.device.display()),
        }
    }

    /// The node config, and the keys present but not supported.
    pub fn config(&self) -> Result<(NodeConfig, Vec<String>, Option<String>)> {
        match self {
            Source::Credential(text) => Ok((config::load(text, &self.name())?, Vec::new(), None)),
            Source::NoCloud(s) => {
                let t =
                    cloud::translate(&s.user_data, &s.meta_data).with_context(|| self.name())?;
                Ok((t.config, t.unsupported, t.instance_id))
            }
        }
    }

    /// What identifies these contents ([`ProvisionRecord::id`]).
    pub fn id(&self, instance_id: Option<&str>) -> String {
        if let Some(i) = instance_id {
            return format!("instance-id {i}");
        }
        let mut h = Sha256::new();
        match self {
            Source::Credential(t) => h.update(t.as_bytes()),
            Source::NoCloud(s) => {
                h.update(s.meta_data.as_bytes());
                h.update([0]);
                h.update(s.user_data.as_bytes());
            }
        }
        format!("sha256 {}", hex::encode(h.finalize()))
    }
}

/// The source on this machine: the credential first, then a NoCloud seed.
pub fn find_source(paths: &ProvisionPaths) -> Result<Option<Source>> {
    if let Some(dir) = &paths.credentials {
        let p = dir.join(CREDENTIAL);
        match std::fs::read_to_string(&p) {
            Ok(text) => return Ok(Some(Source::Credential(text))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }
    Ok(seed::find()?.map(Source::NoCloud))
}

/// What one run came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    NoSource,
    AlreadyDone(ProvisionRecord),
    Applied(ProvisionRecord),
}

/// Provisions from `source`: unless the record says this very source was
/// applied already, plans, applies and records. Unsupported keys and each
/// action are printed (the unit sends them to the console and the journal).
/// Errors (a config that does not validate, an action that fails) are
/// recorded, then returned.
pub fn provision(
    paths: &ProvisionPaths,
    source: &Source,
    live: apply::Live,
) -> Result<ProvisionRecord> {
    let name = source.name();
    let record_path = ProvisionRecord::path(&paths.state);
    let parsed = source.config();
    let instance_id = parsed.as_ref().ok().and_then(|p| p.2.clone());
    let mut record = ProvisionRecord {
        source: name.clone(),
        id: source.id(instance_id.as_deref()),
        boot_id: super::state::boot_id(),
        at: crate::util::now(),
        ok: false,
        applied: Vec::new(),
        unsupported: Vec::new(),
        missing: Vec::new(),
        error: None,
    };
    let result = (|| -> Result<()> {
        let (config, unsupported, _) = parsed?;
        record.unsupported = unsupported;
        for key in &record.unsupported {
            println!("hull provision: {name}: {key} is not supported: not applied");
        }
        let root = Dir::open_ambient_dir(&paths.root, ambient_authority())
            .with_context(|| format!("opening {}", paths.root.display()))?;
        let plan = plan::plan(&config, &name, root.exists(plan::HULL_FIREWALL));
        apply::apply(&root, &plan, live)?;
        record.applied = plan.describe();
        let creds = paths.credentials.as_deref();
        let placed = extensions::place(&root, &config.extensions, creds, live)?;
        record.applied.extend(placed.applied);
        for line in &record.applied {
            println!("hull provision: {line}");
        }
        record.missing = placed.missing;
        for m in &record.missing {
            println!("hull provision: {name}: extension {m} did not arrive: not placed");
        }
        Ok(())
    })();
    if let Err(e) = &result {
        record.error = Some(format!("{e:#}"));
    }
    record.ok = result.is_ok();
    super::state::write(&record_path, &record)?;
    result.map(|_| record)
}

/// `hull provision`, as hull-provision.service runs it.
pub fn run(paths: &ProvisionPaths) -> Result<Outcome> {
    run_with(paths, apply::Live::Yes)
}

/// [`run`], acting on the running host only when `live` says so.
pub fn run_with(paths: &ProvisionPaths, live: apply::Live) -> Result<Outcome> {
    let Some(source) = find_source(paths)? else {
        return Ok(Outcome::NoSource);
    };
    let previous: Option<ProvisionRecord> =
        super::state::read(&ProvisionRecord::path(&paths.state));
    let instance_id = source.config().ok().and_then(|c| c.2);
    let id = source.id(instance_id.as_deref());
    // A run that missed an extension is tried again: it may arrive now.
    let done = |p: &ProvisionRecord| p.ok && p.missing.is_empty();
    if let Some(p) = previous.filter(|p| done(p) && p.id == id && p.source == source.name()) {
        return Ok(Outcome::AlreadyDone(p));
    }
    provision(paths, &source, live).map(Outcome::Applied)
}

/// `hull provision` on a host: the paths of a booted system, the
/// credentials systemd gave the unit, one line on stdout for the outcome.
pub fn run_cli() -> Result<()> {
    let paths = ProvisionPaths {
        root: "/".into(),
        state: "/var/lib/hull".into(),
        credentials: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
    };
    match run(&paths)? {
        Outcome::NoSource => println!(
            "hull provision: no node config (no credential {CREDENTIAL}, no NoCloud seed labelled cidata): the node keeps the image's settings"
        ),
        Outcome::AlreadyDone(r) => println!(
            "hull provision: already provisioned from {} ({}): nothing to do",
            r.source, r.id
        ),
        Outcome::Applied(r) => println!(
            "hull provision: provisioned from {} ({}): {} actions, {} keys not supported",
            r.source,
            r.id,
            r.applied.len(),
            r.unsupported.len()
        ),
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// `<t>/root` with an /etc/passwd and /etc/group naming this process's
    /// uid and gid as root (files owned by "root" are then ours).
    pub(super) fn test_root(t: &tempfile::TempDir) -> std::path::PathBuf {
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        std::fs::write(
            root.join("etc/passwd"),
            format!("root:x:{uid}:{gid}::/root:/bin/sh\n"),
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), format!("root:x:{gid}:\n")).unwrap();
        root
    }

    fn paths(t: &tempfile::TempDir) -> ProvisionPaths {
        let root = test_root(t);
        ProvisionPaths {
            root,
            state: t.path().join("state"),
            credentials: Some(t.path().join("creds")),
        }
    }

    #[test]
    fn credential_is_applied_and_recorded() {
        let t = tempfile::tempdir().unwrap();
        let p = paths(&t);
        std::fs::create_dir_all(p.credentials.as_ref().unwrap()).unwrap();
        std::fs::write(
            p.credentials.as_ref().unwrap().join(CREDENTIAL),
            "hostname = \"n1\"\n",
        )
        .unwrap();
        let source = find_source(&p).unwrap().unwrap();
        assert_eq!(source, Source::Credential("hostname = \"n1\"\n".into()));
        let r = provision(&p, &source, apply::Live::FilesOnly).unwrap();
        assert!(r.ok && r.error.is_none());
        assert_eq!(
            r.applied,
            ["hostname n1", "file /etc/hostname (0644 root:root)"]
        );
        assert_eq!(
            std::fs::read_to_string(p.root.join("etc/hostname")).unwrap(),
            "n1\n"
        );
        let stored: ProvisionRecord =
            super::super::state::read(&ProvisionRecord::path(&p.state)).unwrap();
        assert_eq!(stored, r);
        assert!(r.id.starts_with("sha256 "), "{}", r.id);
        assert!(
            r.render()
                .starts_with("provisioned from credential hull.node (sha256 "),
            "{}",
            r.render()
        );
    }

    #[test]
    fn extensions_are_placed_and_a_missing_one_is_named() {
        let t = tempfile::tempdir().unwrap();
        let p = paths(&t);
        let creds = p.credentials.clone().unwrap();
        std::fs::create_dir_all(&creds).unwrap();
        let text = "extensions = [\"hello.raw\", \"kubelet.raw\"]\n";
        std::fs::write(creds.join(CREDENTIAL), text).unwrap();
        std::fs::write(creds.join("hull.sysext.hello"), b"ext").unwrap();
        let source = find_source(&p).unwrap().unwrap();
        let r = provision(&p, &source, apply::Live::FilesOnly).unwrap();
        assert!(r.ok);
        assert_eq!(
            r.applied,
            ["extension /var/lib/extensions/hello.raw (3 bytes, from credential hull.sysext.hello)"]
        );
        assert_eq!(
            r.missing,
            ["kubelet.raw (no credential hull.sysext.kubelet)"]
        );
        assert!(
            r.render().contains(
                "did not arrive, not placed: kubelet.raw (no credential hull.sysext.kubelet)"
            ),
            "{}",
            r.render()
        );
        // Not done yet: the next boot tries again (and places it once it arrives).
        std::fs::write(creds.join("hull.sysext.kubelet"), b"k").unwrap();
        let Outcome::Applied(r) = run_files_only(&p) else {
            panic!("not applied again")
        };
        assert!(r.missing.is_empty() && r.applied.len() == 2, "{r:?}");
        assert!(matches!(run_files_only(&p), Outcome::AlreadyDone(_)));
        assert_eq!(
            std::fs::read(p.root.join("var/lib/extensions/kubelet.raw")).unwrap(),
            b"k"
        );
    }

    fn run_files_only(p: &ProvisionPaths) -> Outcome {
        run_with(p, apply::Live::FilesOnly).unwrap()
    }

    #[test]
    fn a_bad_config_is_recorded_with_why() {
        let t = tempfile::tempdir().unwrap();
        let p = paths(&t);
        let source = Source::Credential("hostname = \"n1\"\nsurprise = 1\n".into());
        let e = format!(
            "{:#}",
            provision(&p, &source, apply::Live::FilesOnly).unwrap_err()
        );
        assert!(
            e.contains("credential hull.node") && e.contains("unknown field `surprise`"),
            "{e}"
        );
        let stored: ProvisionRecord =
            super::super::state::read(&ProvisionRecord::path(&p.state)).unwrap();
        assert!(!stored.ok);
        assert_eq!(stored.error.as_deref(), Some(e.as_str()));
        assert!(!p.root.join("etc/hostname").exists(), "nothing applied");
        assert!(stored.render().contains("FAILED"), "{}", stored.render());
    }

    #[test]
    fn nocloud_ids_and_unsupported_keys() {
        let t = tempfile::tempdir().unwrap();
        let p = paths(&t);
        let s = Source::NoCloud(seed::Seed {
            device: "/dev/vdb".into(),
            user_data: "#cloud-config\nhostname: n2\nbootcmd: [x]\n".into(),
            meta_data: "instance-id: i-9\n".into(),
        });
        let r = provision(&p, &s, apply::Live::FilesOnly).unwrap();
        assert_eq!(r.id, "instance-id i-9");
        assert_eq!(r.source, "NoCloud seed /dev/vdb");
        assert_eq!(r.unsupported, ["bootcmd"]);
        assert!(r.render().contains("not supported, not applied: bootcmd"));
        let no_id = Source::NoCloud(seed::Seed {
            device: "/dev/vdb".into(),
            user_data: String::new(),
            meta_data: String::new(),
        });
        assert!(no_id.id(None).starts_with("sha256 "));
        assert_ne!(no_id.id(None), Source::Credential(String::new()).id(None));
    }
}
