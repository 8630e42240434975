//! Reading a guest's serial console: the check markers, the warnings and the
//! signs of a boot gone wrong. Pure text processing, fed as the log grows.
//!
//! The guest's check script prints, one per line:
//!
//! ```text
//! HULL-CHECK <name> <ok|fail> <detail...>
//! HULL-CHECK-DONE boot=<n>
//! ```
//!
//! The markers are found anywhere in a line (the kernel or systemd may have
//! written to the console just before), after escape sequences and carriage
//! returns are removed.

use std::collections::VecDeque;

/// Console text that means the boot failed, matched case-insensitively.
pub const FATAL_PATTERNS: &[&str] = &[
    "Kernel panic",
    "emergency mode",
    "Emergency shell",
    "You are in emergency mode",
];

/// Lines with this are collected as warnings (a unit that failed to start
/// need not fail the boot; the check script decides with `failed-units`).
pub const WARNING_PATTERN: &str = "Failed to start";

/// How many console lines an error shows.
pub const TAIL_LINES: usize = 40;

const CHECK_MARKER: &str = "HULL-CHECK ";
const DONE_MARKER: &str = "HULL-CHECK-DONE";

/// One `HULL-CHECK` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// What one console line meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Check(Check),
    /// `HULL-CHECK-DONE boot=<n>`.
    Done(u32),
    Warning(String),
    /// The boot failed; the line (or the reason) says how.
    Fatal(String),
}

/// The console as read so far.
#[derive(Debug, Clone)]
pub struct Console {
    pub checks: Vec<Check>,
    /// The `n` of every `HULL-CHECK-DONE boot=<n>`, in order.
    pub done_boots: Vec<u32>,
    pub warnings: Vec<String>,
    /// The first sign of a failed boot, if any.
    pub fatal: Option<String>,
    fatal_patterns: Vec<String>,
    partial: Vec<u8>,
    tail: VecDeque<String>,
}

impl Default for Console {
    fn default() -> Self {
        Console::with_fatal_patterns(FATAL_PATTERNS)
    }
}

impl Console {
    pub fn new() -> Console {
        Console::default()
    }

    /// A console that treats these (case-insensitive) substrings as fatal.
    pub fn with_fatal_patterns<S: AsRef<str>>(patterns: &[S]) -> Console {
        Console {
            checks: Vec::new(),
            done_boots: Vec::new(),
            warnings: Vec::new(),
            fatal: None,
            fatal_patterns: patterns.iter().map(|p| p.as_ref().to_lowercase()).collect(),
            partial: Vec::new(),
            tail: VecDeque::with_capacity(TAIL_LINES + 1),
        }
    }

    /// Reads a whole console at once (tests, or a log after the fact).
    pub fn parse(text: &str) -> Console {
        let mut c = Console::new();
        c.feed(text.as_bytes());
        c.finish();
        c
    }

    /// Feeds the bytes the console wrote since the last call; returns what
    /// the completed lines meant.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.partial.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            events.extend(self.line(&String::from_utf8_lossy(&line[..nl])));
        }
        events
    }

    /// Treats what is left after the last newline as a line (QEMU exited).
    pub fn finish(&mut self) -> Vec<Event> {
        if self.partial.is_empty() {
            return Vec::new();
        }
        let rest = std::mem::take(&mut self.partial);
        self.line(&String::from_utf8_lossy(&rest))
            .into_iter()
            .collect()
    }

    /// Reads one raw console line.
    pub fn line(&mut self, raw: &str) -> Option<Event> {
        let line = clean_line(raw);
        if line.trim().is_empty() {
            return None;
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.clone());

        let event = match parse_marker(&line) {
            Some(Ok(Event::Done(n))) if self.done_boots.contains(&n) => Event::Fatal(format!(
                "HULL-CHECK-DONE boot={n} printed a second time: the guest started that boot over \
                 (did its state in /var not survive the reboot?)"
            )),
            Some(Ok(event)) => event,
            Some(Err(why)) => Event::Warning(format!("malformed marker ({why}): {line}")),
            None => {
                let lower = line.to_lowercase();
                if self
                    .fatal_patterns
                    .iter()
                    .any(|p| lower.contains(p.as_str()))
                {
                    Event::Fatal(line.trim().to_string())
                } else if line.contains(WARNING_PATTERN) {
                    Event::Warning(line.trim().to_string())
                } else {
                    return None;
                }
            }
        };
        match &event {
            Event::Check(c) => self.checks.push(c.clone()),
            Event::Done(n) => self.done_boots.push(*n),
            Event::Warning(w) => self.warnings.push(w.clone()),
            Event::Fatal(f) => {
                self.fatal.get_or_insert_with(|| f.clone());
            }
        }
        Some(event)
    }

    /// The last [`TAIL_LINES`] lines, cleaned, including an unfinished one.
    pub fn tail(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.tail.iter().cloned().collect();
        let partial = clean_line(&String::from_utf8_lossy(&self.partial));
        if !partial.trim().is_empty() {
            lines.push(partial);
        }
        let start = lines.len().saturating_sub(TAIL_LINES);
        lines.split_off(start)
    }

    /// The last line the console showed, for progress messages.
    pub fn last_line(&self) -> Option<String> {
        self.tail().pop()
    }
}

/// A marker in `line`: `None` when there is none, `Err` when it is malformed.
pub fn parse_marker(line: &str) -> Option<Result<Event, String>> {
    if let Some(at) = line.find(DONE_MARKER) {
        let rest = line[at + DONE_MARKER.len()..].trim();
        let boot = rest
            .strip_prefix("boot=")
            .map(|n| n.split_whitespace().next().unwrap_or(""))
            .and_then(|n| n.parse::<u32>().ok());
        return Some(
            boot.map(Event::Done)
                .ok_or_else(|| "expected boot=<n>".to_string()),
        );
    }
    let at = line.find(CHECK_MARKER)?;
    let rest = line[at + CHECK_MARKER.len()..].trim_start();
    let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let rest = rest.trim_start();
    let (status, detail) = rest.split_once(' ').unwrap_or((rest, ""));
    let ok = match status {
        "ok" => true,
        "fail" => false,
        other => return Some(Err(format!("status {other:?} is neither ok nor fail"))),
    };
    if name.is_empty() {
        return Some(Err("no check name".into()));
    }
    Some(Ok(Event::Check(Check {
        name: name.to_string(),
        ok,
        detail: detail.trim().to_string(),
    })))
}

/// A console line without terminal escape sequences, carriage returns and
/// other control characters (tabs become spaces).
pub fn clean_line(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates, then one final byte.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ST.
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                // Character set selection and the like: one more byte.
                Some('(' | ')' | '#' | '%') => {
                    chars.next();
                }
                _ => {}
            },
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD_BOOT: &str = "\
\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001 \"UEFI Misc Device\"\r
[    0.000000] Linux version 6.12.38+deb13-amd64\r
[    2.104211] systemd[1]: Detected virtualization qemu.\r
[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mmulti-user.target\x1b[0m - Multi-User System.\r
[\x1b[0;1;31mFAILED\x1b[0m] Failed to start \x1b[0;1;39mfoo.service\x1b[0m - Foo.\r
HULL-CHECK ostree-booted ok /run/ostree-booted exists\r
HULL-CHECK deployment ok 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r
HULL-CHECK usr-readonly ok touch: cannot touch '/usr/hull-probe': Read-only file system\r
HULL-CHECK podman ok podman version 5.4.2\r
[   31.5] random: crng init done HULL-CHECK failed-units fail system is degraded; failed: foo.service \r
HULL-CHECK-DONE boot=1\r
[  OK  ] Stopped target multi-user.target.\r
HULL-CHECK var-persists ok 6f1c1e0a-4b7e\r
HULL-CHECK-DONE boot=2\r
[   60.1] reboot: Power down\r
";

    #[test]
    fn parses_checks_and_done_markers() {
        let c = Console::parse(GOOD_BOOT);
        let names: Vec<&str> = c.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ostree-booted",
                "deployment",
                "usr-readonly",
                "podman",
                "failed-units",
                "var-persists"
            ]
        );
        assert_eq!(
            c.checks[1],
            Check {
                name: "deployment".into(),
                ok: true,
                detail: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
            }
        );
        assert_eq!(
            c.checks[2].detail,
            "touch: cannot touch '/usr/hull-probe': Read-only file system"
        );
        // A marker after kernel noise on the same line is still found.
        assert_eq!(c.checks[4].name, "failed-units");
        assert!(!c.checks[4].ok);
        assert_eq!(
            c.checks[4].detail,
            "system is degraded; failed: foo.service"
        );
        assert_eq!(c.checks[5].detail, "6f1c1e0a-4b7e");
        assert_eq!(c.done_boots, [1, 2]);
        assert_eq!(c.fatal, None);
        // Failed units are warnings, with the colours gone.
        assert_eq!(c.warnings, ["[FAILED] Failed to start foo.service - Foo."]);
    }

    #[test]
    fn lines_split_across_reads() {
        let mut c = Console::new();
        let mut events = Vec::new();
        for chunk in GOOD_BOOT.as_bytes().chunks(7) {
            events.extend(c.feed(chunk));
        }
        events.extend(c.finish());
        assert_eq!(c.checks.len(), 6);
        assert_eq!(c.done_boots, [1, 2]);
        assert!(events.contains(&Event::Done(2)));
        // The same as reading it at once.
        let whole = Console::parse(GOOD_BOOT);
        assert_eq!(c.checks, whole.checks);
        assert_eq!(c.warnings, whole.warnings);
    }

    #[test]
    fn unfinished_last_line_counts_at_the_end() {
        let mut c = Console::new();
        assert!(c.feed(b"HULL-CHECK podman ok podman version 5").is_empty());
        assert_eq!(
            c.last_line().as_deref(),
            Some("HULL-CHECK podman ok podman version 5")
        );
        assert_eq!(c.finish().len(), 1);
        assert!(c.checks[0].ok);
    }

    #[test]
    fn kernel_panic_is_fatal() {
        let text = "\
[    1.2] Run /init as init process\n\
[    3.4] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n\
[    3.4] CPU: 0 PID: 1 Comm: swapper/0 Not tainted\n\
[    3.4] ---[ end Kernel panic - not syncing: VFS: Unable to mount root fs ]---\n";
        let c = Console::parse(text);
        assert_eq!(
            c.fatal.as_deref(),
            Some("[    3.4] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)")
        );
        assert_eq!(c.tail().len(), 4);
    }

    #[test]
    fn emergency_mode_is_fatal() {
        for line in [
            "You are in emergency mode. After logging in, type \"journalctl -xb\" to view",
            "[  OK  ] Reached target emergency.target - Emergency Mode.",
            "dracut-initqueue[312]: Warning: Could not boot.\r\nStarting Dracut Emergency Shell...",
            "Entering emergency mode. Exit the shell to continue.",
            "[  12.1] KERNEL PANIC something", // case does not matter
        ] {
            let c = Console::parse(line);
            assert!(c.fatal.is_some(), "{line}");
        }
        let c = Console::parse("Started emergency-exit.service\nemergency.target is not active\n");
        assert_eq!(c.fatal, None);
    }

    #[test]
    fn markers_are_not_mistaken_for_fatal_lines() {
        let c = Console::parse("HULL-CHECK failed-units fail emergency mode reached earlier\n");
        assert_eq!(c.fatal, None);
        assert_eq!(c.checks.len(), 1);
    }

    #[test]
    fn custom_fatal_patterns() {
        let mut c = Console::with_fatal_patterns(&["rollback happened"]);
        c.feed(b"Kernel panic - not syncing\nhull: Rollback happened\n");
        assert_eq!(c.fatal.as_deref(), Some("hull: Rollback happened"));
    }

    #[test]
    fn repeated_done_marker_is_fatal() {
        let c = Console::parse("HULL-CHECK-DONE boot=1\nreboot\nHULL-CHECK-DONE boot=1\n");
        assert_eq!(c.done_boots, [1]);
        let fatal = c.fatal.unwrap();
        assert!(fatal.contains("boot=1 printed a second time"), "{fatal}");
    }

    #[test]
    fn malformed_markers_are_warnings() {
        let c = Console::parse(
            "HULL-CHECK podman maybe 5.0\nHULL-CHECK-DONE boot=x\nHULL-CHECK-DONE\n",
        );
        assert!(c.checks.is_empty());
        assert!(c.done_boots.is_empty());
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("neither ok nor fail"));
        assert!(c.warnings[1].contains("boot=<n>"));
    }

    #[test]
    fn check_without_detail() {
        assert_eq!(
            parse_marker("HULL-CHECK x ok"),
            Some(Ok(Event::Check(Check {
                name: "x".into(),
                ok: true,
                detail: String::new()
            })))
        );
        assert_eq!(parse_marker("nothing here"), None);
        assert_eq!(
            parse_marker("HULL-CHECK-DONE boot=12 extra"),
            Some(Ok(Event::Done(12)))
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let text: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let c = Console::parse(&text);
        let tail = c.tail();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.first().unwrap(), "line 61");
        assert_eq!(tail.last().unwrap(), "line 100");
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean_line("\x1b[0;32m  OK  \x1b[0m] x\r"), "  OK  ] x");
        assert_eq!(clean_line("\x1b]0;title\x07a\x1b(Bb\tc"), "ab c");
        assert_eq!(clean_line("\x1b[?25l\x1b[=3hHULL"), "HULL");
    }
}
