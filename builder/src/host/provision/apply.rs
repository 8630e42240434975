//! Carries out a [`Plan`] on a root directory: accounts through useradd,
//! files written whole (temp file, fsync, rename, so a power cut leaves the
//! old file or the new one), the host name set, units enabled.
//!
//! Files go through `cap_std::fs::Dir`, so a path in a config cannot leave
//! the root; the commands (useradd, systemctl) act on the running host and
//! run only when [`Live`] says so.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;

use anyhow::{bail, Context, Result};
use cap_std::fs::{Dir, OpenOptions, Permissions};

use super::plan::{Plan, Write, FIRST_PROVISIONED_ID, NETWORK_DIR, NETWORK_PREFIX};
use crate::util::cmd::Cmd;

/// Whether the commands that act on the running host run (not in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    Yes,
    FilesOnly,
}

/// Accounts and groups by name: `(uid, gid, home)` and gid.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    users: Vec<(String, u32, u32, String)>,
    groups: Vec<(String, u32)>,
}

impl Ids {
    /// Reads `etc/passwd` and `etc/group` of `root`.
    pub fn read(root: &Dir) -> Result<Ids> {
        let read = |p: &str| {
            root.read_to_string(p)
                .with_context(|| format!("reading /{p}"))
        };
        Ok(Ids::parse(&read("etc/passwd")?, &read("etc/group")?))
    }

    pub fn parse(passwd: &str, group: &str) -> Ids {
        let users = passwd
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some((
                    f.first()?.to_string(),
                    f.get(2)?.parse().ok()?,
                    f.get(3)?.parse().ok()?,
                    f.get(5)?.to_string(),
                ))
            })
            .collect();
        let groups = group
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some((f.first()?.to_string(), f.get(2)?.parse().ok()?))
            })
            .collect();
        Ids { users, groups }
    }

    fn user(&self, name: &str) -> Option<&(String, u32, u32, String)> {
        self.users.iter().find(|u| u.0 == name)
    }

    fn gid(&self, name: &str) -> Option<u32> {
        self.groups.iter().find(|g| g.0 == name).map(|g| g.1)
    }

    /// The uid and gid of `owner:group`; errors name the missing one.
    pub fn owner(&self, owner: &str, group: &str) -> Result<(u32, u32)> {
        let uid = self
            .user(owner)
            .map(|u| u.1)
            .with_context(|| format!("owner {owner}: no such account"))?;
        let gid = self
            .gid(group)
            .with_context(|| format!("group {group}: no such group"))?;
        Ok((uid, gid))
    }
}

/// Applies `plan` to `root` (the host's `/`). Stops at the first error,
/// which names the account, file or unit.
pub fn apply(root: &Dir, plan: &Plan, live: Live) -> Result<()> {
    if live == Live::Yes {
        make_users(root, plan)?;
        if let Some(h) = &plan.hostname {
            rustix::system::sethostname(h.as_bytes())
                .with_context(|| format!("setting the host name to {h}"))?;
        }
    }
    let ids = Ids::read(root)?;
    write_files(root, plan, &ids)?;
    write_keys(root, plan, &ids)?;
    remove_stale_network(root, plan)?;
    if live == Live::Yes {
        if plan.enable.iter().any(|u| u == super::plan::SSH_UNIT) {
            // The image carries no host keys (each machine makes its own);
            // sshd-keygen.service makes them only on a first boot.
            Cmd::new("ssh-keygen").arg("-A").run()?;
        }
        for unit in &plan.enable {
            Cmd::new("systemctl").args(["enable", unit]).run()?;
            // Not waiting: this runs before the units it starts may.
            Cmd::new("systemctl")
                .args(["start", "--no-block", unit])
                .run()?;
        }
    }
    Ok(())
}

fn make_users(root: &Dir, plan: &Plan) -> Result<()> {
    let ids = Ids::read(root)?;
    for u in &plan.users {
        for g in &u.groups {
            if ids.gid(g).is_none() {
                bail!("user {}: group {g} does not exist in this image", u.name);
            }
        }
        let groups = u.groups.join(",");
        if ids.user(&u.name).is_some() {
            if !groups.is_empty() {
                Cmd::new("usermod")
                    .args(["--append", "--groups", &groups, &u.name])
                    .run()?;
            }
            continue;
        }
        let min = FIRST_PROVISIONED_ID.to_string();
        let mut cmd = Cmd::new("useradd")
            .args(["--create-home", "--user-group", "--shell", "/bin/bash"])
            .args([
                "-K",
                &format!("UID_MIN={min}"),
                "-K",
                &format!("GID_MIN={min}"),
            ]);
        if !groups.is_empty() {
            cmd = cmd.args(["--groups", &groups]);
        }
        cmd.arg(&u.name).run()?;
    }
    Ok(())
}

fn write_files(root: &Dir, plan: &Plan, ids: &Ids) -> Result<()> {
    for w in &plan.writes {
        let (uid, gid) = ids
            .owner(&w.owner, &w.group)
            .with_context(|| format!("/{}", w.path))?;
        write_whole(root, w, uid, gid)?;
    }
    Ok(())
}

/// `~/.ssh/authorized_keys` of each user given keys, the directory 0700
/// and the file 0600, both the user's (sshd refuses keys others can write).
fn write_keys(root: &Dir, plan: &Plan, ids: &Ids) -> Result<()> {
    for u in &plan.users {
        let Some(keys) = &u.authorized_keys else {
            continue;
        };
        let (_, uid, gid, home) = ids
            .user(&u.name)
            .with_context(|| format!("user {}: no such account", u.name))?;
        let home = home.trim_start_matches('/');
        if home.is_empty() {
            bail!("user {}: no home directory in /etc/passwd", u.name);
        }
        let ssh = format!("{home}/.ssh");
        root.create_dir_all(&ssh)
            .with_context(|| format!("creating /{ssh}"))?;
        // Opened read-only as a file (not as a cap-std Dir, an O_PATH
        // handle), so that fchown and fchmod act on it.
        let dir = root.open(&ssh).with_context(|| format!("opening /{ssh}"))?;
        std::os::unix::fs::fchown(&dir, Some(*uid), Some(*gid))
            .with_context(|| format!("changing the owner of /{ssh}"))?;
        dir.set_permissions(Permissions::from_std(std::fs::Permissions::from_mode(
            0o700,
        )))
        .with_context(|| format!("setting the mode of /{ssh}"))?;
        let w = Write {
            path: format!("{ssh}/authorized_keys"),
            content: keys.as_bytes().to_vec(),
            mode: 0o600,
            owner: u.name.clone(),
            group: String::new(),
        };
        write_whole(root, &w, *uid, *gid)?;
    }
    Ok(())
}

/// Removes networkd files an earlier config wrote that this one does not.
fn remove_stale_network(root: &Dir, plan: &Plan) -> Result<()> {
    let Ok(dir) = root.open_dir(NETWORK_DIR) else {
        return Ok(());
    };
    let keep = plan.network_files();
    for entry in dir
        .entries()
        .with_context(|| format!("reading /{NETWORK_DIR}"))?
    {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(NETWORK_PREFIX) && !keep.contains(&name.as_ref()) {
            dir.remove_file(name.as_ref())
                .with_context(|| format!("removing /{NETWORK_DIR}/{name}"))?;
        }
    }
    Ok(())
}

/// Writes `w` whole: a temp file beside it with the mode and owner already
/// set, fsynced, renamed over the path, the directory fsynced. Parent
/// directories are made (0755, root's) when missing.
pub(super) fn write_whole(root: &Dir, w: &Write, uid: u32, gid: u32) -> Result<()> {
    let path = std::path::Path::new(&w.path);
    let name = path
        .file_name()
        .with_context(|| format!("/{}: no file name", w.path))?;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = match parent {
        Some(p) => {
            root.create_dir_all(p)
                .with_context(|| format!("creating /{}", p.display()))?;
            root.open_dir(p)
                .with_context(|| format!("opening /{}", p.display()))?
        }
        None => root.try_clone().context("opening /")?,
    };
    let tmp = format!(".{}.hull-provision", name.to_string_lossy());
    let result = (|| -> Result<()> {
        let mut f = dir.open_with(
            &tmp,
            OpenOptions::new().write(true).create(true).truncate(true),
        )?;
        f.set_permissions(Permissions::from_std(std::fs::Permissions::from_mode(
            w.mode,
        )))?;
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        // chown clears setuid and setgid bits: set the mode again.
        f.set_permissions(Permissions::from_std(std::fs::Permissions::from_mode(
            w.mode,
        )))?;
        f.write_all(&w.content)?;
        f.sync_all()?;
        dir.rename(&tmp, &dir, name)?;
        dir.open(".")?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = dir.remove_file(&tmp);
    }
    result.with_context(|| format!("writing /{}", w.path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::provision::plan::plan;
    use crate::manifest::node::config::load;
    use cap_std::ambient_authority;
    use std::os::unix::fs::MetadataExt;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHMQKLB9dI/YLBHgf/suU/uOPSDBFCtPm4pC9fnTYKXj a";

    fn root_with_accounts() -> (tempfile::TempDir, Dir, u32, u32) {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open_ambient_dir(t.path(), ambient_authority()).unwrap();
        // The test's own ids stand in for root's and alice's: chown to them
        // works unprivileged.
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        d.create_dir_all("etc").unwrap();
        d.create_dir_all("var/home/alice").unwrap();
        d.symlink("var/home", "home").unwrap();
        d.write(
            "etc/passwd",
            format!("root:x:{uid}:{gid}:root:/root:/bin/bash\nalice:x:{uid}:{gid}::/home/alice:/bin/bash\n"),
        )
        .unwrap();
        d.write("etc/group", format!("root:x:{gid}:\nalice:x:{gid}:\n"))
            .unwrap();
        (t, d, uid, gid)
    }

    #[test]
    fn files_keys_and_stale_network_files() {
        let (t, root, uid, gid) = root_with_accounts();
        root.create_dir_all(NETWORK_DIR).unwrap();
        root.write(format!("{NETWORK_DIR}/10-hull-provision-7.network"), "old")
            .unwrap();
        root.write(format!("{NETWORK_DIR}/80-hull-ethernet.network"), "image's")
            .unwrap();
        let owner = "alice";
        let text = format!(
            "hostname = \"n1\"\n[[users]]\nname = \"alice\"\nssh-authorized-keys = [\"{KEY}\"]\n\
             [[network]]\nmatch-name = \"en*\"\ndhcp = true\n\
             [[files]]\npath = \"/var/lib/app/conf\"\ncontent = \"x=1\"\nmode = \"0640\"\nowner = \"{owner}\"\n"
        );
        let p = plan(&load(&text, "t").unwrap(), "test", false);
        apply(&root, &p, Live::FilesOnly).unwrap();
        assert_eq!(root.read_to_string("etc/hostname").unwrap(), "n1\n");
        let conf = t.path().join("var/lib/app/conf");
        let meta = std::fs::metadata(&conf).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "x=1");
        let keys = t.path().join("var/home/alice/.ssh/authorized_keys");
        assert_eq!(std::fs::read_to_string(&keys).unwrap(), format!("{KEY}\n"));
        let meta = std::fs::metadata(&keys).unwrap();
        assert_eq!(
            (meta.mode() & 0o777, meta.uid(), meta.gid()),
            (0o600, uid, gid)
        );
        let meta = std::fs::metadata(t.path().join("var/home/alice/.ssh")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        let mut names: Vec<String> = std::fs::read_dir(t.path().join(NETWORK_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["10-hull-provision-0.network", "80-hull-ethernet.network"]
        );
        // No temp files are left anywhere written.
        for dir in ["etc", "var/lib/app", "var/home/alice/.ssh"] {
            for e in std::fs::read_dir(t.path().join(dir)).unwrap() {
                let n = e.unwrap().file_name();
                assert!(!n.to_string_lossy().starts_with('.'), "{dir}: {n:?}");
            }
        }
    }

    #[test]
    fn unknown_owner_is_named_and_nothing_half_written() {
        let (_t, root, _, _) = root_with_accounts();
        let p = plan(
            &load(
                "[[files]]\npath = \"/etc/a\"\ncontent = \"x\"\nowner = \"nobody2\"\n",
                "t",
            )
            .unwrap(),
            "test",
            false,
        );
        let e = format!("{:#}", apply(&root, &p, Live::FilesOnly).unwrap_err());
        assert!(
            e.contains("/etc/a") && e.contains("owner nobody2: no such account"),
            "{e}"
        );
        assert!(!root.exists("etc/a"));
        let text = format!("[[users]]\nname = \"carol\"\nssh-authorized-keys = [\"{KEY}\"]\n");
        let p = plan(&load(&text, "t").unwrap(), "test", false);
        let e = format!("{:#}", apply(&root, &p, Live::FilesOnly).unwrap_err());
        assert!(e.contains("user carol: no such account"), "{e}");
    }

    #[test]
    fn ids_parse() {
        let ids = Ids::parse(
            "a:x:5000:5001:A:/home/a:/bin/sh\nbad\n",
            "a:x:5001:\nsudo:x:27:a\n",
        );
        assert_eq!(ids.owner("a", "sudo").unwrap(), (5000, 27));
        assert!(ids.owner("b", "a").is_err());
        assert!(ids
            .owner("a", "b")
            .unwrap_err()
            .to_string()
            .contains("group b"));
    }
}
