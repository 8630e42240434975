//! Licences from Debian's machine-readable copyright files (DEP-5).
//!
//! A `License:` field names licences with Debian's short names joined by
//! `or`, `and`, `, and`/`, or` (lower precedence) and `with X exception`.
//! Each name becomes an SPDX licence id when it is one (matched without
//! regard to case) or one of Debian's usual aliases (`GPL-2+`, `Expat`, ...);
//! anything else becomes a `LicenseRef-` the document declares, with the
//! standalone licence paragraph's text when the file has one. A file that
//! is not machine-readable gives no licence (the SBOM says NOASSERTION).

use std::collections::BTreeMap;

/// The licence a copyright file declares, as an SPDX expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredLicense {
    /// An SPDX licence expression, e.g. `GPL-2.0-or-later AND (MIT OR Apache-2.0)`.
    pub expression: String,
    /// `LicenseRef-` id → the text the document gives for it.
    pub refs: BTreeMap<String, String>,
}

/// SPDX ids Debian packages commonly name, as the SPDX licence list spells
/// them; a short name equal to one of them, ignoring case, is taken as is.
const SPDX_IDS: &[&str] = &[
    "0BSD",
    "AFL-2.0",
    "AFL-2.1",
    "AGPL-3.0-only",
    "AGPL-3.0-or-later",
    "Apache-1.1",
    "Apache-2.0",
    "Artistic-1.0",
    "Artistic-1.0-Perl",
    "Artistic-2.0",
    "Beerware",
    "BSD-1-Clause",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSD-3-Clause-Attribution",
    "BSD-4-Clause",
    "BSD-4-Clause-UC",
    "BSL-1.0",
    "bzip2-1.0.6",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "CC0-1.0",
    "curl",
    "FSFAP",
    "FSFUL",
    "FSFULLR",
    "FSFULLRWD",
    "GPL-1.0-only",
    "GPL-1.0-or-later",
    "GPL-2.0-only",
    "GPL-2.0-or-later",
    "GPL-3.0-only",
    "GPL-3.0-or-later",
    "ISC",
    "LGPL-2.0-only",
    "LGPL-2.0-or-later",
    "LGPL-2.1-only",
    "LGPL-2.1-or-later",
    "LGPL-3.0-only",
    "LGPL-3.0-or-later",
    "Latex2e",
    "MIT",
    "MIT-CMU",
    "MPL-1.1",
    "MPL-2.0",
    "Ms-PL",
    "OLDAP-2.8",
    "OpenSSL",
    "PSF-2.0",
    "Sleepycat",
    "Unicode-DFS-2016",
    "Unlicense",
    "X11",
    "Zlib",
];

/// Maps one Debian short licence name to an SPDX id, when there is one.
pub fn spdx_id(short: &str) -> Option<String> {
    let lower = short.to_ascii_lowercase();
    if let Some(id) = SPDX_IDS.iter().find(|id| id.to_ascii_lowercase() == lower) {
        return Some((*id).to_string());
    }
    let alias = match lower.as_str() {
        "expat" => "MIT",
        "apache-2" => "Apache-2.0",
        "artistic" => "Artistic-1.0",
        "artistic-2" => "Artistic-2.0",
        "cc0" => "CC0-1.0",
        "mpl-2" => "MPL-2.0",
        "psf-2" => "PSF-2.0",
        _ => "",
    };
    if !alias.is_empty() {
        return Some(alias.to_string());
    }
    gnu_id(&lower)
}

/// `GPL-2`, `GPL-2+`, `LGPL-2.1+`, `AGPL-3.0`, `GFDL-1.3+`: the GNU family,
/// whose SPDX ids say `-only` or `-or-later`.
fn gnu_id(lower: &str) -> Option<String> {
    let (family, rest) = ["agpl-", "lgpl-", "gpl-", "gfdl-"]
        .iter()
        .find_map(|f| lower.strip_prefix(f).map(|r| (*f, r)))?;
    let (number, later) = match rest.strip_suffix('+') {
        Some(n) => (n, true),
        None => (rest, false),
    };
    let number = match number {
        "1" | "1.0" => "1.0",
        "2" | "2.0" => "2.0",
        "2.1" => "2.1",
        "3" | "3.0" => "3.0",
        "1.1" => "1.1",
        "1.2" => "1.2",
        "1.3" => "1.3",
        _ => return None,
    };
    let family = family.trim_end_matches('-').to_ascii_uppercase();
    let valid = match family.as_str() {
        "GPL" => ["1.0", "2.0", "3.0"].contains(&number),
        "LGPL" => ["2.0", "2.1", "3.0"].contains(&number),
        "AGPL" => number == "3.0",
        _ => ["1.1", "1.2", "1.3"].contains(&number),
    };
    if !valid {
        return None;
    }
    let suffix = if later { "or-later" } else { "only" };
    Some(format!("{family}-{number}-{suffix}"))
}

/// `LicenseRef-` plus the name with every character SPDX does not allow
/// in an id (letters, digits, `.` and `-`) made a `-`.
pub fn license_ref(short: &str) -> String {
    format!("LicenseRef-{}", id_chars(short))
}

/// `text` with every character an SPDX id does not allow (letters, digits,
/// `.` and `-`) made a `-`.
pub fn id_chars(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// One paragraph of a DEP-5 file: its fields, continuation lines joined.
fn paragraphs(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut cur: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            last = None;
        } else if line.starts_with([' ', '\t']) {
            if let Some(k) = &last {
                let v = cur.entry(k.clone()).or_default();
                v.push('\n');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            cur.insert(k.clone(), v.trim().to_string());
            last = Some(k);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Reads a copyright file; `None` when it is not machine-readable or
/// names no licence.
pub fn declared(text: &str, package: &str) -> Option<DeclaredLicense> {
    let paras = paragraphs(text);
    let header = paras.first()?;
    if !header.contains_key("format") {
        return None;
    }
    // Standalone paragraphs (License without Files) hold the texts.
    let mut texts = BTreeMap::new();
    for p in &paras[1..] {
        if let (None, Some(l)) = (p.get("files"), p.get("license")) {
            if let Some((name, body)) = l.split_once('\n') {
                texts.insert(name.trim().to_string(), body.replace("\n.\n", "\n\n"));
            }
        }
    }
    let mut refs = BTreeMap::new();
    let mut exprs: Vec<String> = Vec::new();
    let with_files = paras
        .iter()
        .enumerate()
        .filter(|(i, p)| *i == 0 || p.contains_key("files"));
    for (_, p) in with_files {
        let Some(field) = p.get("license") else {
            continue;
        };
        let first = field.lines().next().unwrap_or("").trim();
        if first.is_empty() {
            continue;
        }
        let mut unknown = |short: &str| {
            let id = license_ref(short);
            let text = texts.get(short).cloned().unwrap_or_else(|| {
                format!("Debian licence name {short}: see /usr/share/doc/{package}/copyright")
            });
            refs.entry(id.clone()).or_insert(text);
            id
        };
        let expr = expression(first, &mut unknown);
        if !exprs.contains(&expr) {
            exprs.push(expr);
        }
    }
    if exprs.is_empty() {
        return None;
    }
    let expression = if exprs.len() == 1 {
        exprs.remove(0)
    } else {
        exprs
            .iter()
            .map(|e| parenthesize(e))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    Some(DeclaredLicense { expression, refs })
}

fn parenthesize(e: &str) -> String {
    if e.contains(' ') {
        format!("({e})")
    } else {
        e.to_string()
    }
}

/// Turns one `License:` first line into an SPDX expression; `unknown`
/// gives the `LicenseRef-` of a name that is no SPDX id.
fn expression(field: &str, unknown: &mut dyn FnMut(&str) -> String) -> String {
    // `A or B, and C`: the comma groups bind more loosely than the words.
    let mut out = String::new();
    for (i, group) in field.split(',').enumerate() {
        let mut group = group.trim();
        let mut joiner = " AND ";
        for (word, op) in [("and ", " AND "), ("or ", " OR ")] {
            if let Some(rest) = group.strip_prefix(word) {
                group = rest.trim();
                joiner = op;
            }
        }
        let part = group_expression(group, unknown);
        if part.is_empty() {
            continue;
        }
        if i > 0 && !out.is_empty() {
            out = format!("{}{joiner}{}", parenthesize(&out), parenthesize(&part));
        } else {
            out = part;
        }
    }
    out
}

fn group_expression(group: &str, unknown: &mut dyn FnMut(&str) -> String) -> String {
    let mut out = Vec::new();
    let mut name: Vec<&str> = Vec::new();
    let flush =
        |name: &mut Vec<&str>, out: &mut Vec<String>, unknown: &mut dyn FnMut(&str) -> String| {
            if name.is_empty() {
                return;
            }
            let short = name.join(" ");
            name.clear();
            // `GPL-2+ with Autoconf exception`: no SPDX exception id is sure
            // to match Debian's name, so the whole is one reference.
            let id = if short.contains(' ') {
                None
            } else {
                spdx_id(&short)
            };
            out.push(id.unwrap_or_else(|| unknown(&short)));
        };
    for word in group.split_whitespace() {
        match word.to_ascii_lowercase().as_str() {
            "or" => {
                flush(&mut name, &mut out, unknown);
                out.push("OR".into());
            }
            "and" => {
                flush(&mut name, &mut out, unknown);
                out.push("AND".into());
            }
            _ => name.push(word),
        }
    }
    flush(&mut name, &mut out, unknown);
    // A dangling operator (`GPL-2+ or`) is dropped rather than kept invalid.
    while out.last().is_some_and(|w| w == "OR" || w == "AND") {
        out.pop();
    }
    while out.first().is_some_and(|w| w == "OR" || w == "AND") {
        out.remove(0);
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_to_spdx() {
        // (Debian short name, SPDX id)
        let cases = [
            ("GPL-2+", Some("GPL-2.0-or-later")),
            ("GPL-2", Some("GPL-2.0-only")),
            ("LGPL-2.1+", Some("LGPL-2.1-or-later")),
            ("LGPL-3.0+", Some("LGPL-3.0-or-later")),
            ("GFDL-1.3+", Some("GFDL-1.3-or-later")),
            ("BSD-3-clause", Some("BSD-3-Clause")),
            ("Expat", Some("MIT")),
            ("zlib", Some("Zlib")),
            ("Apache-2", Some("Apache-2.0")),
            ("GPL-2.0-only", Some("GPL-2.0-only")),
            ("GPL-4", None),
            ("public-domain", None),
        ];
        for (short, want) in cases {
            assert_eq!(spdx_id(short).as_deref(), want, "{short}");
        }
        assert_eq!(license_ref("MIT/X11 + x"), "LicenseRef-MIT-X11---x");
    }

    #[test]
    fn expressions() {
        // (License: field, expression)
        let cases = [
            ("GPL-2+", "GPL-2.0-or-later"),
            ("LGPL-3+ or GPL-2+", "LGPL-3.0-or-later OR GPL-2.0-or-later"),
            (
                "GPL-2+ or AFL-2.1, and Expat",
                "(GPL-2.0-or-later OR AFL-2.1) AND MIT",
            ),
            (
                "GPL-2+ with Autoconf exception",
                "LicenseRef-GPL-2--with-Autoconf-exception",
            ),
            ("public-domain", "LicenseRef-public-domain"),
            ("GPL-2+ or", "GPL-2.0-or-later"),
        ];
        for (field, want) in cases {
            let mut unknown = |s: &str| license_ref(s);
            assert_eq!(expression(field, &mut unknown), want, "{field}");
        }
    }

    #[test]
    fn dep5_file() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
Upstream-Name: zstd\n\nFiles: *\nCopyright: Meta\nLicense: BSD-3-clause or GPL-2\n\n\
Files: contrib/*\nCopyright: x\nLicense: public-domain\n\nFiles: debian/*\nCopyright: y\n\
License: BSD-3-clause or GPL-2\n\nLicense: public-domain\n The author gives it away.\n .\n Really.\n";
        let d = declared(text, "zstd").unwrap();
        assert_eq!(
            d.expression,
            "(BSD-3-Clause OR GPL-2.0-only) AND LicenseRef-public-domain"
        );
        assert_eq!(
            d.refs["LicenseRef-public-domain"],
            "The author gives it away.\n\nReally."
        );
        assert_eq!(declared("This is free software.\n", "x"), None);
        let no_text = declared("Format: x\n\nFiles: *\nLicense: permissive\n", "pkg").unwrap();
        assert_eq!(
            no_text.refs["LicenseRef-permissive"],
            "Debian licence name permissive: see /usr/share/doc/pkg/copyright"
        );
    }
}
