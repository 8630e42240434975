//! The names in a document: the purl's distro (`debian-13`), package URLs,
//! suppliers and SPDX ids.

use super::license;
/// `debian-13` for trixie (and trixie-backports, ...): the purl's distro
/// qualifier; `debian-<suite>` for a suite hull knows no number of.
pub fn distro(suite: &str) -> String {
    let codename = suite.split('-').next().unwrap_or(suite);
    match release_number(codename) {
        Some(n) => format!("debian-{n}"),
        None => format!("debian-{codename}"),
    }
}

/// Debian's release numbers by codename.
const RELEASES: &[(&str, &str)] = &[
    ("buster", "10"),
    ("bullseye", "11"),
    ("bookworm", "12"),
    ("trixie", "13"),
    ("forky", "14"),
    ("duke", "15"),
];

fn release_number(codename: &str) -> Option<&'static str> {
    RELEASES
        .iter()
        .find(|(c, _)| *c == codename)
        .map(|(_, n)| *n)
}

/// The codename of a purl distro qualifier (`debian-13` → `trixie`,
/// `debian-sid` → `sid`).
pub fn codename_of_distro(distro: &str) -> Option<String> {
    let rest = distro.strip_prefix("debian-")?;
    Some(
        RELEASES
            .iter()
            .find(|(_, n)| *n == rest)
            .map(|(c, _)| c.to_string())
            .unwrap_or_else(|| rest.to_string()),
    )
}

/// Percent-encodes every byte but the unreserved ones (letters, digits,
/// `-._~`): an epoch's `:` is `%3A`, `+` is `%2B`.
pub(super) fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes [`pct`].
fn unpct(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=DISTRO`.
pub fn purl(name: &str, version: &str, arch: &str, distro: &str) -> String {
    format!(
        "pkg:deb/debian/{}@{}?arch={}&distro={}",
        pct(name),
        pct(version),
        pct(arch),
        pct(distro)
    )
}

/// A Debian purl taken apart: (name, version, arch, distro).
pub fn parse_purl(purl: &str) -> Option<(String, String, String, Option<String>)> {
    let rest = purl.strip_prefix("pkg:deb/debian/")?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (name, version) = path.split_once('@')?;
    let mut arch = String::new();
    let mut distro = None;
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("arch", v)) => arch = unpct(v),
            Some(("distro", v)) => distro = Some(unpct(v)),
            _ => {}
        }
    }
    Some((unpct(name), unpct(version), arch, distro))
}

/// `Debian Foo Team <foo@lists.debian.org>` → `Organization: Debian Foo
/// Team (foo@lists.debian.org)`; a person's name gives `Person:`. SPDX has
/// no way to say "one of the two", so teams and lists are told apart by name.
pub fn supplier(maintainer: &str) -> String {
    let (name, email) = match maintainer.split_once('<') {
        Some((n, e)) => (n.trim(), Some(e.trim_end_matches('>').trim())),
        None => (maintainer.trim(), None),
    };
    let lower = name.to_ascii_lowercase();
    let org = [
        "team",
        "maintainers",
        "debian",
        "group",
        "project",
        "developers",
    ]
    .iter()
    .any(|w| lower.contains(w));
    let kind = if org { "Organization" } else { "Person" };
    // Parentheses would end the name early for a reader.
    let name = name.replace(['(', ')'], "");
    match email {
        Some(e) => format!("{kind}: {name} ({e})"),
        None => format!("{kind}: {name}"),
    }
}

/// An SPDX id from free text: letters, digits, `.` and `-` only.
pub(super) fn spdx_ref(parts: &[&str]) -> String {
    format!("SPDXRef-{}", license::id_chars(&parts.join("-")))
}
