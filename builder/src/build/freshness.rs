//! Freshness: whether an unchanged manifest's commit still holds what the
//! archive would install today.
//!
//! A commit built from the same inputs (the input digest of
//! [`crate::build::pipeline::input_digest`]) is reused only while the archive has not
//! moved under it. Without a lock, `hull build` re-reads every source's
//! signed InRelease (a second or so) and compares its sha256 with the one
//! the commit recorded ([`crate::repo::commit::META_RELEASE`]): all the same, the
//! commit stands. When one changed, the signed `Packages` indexes are read
//! (cached by sha256) and each installed package's candidate is compared
//! with the version the commit holds: any that moved, the tree is rebuilt;
//! none, the commit stands. With a lock beside the manifest, the lock
//! decides: it is part of the input digest, so a commit of the same lock is
//! what the lock asks for and no mirror is read (`hull lock --update` moves
//! the lock, and so the image, forward).
//!
//! The decision is plain data ([`decide`]); [`check`] reads the mirror.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use crate::build::archive::{self, Archive, SignedSource};
use crate::manifest::{Arch, Manifest};

/// Whether to reuse a commit built from the same inputs, and why (one line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// The commit stands.
    Reuse(String),
    /// The archive moved: build again.
    Rebuild(String),
}

/// The suites whose InRelease differs from the recorded one (by sha256),
/// or is new; `URL SUITE` strings, in `current`'s order.
pub fn changed_sources(recorded: &[SignedSource], current: &[SignedSource]) -> Vec<String> {
    current
        .iter()
        .filter(|c| {
            !recorded
                .iter()
                .any(|r| r.url == c.url && r.suite == c.suite && r.sha256 == c.sha256)
        })
        .map(|c| format!("{} {}", c.url, c.suite))
        .collect()
}

/// The installed packages (`name version arch`) whose candidate in the
/// archive today is another version: `name: old → new` (`→ gone` when the
/// archive no longer has it), sorted.
pub fn moved(installed: &[String], candidates: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = installed
        .iter()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let (name, version) = (f.next()?, f.next()?);
            match candidates.get(name) {
                Some(v) if v == version => None,
                Some(v) => Some(format!("{name}: {version} → {v}")),
                None => Some(format!("{name}: {version} → gone")),
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The decision for a commit built from the same inputs. `locked`: a lock
/// is beside the manifest. `changed`: [`changed_sources`]. `moved`:
/// [`moved`], `None` when it was not computed (no source changed).
pub fn decide(locked: bool, changed: &[String], moved: Option<&[String]>) -> Freshness {
    if locked {
        return Freshness::Reuse(
            "up to date: built from the same inputs and the same lock (the lock decides; \
             `hull lock --update` moves it)"
                .into(),
        );
    }
    match moved {
        _ if changed.is_empty() => Freshness::Reuse(
            "up to date: built from the same inputs, and no InRelease changed since".into(),
        ),
        Some([]) | None => Freshness::Reuse(format!(
            "up to date: the InRelease of {} changed, but no installed package moved",
            changed.join(", ")
        )),
        Some(m) => Freshness::Rebuild(format!(
            "rebuilding: {} installed package{} moved in the archive: {}",
            m.len(),
            if m.len() == 1 { "" } else { "s" },
            sample(m)
        )),
    }
}

/// The first few of a list, and how many more.
fn sample(items: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        s.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    s
}

/// Reads the mirror (InRelease files, signature-checked; the indexes only
/// when one changed) and decides about a commit that `recorded` (its
/// sources) and `installed` (its packages) describe. `cache` is the build's
/// cache directory (indexes are kept there by sha256).
pub fn check(
    manifest: &Manifest,
    arch: Arch,
    cache: &Path,
    locked: bool,
    recorded: &[SignedSource],
    installed: &[String],
) -> Result<Freshness> {
    if locked {
        return Ok(decide(true, &[], None));
    }
    let mut current = Vec::new();
    let mut releases = Vec::new();
    for (mirror, suite) in manifest.sources() {
        let archive = Archive {
            mirror: mirror.clone(),
            suite: suite.clone(),
            arch,
        };
        let release = archive::fetch_release(&archive, cache, Path::new(archive::DEBIAN_KEYRING))?;
        current.push(SignedSource {
            url: mirror,
            suite,
            date: release.date.clone(),
            sha256: release.sha256.clone(),
        });
        releases.push((archive, release));
    }
    let changed = changed_sources(recorded, &current);
    if changed.is_empty() {
        return Ok(decide(false, &changed, None));
    }
    let mut index = archive::PackageIndex::default();
    for (archive, release) in &releases {
        index.merge(archive::fetch_index(archive, release, cache)?);
    }
    let candidates: BTreeMap<String, String> = installed
        .iter()
        .filter_map(|l| l.split(' ').next())
        .filter_map(|n| Some((n.to_string(), index.version(n)?.to_string())))
        .collect();
    let m = moved(installed, &candidates);
    Ok(decide(false, &changed, Some(&m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(suite: &str, sha: &str) -> SignedSource {
        SignedSource {
            url: "http://deb.debian.org/debian".into(),
            suite: suite.into(),
            date: "Sat, 29 Nov 2026 08:00:00 UTC".into(),
            sha256: sha.into(),
        }
    }

    #[test]
    fn changed_sources_by_sha256() {
        let rec = [src("trixie", "a"), src("trixie-updates", "b")];
        // (current, changed)
        let cases: [(Vec<SignedSource>, Vec<&str>); 4] = [
            (rec.to_vec(), vec![]),
            (
                vec![src("trixie", "a"), src("trixie-updates", "c")],
                vec!["http://deb.debian.org/debian trixie-updates"],
            ),
            (
                vec![src("trixie", "x"), src("trixie-updates", "y")],
                vec![
                    "http://deb.debian.org/debian trixie",
                    "http://deb.debian.org/debian trixie-updates",
                ],
            ),
            // A commit from before sources were recorded: everything is new.
            (
                vec![src("trixie", "a"), src("trixie-security", "s")],
                vec!["http://deb.debian.org/debian trixie-security"],
            ),
        ];
        for (current, want) in cases {
            assert_eq!(changed_sources(&rec, &current), want, "{current:?}");
        }
    }

    #[test]
    fn moved_packages() {
        let installed: Vec<String> = [
            "zstd 1.5.7-1 amd64",
            "base-files 13.8 amd64",
            "adduser 3.152 all",
        ]
        .map(String::from)
        .to_vec();
        let c = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        // (candidates, moved)
        let cases = [
            (
                c(&[
                    ("zstd", "1.5.7-1"),
                    ("base-files", "13.8"),
                    ("adduser", "3.152"),
                ]),
                vec![],
            ),
            (
                c(&[
                    ("zstd", "1.5.7-1+deb13u1"),
                    ("base-files", "13.8"),
                    ("adduser", "3.152"),
                ]),
                vec!["zstd: 1.5.7-1 → 1.5.7-1+deb13u1"],
            ),
            (
                c(&[("zstd", "1.5.7-1"), ("base-files", "13.9")]),
                vec!["adduser: 3.152 → gone", "base-files: 13.8 → 13.9"],
            ),
        ];
        for (cand, want) in cases {
            assert_eq!(moved(&installed, &cand), want, "{cand:?}");
        }
    }

    #[test]
    fn decisions() {
        let ch = vec!["http://m trixie-security".to_string()];
        let one = vec!["zstd: 1 → 2".to_string()];
        let many: Vec<String> = (0..7).map(|i| format!("p{i}: 1 → 2")).collect();
        // (locked, changed, moved, reuse?, words in the line)
        type Case<'a> = (bool, &'a [String], Option<&'a [String]>, bool, &'a str);
        let cases: [Case; 6] = [
            (true, &ch, Some(&one), true, "the lock decides"),
            (false, &[], None, true, "no InRelease changed"),
            (false, &ch, Some(&[]), true, "trixie-security changed, but no installed package moved"),
            (false, &ch, Some(&one), false, "rebuilding: 1 installed package moved in the archive: zstd: 1 → 2"),
            (false, &ch, Some(&many), false, "7 installed packages moved in the archive: p0: 1 → 2, p1: 1 → 2, p2: 1 → 2, p3: 1 → 2, p4: 1 → 2 and 2 more"),
            (false, &ch, None, true, "no installed package moved"),
        ];
        for (locked, changed, moved, reuse, words) in cases {
            let d = decide(locked, changed, moved);
            let (got_reuse, line) = match &d {
                Freshness::Reuse(l) => (true, l),
                Freshness::Rebuild(l) => (false, l),
            };
            assert_eq!(got_reuse, reuse, "{d:?}");
            assert!(line.contains(words), "{line}");
            assert!(!line.contains('\n'), "one line: {line}");
        }
    }
}
