//! The ids of the accounts hull creates (`[[users]]` and the rootless podman
//! account), kept from one version of an image to the next.
//!
//! A host keeps /var across updates, and what is in it (homes, container
//! storage) belongs to numeric ids. So each account takes the uid and gid
//! the parent commit (the head of the manifest's ref) gave it, and a new
//! account takes the lowest id from 1000 up that the parent gave to no
//! account or group, as rpm-ostree does with the parent's passwd and group.
//! The ids are planned before the build (they are part of its input digest)
//! and checked against the installed tree when the accounts are made.

use std::path::Path;

use anyhow::{bail, Context, Result};
use cap_std::fs::Dir;
use ostree::gio;
use ostree::prelude::*;
use serde::Serialize;

use crate::manifest::Manifest;

/// The first id given to an account (Debian's UID_MIN and GID_MIN).
pub const FIRST_ID: u32 = 1000;

/// One account to create: its name, uid and the gid of its own group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// The accounts and groups of a tree: `(name, uid, gid)` from passwd and
/// `(name, gid)` from group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids {
    pub passwd: Vec<(String, u32, u32)>,
    pub group: Vec<(String, u32)>,
}

impl Ids {
    /// Parses passwd and group text; lines that are not `name:x:id:...`
    /// are skipped (comments, NIS `+` lines).
    pub fn parse(passwd: &str, group: &str) -> Ids {
        let fields = |l: &str| l.split(':').map(str::to_string).collect::<Vec<_>>();
        let passwd = passwd
            .lines()
            .map(fields)
            .filter_map(|f| {
                Some((
                    f.first()?.clone(),
                    f.get(2)?.parse().ok()?,
                    f.get(3)?.parse().ok()?,
                ))
            })
            .collect();
        let group = group
            .lines()
            .map(fields)
            .filter_map(|f| Some((f.first()?.clone(), f.get(2)?.parse().ok()?)))
            .collect();
        Ids { passwd, group }
    }

    /// Reads `etc/passwd` and `etc/group` under `etc` of a tree.
    pub fn read_tree(root: &Dir, etc: &str) -> Result<Ids> {
        let read = |name: &str| {
            let path = format!("{etc}/{name}");
            root.read_to_string(&path)
                .with_context(|| format!("reading /{path}"))
        };
        Ok(Ids::parse(&read("passwd")?, &read("group")?))
    }

    /// Reads `/usr/etc/passwd` and `/usr/etc/group` of a commit (empty when
    /// the commit has none).
    pub fn read_commit(repo: &ostree::Repo, commit: &str) -> Result<Ids> {
        let (root, _) = repo
            .read_commit(commit, gio::Cancellable::NONE)
            .with_context(|| format!("reading commit {commit}"))?;
        let read = |name: &str| -> Result<String> {
            let path = format!("usr/etc/{name}");
            let bytes = read_commit_file(repo, &root, &path)
                .with_context(|| format!("reading /{path} of commit {commit}"))?;
            Ok(String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned())
        };
        Ok(Ids::parse(&read("passwd")?, &read("group")?))
    }

    fn uid_of(&self, name: &str) -> Option<(u32, u32)> {
        self.passwd
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, u, g)| (*u, *g))
    }

    fn uid_used(&self, id: u32) -> bool {
        self.passwd.iter().any(|(_, u, _)| *u == id)
    }

    fn gid_used(&self, id: u32) -> bool {
        self.group.iter().any(|(_, g)| *g == id) || self.passwd.iter().any(|(_, _, g)| *g == id)
    }
}

/// The contents of the regular file `path` (relative) in a commit's tree
/// `root` (from `read_commit`); `None` when there is no such file.
pub fn read_commit_file(
    repo: &ostree::Repo,
    root: &gio::File,
    path: &str,
) -> Result<Option<Vec<u8>>> {
    let file = root.resolve_relative_path(path);
    if !file.query_exists(gio::Cancellable::NONE) {
        return Ok(None);
    }
    let file = file
        .downcast::<ostree::RepoFile>()
        .map_err(|_| anyhow::anyhow!("{path}: not a file of a commit"))?;
    file.ensure_resolved()?;
    // Through the repository, not gio's load_contents: that asks the
    // stream for file info, which an OSTree stream does not give.
    let (stream, _, _) = repo.load_file(&file.checksum(), gio::Cancellable::NONE)?;
    let mut out = Vec::new();
    if let Some(stream) = stream {
        loop {
            let chunk = stream.read_bytes(1 << 16, gio::Cancellable::NONE)?;
            if chunk.is_empty() {
                break;
            }
            out.extend_from_slice(&chunk);
        }
    }
    Ok(Some(out))
}

/// The accounts hull creates for `manifest`, in the order it creates them.
pub fn names(manifest: &Manifest) -> Vec<String> {
    let mut names: Vec<String> = manifest.users.iter().map(|u| u.name.clone()).collect();
    let h = &manifest.hardening;
    if h.enable && h.rootless {
        names.push(h.rootless_user.clone());
    }
    names
}

/// The ids of `names` given the parent commit's accounts (empty for a first
/// build): an account the parent had keeps its uid and gid; a new one takes
/// the lowest id from [`FIRST_ID`] that is free as a uid and as a gid in the
/// parent and in this plan.
pub fn plan(parent: &Ids, names: &[String]) -> Vec<Account> {
    let mut out: Vec<Account> = Vec::new();
    for name in names {
        if let Some((uid, gid)) = parent.uid_of(name) {
            out.push(Account {
                name: name.clone(),
                uid,
                gid,
            });
        }
    }
    let mut next = FIRST_ID;
    for name in names {
        if parent.uid_of(name).is_some() {
            continue;
        }
        while parent.uid_used(next)
            || parent.gid_used(next)
            || out.iter().any(|a| a.uid == next || a.gid == next)
        {
            next += 1;
        }
        out.push(Account {
            name: name.clone(),
            uid: next,
            gid: next,
        });
    }
    // In the order they are created.
    out.sort_by_key(|a| names.iter().position(|n| *n == a.name));
    out
}

/// Checks that the planned ids are free in the installed tree (whose
/// packages' system accounts are made by their maintainer scripts).
pub fn check_free(tree: &Ids, planned: &[Account]) -> Result<()> {
    for a in planned {
        if let Some((other, _, _)) = tree
            .passwd
            .iter()
            .find(|(n, u, _)| *u == a.uid && *n != a.name)
        {
            bail!(
                "account {}: uid {}, which it has in the image's previous commit, is taken in the new \
                 tree by {other}",
                a.name,
                a.uid
            );
        }
        if let Some((other, _)) = tree.group.iter().find(|(n, g)| *g == a.gid && *n != a.name) {
            bail!(
                "account {}: gid {}, which its group has in the image's previous commit, is taken in \
                 the new tree by group {other}",
                a.name,
                a.gid
            );
        }
    }
    Ok(())
}

/// The planned account called `name`.
pub fn find<'a>(planned: &'a [Account], name: &str) -> Result<&'a Account> {
    planned
        .iter()
        .find(|a| a.name == name)
        .with_context(|| format!("account {name} has no planned uid"))
}

/// `groupadd` then `useradd` arguments making `a` with its planned ids,
/// `extra` being useradd's own options (home, shell, groups).
pub fn create_commands(a: &Account, extra: &[&str]) -> Vec<Vec<String>> {
    let gid = a.gid.to_string();
    let uid = a.uid.to_string();
    let mut useradd: Vec<String> = ["useradd", "--uid", &uid, "--gid", &gid]
        .map(String::from)
        .to_vec();
    useradd.extend(extra.iter().map(|s| s.to_string()));
    useradd.push(a.name.clone());
    vec![
        ["groupadd", "--gid", &gid, &a.name]
            .map(String::from)
            .to_vec(),
        useradd,
    ]
}

/// Ids in each sub-uid and sub-gid range of a `[[users]]` account.
pub const SUBID_COUNT: u32 = 65_536;

/// The sub-uid and sub-gid range (`start`, `count`) of a `[[users]]` account,
/// which follows from its uid so that it stays with it too: the block of
/// uid 1000 starts at 100000 (where useradd starts), each next uid takes the
/// next block, and blocks that would reach the ranges of
/// [`super::hardening`] (the rootless account's at 524288, rootful podman's
/// from 1048576 to 2097151) go above them.
pub fn user_subids(uid: u32) -> Result<(u32, u32)> {
    let below = (super::hardening::ROOTLESS_SUBIDS.0 - 100_000) / SUBID_COUNT;
    let i = uid.saturating_sub(FIRST_ID);
    let start = if i < below {
        Some(100_000 + i * SUBID_COUNT)
    } else {
        (i - below)
            .checked_mul(SUBID_COUNT)
            .and_then(|o| o.checked_add(2_097_152))
            .filter(|s| s.checked_add(SUBID_COUNT).is_some())
    };
    match start {
        Some(start) => Ok((start, SUBID_COUNT)),
        None => bail!("uid {uid} has no room for a sub-id range of {SUBID_COUNT} ids"),
    }
}

/// The `usermod` run giving a `[[users]]` account its [`user_subids`].
pub fn subid_command(a: &Account) -> Result<Vec<String>> {
    let (start, count) = user_subids(a.uid)?;
    let range = format!("{start}-{}", start + count - 1);
    Ok([
        "usermod",
        "--add-subuids",
        &range,
        "--add-subgids",
        &range,
        &a.name,
    ]
    .map(String::from)
    .to_vec())
}

/// Runs [`create_commands`] under chroot in the tree.
pub fn create(root_path: &Path, a: &Account, extra: &[&str]) -> Result<()> {
    for args in create_commands(a, extra) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        super::customize::chroot(root_path, &args)
            .with_context(|| format!("creating account {} (uid {})", a.name, a.uid))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        systemd-network:x:998:998::/:/usr/sbin/nologin\n\
        core:x:1000:1000::/home/core:/bin/bash\n\
        rootless:x:1001:1001::/home/rootless:/usr/sbin/nologin\n\
        nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str =
        "root:x:0:\nsystemd-network:x:998:\ncore:x:1000:\nrootless:x:1001:\nops:x:1003:\n";

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn ids(plan: &[Account]) -> Vec<(&str, u32, u32)> {
        plan.iter()
            .map(|a| (a.name.as_str(), a.uid, a.gid))
            .collect()
    }

    #[test]
    fn parses_passwd_and_group() {
        let i = Ids::parse(PASSWD, GROUP);
        assert_eq!(i.passwd[2], ("core".into(), 1000, 1000));
        assert_eq!(i.group.len(), 5);
        let i = Ids::parse("# comment\n+::::::\nbad:x:notanumber:1::/:/bin/sh\n", "");
        assert!(i.passwd.is_empty());
    }

    /// (accounts to make, ids planned) against the parent above: image B =
    /// image A + one user keeps rootless at 1001.
    #[test]
    fn accounts_keep_their_ids() {
        let parent = Ids::parse(PASSWD, GROUP);
        type Row<'a> = (&'a [&'a str], &'a [(&'a str, u32, u32)]);
        let rows: &[Row] = &[
            (
                &["core", "rootless"],
                &[("core", 1000, 1000), ("rootless", 1001, 1001)],
            ),
            // a new user before the old ones: 1002 (1003 is the group ops)
            (
                &["alice", "core", "rootless"],
                &[
                    ("alice", 1002, 1002),
                    ("core", 1000, 1000),
                    ("rootless", 1001, 1001),
                ],
            ),
            // core is gone: its 1000 is not handed to anyone else
            (
                &["bob", "carol", "rootless"],
                &[
                    ("bob", 1002, 1002),
                    ("carol", 1004, 1004),
                    ("rootless", 1001, 1001),
                ],
            ),
        ];
        for (want_names, want) in rows {
            assert_eq!(
                ids(&plan(&parent, &names(want_names))),
                *want,
                "{want_names:?}"
            );
        }
    }

    #[test]
    fn a_first_build_counts_from_1000() {
        let p = plan(&Ids::default(), &names(&["core", "rootless"]));
        assert_eq!(ids(&p), [("core", 1000, 1000), ("rootless", 1001, 1001)]);
        // Same plan again once that build is the parent: same ids, same digest.
        let parent = Ids::parse(PASSWD, GROUP);
        assert_eq!(plan(&parent, &names(&["core", "rootless"])), p);
    }

    #[test]
    fn ids_taken_in_the_tree_are_errors() {
        let tree = Ids::parse(
            "core:x:1000:1000::/:/bin/sh\n",
            "core:x:1000:\nstaff:x:1001:\n",
        );
        let p = plan(&Ids::default(), &names(&["core", "rootless"]));
        let err = check_free(&tree, &p).unwrap_err().to_string();
        assert!(
            err.contains("account rootless: gid 1001") && err.contains("group staff"),
            "{err}"
        );
        assert!(check_free(&tree, &p[..1]).is_ok());
    }

    /// (uid, sub-id range start): useradd's first block for uid 1000, clear
    /// of the rootless (524288..589823) and rootful (1048576..2097151) ranges.
    #[test]
    fn sub_id_ranges_follow_the_uid() {
        let rows = [
            (1000, 100_000),
            (1001, 165_536),
            (1005, 427_680),
            (1006, 2_097_152),
            (1007, 2_162_688),
        ];
        for (uid, start) in rows {
            assert_eq!(user_subids(uid).unwrap(), (start, 65_536), "{uid}");
            let end = start + 65_536;
            assert!(end <= 524_288 || start >= 2_097_152, "{uid}");
        }
        assert!(user_subids(u32::MAX).is_err());
        let a = Account {
            name: "core".into(),
            uid: 1001,
            gid: 1001,
        };
        assert_eq!(
            subid_command(&a).unwrap(),
            [
                "usermod",
                "--add-subuids",
                "165536-231071",
                "--add-subgids",
                "165536-231071",
                "core"
            ]
        );
    }

    #[test]
    fn commands_pin_the_ids() {
        let a = Account {
            name: "core".into(),
            uid: 1002,
            gid: 1005,
        };
        assert_eq!(
            create_commands(&a, &["--shell", "/bin/bash"]),
            [
                vec!["groupadd", "--gid", "1005", "core"],
                vec![
                    "useradd",
                    "--uid",
                    "1002",
                    "--gid",
                    "1005",
                    "--shell",
                    "/bin/bash",
                    "core"
                ],
            ]
        );
    }

    /// The parent's ids come out of a real commit's /usr/etc.
    #[test]
    fn reads_a_commits_passwd() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        std::fs::create_dir_all(tree.join("usr/etc")).unwrap();
        std::fs::write(tree.join("usr/etc/passwd"), PASSWD).unwrap();
        std::fs::write(tree.join("usr/etc/group"), GROUP).unwrap();
        let repo = crate::repo::commit::open_or_create(&t.path().join("repo")).unwrap();
        let meta = crate::repo::commit::test_meta("1");
        let c = crate::repo::commit::commit_tree(&repo, &tree, "hull/t/x86_64/stable", &meta)
            .unwrap()
            .checksum;
        assert_eq!(
            Ids::read_commit(&repo, &c).unwrap(),
            Ids::parse(PASSWD, GROUP)
        );
        let (_t, repo, c) = crate::repo::commit::test_repo_with_commit(b"x");
        assert_eq!(Ids::read_commit(&repo, &c).unwrap(), Ids::default());
    }
}
