//! Places the node config's system extensions: each `NAME.raw` arrives as
//! the systemd credential `hull.sysext.NAME` (hull-provision.service
//! imports `hull.sysext.*`) and is written whole (temp file, fsync, rename)
//! to `/var/lib/extensions/NAME.raw`.
//!
//! systemd-sysext.service has already run by then (it is ordered before
//! systemd-tmpfiles-setup, which this unit comes after; on a first boot its
//! condition, a non-empty /var/lib/extensions, was false), so after placing
//! them `systemd-sysext refresh` merges them now, reloading the service
//! manager so units an extension carries are seen. Later boots merge them
//! in systemd-sysext.service, before any service starts.
//!
//! An extension named but not delivered is not an error that stops the
//! rest: it is named on the console, in the journal and in `hull status`,
//! and the source is applied again on the next boot.

use std::path::Path;

use anyhow::{Context, Result};
use cap_std::fs::Dir;

use super::apply::{write_whole, Ids, Live};
use super::plan::Write;
use crate::manifest::node::extensions::{Extension, DIR};
use crate::util::cmd::Cmd;

/// What placing the extensions came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placed {
    /// One line per action (`extension /var/lib/extensions/hello.raw …`).
    pub applied: Vec<String>,
    /// One entry per extension that did not arrive:
    /// `hello.raw (no credential hull.sysext.hello)`.
    pub missing: Vec<String>,
}

/// Writes each of `extensions` from `credentials` (`$CREDENTIALS_DIRECTORY`)
/// into `root`'s /var/lib/extensions, 0644 and root's; then, when `live`
/// and any was placed, merges them (`systemd-sysext refresh`). Errors name
/// the credential or the file.
pub fn place(
    root: &Dir,
    extensions: &[Extension],
    credentials: Option<&Path>,
    live: Live,
) -> Result<Placed> {
    let mut out = Placed::default();
    if extensions.is_empty() {
        return Ok(out);
    }
    let ids = Ids::read(root)?;
    let (uid, gid) = ids.owner("root", "root").context("/etc/passwd")?;
    for ext in extensions {
        let credential = ext.credential();
        let content = match credentials.map(|d| d.join(&credential)) {
            None => None,
            Some(p) => match std::fs::read(&p) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
            },
        };
        let Some(content) = content else {
            out.missing
                .push(format!("{} (no credential {credential})", ext.file_name()));
            continue;
        };
        let w = Write {
            path: ext.path(),
            content,
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
        };
        write_whole(root, &w, uid, gid)?;
        out.applied.push(format!(
            "extension /{} ({} bytes, from credential {credential})",
            w.path,
            w.content.len()
        ));
    }
    if live == Live::Yes && !out.applied.is_empty() {
        Cmd::new("systemd-sysext").arg("refresh").run()?;
        out.applied.push(format!("systemd-sysext refresh (/{DIR})"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::node::extensions::validate;

    #[test]
    fn placed_from_credentials_and_missing_named() {
        let t = tempfile::tempdir().unwrap();
        let root = crate::host::provision::tests::test_root(&t);
        let creds = t.path().join("creds");
        std::fs::create_dir_all(&creds).unwrap();
        std::fs::write(creds.join("hull.sysext.hello"), b"\0erofs bytes").unwrap();
        let dir = Dir::open_ambient_dir(&root, cap_std::ambient_authority()).unwrap();
        let exts = validate(&["hello.raw".into(), "kubelet.raw".into()]).unwrap();

        let p = place(&dir, &exts, Some(&creds), Live::FilesOnly).unwrap();
        assert_eq!(
            p.applied,
            ["extension /var/lib/extensions/hello.raw (12 bytes, from credential hull.sysext.hello)"]
        );
        assert_eq!(
            p.missing,
            ["kubelet.raw (no credential hull.sysext.kubelet)"]
        );
        let placed = root.join("var/lib/extensions/hello.raw");
        assert_eq!(std::fs::read(&placed).unwrap(), b"\0erofs bytes");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&placed).unwrap().permissions().mode() & 0o7777,
            0o644
        );
        let names: Vec<_> = std::fs::read_dir(root.join("var/lib/extensions"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["hello.raw"], "no temp file left behind");

        // No credentials at all: every extension is missing, nothing written.
        let p = place(&dir, &exts[1..], None, Live::FilesOnly).unwrap();
        assert!(p.applied.is_empty());
        assert_eq!(p.missing.len(), 1);
        assert_eq!(
            place(&dir, &[], None, Live::Yes).unwrap(),
            Placed::default()
        );
    }
}
