//! The arrows between hull's folders point one way (docs/architecture.md,
//! "What each folder may use"): this test reads every source file and fails
//! on a `crate::` path into a folder its own folder may not use. Test code
//! (`#[cfg(test)]` modules and `tests.rs` files) may use anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Folder → the folders its code may use (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    ("util", &[]),
    ("manifest", &["util"]),
    ("boot", &["util"]),
    ("repo", &["util"]),
    ("fleetlock", &["util"]),
    ("build", &["manifest", "boot", "repo", "util"]),
    ("host", &["manifest", "boot", "repo", "fleetlock", "util"]),
    ("qemu", &["manifest", "util"]),
    (
        "cli",
        &[
            "manifest",
            "build",
            "boot",
            "repo",
            "host",
            "fleetlock",
            "qemu",
            "util",
        ],
    ),
];

/// Uses that break the table today, each with what removes it. Keep this
/// list short; an entry whose use is gone fails the test, so it is removed.
const KNOWN: &[(&str, &str, &str)] = &[(
    "manifest/validate/update.rs",
    "repo",
    "update.keys are read and parsed while validating; moves to the load step",
)];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The `crate::<folder>` paths `text` uses outside comments and test code.
fn uses(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("#[cfg(test)]") {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let name: String = rest[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::{a, b}` hides the folders: the check wants one
            // path per `use` (rustfmt may split a group over lines).
            let name = if name.is_empty() {
                "{".to_string()
            } else {
                name
            };
            out.push((n + 1, name));
            rest = &rest[i + 7..];
        }
    }
    out
}

#[test]
fn folders_use_only_what_they_may() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut known_seen = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let folder = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        if rel.components().count() == 1 || f.file_name().unwrap() == "tests.rs" {
            continue; // lib.rs, main.rs; test files
        }
        let may = allowed
            .get(folder)
            .unwrap_or_else(|| panic!("{}: folder {folder} is not in ALLOWED", rel.display()));
        let text = std::fs::read_to_string(f).unwrap();
        for (line, used) in uses(&text) {
            if used == "{" {
                wrong.push(format!(
                    "{}:{line}: write `use crate::<folder>::...` per folder, not `crate::{{`",
                    rel.display()
                ));
            } else if used != folder && !may.contains(&used.as_str()) {
                let file = rel.to_str().unwrap();
                if KNOWN.iter().any(|(f, u, _)| *f == file && *u == used) {
                    known_seen.push((file.to_string(), used));
                    continue;
                }
                wrong.push(format!(
                    "{}:{line}: {folder} uses crate::{used}",
                    rel.display()
                ));
            }
        }
    }
    for (file, used, why) in KNOWN {
        if !known_seen.iter().any(|(f, u)| f == file && u == used) {
            wrong.push(format!(
                "{file}: no longer uses crate::{used} ({why}): remove it from KNOWN"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "forbidden uses (docs/architecture.md lists what each folder may use):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_uses() {
    let text = "use crate::build::x;\n// crate::host\nfn f() { crate::util::now(); }\nuse crate::{a, b};\n#[cfg(test)]\nuse crate::qemu;\n";
    let got = uses(text);
    let names: Vec<(usize, &str)> = got.iter().map(|(n, u)| (*n, u.as_str())).collect();
    assert_eq!(names, [(1, "build"), (3, "util"), (4, "{")]);
}
