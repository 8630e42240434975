//! Running another architecture's programs during a build.
//!
//! Building an aarch64 tree on an x86_64 machine runs arm64 programs:
//! maintainer scripts under mmdebstrap, dracut for the initramfs, `useradd`
//! and `systemctl` in the customize step. The kernel hands them to
//! qemu-user-static through binfmt_misc. [`ensure`] checks that this works
//! before anything is downloaded and sets up what it can: it mounts
//! binfmt_misc when absent and registers qemu's entry from qemu-user-static's
//! `/usr/lib/binfmt.d` file. The entry must carry the `F` (fix-binary) flag,
//! so that the interpreter is found from inside the chroot.
//!
//! What to do is decided by [`next_step`] from a [`State`] read off the
//! machine, so the rules are tested as a table.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::manifest::Arch;
use crate::util::cmd::Cmd;

/// Where binfmt_misc is mounted.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";
/// Where systemd-binfmt (and hull) find registrations shipped by packages.
pub const BINFMT_CONF_DIR: &str = "/usr/lib/binfmt.d";

/// The machine's state for one foreign architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The architecture this hull runs on.
    pub host: Option<Arch>,
    /// binfmt_misc is mounted (its `status` file exists).
    pub mounted: bool,
    /// The `qemu-<arch>` entry, when registered.
    pub entry: Option<Entry>,
    /// The registration line of `/usr/lib/binfmt.d/qemu-<arch>.conf`, when present.
    pub conf: Option<String>,
    /// The interpreter that line names exists.
    pub conf_interpreter_exists: bool,
}

/// A registered binfmt_misc entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub enabled: bool,
    pub interpreter: String,
    pub flags: String,
}

/// What [`ensure`] does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing: the architecture is the machine's own, or qemu is registered.
    Ready,
    /// Mount binfmt_misc.
    Mount,
    /// Write this line to binfmt_misc's `register`.
    Register(String),
}

/// qemu's name for the architecture (`qemu-aarch64`).
pub fn entry_name(arch: Arch) -> String {
    format!("qemu-{arch}")
}

/// The architecture hull itself was built for.
pub fn host_arch() -> Option<Arch> {
    Arch::of_this_binary()
}

/// Decides what to do for `arch`; an error says what is missing and how to get it.
pub fn next_step(arch: Arch, s: &State) -> Result<Step, String> {
    if s.host == Some(arch) {
        return Ok(Step::Ready);
    }
    if !s.mounted {
        return Ok(Step::Mount);
    }
    let name = entry_name(arch);
    let install = format!(
        "install qemu-user-static (apt-get install qemu-user-static) to run {} programs",
        arch.debian()
    );
    match (&s.entry, &s.conf) {
        (Some(e), _) if !e.enabled => Err(format!(
            "{BINFMT_DIR}/{name} is disabled: enable it with `echo 1 > {BINFMT_DIR}/{name}`"
        )),
        (Some(e), _) if !e.flags.contains('F') => Err(format!(
            "{BINFMT_DIR}/{name} ({}) lacks the F (fix-binary) flag, so it cannot run programs \
             inside a chroot: remove it (`echo -1 > {BINFMT_DIR}/{name}`) and build again to \
             register qemu-user-static's",
            e.interpreter
        )),
        (Some(_), _) => Ok(Step::Ready),
        (None, None) => Err(format!(
            "no binfmt_misc entry {name} and no {BINFMT_CONF_DIR}/{name}.conf: {install}"
        )),
        (None, Some(_)) if !s.conf_interpreter_exists => Err(format!(
            "the interpreter named in {BINFMT_CONF_DIR}/{name}.conf is missing: {install}"
        )),
        (None, Some(line)) if !registration_flags(line).contains('F') => Err(format!(
            "{BINFMT_CONF_DIR}/{name}.conf registers qemu without the F (fix-binary) flag, so it \
             cannot run programs inside a chroot: {install}"
        )),
        (None, Some(line)) => Ok(Step::Register(line.clone())),
    }
}

/// Makes sure programs of `arch` run on this machine, mounting binfmt_misc
/// and registering qemu-user-static when needed.
pub fn ensure(arch: Arch) -> Result<()> {
    let dir = Path::new(BINFMT_DIR);
    // Each step changes the state; three are enough to mount and register.
    for _ in 0..3 {
        let state = inspect(arch, dir, Path::new(BINFMT_CONF_DIR))?;
        let step = next_step(arch, &state).map_err(|m| {
            anyhow::anyhow!("cannot run {arch} programs (maintainer scripts, dracut): {m}")
        })?;
        match step {
            Step::Ready => return Ok(()),
            Step::Mount => {
                log::info!("mounting binfmt_misc on {BINFMT_DIR} to run {arch} programs");
                Cmd::new("mount")
                    .args(["-t", "binfmt_misc", "binfmt_misc", BINFMT_DIR])
                    .run()
                    .with_context(|| {
                        format!(
                            "mounting binfmt_misc on {BINFMT_DIR}, needed to run {arch} programs \
                             through qemu-user-static"
                        )
                    })?;
            }
            Step::Register(line) => {
                let register = dir.join("register");
                log::info!("registering {} in {}", entry_name(arch), register.display());
                fs::write(&register, line.as_bytes()).with_context(|| {
                    format!(
                        "registering {} from {BINFMT_CONF_DIR}/{}.conf in {}",
                        entry_name(arch),
                        entry_name(arch),
                        register.display()
                    )
                })?;
            }
        }
    }
    bail!(
        "cannot run {arch} programs: {BINFMT_DIR}/{} did not appear after registering it",
        entry_name(arch)
    )
}

/// Reads the state for `arch` from `binfmt_dir` and `conf_dir`.
pub fn inspect(arch: Arch, binfmt_dir: &Path, conf_dir: &Path) -> Result<State> {
    let name = entry_name(arch);
    let entry_path = binfmt_dir.join(&name);
    let entry = match fs::read_to_string(&entry_path) {
        Ok(text) => Some(parse_entry(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", entry_path.display())),
    };
    let conf_path = conf_dir.join(format!("{name}.conf"));
    let conf = match fs::read_to_string(&conf_path) {
        Ok(text) => text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(':'))
            .map(str::to_owned),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", conf_path.display())),
    };
    let conf_interpreter_exists = conf
        .as_deref()
        .and_then(registration_interpreter)
        .is_some_and(|p| p.exists());
    Ok(State {
        host: host_arch(),
        mounted: binfmt_dir.join("status").exists(),
        entry,
        conf,
        conf_interpreter_exists,
    })
}

/// An entry file: `enabled`, `interpreter PATH`, `flags: FLAGS`, ...
fn parse_entry(text: &str) -> Entry {
    let mut e = Entry {
        enabled: false,
        interpreter: String::new(),
        flags: String::new(),
    };
    for line in text.lines() {
        if line == "enabled" {
            e.enabled = true;
        } else if let Some(i) = line.strip_prefix("interpreter ") {
            e.interpreter = i.to_owned();
        } else if let Some(f) = line.strip_prefix("flags: ") {
            e.flags = f.to_owned();
        }
    }
    e
}

/// The fields of `:name:type:offset:magic:mask:interpreter:flags`.
fn registration_fields(line: &str) -> Vec<&str> {
    line.strip_prefix(':').unwrap_or(line).split(':').collect()
}

fn registration_interpreter(line: &str) -> Option<PathBuf> {
    registration_fields(line).get(5).map(PathBuf::from)
}

fn registration_flags(line: &str) -> &str {
    registration_fields(line).get(6).copied().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str =
        ":qemu-aarch64:M::\\x7fELF:\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF";

    fn entry(enabled: bool, flags: &str) -> Option<Entry> {
        Some(Entry {
            enabled,
            interpreter: "/usr/bin/qemu-aarch64-static".into(),
            flags: flags.into(),
        })
    }

    #[test]
    fn steps() {
        let base = State {
            host: Some(Arch::X86_64),
            mounted: true,
            entry: None,
            conf: Some(LINE.into()),
            conf_interpreter_exists: true,
        };
        // (state, Ok(step) or Err(text the error holds))
        let cases: Vec<(State, Result<Step, &str>)> = vec![
            (
                State {
                    host: Some(Arch::Aarch64),
                    mounted: false,
                    conf: None,
                    ..base.clone()
                },
                Ok(Step::Ready),
            ),
            (
                State {
                    mounted: false,
                    ..base.clone()
                },
                Ok(Step::Mount),
            ),
            (base.clone(), Ok(Step::Register(LINE.into()))),
            (
                State {
                    entry: entry(true, "POCF"),
                    conf: None,
                    ..base.clone()
                },
                Ok(Step::Ready),
            ),
            (
                State {
                    entry: entry(false, "POCF"),
                    ..base.clone()
                },
                Err("is disabled"),
            ),
            (
                State {
                    entry: entry(true, "OC"),
                    ..base.clone()
                },
                Err("lacks the F (fix-binary) flag"),
            ),
            (
                State {
                    conf: None,
                    ..base.clone()
                },
                Err("apt-get install qemu-user-static"),
            ),
            (
                State {
                    conf_interpreter_exists: false,
                    ..base.clone()
                },
                Err("interpreter named in /usr/lib/binfmt.d/qemu-aarch64.conf is missing"),
            ),
            (
                State {
                    conf: Some(LINE.trim_end_matches("OPF").to_owned() + "OP"),
                    ..base.clone()
                },
                Err("without the F (fix-binary) flag"),
            ),
        ];
        for (state, want) in cases {
            let got = next_step(Arch::Aarch64, &state);
            match want {
                Ok(step) => assert_eq!(got, Ok(step), "{state:?}"),
                Err(text) => {
                    let e = got.expect_err(&format!("{state:?}"));
                    assert!(e.contains(text), "{state:?}: {e}");
                }
            }
        }
    }

    #[test]
    fn inspect_reads_entry_and_conf() {
        let t = tempfile::tempdir().unwrap();
        let (binfmt, conf) = (t.path().join("binfmt"), t.path().join("conf"));
        fs::create_dir_all(&binfmt).unwrap();
        fs::create_dir_all(&conf).unwrap();
        let s = inspect(Arch::Aarch64, &binfmt, &conf).unwrap();
        assert!(!s.mounted && s.entry.is_none() && s.conf.is_none());

        fs::write(binfmt.join("status"), "enabled\n").unwrap();
        fs::write(
            binfmt.join("qemu-aarch64"),
            "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: POCF\noffset 0\n",
        )
        .unwrap();
        let interp = t.path().join("qemu");
        fs::write(&interp, "").unwrap();
        let line = format!(":qemu-aarch64:M::\\x7fELF:\\xff:{}:OCF", interp.display());
        fs::write(
            conf.join("qemu-aarch64.conf"),
            format!("# comment\n{line}\n"),
        )
        .unwrap();
        let s = inspect(Arch::Aarch64, &binfmt, &conf).unwrap();
        assert!(s.mounted);
        assert_eq!(s.entry, entry(true, "POCF"));
        assert_eq!(s.conf.as_deref(), Some(line.as_str()));
        assert!(s.conf_interpreter_exists);
        assert_eq!(registration_flags(&line), "OCF");
    }
}
