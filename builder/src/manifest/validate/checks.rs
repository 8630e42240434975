//! The checks of single values (names, sizes, units, keys, kernel
//! arguments): pure functions from text to `Result<_, String>`, the caller
//! adds the key.

#[allow(unused_imports)]
use super::*;

/// Parses a size: an integer, an optional space, an optional unit `K`, `M`,
/// `G` or `T` (powers of 1024; the letter in either case) optionally followed
/// by `iB` or `B`. A bare `B` means bytes. `"4G"`, `"512M"`, `"256MiB"`,
/// `"1GB"` (also 2^30), `"4096"`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a size (write e.g. \"4G\", \"512M\", \"256MiB\" or a number of bytes)"
        )
    };
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    if number.is_empty() {
        return Err(bad());
    }
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is too large"))?;
    let unit = unit.trim_start();
    let mut chars = unit.chars();
    let shift = match chars.next().map(|c| c.to_ascii_uppercase()) {
        None => 0,
        Some('B') if unit.len() == 1 => 0,
        Some('K') => 10,
        Some('M') => 20,
        Some('G') => 30,
        Some('T') => 40,
        Some(_) => return Err(bad()),
    };
    let rest = chars.as_str();
    if shift > 0 && !(rest.is_empty() || rest == "B" || rest == "iB") {
        return Err(bad());
    }
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

pub(super) fn human(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        if bytes >= 1 << shift && bytes.trailing_zeros() >= shift {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

pub(super) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > 64 {
        return Err(format!("{name:?} is longer than 64 characters"));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err(format!(
            "{name:?} is not a plain identifier ([a-z][a-z0-9-]*)"
        ));
    }
    Ok(())
}

pub(super) fn check_version(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("is empty".into());
    }
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".+~_-".contains(c))
    {
        return Err(format!("{v:?} may only hold letters, digits and . + ~ _ -"));
    }
    Ok(())
}

/// Streams and suites: `[a-z0-9][a-z0-9._-]*`, at most 64 characters.
pub(super) fn check_ident(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.len() > 64 {
        return Err(format!("{s:?} is longer than 64 characters"));
    }
    let lower_or_digit = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut chars = s.chars();
    if !chars.next().is_some_and(lower_or_digit)
        || !chars.all(|c| lower_or_digit(c) || "._-".contains(c))
    {
        return Err(format!("{s:?} is not an identifier ([a-z0-9][a-z0-9._-]*)"));
    }
    Ok(())
}

/// The security archive of a mirror: its `/debian` made `/debian-security`
/// (`http://deb.debian.org/debian` → `http://deb.debian.org/debian-security`).
pub fn security_mirror_of(mirror: &str) -> Result<String, String> {
    match mirror.trim_end_matches('/').strip_suffix("/debian") {
        Some(base) => Ok(format!("{base}/debian-security")),
        None => Err(format!(
            "not set, and mirror {mirror:?} does not end in /debian to derive it from: set \
             security-mirror, or security = false"
        )),
    }
}

pub(super) fn check_mirror(m: &str) -> Result<(), String> {
    let rest = m
        .strip_prefix("http://")
        .or_else(|| m.strip_prefix("https://"));
    let Some(rest) = rest else {
        return Err(format!("{m:?} is not an http:// or https:// URL"));
    };
    if m.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{m:?} holds whitespace"));
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{m:?} names no host"));
    }
    Ok(())
}

/// Debian package names: `[a-z0-9][a-z0-9+.-]+`.
pub(super) fn check_package(p: &str) -> Result<(), String> {
    let ok = p.len() >= 2
        && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c));
    if !ok {
        return Err(format!(
            "{p:?} is not a Debian package name ([a-z0-9][a-z0-9+.-]+)"
        ));
    }
    Ok(())
}

/// systemd's `unit_name_is_valid()`: at most 255 characters of
/// `[A-Za-z0-9:_.\\-]` and at most one `@`, not the first; a name before
/// the `@` (or the type) and a known type after the last dot. `foo@.service`
/// is a template, `foo@bar.service` an instance.
pub(super) fn check_unit(u: &str) -> Result<(), String> {
    if u.is_empty()
        || !u
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_.@\\-".contains(c))
    {
        return Err(format!("{u:?} is not a unit name ([A-Za-z0-9:_.@\\-]+)"));
    }
    if u.len() >= UNIT_NAME_MAX {
        return Err(format!(
            "{u:?} is {} characters: systemd takes at most {}",
            u.len(),
            UNIT_NAME_MAX - 1
        ));
    }
    let Some(suffix) = UNIT_SUFFIXES.iter().find(|s| u.ends_with(*s)) else {
        return Err(format!(
            "{u:?} does not end with a unit type ({})",
            UNIT_SUFFIXES.join(" ")
        ));
    };
    let stem = &u[..u.len() - suffix.len()];
    let prefix = stem.split('@').next().unwrap_or(stem);
    if prefix.is_empty() {
        return Err(format!("{u:?} has no name before its @ or type"));
    }
    if stem.matches('@').count() > 1 {
        return Err(format!("{u:?} has more than one @"));
    }
    Ok(())
}

/// A unit that can be active: not a template (`foo@.service`).
pub(super) fn check_unit_instance(u: &str) -> Result<(), String> {
    check_unit(u)?;
    if UNIT_SUFFIXES
        .iter()
        .any(|s| u.strip_suffix(s).is_some_and(|stem| stem.ends_with('@')))
    {
        return Err(format!(
            "{u:?} is a template, which is never active: name an instance (foo@bar.service)"
        ));
    }
    Ok(())
}

/// User and group names: `[a-z_][a-z0-9_-]*`, at most 32 characters.
pub(in crate::manifest) fn check_account(n: &str) -> Result<(), String> {
    if n.is_empty() {
        return Err("is empty".into());
    }
    if n.len() > 32 {
        return Err(format!("{n:?} is longer than 32 characters"));
    }
    let mut chars = n.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !first_ok
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(format!("{n:?} is not a valid name ([a-z_][a-z0-9_-]*)"));
    }
    Ok(())
}

pub(super) fn check_ssh_key(k: &str) -> Result<(), String> {
    if k.contains(['\n', '\r']) {
        return Err("holds a line break (one key per list item)".into());
    }
    let mut parts = k.split_whitespace();
    let kind = parts.next().unwrap_or("");
    if !["ssh-", "ecdsa-", "sk-"]
        .iter()
        .any(|p| kind.starts_with(p))
    {
        return Err(format!(
            "does not start with a key type (ssh-…, ecdsa-… or sk-…): {:?}",
            abbreviate(k)
        ));
    }
    let body = parts.next().unwrap_or("");
    if body.is_empty()
        || !body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
    {
        return Err(format!("{kind} key has no base64 key body"));
    }
    Ok(())
}

pub(super) fn abbreviate(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// systemd's `hostname_is_valid()` (what systemd-hostnamed and PID 1 read
/// /etc/hostname with) and the kernel's limit: at most 64 characters
/// (HOST_NAME_MAX), dot-separated labels of letters, digits and hyphens, no
/// empty label (no leading, trailing or doubled dot), no label starting or
/// ending with a hyphen; and DNS's 63 characters per label.
pub(super) fn check_hostname(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("is empty".into());
    }
    if h.len() > HOST_NAME_MAX {
        return Err(format!(
            "{h:?} is {} characters: Linux and systemd take at most {HOST_NAME_MAX}",
            h.len()
        ));
    }
    for label in h.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{h:?} is not a valid host name (labels of 1-63 letters, digits and inner hyphens, joined by dots)"
            ));
        }
    }
    Ok(())
}

/// One kernel argument, as the kernel's parser (`next_arg()` in
/// lib/cmdline.c) will split it back out of the command line: ASCII without
/// control characters (the kernel's `isspace()` is Latin-1's, so some bytes
/// of UTF-8 characters split arguments); whitespace only inside double
/// quotes, which wrap either the whole argument (`"a=b c"`) or the whole
/// value (`a="b c"`), and nothing else (an unbalanced quote swallows every
/// argument after it, `ostree=` among them); no single quote (systemd's
/// parser of /proc/cmdline reads it as a quote, the kernel does not); not
/// `--` (everything after it goes to init, not the kernel); not `root=` or
/// `ostree=`, which hull sets.
pub(super) fn check_karg(a: &str) -> Result<(), String> {
    if a.is_empty() {
        return Err("is empty".into());
    }
    if let Some(c) = a.chars().find(|c| !c.is_ascii() || c.is_ascii_control()) {
        return Err(format!(
            "{a:?} holds {c:?}: kernel arguments are printable ASCII (the kernel splits at bytes of some other characters)"
        ));
    }
    if a.contains('\'') {
        return Err(format!(
            "{a:?} holds a single quote, which systemd reads as a quote and the kernel does not: use double quotes"
        ));
    }
    if a == "--" {
        return Err("\"--\" hands every argument after it (ostree= among them) to init".into());
    }
    // The part outside quotes, which must hold no space.
    let quotes = a.matches('"').count();
    let bare = match quotes {
        0 => a,
        2 if a.len() > 2 && a.starts_with('"') && a.ends_with('"') => "",
        2 if a.ends_with('"') && a.find('"') == a.find('=').map(|i| i + 1) => {
            &a[..a.find('=').expect("found above")]
        }
        n if n % 2 == 1 => {
            return Err(format!(
                "{a:?} has an unbalanced quote: the kernel would read every argument after it, ostree= among them, as part of this one"
            ))
        }
        _ => {
            return Err(format!(
                "{a:?}: double quotes may only wrap the whole argument (\"a=b c\") or its whole value (a=\"b c\")"
            ))
        }
    };
    if bare.contains(' ') {
        return Err(format!(
            "{a:?} holds whitespace outside quotes (one argument per list item)"
        ));
    }
    let key = a.trim_start_matches('"').split('=').next().unwrap_or(a);
    if key == "root" || key == "ostree" {
        return Err(format!("{a:?}: hull sets {key}= itself"));
    }
    Ok(())
}
