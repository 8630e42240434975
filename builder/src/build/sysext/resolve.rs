//! Which packages a system extension carries: the ones asked for and their
//! dependencies, less everything the image already has. Plain data in, plain
//! data out, so it is tested with tables.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use anyhow::{bail, Result};

/// What the resolver needs to know of the archive (a
/// [`crate::build::archive::PackageIndex`] in a build; a table in the tests).
pub trait Archive {
    /// The candidate version of a real package.
    fn version(&self, name: &str) -> Option<&str>;
    /// Its `Pre-Depends` and `Depends`, comma-joined.
    fn depends(&self, name: &str, version: &str) -> Option<&str>;
    /// The packages that provide a virtual one.
    fn providers(&self, name: &str) -> &[String];
}

impl Archive for crate::build::archive::PackageIndex {
    fn version(&self, name: &str) -> Option<&str> {
        crate::build::archive::PackageIndex::version(self, name)
    }
    fn depends(&self, name: &str, version: &str) -> Option<&str> {
        crate::build::archive::PackageIndex::depends(self, name, version)
    }
    fn providers(&self, name: &str) -> &[String] {
        crate::build::archive::PackageIndex::providers(self, name)
    }
}

/// The names in one `Depends` entry: alternatives of `a (>= 1) | b:any`,
/// without version constraints and architecture qualifiers.
pub fn alternatives(group: &str) -> Vec<String> {
    group
        .split('|')
        .filter_map(|alt| {
            let name = alt.split_whitespace().next()?;
            let name = name.split(':').next().unwrap_or(name);
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// The packages to put into the extension, `name → version`, sorted by name:
/// `wanted` and, depth first, every dependency no package of `base` (the
/// image's installed package names) nor of the extension satisfies, taking
/// a dependency's first alternative the archive has (a virtual one through
/// its first provider). Versions are the archive's candidates; version
/// constraints are not checked (base and extension come from the same signed
/// archive). Errors, one line each: a wanted package the image already has,
/// or one (or a dependency) the archive does not know.
pub fn closure(
    archive: &dyn Archive,
    wanted: &[String],
    base: &BTreeSet<String>,
) -> Result<BTreeMap<String, String>> {
    let provided_by_base = |name: &str| {
        base.contains(name) || archive.providers(name).iter().any(|p| base.contains(p))
    };
    let mut chosen: BTreeMap<String, String> = BTreeMap::new();
    let mut queue: VecDeque<(String, String)> = VecDeque::new();
    for name in wanted {
        if provided_by_base(name) {
            bail!("package {name} is already in the image: a system extension carries only what the image lacks");
        }
        queue.push_back((name.clone(), format!("asked for as package {name}")));
    }
    while let Some((name, why)) = queue.pop_front() {
        if chosen.contains_key(&name) {
            continue;
        }
        let real = match archive.version(&name) {
            Some(v) => Some((name.clone(), v.to_string())),
            None => archive
                .providers(&name)
                .iter()
                .find_map(|p| archive.version(p).map(|v| (p.clone(), v.to_string()))),
        };
        let Some((real, version)) = real else {
            bail!("{why}: {name} is not in the archive");
        };
        if chosen.contains_key(&real) || base.contains(&real) {
            continue;
        }
        let deps = archive.depends(&real, &version).unwrap_or("").to_string();
        chosen.insert(real.clone(), version);
        for group in deps.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            let alts = alternatives(group);
            let satisfied = alts.iter().any(|a| {
                provided_by_base(a)
                    || chosen.contains_key(a)
                    || archive.providers(a).iter().any(|p| chosen.contains_key(p))
            });
            if satisfied {
                continue;
            }
            let pick = alts
                .iter()
                .find(|a| archive.version(a).is_some() || !archive.providers(a).is_empty())
                .or(alts.first());
            if let Some(p) = pick {
                queue.push_back((p.clone(), format!("{real} depends on {group}")));
            }
        }
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// name → (version, depends); virtual name → providers.
    struct Table(
        BTreeMap<&'static str, (&'static str, &'static str)>,
        BTreeMap<&'static str, Vec<String>>,
    );

    impl Archive for Table {
        fn version(&self, name: &str) -> Option<&str> {
            self.0.get(name).map(|(v, _)| *v)
        }
        fn depends(&self, name: &str, _: &str) -> Option<&str> {
            self.0.get(name).map(|(_, d)| *d)
        }
        fn providers(&self, name: &str) -> &[String] {
            self.1.get(name).map_or(&[], Vec::as_slice)
        }
    }

    fn archive() -> Table {
        Table(
            [
                ("libc6", ("2.41-12", "libgcc-s1")),
                ("libgcc-s1", ("14.2.0-19", "")),
                ("jq", ("1.7.1-6", "libjq1 (= 1.7.1-6), libc6 (>= 2.34)")),
                (
                    "libjq1",
                    ("1.7.1-6", "libonig5 (>= 6.1.0), libc6:any (>= 2.34)"),
                ),
                ("libonig5", ("6.9.9-1", "libc6 (>= 2.34)")),
                ("hello", ("2.10-5", "libc6 (>= 2.38)")),
                (
                    "tool",
                    ("1", "mawk | awk, missing-lib | libonig5, vi-thing"),
                ),
                ("mawk", ("1.3.4", "libc6")),
                ("nvi", ("1.81", "libc6")),
                ("broken", ("1", "libnothere (>= 1)")),
            ]
            .into(),
            [
                ("awk", vec!["mawk".to_string()]),
                ("vi-thing", vec!["nvi".to_string()]),
            ]
            .into(),
        )
    }

    fn names(m: &BTreeMap<String, String>) -> Vec<String> {
        m.iter().map(|(n, v)| format!("{n} {v}")).collect()
    }

    #[test]
    fn closures_table() {
        let base: BTreeSet<String> = ["libc6", "libgcc-s1", "mawk"].map(String::from).into();
        // (wanted, base, extension)
        let table: [(&[&str], &BTreeSet<String>, &[&str]); 5] = [
            (&["hello"], &base, &["hello 2.10-5"]),
            (
                &["jq"],
                &base,
                &["jq 1.7.1-6", "libjq1 1.7.1-6", "libonig5 6.9.9-1"],
            ),
            // awk is provided by the image's mawk; the first alternative the
            // archive has is taken; a virtual name through its provider
            (
                &["tool"],
                &base,
                &["libonig5 6.9.9-1", "nvi 1.81", "tool 1"],
            ),
            // asked twice, and once as a dependency of another
            (
                &["libonig5", "jq", "jq"],
                &base,
                &["jq 1.7.1-6", "libjq1 1.7.1-6", "libonig5 6.9.9-1"],
            ),
            // an empty image: everything comes along
            (
                &["hello"],
                &BTreeSet::new(),
                &["hello 2.10-5", "libc6 2.41-12", "libgcc-s1 14.2.0-19"],
            ),
        ];
        for (wanted, base, want) in table {
            let wanted: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
            let got = closure(&archive(), &wanted, base).unwrap();
            assert_eq!(names(&got), want, "{wanted:?}");
        }
    }

    #[test]
    fn errors_name_the_package() {
        let base: BTreeSet<String> = ["libc6", "mawk"].map(String::from).into();
        for (wanted, want) in [
            ("libc6", "package libc6 is already in the image"),
            ("awk", "package awk is already in the image"),
            (
                "nothere",
                "asked for as package nothere: nothere is not in the archive",
            ),
            (
                "broken",
                "broken depends on libnothere (>= 1): libnothere is not in the archive",
            ),
        ] {
            let e = closure(&archive(), &[wanted.to_string()], &base)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    /// The real index parser keeps what the resolver reads: Depends and
    /// Pre-Depends, and who provides a virtual name.
    #[test]
    fn from_a_packages_file() {
        let text = "Package: jq\nVersion: 1.7.1-6\nArchitecture: amd64\nPre-Depends: dpkg (>= 1.15)\nDepends: libjq1 (= 1.7.1-6), libc6 (>= 2.34)\n\n\
                    Package: libjq1\nVersion: 1.7.1-6\nArchitecture: amd64\nDepends: libonig5 | onig-any\n\n\
                    Package: libonig5\nVersion: 6.9.9-1\nArchitecture: amd64\nProvides: onig-any (= 6)\n\n";
        let index = crate::build::archive::PackageIndex::parse(std::io::Cursor::new(text)).unwrap();
        assert_eq!(
            index.depends("jq", "1.7.1-6"),
            Some("dpkg (>= 1.15), libjq1 (= 1.7.1-6), libc6 (>= 2.34)")
        );
        assert_eq!(index.depends("libonig5", "6.9.9-1"), None);
        assert_eq!(index.providers("onig-any"), ["libonig5"]);
        let base: BTreeSet<String> = ["dpkg", "libc6"].map(String::from).into();
        let got = closure(&index, &["jq".to_string()], &base).unwrap();
        assert_eq!(
            names(&got),
            ["jq 1.7.1-6", "libjq1 1.7.1-6", "libonig5 6.9.9-1"]
        );
    }

    #[test]
    fn alternatives_of_a_group() {
        assert_eq!(alternatives("libc6 (>= 2.34)"), ["libc6"]);
        assert_eq!(alternatives("mawk | awk"), ["mawk", "awk"]);
        assert_eq!(alternatives("python3:any (>= 3.11~)"), ["python3"]);
        assert!(alternatives(" ").is_empty());
    }
}
