//! The installed tree's working copy, kept between builds (issue 18, goal 1).
//!
//! A build lays the manifest over a copy of the cached installed tree. Copying
//! it whole (`cp -a`, about 7,000 inodes for the minimal image) was most of a
//! one-file rebuild's rootfs stage; on ext4 without a journal, which will not
//! reuse an inode number freed in the last five minutes, each such copy was
//! slower than the one before. Instead the tree the last build committed is
//! kept (`cache/installed/<key>/work`) and put back to the installed tree's
//! state by undoing what that build changed:
//!
//! - when the copy last matched the installed tree, the inode number of every
//!   entry was recorded by path, and a marker time taken that is later than
//!   every ctime in the copy ([`mark`]);
//! - any change to an entry since (its contents, mode, owner or extended
//!   attributes, a link or a rename) set its ctime past the marker, and user
//!   space cannot set a ctime back;
//! - so an entry with the inode recorded for its path and a ctime not past the
//!   marker is still the installed tree's. Every other entry is removed,
//!   copied again from the installed tree (`cp -a`), or, for a directory, given
//!   the installed tree's mode, owner and extended attributes
//!   ([`plan_restore`], then [`apply`]).
//!
//! The state is written beside the kept copy only after a `syncfs` of it
//! ([`WorkingCopy::keep`]), and removed before the copy is touched
//! ([`take`]); a copy without its state is removed, and the build copies the
//! installed tree whole, as before.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, MetadataExt};
use serde::{Deserialize, Serialize};

use crate::util::cmd::Cmd;

/// The kept copy, beside the installed tree in its cache entry.
const WORK_DIR: &str = "work";
/// Its state ([`State`], JSON), written only when the copy is whole on disk.
const STATE_FILE: &str = "work.json";
/// The content checksums of its files by inode (`repo::checksum_cache`).
const CHECKSUMS_FILE: &str = "work-checksums.json";

/// A point in time as a file system records it: seconds and nanoseconds.
pub type Stamp = (i64, i64);

/// What is known of a working copy that matched the installed tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The device of the copy (`st_dev`): inode numbers mean nothing on another.
    pub dev: u64,
    /// Later than the ctime of every entry of the copy when it was marked.
    pub marker: Stamp,
    /// Every entry's inode number, by its path from the tree's root.
    pub inodes: BTreeMap<String, u64>,
}

/// One step that puts the copy back to the installed tree's state; paths
/// are relative to both trees' roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The entry is not in the installed tree, or not as it is: removed.
    Remove(String),
    /// Copied from the installed tree (`cp -a`), whole for a directory.
    Copy(String),
    /// A directory that stays: its mode, owner and extended attributes are
    /// set to the installed tree's.
    Meta(String),
}

/// What [`apply`] did, for the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub removed: usize,
    pub copied: usize,
    pub directories_fixed: usize,
}

/// A working copy in use: the cache entry it belongs to and the state it
/// was marked with.
#[derive(Debug, Clone)]
pub struct WorkingCopy {
    /// `cache/installed/<key>`.
    pub entry: PathBuf,
    pub state: State,
}

/// Entry metadata the restore compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub kind: Kind,
    pub ino: u64,
    pub ctime: Stamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    Other(u32),
}

impl Seen {
    fn of(m: &cap_std::fs::Metadata) -> Self {
        Seen {
            kind: if m.is_dir() {
                Kind::Dir
            } else {
                // The file type bits: a symlink is not a file of the same name.
                Kind::Other(m.mode() & 0o170000)
            },
            ino: m.ino(),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// The decision for one path present in both trees (`installed`, `work`),
/// by the rules of the module's doc: `recorded` is the inode the state
/// holds for the path. Pushes the actions onto `out`; returns whether the
/// entry is a directory to walk into.
pub fn decide(
    path: &str,
    installed: Seen,
    work: Seen,
    recorded: Option<u64>,
    marker: Stamp,
    out: &mut Vec<Action>,
) -> bool {
    let same_entry = installed.kind == work.kind && recorded == Some(work.ino);
    let changed = work.ctime > marker;
    match (same_entry, installed.kind) {
        (false, _) => {
            out.push(Action::Remove(path.into()));
            out.push(Action::Copy(path.into()));
            false
        }
        (true, Kind::Dir) => {
            if changed {
                out.push(Action::Meta(path.into()));
            }
            true
        }
        (true, Kind::Other(_)) => {
            if changed {
                out.push(Action::Remove(path.into()));
                out.push(Action::Copy(path.into()));
            }
            false
        }
    }
}

/// Plans the restore of the copy `work` to the installed tree `installed`
/// (both opened), from `state`. Errors name the path that could not be read.
pub fn plan_restore(installed: &Dir, work: &Dir, state: &State) -> Result<Vec<Action>> {
    let mut out = Vec::new();
    let root_work = work
        .dir_metadata()
        .context("reading the working copy's root")?;
    if root_work.dev() != state.dev {
        bail!("the working copy is on another device than when it was marked");
    }
    if (root_work.ctime(), root_work.ctime_nsec()) > state.marker {
        out.push(Action::Meta(String::new()));
    }
    walk(installed, work, "", state, &mut out)?;
    Ok(out)
}

fn names(dir: &Dir, path: &str) -> Result<BTreeSet<std::ffi::OsString>> {
    let entries = if path.is_empty() {
        dir.entries()
    } else {
        dir.read_dir(path)
    }
    .with_context(|| format!("listing /{path}"))?;
    entries
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("listing /{path}"))
}

fn walk(
    installed: &Dir,
    work: &Dir,
    dir: &str,
    state: &State,
    out: &mut Vec<Action>,
) -> Result<()> {
    let mut all = names(installed, dir)?;
    all.extend(names(work, dir)?);
    for name in all {
        let name = name
            .to_str()
            .with_context(|| format!("/{dir}/{}: not UTF-8", name.to_string_lossy()))?;
        let path = if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        };
        let meta = |d: &Dir| match d.symlink_metadata(&path) {
            Ok(m) => Ok(Some(Seen::of(&m))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading /{path}")),
        };
        match (meta(installed)?, meta(work)?) {
            (None, Some(_)) => out.push(Action::Remove(path)),
            (Some(_), None) => out.push(Action::Copy(path)),
            (Some(i), Some(w)) => {
                let recorded = state.inodes.get(&path).copied();
                if decide(&path, i, w, recorded, state.marker, out) {
                    walk(installed, work, &path, state, out)?;
                }
            }
            (None, None) => {}
        }
    }
    Ok(())
}

/// Carries out `actions` on the copy at `work` from the installed tree at
/// `installed`. Copies go through `cp -a`, one run per directory they land in.
pub fn apply(installed: &Path, work: &Path, actions: &[Action]) -> Result<Restored> {
    let dir = Dir::open_ambient_dir(work, ambient_authority())
        .with_context(|| format!("opening {}", work.display()))?;
    let from = Dir::open_ambient_dir(installed, ambient_authority())
        .with_context(|| format!("opening {}", installed.display()))?;
    let mut done = Restored::default();
    let mut copies: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for action in actions {
        match action {
            Action::Remove(p) => {
                let m = dir
                    .symlink_metadata(p)
                    .with_context(|| format!("reading {}/{p}", work.display()))?;
                if m.is_dir() {
                    dir.remove_dir_all(p)
                } else {
                    dir.remove_file(p)
                }
                .with_context(|| format!("removing {}/{p}", work.display()))?;
                done.removed += 1;
            }
            Action::Copy(p) => {
                let parent = Path::new(p)
                    .parent()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                copies.entry(parent).or_default().push(p.clone());
                done.copied += 1;
            }
            Action::Meta(p) => {
                if fix_dir_meta(&from, &dir, p)
                    .with_context(|| format!("{}/{p}", work.display()))?
                {
                    done.directories_fixed += 1;
                }
            }
        }
    }
    // A directory is copied after its parent's removals (above), and a
    // parent's copy comes before its children's (they are not planned:
    // a copied directory is copied whole).
    for (parent, paths) in copies {
        Cmd::new("cp")
            .arg("-a")
            .arg("-t")
            .arg(work.join(&parent))
            .args(paths.iter().map(|p| installed.join(p)))
            .run()?;
    }
    Ok(done)
}

/// Sets the mode, owner and extended attributes of the directory `path` of
/// `work` to those of `installed`'s; says whether anything differed.
fn fix_dir_meta(installed: &Dir, work: &Dir, path: &str) -> Result<bool> {
    // cap-std's directories are O_PATH descriptors, which take no
    // attribute, mode or owner calls: the directory is opened for reading.
    let open = |d: &Dir| {
        use rustix::fs::{Mode, OFlags};
        rustix::fs::openat(
            d,
            if path.is_empty() { "." } else { path },
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .context("opening the directory")
    };
    let (want, have) = (open(installed)?, open(work)?);
    let (wm, hm) = (rustix::fs::fstat(&want)?, rustix::fs::fstat(&have)?);
    let (wx, hx) = (
        super::overlay::read_xattrs(&want)?,
        super::overlay::read_xattrs(&have)?,
    );
    if (wm.st_mode, wm.st_uid, wm.st_gid) == (hm.st_mode, hm.st_uid, hm.st_gid) && wx == hx {
        return Ok(false);
    }
    std::os::unix::fs::fchown(&have, Some(wm.st_uid), Some(wm.st_gid))
        .context("setting the owner")?;
    rustix::fs::fchmod(&have, rustix::fs::Mode::from_raw_mode(wm.st_mode & 0o7777))
        .context("setting the mode")?;
    for name in hx.keys().filter(|n| !wx.contains_key(*n)) {
        rustix::fs::fremovexattr(&have, name.as_str())
            .with_context(|| format!("removing {name}"))?;
    }
    for (name, value) in wx.iter().filter(|(n, v)| hx.get(*n) != Some(*v)) {
        rustix::fs::fsetxattr(&have, name.as_str(), value, rustix::fs::XattrFlags::empty())
            .with_context(|| format!("setting {name}"))?;
    }
    Ok(true)
}

/// Records the copy at `work` as matching the installed tree now: every
/// entry's inode, then a marker later than every ctime in it (a probe file
/// in `probe_dir`, outside the tree, is touched until the file system's
/// clock has moved past the probe's first ctime).
pub fn mark(work: &Path, probe_dir: &Path) -> Result<State> {
    let dir = Dir::open_ambient_dir(work, ambient_authority())
        .with_context(|| format!("opening {}", work.display()))?;
    let dev = dir.dir_metadata()?.dev();
    let mut inodes = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        for name in names(&dir, &rel)? {
            let name = name.to_string_lossy();
            let path = if rel.is_empty() {
                name.into_owned()
            } else {
                format!("{rel}/{name}")
            };
            let m = dir
                .symlink_metadata(&path)
                .with_context(|| format!("reading {}/{path}", work.display()))?;
            inodes.insert(path.clone(), m.ino());
            if m.is_dir() {
                stack.push(path);
            }
        }
    }
    let probe = probe_dir.join(".hull-marker");
    let ctime = |p: &Path| -> Result<Stamp> {
        fs::write(p, b"").with_context(|| format!("writing {}", p.display()))?;
        let m = fs::symlink_metadata(p).with_context(|| format!("reading {}", p.display()))?;
        Ok((
            std::os::unix::fs::MetadataExt::ctime(&m),
            std::os::unix::fs::MetadataExt::ctime_nsec(&m),
        ))
    };
    let marker = ctime(&probe)?;
    let mut tries = 0;
    while ctime(&probe)? <= marker {
        tries += 1;
        if tries > 2000 {
            bail!("{}: the file system's clock did not move", probe.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let _ = fs::remove_file(&probe);
    Ok(State {
        dev,
        marker,
        inodes,
    })
}

/// Takes the copy kept in the cache entry `entry` to `target` (which must
/// not exist), and puts it back to the installed tree's state. `None` when
/// there is no usable copy (none kept, no state, another device): the
/// caller copies the installed tree whole. The state is removed first, so a
/// copy that a crash leaves half-restored is never trusted again.
pub fn take(entry: &Path, target: &Path) -> Result<Option<WorkingCopy>> {
    let (work, state_path) = (entry.join(WORK_DIR), entry.join(STATE_FILE));
    let state = fs::read(&state_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<State>(&b).ok());
    match fs::remove_file(&state_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", state_path.display()))
        }
        _ => {}
    }
    let Some(state) = state else {
        super::remove_tree(&work)?;
        return Ok(None);
    };
    if !work.is_dir() {
        return Ok(None);
    }
    if let Err(e) = fs::rename(&work, target) {
        log::info!(
            "not using the working copy {}: {e} (copying the installed tree)",
            work.display()
        );
        super::remove_tree(&work)?;
        return Ok(None);
    }
    let installed = entry.join("tree");
    let started = std::time::Instant::now();
    let plan = {
        let i = Dir::open_ambient_dir(&installed, ambient_authority())
            .with_context(|| format!("opening {}", installed.display()))?;
        let w = Dir::open_ambient_dir(target, ambient_authority())
            .with_context(|| format!("opening {}", target.display()))?;
        plan_restore(&i, &w, &state)
    };
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            log::info!("not using the working copy: {e:#} (copying the installed tree)");
            super::remove_tree(target)?;
            return Ok(None);
        }
    };
    log::debug!(
        "working copy: {} action(s): {}",
        plan.len(),
        plan.iter()
            .take(40)
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let done = apply(&installed, target, &plan).with_context(|| {
        format!(
            "restoring {} from {}",
            target.display(),
            installed.display()
        )
    })?;
    log::info!(
        "the installed tree's working copy, put back in {:.1} s: {} entries removed, {} copied again, {} directories' metadata reset",
        started.elapsed().as_secs_f64(),
        done.removed,
        done.copied,
        done.directories_fixed
    );
    let probe_dir = target.parent().unwrap_or(Path::new("."));
    Ok(Some(WorkingCopy {
        entry: entry.to_path_buf(),
        state: mark(target, probe_dir)?,
    }))
}

impl WorkingCopy {
    /// A copy just made of the installed tree at `work`: marked now.
    pub fn fresh(entry: &Path, work: &Path) -> Result<Self> {
        let probe_dir = work.parent().unwrap_or(Path::new("."));
        Ok(WorkingCopy {
            entry: entry.to_path_buf(),
            state: mark(work, probe_dir)?,
        })
    }

    /// Where the content checksums of the copy's files are kept.
    pub fn checksums_path(&self) -> PathBuf {
        self.entry.join(CHECKSUMS_FILE)
    }

    /// Keeps the committed tree `work` as the entry's working copy for the
    /// next build: renamed into the cache entry now; its state and
    /// `checksums` (JSON) written on a thread of `removals` once a `syncfs`
    /// has made the copy durable.
    pub fn keep(
        self,
        work: &Path,
        checksums: Vec<u8>,
        removals: &mut super::Removals,
    ) -> Result<()> {
        let dest = self.entry.join(WORK_DIR);
        super::remove_tree(&dest)?;
        fs::rename(work, &dest)
            .with_context(|| format!("renaming {} to {}", work.display(), dest.display()))?;
        let state =
            serde_json::to_vec(&self.state).context("serializing the working copy's state")?;
        let (entry, checksums_path) = (self.entry.clone(), self.checksums_path());
        removals.spawn(move || {
            let d = fs::File::open(&dest).with_context(|| format!("opening {}", dest.display()))?;
            rustix::fs::syncfs(&d).with_context(|| format!("syncing {}", dest.display()))?;
            crate::util::write_atomic(&checksums_path, &checksums)?;
            crate::util::write_atomic(&entry.join(STATE_FILE), &state)
        });
        Ok(())
    }
}

#[cfg(test)]
#[path = "working_copy_tests.rs"]
mod tests;
