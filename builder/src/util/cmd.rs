//! The one way hull runs another program.
//!
//! Every subprocess goes through [`Cmd`]: the command line is logged (at debug
//! level, `-v`: the default log says which stage runs, not every command) before it
//! runs, and when it fails the error names the program, its arguments and the
//! tail of what it wrote to stderr, so a failed build says *what* failed.

use std::ffi::{OsStr, OsString};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// How much of a failed command's stderr goes into the error.
const STDERR_TAIL_LINES: usize = 20;

/// A command to run, built up like [`std::process::Command`].
#[derive(Debug)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), val.as_ref().to_owned()));
        self
    }

    /// The command line as a user would type it, for logs and errors.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        c
    }

    /// Runs the command, inheriting stdout; stderr is captured for the error
    /// and also echoed at debug level.
    pub fn run(&self) -> Result<()> {
        self.output().map(|_| ())
    }

    /// Runs the command and returns its stdout.
    pub fn output(&self) -> Result<Vec<u8>> {
        let line = self.display();
        log::debug!("running: {line}");
        let out = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("starting `{line}`"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        for l in stderr.lines() {
            log::debug!("{}: {l}", self.program.to_string_lossy());
        }
        if !out.status.success() {
            bail!("`{line}` failed ({}): {}", out.status, stderr_tail(&stderr));
        }
        Ok(out.stdout)
    }

    /// Starts the command for callers that stream its output (QEMU's serial
    /// console, say); the command line is logged like every other. The child
    /// is killed if the thread that started it dies, so a crashed or killed
    /// caller leaves no QEMU behind.
    pub fn spawn(&self, stdout: Stdio, stderr: Stdio) -> Result<std::process::Child> {
        use std::os::unix::process::CommandExt;
        let line = self.display();
        log::debug!("starting: {line}");
        let mut command = self.command();
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches
        // no memory of the parent.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::Kill,
                ))
                .map_err(std::io::Error::from)
            });
        }
        command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting `{line}`"))
    }

    /// Runs the command with the terminal attached (an interactive QEMU).
    pub fn run_interactive(&self) -> Result<()> {
        let line = self.display();
        log::debug!("running: {line}");
        let status = self
            .command()
            .status()
            .with_context(|| format!("starting `{line}`"))?;
        if !status.success() {
            bail!("`{line}` failed ({status})");
        }
        Ok(())
    }

    /// Runs the command and returns its stdout as text.
    pub fn output_string(&self) -> Result<String> {
        let out = self.output()?;
        String::from_utf8(out)
            .with_context(|| format!("output of `{}` is not UTF-8", self.display()))
    }
}

/// The last lines of a command's stderr, joined on one line.
fn stderr_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return "no output on stderr".into();
    }
    let start = lines.len().saturating_sub(STDERR_TAIL_LINES);
    lines[start..].join(" | ")
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Fails with a one-line error naming `program` when it is not on PATH.
pub fn require_program(program: &str, package: &str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
        .unwrap_or(false);
    if !found {
        bail!("`{program}` not found on PATH: install the Debian package {package}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_command_and_stderr() {
        let err = Cmd::new("sh")
            .args(["-c", "echo first >&2; echo 'bad thing' >&2; exit 3"])
            .run()
            .unwrap_err()
            .to_string();
        assert!(err.contains("`sh -c"), "{err}");
        assert!(err.contains("bad thing"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
    }

    #[test]
    fn output_is_returned() {
        let out = Cmd::new("printf").arg("a b").output_string().unwrap();
        assert_eq!(out, "a b");
    }

    #[test]
    fn missing_program_is_named() {
        let err = Cmd::new("hull-no-such-program")
            .run()
            .unwrap_err()
            .to_string();
        assert!(err.contains("hull-no-such-program"), "{err}");
        let err = require_program("hull-no-such-program", "hull-pkg")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hull-pkg"), "{err}");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a/b=c"), "a/b=c");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
